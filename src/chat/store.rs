//! Reading and writing messages. Writes go through a few writer tasks that put whatever
//! posts are waiting into one transaction: under load many messages share one commit (the
//! expensive part of an insert), and each POST still answers only after its row is
//! committed.

use super::validate::{now_utc, NewMessage, RoomName};
use crate::db::entities::message;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

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
}

impl Store {
    pub fn new(db: DatabaseConnection) -> Self {
        let (queue, rx) = mpsc::channel::<Pending>(4 * MAX_BATCH);
        let rx = Arc::new(Mutex::new(rx));
        // SQLite lets one writer in at a time; the servers take several transactions at
        // once, and several writers keep their commits overlapping.
        let writers = match db.get_database_backend() {
            DbBackend::Sqlite => 1,
            _ => 4,
        };
        for _ in 0..writers {
            tokio::spawn(writer(db.clone(), rx.clone()));
        }
        Store { db, queue }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Stores one message; returns once it is committed, with its id and timestamp.
    pub async fn insert(
        &self,
        room: &RoomName,
        message: NewMessage,
    ) -> Result<message::Model, DbErr> {
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

async fn writer(db: DatabaseConnection, rx: Arc<Mutex<mpsc::Receiver<Pending>>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        {
            let mut rx = rx.lock().await;
            if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
                return; // every sender is gone: the server is shutting down
            }
        }
        match write_batch(&db, &batch).await {
            Ok(models) => {
                for (pending, model) in batch.drain(..).zip(models) {
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
                        write_batch(&db, std::slice::from_ref(&pending))
                            .await
                            .map(|mut models| models.remove(0))
                    };
                    connection_lost |= matches!(&result, Err(e) if is_connection_error(e));
                    let _ = pending.done.send(result);
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

/// One transaction: all rows are committed, or none is and every poster gets the error.
async fn write_batch(
    db: &DatabaseConnection,
    batch: &[Pending],
) -> Result<Vec<message::Model>, DbErr> {
    let txn = db.begin().await?;
    let mut models = Vec::with_capacity(batch.len());
    for pending in batch {
        let timestamp = now_utc();
        let row = message::ActiveModel {
            id: NotSet,
            room: Set(pending.room.clone()),
            timestamp: Set(timestamp),
            username: Set(pending.message.username.clone()),
            text: Set(pending.message.text.clone()),
        };
        // One statement per row, so each row's own generated id comes back whatever the
        // server's auto-increment lock mode.
        let id = message::Entity::insert(row)
            .exec(&txn)
            .await?
            .last_insert_id;
        models.push(message::Model {
            id,
            room: pending.room.clone(),
            timestamp,
            username: pending.message.username.clone(),
            text: pending.message.text.clone(),
        });
    }
    txn.commit().await?;
    Ok(models)
}
