//! Room transcripts held in memory, so the poll every open page sends each 1.5 s is
//! answered without touching the database. The server's own posts are added as they
//! commit; messages written by anything else (another process on the same database) are
//! picked up by a cheap incremental query at most once per refresh period.

use crate::db::messages;
use crate::domain::message::transcript_line;
use crate::domain::sync::lock;
use crate::domain::{Error, Message, RoomName};
use sea_orm::DatabaseConnection;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A transcript body, shared by every response that sends it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transcript(pub Arc<[u8]>);

impl From<String> for Transcript {
    fn from(text: String) -> Self {
        Transcript(text.into_bytes().into())
    }
}

struct Room {
    /// Each message's transcript line, and the row for the JSON form.
    entries: BTreeMap<i64, (String, Arc<Message>)>,
    /// The joined lines and their ETag, built on the first read after a change.
    full: Option<(Transcript, Arc<str>)>,
    /// False until the room's history has been read from the database once.
    loaded: bool,
    /// When a refresh was last started. Set at the start, so one request refreshes per
    /// period, and one that is dropped midway (its client went away) delays the next
    /// refresh by a period at most.
    checked: Instant,
    last_read: Instant,
}

/// What a poll gets: the whole transcript, or the lines after a message id, with the
/// version of the room they were taken from.
pub struct View {
    pub text: Transcript,
    /// Rows, when asked for (the JSON form).
    pub rows: Vec<Arc<Message>>,
    /// Identifies the room's content: the same for as long as no message is added.
    pub etag: Arc<str>,
    pub last_id: i64,
    /// How many messages the text holds.
    pub count: usize,
}

impl Room {
    fn new() -> Self {
        Room {
            entries: BTreeMap::new(),
            full: None,
            loaded: false,
            checked: Instant::now(),
            last_read: Instant::now(),
        }
    }

    fn add(&mut self, row: &Message) {
        self.entries.entry(row.id).or_insert_with(|| {
            let line = transcript_line(row.timestamp, &row.username, &row.text);
            (line, Arc::new(row.clone()))
        });
        self.full = None;
    }

    fn last_id(&self) -> i64 {
        self.entries.last_key_value().map_or(0, |(id, _)| *id)
    }

    fn full(&mut self) -> (Transcript, Arc<str>) {
        if self.full.is_none() {
            let text = join_lines(self.entries.values().map(|(line, _)| line.as_str()));
            let etag = format!("\"{}-{}\"", self.entries.len(), self.last_id());
            self.full = Some((text, etag.into()));
        }
        self.full.clone().unwrap_or_default()
    }

    fn view(&mut self, after: Option<i64>, with_rows: bool) -> View {
        let (full, etag) = self.full();
        let last_id = self.last_id();
        let range = self
            .entries
            .range(after.map_or(i64::MIN, |a| a.saturating_add(1))..);
        let (text, count) = match after {
            // The common poll: the shared body as it is, nothing walked.
            None => (full, self.entries.len()),
            Some(_) => (
                join_lines(range.clone().map(|(_, (line, _))| line.as_str())),
                range.clone().count(),
            ),
        };
        let rows = if with_rows {
            range.map(|(_, (_, row))| row.clone()).collect()
        } else {
            Vec::new()
        };
        View {
            text,
            rows,
            etag,
            last_id,
            count,
        }
    }
}

fn join_lines<'a>(lines: impl Iterator<Item = &'a str> + Clone) -> Transcript {
    let len = lines.clone().map(|l| l.len() + 1).sum::<usize>();
    let mut text = String::with_capacity(len);
    for line in lines {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(line);
    }
    Transcript::from(text)
}

pub struct Transcripts {
    rooms: Mutex<HashMap<String, Room>>,
    refresh: Duration,
    capacity: usize,
    /// Counts deletions (see `forget`), changed with `rooms` held: a read of the database
    /// that began before a deletion may hold the deleted message, and is not kept.
    deletions: AtomicU64,
}

/// What a read does, and the deletion count when it was decided.
enum Plan {
    Serve(View),
    Refresh(i64, u64),
    Load(u64),
}

impl Transcripts {
    pub fn new(refresh: Duration, capacity: usize) -> Self {
        Transcripts {
            rooms: Mutex::new(HashMap::new()),
            refresh,
            capacity: capacity.max(1),
            deletions: AtomicU64::new(0),
        }
    }

