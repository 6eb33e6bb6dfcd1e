//! Reading and writing messages. Writes go through one writer task that puts whatever
//! posts are waiting into one statement or transaction: under load many messages share one
//! commit (the expensive part of an insert), and each POST still answers only after its
//! row is committed. One writer means batches commit in id order, so everything committed
//! is handed on (to the transcripts and the hub) in id order: a reader that has seen
//! message N never gets a smaller id after it. Where the database can say which ids a multi-row INSERT generated
//! (`RETURNING`: PostgreSQL, SQLite, MariaDB) a batch is one statement; on MySQL it is
//! one statement per row, since MySQL may give one statement's rows ids that are not
//! consecutive.
//!
//! With several replicas (a Redis hub) one writer per replica is not enough: a batch locks
//! its rooms' rows before inserting, so a room's messages commit in id order across all
//! replicas, and reads the id of each room's last message, so every message is handed on
//! with its predecessor in the room (see `realtime::order`).

use super::validate::{now_utc, NewMessage, RoomName};
use crate::db::entities::{message, room};
use crate::realtime::Hub;
use sea_orm::sea_query::{Expr, Func, LockType, Order, Query, UnionType};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, Statement, TransactionTrait,
};
use std::collections::BTreeSet;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

const KNOWN_ROOM_TTL: Duration = Duration::from_secs(30);

/// Most messages committed together.
const MAX_BATCH: usize = 256;

struct Pending {
    room: String,
    message: NewMessage,
    done: oneshot::Sender<Result<message::Model, DbErr>>,
}

#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    queue: mpsc::Sender<Pending>,
    /// Rooms known to exist in the `room` table and since when, so only a room's first
    /// post checks. Another replica may delete a room: an entry is trusted for
    /// [`KNOWN_ROOM_TTL`] only.
    known_rooms: Arc<std::sync::Mutex<HashMap<String, Instant>>>,
}

/// How a batch of rows is inserted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InsertMode {
    /// One multi-row INSERT that returns the generated ids.
    Returning,
    /// MariaDB speaks the MySQL dialect, plus `RETURNING`.
    MariaDbReturning,
    /// One INSERT per row, each reading its own generated id.
    PerRow,
}

