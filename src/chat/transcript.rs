//! Room transcripts held in memory, so the poll every open page sends each 1.5 s is
//! answered without touching the database. The server's own posts are added as they
//! commit; messages written by anything else (another process on the same database) are
//! picked up by a cheap incremental query at most once per refresh period.
//!
//! What the rooms hold together is bounded in bytes, not only in rooms: a room of the
//! longest messages holds tens of megabytes, so a count of rooms alone let a few thousand
//! posts keep gigabytes. Past the budget the least recently read rooms go (and are read
//! from the database again on their next poll). A room larger than the whole budget is
//! kept alone: were it not kept, every poll of it would read and hold a copy of its own,
//! and many polls at once many copies. So what is held is at most the budget, or one room
//! of `max_messages` of the longest messages.

use crate::domain::message::transcript_line;
use crate::domain::sync::lock;
use crate::domain::{Error, Message, RoomName};
use hashlink::LinkedHashMap;
use sea_orm::DatabaseConnection;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A compression a client may accept for a transcript (`Accept-Encoding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Br,
    Gzip,
}

impl Encoding {
    /// The best of ours that an `Accept-Encoding` header accepts (brotli first), or none:
    /// the body as it is. A coding with `q=0` is refused, as RFC 9110 says.
    pub fn accepted(header: Option<&str>) -> Option<Encoding> {
        let mut found = None;
        for part in header?.split(',') {
            let mut fields = part.split(';').map(str::trim);
            let name = fields.next().unwrap_or_default().to_ascii_lowercase();
            let refused = fields.any(|f| {
                f.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            match (name.as_str(), refused) {
                (_, true) => {}
                ("br", false) => return Some(Encoding::Br),
                ("gzip" | "x-gzip", false) => found = Some(Encoding::Gzip),
                _ => {}
            }
        }
        found
    }

    /// Its name in `Content-Encoding`.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Br => "br",
            Encoding::Gzip => "gzip",
        }
    }

    /// `bytes` compressed: brotli at quality 5, gzip at level 6 (a room's version is
    /// compressed once and sent to every poll of it, so ratio is worth some time).
    fn compress(self, bytes: &[u8]) -> Transcript {
        use std::io::Write;
        let mut out = Vec::with_capacity(bytes.len() / 4 + 64);
        match self {
            Encoding::Br => {
                let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                // Writing to a Vec cannot fail.
                let _ = writer.write_all(bytes);
                drop(writer);
            }
            Encoding::Gzip => {
                let mut writer =
                    flate2::write::GzEncoder::new(&mut out, flate2::Compression::new(6));
                let _ = writer.write_all(bytes);
                let _ = writer.finish();
            }
        }
        Transcript(out.into())
    }
}

/// Which form of the whole transcript a compressed body is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    Text,
    Json,
}

/// A transcript body, shared by every response that sends it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transcript(pub Arc<[u8]>);

impl From<String> for Transcript {
    fn from(text: String) -> Self {
        Transcript(text.into_bytes().into())
    }
}

/// What a held message costs beside its strings: the row itself, its `Arc`, and its
/// share of the map's nodes.
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Message>() + std::mem::size_of::<Entry>() + 48;
/// What a held room costs beside its messages and its name.
const ROOM_OVERHEAD: usize = std::mem::size_of::<Room>() + 64;

struct Entry {
    /// The row, for the JSON form and the relay's history.
    row: Arc<Message>,
    /// Where the message's line starts in [`Room::text`], once it is there.
    at: usize,
}

struct Room {
    entries: BTreeMap<i64, Entry>,
    /// The lines of the entries up to `rendered`, joined: the one rendering held, sent as
    /// it is by the common poll and cut at an entry's line for `?after=`. Keeping each
    /// line apart as well doubled what a room held.
    text: Transcript,
    /// The newest message whose line is in `text`.
    rendered: i64,
    /// A message older than `rendered` came (commits need not arrive in id order): the
    /// next build renders every line again, in order.
    rerender: bool,
    /// The ETag of `text`, when `text` holds every entry.
    etag: Option<Arc<str>>,
    /// The whole transcript compressed, as text or as JSON (`Form`), for the version `etag`
    /// names: each made at the first poll that asks for it.
    encoded: Vec<((Form, Encoding), Transcript)>,
    /// The bytes of the rows held, with their overhead.
    row_bytes: usize,
    /// What this room adds to [`Held::bytes`], as last settled.
    counted: usize,
    /// False until the room's history has been read from the database once.
    loaded: bool,
    /// When a refresh was last started. Set at the start, so one request refreshes per
    /// period, and one that is dropped midway (its client went away) delays the next
    /// refresh by a period at most.
    checked: Instant,
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

impl View {
    /// What a room nobody has posted in shows, read from nothing: also what a room the
    /// caller may not read shows them, so that the two cannot be told apart.
    pub fn empty(after: Option<i64>, with_rows: bool) -> View {
        Room::new().view(after, with_rows)
    }
}

/// The heap a row's clone holds (a clone's strings are as long as their text).
fn row_bytes(row: &Message) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    ENTRY_OVERHEAD
        + row.room.len()
        + row.username.len()
        + row.text.len()
        + opt(&row.user_id)
        + row.message_type.as_str().len()
        + opt(&row.file_url)
        + row.client_stamp.as_ref().map_or(0, |e| e.kind.len())
}

impl Room {
    fn new() -> Self {
        Room {
            entries: BTreeMap::new(),
            text: Transcript::default(),
            rendered: i64::MIN,
            rerender: false,
            etag: None,
            encoded: Vec::new(),
            row_bytes: 0,
            counted: 0,
            loaded: false,
            checked: Instant::now(),
        }
    }

    /// Adds a message, keeping the newest `max` only.
    fn add(&mut self, row: &Message, max: usize) {
        if self.entries.contains_key(&row.id) {
            return;
        }
        if row.id <= self.rendered {
            self.rerender = true;
        }
        self.row_bytes += row_bytes(row);
        let row = Arc::new(row.clone());
        self.entries.insert(row.id, Entry { row, at: 0 });
        while self.entries.len() > max {
            if let Some((_, gone)) = self.entries.pop_first() {
                self.row_bytes -= row_bytes(&gone.row);
            }
        }
        self.etag = None;
        self.encoded.clear();
    }

    fn last_id(&self) -> i64 {
        self.entries.last_key_value().map_or(0, |(id, _)| *id)
    }

    /// The bytes this room holds, its name's included.
    fn cost(&self, name: &str) -> usize {
        let encoded: usize = self.encoded.iter().map(|(_, t)| t.0.len()).sum();
        ROOM_OVERHEAD + name.len() + self.row_bytes + self.text.0.len() + encoded
    }

    /// Brings `text` up to every entry: what it already holds of the entries still here is
    /// copied as it is, and only the lines of messages added since are rendered.
    fn render(&mut self) {
        let old = std::mem::take(&mut self.text);
        let (kept, from) = match self.entries.first_key_value() {
            Some((first, e)) if !self.rerender && *first <= self.rendered => {
                (&old.0[e.at..], self.rendered.saturating_add(1))
            }
            // None of the old text is still held, or all of it is rendered again.
            _ => (&old.0[..0], i64::MIN),
        };
        let shift = old.0.len() - kept.len();
        let lines: Vec<String> = self
            .entries
            .range(from..)
            .map(|(_, e)| transcript_line(e.row.timestamp, &e.row.username, &e.row.text))
            .collect();
        let len = kept.len() + lines.iter().map(|l| l.len() + 1).sum::<usize>();
        let mut text = Vec::with_capacity(len);
        text.extend_from_slice(kept);
        for (_, e) in self.entries.range_mut(..from) {
            e.at -= shift;
        }
        for ((_, e), line) in self.entries.range_mut(from..).zip(lines) {
            if !text.is_empty() {
                text.push(b'\n');
            }
            e.at = text.len();
            text.extend_from_slice(line.as_bytes());
        }
        self.text = Transcript(text.into());
        self.rendered = self.last_id();
        self.rerender = false;
    }

    fn full(&mut self) -> (Transcript, Arc<str>) {
        let etag = match &self.etag {
            Some(etag) => etag.clone(),
            None => {
                self.render();
                // An edit changes no count and no id: the newest edit's time is part of
                // the tag once there is one, so a poll holding the old text reads again.
                let edited = self.entries.values().filter_map(|e| e.row.edited_at).max();
                let etag: Arc<str> = match edited {
                    None => format!("\"{}-{}\"", self.entries.len(), self.last_id()),
                    Some(at) => format!(
                        "\"{}-{}-{}\"",
                        self.entries.len(),
                        self.last_id(),
                        at.and_utc().timestamp_micros()
                    ),
                }
                .into();
                self.etag = Some(etag.clone());
                etag
            }
        };
        (self.text.clone(), etag)
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
                range
                    .clone()
                    .next()
                    .map_or_else(Transcript::default, |(_, e)| {
                        Transcript(full.0[e.at..].into())
                    }),
                range.clone().count(),
            ),
        };
        let rows = if with_rows {
            range.map(|(_, e)| e.row.clone()).collect()
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

/// The rooms, least recently read first, and the bytes they hold together.
struct Held {
    rooms: LinkedHashMap<String, Room>,
    bytes: usize,
}

impl Held {
    /// Counts what `name`'s room holds now in place of what it held when last counted.
    fn settle(bytes: &mut usize, name: &str, room: &mut Room) {
        let now = room.cost(name);
        *bytes = *bytes - room.counted + now;
        room.counted = now;
    }

    fn insert(&mut self, name: &str) {
        let mut room = Room::new();
        Held::settle(&mut self.bytes, name, &mut room);
        if let Some(old) = self.rooms.insert(name.to_string(), room) {
            self.bytes -= old.counted;
        }
    }

    fn remove(&mut self, name: &str) {
        if let Some(room) = self.rooms.remove(name) {
            self.bytes -= room.counted;
        }
    }

    /// Lets the least recently read rooms go until what is held fits `budget`, but never
    /// `changed`, the room just read or written: when it alone is larger, it stays alone.
    /// A room still loading stays too: it is small, and a post committed during its load
    /// is recorded in it.
    fn fit(&mut self, budget: usize, changed: &str) {
        while self.bytes > budget {
            let Some(name) = self
                .rooms
                .iter()
                .find(|(name, r)| r.loaded && name.as_str() != changed)
                .map(|(name, _)| name.clone())
            else {
                return;
            };
            self.remove(&name);
        }
    }
}

pub struct Transcripts {
    held: Mutex<Held>,
    refresh: Duration,
    capacity: usize,
    /// Messages held per room at most: the newest. So a poll never reads or sends a room
    /// of a million messages.
    max_messages: usize,
    /// Bytes the rooms may hold together.
    budget: usize,
    /// Counts deletions (see `forget`), changed with `held` locked: a read of the database
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
    pub fn new(refresh: Duration, capacity: usize, max_messages: usize, budget: usize) -> Self {
        Transcripts {
            held: Mutex::new(Held {
                rooms: LinkedHashMap::new(),
                bytes: 0,
            }),
            refresh,
            capacity: capacity.max(1),
            max_messages: max_messages.max(1),
            budget,
            deletions: AtomicU64::new(0),
        }
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        lock(&self.held)
    }

    /// The whole transcript of version `etag` of the room in `form` (its bytes made by
    /// `bytes` when they are needed), compressed: made once per version, form and encoding,
    /// and kept with the room (counted in its bytes), outside the lock. A version the room
    /// no longer holds is compressed for this answer only.
    pub fn encoded(
        &self,
        room: &str,
        etag: &str,
        key: (Form, Encoding),
        bytes: impl FnOnce() -> Transcript,
    ) -> Transcript {
        let current = |r: &Room| r.etag.as_deref() == Some(etag);
        if let Some(found) = self
            .held()
            .rooms
            .get(room)
            .filter(|r| current(r))
            .and_then(|r| {
                r.encoded
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, t)| t.clone())
            })
        {
            return found;
        }
        let body = key.1.compress(&bytes().0);
        let mut held = self.held();
        let Held { rooms, bytes } = &mut *held;
        if let Some(r) = rooms.get_mut(room).filter(|r| current(r)) {
            if !r.encoded.iter().any(|(k, _)| *k == key) {
                r.encoded.push((key, body.clone()));
                Held::settle(bytes, room, r);
            }
        }
        body
    }

    /// The room's messages after `after` (all of them without it, the newest
    /// `max_messages` at most; none for a room nobody has written in), with the room's
    /// ETag.
    pub async fn view(
        &self,
        db: &DatabaseConnection,
        room: &RoomName,
        after: Option<i64>,
        with_rows: bool,
    ) -> Result<View, Error> {
        let read = |after| super::messages::recent(db, room.as_str(), after, self.max_messages);
        self.view_with(read, room, after, with_rows).await
    }

    /// The room's messages stored at or after `from` (UTC), oldest first: the relay's
    /// history, answered from the transcript, so the newest `max_messages` at most.
    pub async fn stored_since(
        &self,
        db: &DatabaseConnection,
        room: &RoomName,
        from: chrono::NaiveDateTime,
    ) -> Result<Vec<Arc<Message>>, Error> {
        let view = self.view(db, room, None, true).await?;
        Ok(view
            .rows
            .into_iter()
            .filter(|m| m.timestamp >= from)
            .collect())
    }

    /// [`Transcripts::view`], reading the room's messages after an id with `read`.
    async fn view_with<F, Fut>(
        &self,
        read: F,
        room: &RoomName,
        after: Option<i64>,
        with_rows: bool,
    ) -> Result<View, Error>
    where
        F: Fn(i64) -> Fut,
        Fut: Future<Output = Result<Vec<Message>, Error>>,
    {
        let plan = {
            let mut held = self.held();
            let held = &mut *held;
            let deletions = self.deletions.load(Ordering::Relaxed);
            // Moved to the back: the front is the least recently read.
            match held.rooms.to_back(room.as_str()) {
                Some(r) if r.loaded => {
                    if r.checked.elapsed() >= self.refresh {
                        r.checked = Instant::now();
                        Plan::Refresh(r.last_id(), deletions)
                    } else {
                        let view = r.view(after, with_rows);
                        // The first read after a change renders the text anew.
                        Held::settle(&mut held.bytes, room.as_str(), r);
                        held.fit(self.budget, room.as_str());
                        Plan::Serve(view)
                    }
                }
                // Another request is loading it; loading again is harmless.
                Some(_) => Plan::Load(deletions),
                None => {
                    self.make_room_for_one(held);
                    // Present before the query starts, so a post that commits meanwhile
                    // is recorded here and not lost between the query and the insert.
                    held.insert(room.as_str());
                    Plan::Load(deletions)
                }
            }
        };
        match plan {
            Plan::Serve(view) => Ok(view),
            Plan::Refresh(known, deletions) => {
                let rows = read(known).await;
                let (refreshed, deletions) = {
                    let mut held = self.held();
                    let held = &mut *held;
                    let current = self.deletions.load(Ordering::Relaxed) == deletions;
                    let refreshed = match held.rooms.get_mut(room.as_str()) {
                        Some(r) if r.loaded => {
                            match rows {
                                // Rows read before a deletion may hold the deleted message.
                                Ok(rows) if current => {
                                    rows.iter().for_each(|row| r.add(row, self.max_messages))
                                }
                                Ok(_) => {}
                                // The database is away: what this server committed is all
                                // here already, so pollers keep getting it (a failed poll
                                // would stop the original page for good).
                                Err(err) => tracing::warn!(error = %err, room = room.as_str(),
                                    "transcript refresh failed, serving the cached one"),
                            }
                            let view = r.view(after, with_rows);
                            Held::settle(&mut held.bytes, room.as_str(), r);
                            held.fit(self.budget, room.as_str());
                            Some(view)
                        }
                        // Being loaded again after a deletion.
                        Some(_) => None,
                        // Evicted meanwhile: loaded again, as on a first read.
                        None => {
                            self.make_room_for_one(held);
                            held.insert(room.as_str());
                            None
                        }
                    };
                    (refreshed, self.deletions.load(Ordering::Relaxed))
                };
                match refreshed {
                    Some(view) => Ok(view),
                    None => self.load(&read, room, after, with_rows, deletions).await,
                }
            }
            Plan::Load(deletions) => self.load(&read, room, after, with_rows, deletions).await,
        }
    }

    async fn load<F, Fut>(
        &self,
        read: &F,
        room: &RoomName,
        after: Option<i64>,
        with_rows: bool,
        deletions: u64,
    ) -> Result<View, Error>
    where
        F: Fn(i64) -> Fut,
        Fut: Future<Output = Result<Vec<Message>, Error>>,
    {
        match read(0).await {
            Ok(rows) => {
                let mut held = self.held();
                let held = &mut *held;
                if self.deletions.load(Ordering::Relaxed) != deletions {
                    // Something was deleted while this read ran: answer from it, keep
                    // nothing; the next read loads afresh.
                    let mut r = Room::new();
                    rows.iter().for_each(|row| r.add(row, self.max_messages));
                    return Ok(r.view(after, with_rows));
                }
                let r = held
                    .rooms
                    .entry(room.as_str().to_string())
                    .or_insert_with(Room::new);
                rows.iter().for_each(|row| r.add(row, self.max_messages));
                r.loaded = true;
                r.checked = Instant::now();
                let view = r.view(after, with_rows);
                Held::settle(&mut held.bytes, room.as_str(), r);
                held.fit(self.budget, room.as_str());
                Ok(view)
            }
            Err(err) => {
                let mut held = self.held();
                if held.rooms.get(room.as_str()).is_some_and(|r| !r.loaded) {
                    held.remove(room.as_str());
                }
                Err(err)
            }
        }
    }

    /// Adds a message this server has just committed to its room, if the room is held.
    pub fn record(&self, row: &Message) {
        let mut held = self.held();
        let held = &mut *held;
        if let Some(r) = held.rooms.get_mut(&row.room) {
            r.add(row, self.max_messages);
            Held::settle(&mut held.bytes, &row.room, r);
            held.fit(self.budget, &row.room);
        }
    }

    /// Drops a room's cached transcript (a message of it was deleted); the next read
    /// loads it again.
    pub fn forget(&self, room: &str) {
        let mut held = self.held();
        self.deletions.fetch_add(1, Ordering::Relaxed);
        held.remove(room);
    }

    fn make_room_for_one(&self, held: &mut Held) {
        if held.rooms.len() < self.capacity {
            return;
        }
        if let Some((_, oldest)) = held.rooms.pop_front() {
            held.bytes -= oldest.counted;
        }
    }
}

#[cfg(test)]
mod tests {
    //! The cache against a table whose reads the test holds and releases, so that a
    //! deletion or an eviction lands exactly while a read is under way.

    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::Semaphore;

    fn message(room: &str, id: i64) -> Message {
        Message {
            id,
            room: room.into(),
            timestamp: crate::domain::now_utc(),
            username: "u".into(),
            text: format!("m{id}"),
            user_id: None,
            message_type: crate::domain::MessageType::Text,
            file_url: None,
            client_stamp: None,
            edited_at: None,
            reactions: Vec::new(),
            reply_to: None,
            reply_preview: None,
        }
    }

    type Read = std::pin::Pin<Box<dyn Future<Output = Result<Vec<Message>, Error>> + Send>>;

    /// One room's rows. A read sees the rows as they are when it starts (as a query
    /// does), then waits for a permit before it answers.
    struct Table {
        rows: Mutex<Vec<Message>>,
        gate: Semaphore,
        reads: AtomicUsize,
    }

    impl Table {
        fn new(rows: Vec<Message>, open: bool) -> Arc<Table> {
            let permits = if open { Semaphore::MAX_PERMITS } else { 0 };
            Arc::new(Table {
                rows: Mutex::new(rows),
                gate: Semaphore::new(permits),
                reads: AtomicUsize::new(0),
            })
        }

        fn reader(self: &Arc<Self>) -> impl Fn(i64) -> Read {
            let table = self.clone();
            move |after| {
                let snapshot: Vec<Message> = lock(&table.rows)
                    .iter()
                    .filter(|m| m.id > after)
                    .cloned()
                    .collect();
                table.reads.fetch_add(1, Ordering::SeqCst);
                let table = table.clone();
                Box::pin(async move {
                    table
                        .gate
                        .acquire()
                        .await
                        .map_err(|_| Error::Internal("closed".into()))?
                        .forget();
                    Ok(snapshot)
                })
            }
        }

        async fn started(&self, reads: usize) {
            while self.reads.load(Ordering::SeqCst) < reads {
                tokio::task::yield_now().await;
            }
        }
    }

    fn ids(view: &View) -> Vec<i64> {
        view.rows.iter().map(|m| m.id).collect()
    }

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    #[tokio::test]
    async fn a_load_and_the_posts_recorded_meanwhile_are_one_transcript() {
        let cache = Transcripts::new(Duration::from_secs(3600), 10, 1000, usize::MAX);
        let table = Table::new(vec![message("r", 1)], false);
        let read = table.reader();
        let r = room("r");
        let load = cache.view_with(&read, &r, None, true);
        tokio::pin!(load);
        // The load has begun (its room is held) when this post commits.
        tokio::select! { _ = &mut load => panic!("the gate is closed"), _ = table.started(1) => {} }
        cache.record(&message("r", 2));
        table.gate.add_permits(1);
        let view = load.await.unwrap();
        assert_eq!(ids(&view), [1, 2]);
        assert_eq!(view.etag.as_ref(), "\"2-2\"");
        // Served from memory now: no further read.
        let again = cache
            .view_with(&read, &room("r"), Some(1), true)
            .await
            .unwrap();
        assert_eq!(ids(&again), [2]);
        assert_eq!(table.reads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_deletion_racing_a_load_is_not_undone_by_it() {
        let cache = Transcripts::new(Duration::from_secs(3600), 10, 1000, usize::MAX);
        let table = Table::new(vec![message("r", 1), message("r", 2)], false);
        let read = table.reader();
        let r = room("r");
        let load = cache.view_with(&read, &r, None, true);
        tokio::pin!(load);
        tokio::select! { _ = &mut load => panic!("the gate is closed"), _ = table.started(1) => {} }
        // Message 2 is deleted while the read that still holds it is under way.
        lock(&table.rows).retain(|m| m.id != 2);
        cache.forget("r");
        table.gate.add_permits(Semaphore::MAX_PERMITS);
        // The racing read may answer its own request...
        assert_eq!(ids(&load.await.unwrap()), [1, 2]);
        // ...but is not kept: the next read loads afresh and never shows message 2 again.
        let next = cache
            .view_with(&read, &room("r"), None, true)
            .await
            .unwrap();
        assert_eq!(ids(&next), [1]);
        assert_eq!(table.reads.load(Ordering::SeqCst), 2);
        let cached = cache
            .view_with(&read, &room("r"), None, true)
            .await
            .unwrap();
        assert_eq!(ids(&cached), [1]);
    }

    #[tokio::test]
    async fn a_room_evicted_during_its_refresh_misses_no_post() {
        // One room fits; every read refreshes.
        let cache = Transcripts::new(Duration::ZERO, 1, 1000, usize::MAX);
        let a = Table::new(vec![message("a", 1)], true);
        let read_a = a.reader();
        assert_eq!(
            ids(&cache
                .view_with(&read_a, &room("a"), None, true)
                .await
                .unwrap()),
            [1]
        );

        // Room a's refresh is held...
        a.gate.forget_permits(Semaphore::MAX_PERMITS);
        let room_a = room("a");
        let refresh = cache.view_with(&read_a, &room_a, None, true);
        tokio::pin!(refresh);
        tokio::select! { _ = &mut refresh => panic!("the gate is closed"), _ = a.started(2) => {} }
        // ...while room b's first read evicts it.
        let b = Table::new(vec![message("b", 5)], true);
        let read_b = b.reader();
        assert_eq!(
            ids(&cache
                .view_with(&read_b, &room("b"), None, true)
                .await
                .unwrap()),
            [5]
        );
        assert!(!cache.held().rooms.contains_key("a"));

        // The refresh finds its room gone and loads it again; a post commits meanwhile.
        a.gate.add_permits(1);
        tokio::select! { _ = &mut refresh => panic!("the reload is held"), _ = a.started(3) => {} }
        assert!(
            cache.held().rooms.contains_key("a"),
            "held again before the reload's query"
        );
        lock(&a.rows).push(message("a", 6));
        cache.record(&message("a", 6));
        a.gate.add_permits(1);
        assert_eq!(ids(&refresh.await.unwrap()), [1, 6]);
    }

    #[tokio::test]
    async fn the_least_recently_read_room_goes_first() {
        let cache = Transcripts::new(Duration::from_secs(3600), 2, 1000, usize::MAX);
        let t = Table::new(Vec::new(), true);
        let read = t.reader();
        for name in ["a", "b"] {
            cache
                .view_with(&read, &room(name), None, false)
                .await
                .unwrap();
        }
        cache
            .view_with(&read, &room("a"), None, false)
            .await
            .unwrap();
        cache
            .view_with(&read, &room("c"), None, false)
            .await
            .unwrap();
        let held: std::collections::BTreeSet<String> = cache.held().rooms.keys().cloned().collect();
        assert_eq!(held, ["a", "c"].map(String::from).into());
    }

    #[tokio::test]
    async fn a_failed_first_read_holds_nothing_and_a_failed_refresh_serves_the_cache() {
        let cache = Transcripts::new(Duration::ZERO, 10, 1000, usize::MAX);
        let fail = |_| async { Err::<Vec<Message>, _>(Error::Unavailable("down".into())) };
        assert!(cache
            .view_with(fail, &room("r"), None, false)
            .await
            .is_err());
        assert!(cache.held().rooms.is_empty());
        let t = Table::new(vec![message("r", 1)], true);
        cache
            .view_with(t.reader(), &room("r"), None, false)
            .await
            .unwrap();
        let view = cache.view_with(fail, &room("r"), None, true).await.unwrap();
        assert_eq!(
            ids(&view),
            [1],
            "the database is away: pollers keep what is here"
        );
    }

    fn long(room: &str, id: i64) -> Message {
        Message {
            text: "😀".repeat(1000),
            ..message(room, id)
        }
    }

    /// What the rooms hold, counted afresh.
    fn recount(cache: &Transcripts) -> usize {
        let held = cache.held();
        held.rooms.iter().map(|(name, r)| r.cost(name)).sum()
    }

    /// The transcript as joining every row's line gives it.
    fn joined(rows: &[Message]) -> Vec<u8> {
        let lines: Vec<String> = rows
            .iter()
            .map(|m| transcript_line(m.timestamp, &m.username, &m.text))
            .collect();
        lines.join("\n").into_bytes()
    }

    #[tokio::test]
    async fn the_least_recently_read_rooms_go_when_their_bytes_pass_the_budget() {
        // Each room: 50 messages of 4 KB, twice (row and line): about 400 KB.
        let rows = |name: &str| (1..=50).map(|id| long(name, id)).collect::<Vec<_>>();
        let one = {
            let probe = Transcripts::new(Duration::from_secs(3600), 100, 1000, usize::MAX);
            let t = Table::new(rows("a"), true);
            probe
                .view_with(t.reader(), &room("a"), None, false)
                .await
                .unwrap();
            recount(&probe)
        };
        assert!(one > 2 * 50 * 4000, "rows and text counted: {one}");
        let cache = Transcripts::new(Duration::from_secs(3600), 100, 1000, 2 * one + one / 2);
        let tables: BTreeMap<&str, _> = ["a", "b", "c"]
            .map(|name| (name, Table::new(rows(name), true)))
            .into();
        for name in ["a", "b", "a", "c"] {
            let view = cache
                .view_with(tables[name].reader(), &room(name), None, false)
                .await
                .unwrap();
            assert_eq!(view.count, 50);
        }
        let held: std::collections::BTreeSet<String> = cache.held().rooms.keys().cloned().collect();
        assert_eq!(held, ["a", "c"].map(String::from).into());
        let bytes = cache.held().bytes;
        assert_eq!(bytes, recount(&cache));
        assert!(cache.held().bytes <= 2 * one + one / 2);
        // b was let go: read from its table again, the same room.
        let again = cache
            .view_with(tables["b"].reader(), &room("b"), None, true)
            .await
            .unwrap();
        assert_eq!((again.count, again.etag.as_ref()), (50, "\"50-50\""));
        assert_eq!(tables["b"].reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_room_larger_than_the_budget_is_kept_alone() {
        let cache = Transcripts::new(Duration::from_secs(3600), 100, 1000, 100_000);
        let small = Table::new(vec![message("s", 1)], true);
        cache
            .view_with(small.reader(), &room("s"), None, false)
            .await
            .unwrap();
        let rows: Vec<Message> = (1..=100).map(|id| long("big", id)).collect();
        let big = Table::new(rows.clone(), true);
        let view = cache
            .view_with(big.reader(), &room("big"), None, false)
            .await
            .unwrap();
        assert_eq!(view.text.0.as_ref(), joined(&rows));
        let held: Vec<String> = cache.held().rooms.keys().cloned().collect();
        assert_eq!(
            held,
            ["big"],
            "the big room stays, alone: polls of it share the one copy"
        );
        let bytes = cache.held().bytes;
        assert_eq!(bytes, recount(&cache));
        // A post to it is kept; reading the small room again lets the big one go.
        cache.record(&long("big", 101));
        assert!(cache.held().rooms.contains_key("big"));
        cache
            .view_with(small.reader(), &room("s"), None, false)
            .await
            .unwrap();
        let held: Vec<String> = cache.held().rooms.keys().cloned().collect();
        assert_eq!(held, ["s"]);
        let bytes = cache.held().bytes;
        assert_eq!(bytes, recount(&cache));
    }

    #[tokio::test]
    async fn the_one_rendering_answers_as_the_joined_lines_would() {
        // At most 8 messages; commits arrive out of id order, and some twice.
        let cache = Transcripts::new(Duration::from_secs(3600), 10, 8, usize::MAX);
        let mut all = vec![message("r", 2), message("r", 4)];
        let t = Table::new(all.clone(), true);
        let read = t.reader();
        let r = room("r");
        cache.view_with(&read, &r, None, false).await.unwrap();
        for id in [5, 7, 6, 3, 9, 7, 12, 10, 11, 1, 13, 14, 8, 20] {
            let mut m = message("r", id);
            m.text = format!("m{id}\nsecond line\r\n{}", "é".repeat(id as usize));
            cache.record(&m);
            if !all.iter().any(|held| held.id == id) {
                all.push(m);
            }
            all.sort_by_key(|m| m.id);
            let newest = &all[all.len().saturating_sub(8)..];
            // Read every other step, so some builds take several new lines at once.
            if id % 2 == 1 {
                continue;
            }
            let whole = cache.view_with(&read, &r, None, true).await.unwrap();
            assert_eq!(whole.text.0.as_ref(), joined(newest), "after {id}");
            assert_eq!(whole.count, newest.len());
            for after in 0..=21 {
                let part = cache.view_with(&read, &r, Some(after), true).await.unwrap();
                let expected: Vec<Message> =
                    newest.iter().filter(|m| m.id > after).cloned().collect();
                assert_eq!(
                    part.text.0.as_ref(),
                    joined(&expected),
                    "{id}, after {after}"
                );
                assert_eq!(part.count, expected.len());
                assert_eq!(
                    part.rows.iter().map(|m| m.id).collect::<Vec<_>>(),
                    expected.iter().map(|m| m.id).collect::<Vec<_>>()
                );
                assert_eq!(part.etag, whole.etag);
            }
            let bytes = cache.held().bytes;
            assert_eq!(bytes, recount(&cache));
        }
        assert_eq!(t.reads.load(Ordering::SeqCst), 1, "served from memory");
    }
}