    fn rooms(&self) -> MutexGuard<'_, HashMap<String, Room>> {
        lock(&self.rooms)
    }

    /// The room's messages after `after` (all of them without it; none for a room nobody
    /// has written in), with the room's ETag.
    pub async fn view(
        &self,
        db: &DatabaseConnection,
        room: &RoomName,
        after: Option<i64>,
        with_rows: bool,
    ) -> Result<View, Error> {
        let plan = {
            let mut rooms = self.rooms();
            let deletions = self.deletions.load(Ordering::Relaxed);
            match rooms.get_mut(room.as_str()) {
                Some(r) if r.loaded => {
                    r.last_read = Instant::now();
                    if r.checked.elapsed() >= self.refresh {
                        r.checked = Instant::now();
                        Plan::Refresh(r.last_id(), deletions)
                    } else {
                        Plan::Serve(r.view(after, with_rows))
                    }
                }
                // Another request is loading it; loading again is harmless.
                Some(_) => Plan::Load(deletions),
                None => {
                    self.make_room_for_one(&mut rooms);
                    // Present before the query starts, so a post that commits meanwhile
                    // is recorded here and not lost between the query and the insert.
                    rooms.insert(room.as_str().to_string(), Room::new());
                    Plan::Load(deletions)
                }
            }
        };
        match plan {
            Plan::Serve(view) => Ok(view),
            Plan::Refresh(known, deletions) => {
                let rows = messages::in_room_between(db, room.as_str(), known, None).await;
                let (refreshed, deletions) = {
                    let mut rooms = self.rooms();
                    let current = self.deletions.load(Ordering::Relaxed) == deletions;
                    let refreshed = match rooms.get_mut(room.as_str()) {
                        Some(r) if r.loaded => {
                            match rows {
                                // Rows read before a deletion may hold the deleted message.
                                Ok(rows) if current => rows.iter().for_each(|row| r.add(row)),
                                Ok(_) => {}
                                // The database is away: what this server committed is all
                                // here already, so pollers keep getting it (a failed poll
                                // would stop the original page for good).
                                Err(err) => tracing::warn!(error = %err, room = room.as_str(),
                                    "transcript refresh failed, serving the cached one"),
                            }
                            Some(r.view(after, with_rows))
                        }
                        // Being loaded again after a deletion.
                        Some(_) => None,
                        // Evicted meanwhile: loaded again, as on a first read.
                        None => {
                            self.make_room_for_one(&mut rooms);
                            rooms.insert(room.as_str().to_string(), Room::new());
                            None
                        }
                    };
                    (refreshed, self.deletions.load(Ordering::Relaxed))
                };
                match refreshed {
                    Some(view) => Ok(view),
                    None => self.load(db, room, after, with_rows, deletions).await,
                }
            }
            Plan::Load(deletions) => self.load(db, room, after, with_rows, deletions).await,
        }
    }

    async fn load(
        &self,
        db: &DatabaseConnection,
        room: &RoomName,
        after: Option<i64>,
        with_rows: bool,
        deletions: u64,
    ) -> Result<View, Error> {
        match messages::in_room_between(db, room.as_str(), 0, None).await {
            Ok(rows) => {
                let mut rooms = self.rooms();
                if self.deletions.load(Ordering::Relaxed) != deletions {
                    // Something was deleted while this read ran: answer from it, keep
                    // nothing; the next read loads afresh.
                    let mut r = Room::new();
                    rows.iter().for_each(|row| r.add(row));
                    return Ok(r.view(after, with_rows));
                }
                let r = rooms
                    .entry(room.as_str().to_string())
                    .or_insert_with(Room::new);
                rows.iter().for_each(|row| r.add(row));
                r.loaded = true;
                r.checked = Instant::now();
                Ok(r.view(after, with_rows))
            }
            Err(err) => {
                let mut rooms = self.rooms();
                if rooms.get(room.as_str()).is_some_and(|r| !r.loaded) {
                    rooms.remove(room.as_str());
                }
                Err(err.into())
            }
        }
    }

    /// Adds a message this server has just committed to its room, if the room is held.
    pub fn record(&self, row: &Message) {
        if let Some(r) = self.rooms().get_mut(&row.room) {
            r.add(row);
        }
    }

    /// Drops a room's cached transcript (a message of it was deleted); the next read
    /// loads it again.
    pub fn forget(&self, room: &str) {
        let mut rooms = self.rooms();
        self.deletions.fetch_add(1, Ordering::Relaxed);
        rooms.remove(room);
    }

    fn make_room_for_one(&self, rooms: &mut HashMap<String, Room>) {
        if rooms.len() < self.capacity {
            return;
        }
        let oldest = rooms
            .iter()
            .min_by_key(|(_, r)| r.last_read)
            .map(|(name, _)| name.clone());
        if let Some(name) = oldest {
            rooms.remove(&name);
        }
    }
}