impl Store {
    /// `replicas`: the hub, when several replicas may write (see the module comment).
    pub async fn new(
        db: DatabaseConnection,
        use_returning: bool,
        replicas: Option<Arc<dyn Hub>>,
        on_commit: OnCommit,
    ) -> Result<Self, DbErr> {
        let mode = match db.get_database_backend() {
            _ if !use_returning => InsertMode::PerRow,
            DbBackend::MySql => {
                let version = db
                    .query_one_raw(Statement::from_string(
                        DbBackend::MySql,
                        "SELECT VERSION() AS v",
                    ))
                    .await?
                    .and_then(|row| row.try_get::<String>("", "v").ok())
                    .unwrap_or_default();
                if supports_returning(&version) {
                    InsertMode::MariaDbReturning
                } else {
                    InsertMode::PerRow
                }
            }
            _ => InsertMode::Returning,
        };
        let (queue, rx) = mpsc::channel::<Pending>(4 * MAX_BATCH);
        tokio::spawn(writer(db.clone(), rx, mode, replicas, on_commit));
        Ok(Store {
            db,
            queue,
            known_rooms: Arc::default(),
        })
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Stores one message; returns once it is committed, with its id and timestamp. A room
    /// that does not exist yet comes into being with its first message.
    pub async fn insert(
        &self,
        room: &RoomName,
        message: NewMessage,
    ) -> Result<message::Model, DbErr> {
        self.ensure_room(room).await?;
        let (done, result) = oneshot::channel();
        let pending = Pending {
            room: room.as_str().to_string(),
            message,
            done,
        };
        self.queue
            .send(pending)
            .await
            .map_err(|_| DbErr::Custom("message writer stopped".into()))?;
        result
            .await
            .map_err(|_| DbErr::Custom("message writer stopped".into()))?
    }

    /// The room, if it exists.
    pub async fn room(&self, id: &str) -> Result<Option<room::Model>, DbErr> {
        room::Entity::find_by_id(id.to_string()).one(&self.db).await
    }

    async fn ensure_room(&self, room: &RoomName) -> Result<(), DbErr> {
        let known = |rooms: &HashMap<String, Instant>| {
            rooms
                .get(room.as_str())
                .is_some_and(|since| since.elapsed() < KNOWN_ROOM_TTL)
        };
        if known(&self.known_rooms.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(());
        }
        if self.room(room.as_str()).await?.is_none() {
            let row = room::ActiveModel {
                id: Set(room.as_str().to_string()),
                name: Set(room.as_str().to_string()),
                description: Set(None),
                created_at: Set(now_utc()),
            };
            // Two first posts at once: the second insert fails on the key, and the room
            // exists all the same.
            if let Err(err) = room::Entity::insert(row).exec(&self.db).await {
                if self.room(room.as_str()).await?.is_none() {
                    return Err(err);
                }
            }
        }
        self.known_rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(room.as_str().to_string(), Instant::now());
        Ok(())
    }

    /// After a room is deleted here: its next post checks the table again.
    pub fn forget_room(&self, room: &str) {
        self.known_rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(room);
    }

    /// Messages of a room with an id above `after`, oldest first.
    pub async fn messages_after(
        &self,
        room: &str,
        after: i64,
    ) -> Result<Vec<message::Model>, DbErr> {
        message::Entity::find()
            .filter(message::Column::Room.eq(room))
            .filter(message::Column::Id.gt(after))
            .order_by_asc(message::Column::Id)
            .all(&self.db)
            .await
    }
}

/// `INSERT ... RETURNING` exists in MariaDB from 10.5 on, and not in MySQL.
fn supports_returning(version: &str) -> bool {
    if !version.contains("MariaDB") {
        return false;
    }
    let mut parts = version
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (10, 5)
}

/// Called for every committed message, in id order, before its poster hears of it, with
/// the id of the message before it in its room when several replicas write.
pub type OnCommit = Box<dyn Fn(&message::Model, Option<i64>) + Send + Sync>;

/// A committed message and, with several replicas, its room's previous message id.
type Committed = (message::Model, Option<i64>);

async fn writer(
    db: DatabaseConnection,
    mut rx: mpsc::Receiver<Pending>,
    mode: InsertMode,
    replicas: Option<Arc<dyn Hub>>,
    on_commit: OnCommit,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let ordered = replicas.is_some();
    // Other replicas' messages that came before these but have not arrived go first.
    let publish = async |(model, prev): &Committed| {
        if let (Some(hub), Some(prev)) = (&replicas, prev) {
            hub.settle(&model.room, *prev).await;
        }
        on_commit(model, *prev);
    };
    loop {
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return; // every sender is gone: the server is shutting down
        }
        match write_batch(&db, &batch, mode, ordered).await {
            Ok(committed) => {
                for row in &committed {
                    publish(row).await;
                }
                for (pending, (model, _)) in batch.drain(..).zip(committed) {
                    let _ = pending.done.send(Ok(model));
                }
            }
            // One row the database refuses (say, a character an adopted latin1 table
            // cannot hold) must not fail the posts that shared its transaction.
            Err(err) if batch.len() > 1 && !is_connection_error(&err) => {
                let mut connection_lost = false;
                for pending in batch.drain(..) {
                    let result = if connection_lost {
                        Err(DbErr::Custom("database unavailable".into()))
                    } else {
                        write_batch(&db, std::slice::from_ref(&pending), mode, ordered)
                            .await
                            .map(|mut committed| committed.remove(0))
                    };
                    if let Ok(row) = &result {
                        publish(row).await;
                    }
                    connection_lost |= matches!(&result, Err(e) if is_connection_error(e));
                    let _ = pending.done.send(result.map(|(model, _)| model));
                }
            }
            Err(err) => {
                for pending in batch.drain(..) {
                    let _ = pending.done.send(Err(DbErr::Custom(err.to_string())));
                }
            }
        }
    }
}

fn is_connection_error(err: &DbErr) -> bool {
    matches!(err, DbErr::ConnectionAcquire(_) | DbErr::Conn(_))
}

/// All rows are committed, or none is and every poster gets the error. `ordered`: each
/// row comes with its room's previous message id (see the module comment).
async fn write_batch(
    db: &DatabaseConnection,
    batch: &[Pending],
    mode: InsertMode,
    ordered: bool,
) -> Result<Vec<Committed>, DbErr> {
    let timestamp = now_utc();
    let (ids, mut last) = match (mode, ordered) {
        // One statement is atomic on its own: no BEGIN and COMMIT round trips.
        (InsertMode::Returning | InsertMode::MariaDbReturning, false) => (
            insert_returning(db, batch, timestamp, mode).await?,
            HashMap::new(),
        ),
        _ => {
            let txn = db.begin().await?;
            let rooms: BTreeSet<&str> = batch.iter().map(|p| p.room.as_str()).collect();
            if ordered {
                lock_rooms(&txn, &rooms).await?;
            }
            let ids = match mode {
                InsertMode::PerRow => insert_per_row(&txn, batch, timestamp).await?,
                _ => insert_returning(&txn, batch, timestamp, mode).await?,
            };
            let last = match ids.first() {
                Some(&first) if ordered => last_ids(&txn, rooms, first).await?,
                _ => HashMap::new(),
            };
            txn.commit().await?;
            (ids, last)
        }
    };
    Ok(batch
        .iter()
        .zip(ids)
        .map(|(pending, id)| {
            let prev = ordered.then(|| {
                let last = last.entry(pending.room.clone()).or_insert(0);
                std::mem::replace(last, id)
            });
            let model = message::Model {
                id,
                room: pending.room.clone(),
                timestamp,
                username: pending.message.username.clone(),
                text: pending.message.text.clone(),
                user_id: pending.message.user_id.clone(),
                message_type: pending.message.message_type.to_string(),
                file_url: pending.message.file_url.clone(),
            };
            (model, prev)
        })
        .collect())
}

