//! Room transcripts held in memory, so the poll every open page sends each 1.5 s is
//! answered without touching the database. The server's own posts are added as they
//! commit; messages written by anything else (another process on the same database) are
//! picked up by a cheap incremental query at most once per refresh period.

use crate::domain::message::transcript_line;
use crate::domain::sync::lock;
use crate::domain::{Error, Message, RoomName};
use sea_orm::DatabaseConnection;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
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

    /// Adds a message, keeping the newest `max` only.
    fn add(&mut self, row: &Message, max: usize) {
        self.entries.entry(row.id).or_insert_with(|| {
            let line = transcript_line(row.timestamp, &row.username, &row.text);
            (line, Arc::new(row.clone()))
        });
        while self.entries.len() > max {
            self.entries.pop_first();
        }
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
    /// Messages held per room at most: the newest. So a room's transcript costs at most
    /// this much memory, and a poll never reads or sends a room of a million messages.
    max_messages: usize,
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
    pub fn new(refresh: Duration, capacity: usize, max_messages: usize) -> Self {
        Transcripts {
            rooms: Mutex::new(HashMap::new()),
            refresh,
            capacity: capacity.max(1),
            max_messages: max_messages.max(1),
            deletions: AtomicU64::new(0),
        }
    }

    fn rooms(&self) -> MutexGuard<'_, HashMap<String, Room>> {
        lock(&self.rooms)
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

    /// The room's messages stored at or after `from` (UTC), oldest first: seed 002's
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
                let rows = read(known).await;
                let (refreshed, deletions) = {
                    let mut rooms = self.rooms();
                    let current = self.deletions.load(Ordering::Relaxed) == deletions;
                    let refreshed = match rooms.get_mut(room.as_str()) {
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
                let mut rooms = self.rooms();
                if self.deletions.load(Ordering::Relaxed) != deletions {
                    // Something was deleted while this read ran: answer from it, keep
                    // nothing; the next read loads afresh.
                    let mut r = Room::new();
                    rows.iter().for_each(|row| r.add(row, self.max_messages));
                    return Ok(r.view(after, with_rows));
                }
                let r = rooms
                    .entry(room.as_str().to_string())
                    .or_insert_with(Room::new);
                rows.iter().for_each(|row| r.add(row, self.max_messages));
                r.loaded = true;
                r.checked = Instant::now();
                Ok(r.view(after, with_rows))
            }
            Err(err) => {
                let mut rooms = self.rooms();
                if rooms.get(room.as_str()).is_some_and(|r| !r.loaded) {
                    rooms.remove(room.as_str());
                }
                Err(err)
            }
        }
    }

    /// Adds a message this server has just committed to its room, if the room is held.
    pub fn record(&self, row: &Message) {
        if let Some(r) = self.rooms().get_mut(&row.room) {
            r.add(row, self.max_messages);
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
            message_type: "text".into(),
            file_url: None,
            echo: None,
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
        let cache = Transcripts::new(Duration::from_secs(3600), 10, 1000);
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
        let cache = Transcripts::new(Duration::from_secs(3600), 10, 1000);
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
        let cache = Transcripts::new(Duration::ZERO, 1, 1000);
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
        assert!(!cache.rooms().contains_key("a"));

        // The refresh finds its room gone and loads it again; a post commits meanwhile.
        a.gate.add_permits(1);
        tokio::select! { _ = &mut refresh => panic!("the reload is held"), _ = a.started(3) => {} }
        assert!(
            cache.rooms().contains_key("a"),
            "held again before the reload's query"
        );
        lock(&a.rows).push(message("a", 6));
        cache.record(&message("a", 6));
        a.gate.add_permits(1);
        assert_eq!(ids(&refresh.await.unwrap()), [1, 6]);
    }

    #[tokio::test]
    async fn the_least_recently_read_room_goes_first() {
        let cache = Transcripts::new(Duration::from_secs(3600), 2, 1000);
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
        let held: std::collections::BTreeSet<String> = cache.rooms().keys().cloned().collect();
        assert_eq!(held, ["a", "c"].map(String::from).into());
    }

    #[tokio::test]
    async fn a_failed_first_read_holds_nothing_and_a_failed_refresh_serves_the_cache() {
        let cache = Transcripts::new(Duration::ZERO, 10, 1000);
        let fail = |_| async { Err::<Vec<Message>, _>(Error::Unavailable("down".into())) };
        assert!(cache
            .view_with(fail, &room("r"), None, false)
            .await
            .is_err());
        assert!(cache.rooms().is_empty());
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
}