/// Locks the rooms until the transaction ends, in one order on every replica so two cannot
/// wait on each other; so ids are given in commit order within a room. SQLite lets one
/// writer in at a time anyway (from the first INSERT on), and has no row locks.
async fn lock_rooms<C: ConnectionTrait>(txn: &C, rooms: &BTreeSet<&str>) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    if backend != DbBackend::Sqlite {
        let lock = Query::select()
            .column(room::Column::Id)
            .from(room::Entity)
            .and_where(room::Column::Id.is_in(rooms.iter().copied()))
            .order_by(room::Column::Id, Order::Asc)
            .lock(LockType::Update)
            .to_owned();
        txn.query_all_raw(backend.build(&lock)).await?;
    }
    Ok(())
}

/// Each room's last message id before this batch's first (`below`). Read once this
/// transaction is the rooms' only writer, so every earlier message of them is committed.
/// One MAX per room, each answered from the end of the (room, id) index; a GROUP BY over
/// the rooms would read every message of each.
async fn last_ids<C: ConnectionTrait>(
    txn: &C,
    rooms: BTreeSet<&str>,
    below: i64,
) -> Result<HashMap<String, i64>, DbErr> {
    let last_of = |room: &str| {
        Query::select()
            .expr(Expr::val(room))
            .expr(Func::max(Expr::col(message::Column::Id)))
            .from(message::Entity)
            .and_where(message::Column::Room.eq(room))
            .and_where(message::Column::Id.lt(below))
            .to_owned()
    };
    let mut rooms = rooms.into_iter();
    let Some(first) = rooms.next() else {
        return Ok(HashMap::new());
    };
    let mut last = last_of(first);
    for room in rooms {
        last.union(UnionType::All, last_of(room));
    }
    let mut ids = HashMap::new();
    let backend = txn.get_database_backend();
    for row in txn.query_all_raw(backend.build(&last)).await? {
        if let Some(id) = row.try_get_by_index::<Option<i64>>(1)? {
            ids.insert(row.try_get_by_index::<String>(0)?, id);
        }
    }
    Ok(ids)
}

async fn insert_returning<C: ConnectionTrait>(
    db: &C,
    batch: &[Pending],
    timestamp: chrono::NaiveDateTime,
    mode: InsertMode,
) -> Result<Vec<i64>, DbErr> {
    use message::Column;
    let mut insert = Query::insert();
    insert.into_table(message::Entity).columns([
        Column::Room,
        Column::Timestamp,
        Column::Username,
        Column::Text,
        Column::UserId,
        Column::MessageType,
        Column::FileUrl,
    ]);
    for p in batch {
        insert
            .values([
                p.room.clone().into(),
                timestamp.into(),
                p.message.username.clone().into(),
                p.message.text.clone().into(),
                p.message.user_id.clone().into(),
                p.message.message_type.into(),
                p.message.file_url.clone().into(),
            ])
            .map_err(|e| DbErr::Custom(e.to_string()))?;
    }
    let backend = db.get_database_backend();
    let statement = if mode == InsertMode::MariaDbReturning {
        let mut statement = backend.build(&insert);
        statement.sql.push_str(" RETURNING `id`");
        statement
    } else {
        backend.build(insert.returning_col(Column::Id))
    };
    let rows = db.query_all_raw(statement).await?;
    // Rows get their ids in the order of the VALUES list; the order RETURNING lists them
    // in is not promised, so sorting restores it.
    let mut ids = rows
        .iter()
        .map(|row| row.try_get_by_index::<i64>(0))
        .collect::<Result<Vec<_>, _>>()?;
    if ids.len() != batch.len() {
        return Err(DbErr::Custom(format!(
            "inserted {} rows, database returned {} ids",
            batch.len(),
            ids.len()
        )));
    }
    ids.sort_unstable();
    Ok(ids)
}

async fn insert_per_row<C: ConnectionTrait>(
    txn: &C,
    batch: &[Pending],
    timestamp: chrono::NaiveDateTime,
) -> Result<Vec<i64>, DbErr> {
    let mut ids = Vec::with_capacity(batch.len());
    for pending in batch {
        let row = message::ActiveModel {
            id: NotSet,
            room: Set(pending.room.clone()),
            timestamp: Set(timestamp),
            username: Set(pending.message.username.clone()),
            text: Set(pending.message.text.clone()),
            user_id: Set(pending.message.user_id.clone()),
            message_type: Set(pending.message.message_type.to_string()),
            file_url: Set(pending.message.file_url.clone()),
        };
        ids.push(message::Entity::insert(row).exec(txn).await?.last_insert_id);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    #[test]
    fn returning_is_used_on_mariadb_10_5_and_later_only() {
        assert!(super::supports_returning("10.11.19-MariaDB-0+deb12u1"));
        assert!(super::supports_returning("11.4.2-MariaDB"));
        assert!(!super::supports_returning("10.4.34-MariaDB"));
        assert!(!super::supports_returning("8.0.36"));
    }
}
