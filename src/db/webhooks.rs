//! The `webhook` table (outgoing webhooks) and `webhook_delivery`, their outbox: a row per
//! event per webhook, written in the transaction of the change it tells of, sent in id
//! order by whichever replica holds the webhook's lease, then kept as its record.

use super::entities::{webhook, webhook_delivery};
use chrono::NaiveDateTime;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, Order, Query, SimpleExpr};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

pub use webhook::Model as Webhook;
pub use webhook_delivery::Model as DeliveryRow;

/// At most this many webhooks are listed at once.
pub const LIST_LIMIT: u64 = 1000;

/// Where an outbox row stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Waiting for its turn, or for its next attempt (`next_at`).
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed: given up.
    Failed,
    /// Too many were waiting for a receiver that did not take them: the oldest went.
    Dropped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Delivered => "delivered",
            State::Failed => "failed",
            State::Dropped => "dropped",
        }
    }
}

/// An event for a webhook, to be written to the outbox.
#[derive(Clone, Debug)]
pub struct NewDelivery {
    pub webhook_id: String,
    pub event: &'static str,
    pub room_id: String,
    pub body: String,
}

pub async fn insert(db: &impl ConnectionTrait, row: &Webhook) -> Result<(), DbErr> {
    let active = webhook::ActiveModel {
        id: Set(row.id.clone()),
        room_id: Set(row.room_id.clone()),
        url: Set(row.url.clone()),
        events: Set(row.events.clone()),
        name: Set(row.name.clone()),
        secret: Set(row.secret.clone()),
        created_by: Set(row.created_by.clone()),
        created_at: Set(row.created_at),
        lease_holder: Set(None),
        lease_until: Set(None),
    };
    webhook::Entity::insert(active).exec(db).await.map(|_| ())
}

pub async fn get(db: &impl ConnectionTrait, id: &str) -> Result<Option<Webhook>, DbErr> {
    webhook::Entity::find_by_id(id.to_string()).one(db).await
}

/// Webhooks of these rooms (every webhook when `rooms` is None), oldest first; with
/// `all_rooms`, also those for every room.
pub async fn list(
    db: &impl ConnectionTrait,
    rooms: Option<&[String]>,
) -> Result<Vec<Webhook>, DbErr> {
    let mut query = webhook::Entity::find();
    if let Some(rooms) = rooms {
        query = query.filter(webhook::Column::RoomId.is_in(rooms.iter().cloned()));
    }
    query
        .order_by_asc(webhook::Column::CreatedAt)
        .order_by_asc(webhook::Column::Id)
        .limit(LIST_LIMIT)
        .all(db)
        .await
}

/// How many webhooks there are in all, and how many `creator` made.
pub async fn count(db: &impl ConnectionTrait, creator: Option<&str>) -> Result<(u64, u64), DbErr> {
    use sea_orm::PaginatorTrait;
    let all = webhook::Entity::find().count(db).await?;
    let theirs = match creator {
        Some(creator) => {
            webhook::Entity::find()
                .filter(webhook::Column::CreatedBy.eq(creator))
                .count(db)
                .await?
        }
        None => 0,
    };
    Ok((all, theirs))
}

/// Deletes a webhook and its outbox: nothing more is sent to it.
pub async fn delete(db: &impl ConnectionTrait, id: &str) -> Result<bool, DbErr> {
    webhook_delivery::Entity::delete_many()
        .filter(webhook_delivery::Column::WebhookId.eq(id))
        .exec(db)
        .await?;
    let done = webhook::Entity::delete_by_id(id.to_string())
        .exec(db)
        .await?;
    Ok(done.rows_affected > 0)
}

/// A deleted room's webhooks go with it, and whatever they had waiting.
pub async fn delete_room(db: &impl ConnectionTrait, room_id: &str) -> Result<(), DbErr> {
    webhook_delivery::Entity::delete_many()
        .filter(
            webhook_delivery::Column::WebhookId.in_subquery(
                Query::select()
                    .column(webhook::Column::Id)
                    .from(webhook::Entity)
                    .and_where(webhook::Column::RoomId.eq(room_id))
                    .to_owned(),
            ),
        )
        .exec(db)
        .await?;
    webhook::Entity::delete_many()
        .filter(webhook::Column::RoomId.eq(room_id))
        .exec(db)
        .await
        .map(|_| ())
}

/// Rows written per statement: each holds a message's JSON, and every database caps the
/// values (and MySQL the bytes) one statement may carry.
const ENQUEUE_CHUNK: usize = 64;

/// Writes events to the outbox, each due at `now`, under a delivery id of its own.
pub async fn enqueue(
    db: &impl ConnectionTrait,
    rows: Vec<NewDelivery>,
    now: NaiveDateTime,
) -> Result<(), DbErr> {
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<NewDelivery> = rows.by_ref().take(ENQUEUE_CHUNK).collect();
        enqueue_chunk(db, chunk, now).await?;
    }
    Ok(())
}

async fn enqueue_chunk(
    db: &impl ConnectionTrait,
    rows: Vec<NewDelivery>,
    now: NaiveDateTime,
) -> Result<(), DbErr> {
    let active = rows.into_iter().map(|row| webhook_delivery::ActiveModel {
        webhook_id: Set(row.webhook_id),
        delivery_id: Set(uuid::Uuid::new_v4().to_string()),
        event: Set(row.event.to_string()),
        room_id: Set(row.room_id),
        body: Set(row.body),
        state: Set(State::Pending.as_str().to_string()),
        attempts: Set(0),
        next_at: Set(now),
        attempted_at: Set(None),
        status: Set(None),
        error: Set(None),
        created_at: Set(now),
        ..Default::default()
    });
    webhook_delivery::Entity::insert_many(active)
        .exec_without_returning(db)
        .await
        .map(|_| ())
}

/// Webhooks whose next event (their oldest pending one) is due by `now`: for each webhook,
/// the first entry of its range of the `(webhook_id, state, id)` index, so the cost grows
/// with the webhooks, not with the events waiting or the records kept. (A `GROUP BY
/// webhook_id` over the pending rows was as fast only when the planner chose a loose index
/// scan; with a young table's statistics it read every waiting row, and the sender asks
/// after every commit that wrote events, while a receiver that is away may leave
/// thousands waiting.)
pub async fn due(db: &impl ConnectionTrait, now: NaiveDateTime) -> Result<Vec<String>, DbErr> {
    use webhook_delivery::Column;
    let queued = Alias::new("queued");
    let next_at = Query::select()
        .column((queued.clone(), Column::NextAt))
        .from_as(webhook_delivery::Entity, queued.clone())
        .and_where(
            Expr::col((queued.clone(), Column::WebhookId))
                .equals((webhook::Entity, webhook::Column::Id)),
        )
        .and_where(Expr::col((queued.clone(), Column::State)).eq(State::Pending.as_str()))
        .order_by((queued, Column::Id), Order::Asc)
        .limit(1)
        .to_owned();
    webhook::Entity::find()
        .select_only()
        .column(webhook::Column::Id)
        .filter(Expr::expr(SimpleExpr::SubQuery(None, Box::new(next_at.into()))).lte(now))
        .into_tuple::<String>()
        .all(db)
        .await
}

/// Takes (or keeps) the webhook's lease for `holder` until `until`, unless another
/// replica holds it past `now`. True when `holder` has it.
pub async fn lease(
    db: &impl ConnectionTrait,
    id: &str,
    holder: &str,
    now: NaiveDateTime,
    until: NaiveDateTime,
) -> Result<bool, DbErr> {
    let done = webhook::Entity::update_many()
        .col_expr(webhook::Column::LeaseHolder, Expr::value(holder))
        .col_expr(webhook::Column::LeaseUntil, Expr::value(until))
        .filter(webhook::Column::Id.eq(id))
        .filter(
            Condition::any()
                .add(webhook::Column::LeaseUntil.is_null())
                .add(webhook::Column::LeaseUntil.lt(now))
                .add(webhook::Column::LeaseHolder.eq(holder)),
        )
        .exec(db)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Lets the lease go, if `holder` still has it.
pub async fn release(db: &impl ConnectionTrait, id: &str, holder: &str) -> Result<(), DbErr> {
    webhook::Entity::update_many()
        .col_expr(
            webhook::Column::LeaseHolder,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            webhook::Column::LeaseUntil,
            Expr::value(Option::<NaiveDateTime>::None),
        )
        .filter(webhook::Column::Id.eq(id))
        .filter(webhook::Column::LeaseHolder.eq(holder))
        .exec(db)
        .await
        .map(|_| ())
}

/// The webhook's next event: its oldest pending row.
pub async fn head(
    db: &impl ConnectionTrait,
    webhook_id: &str,
) -> Result<Option<DeliveryRow>, DbErr> {
    webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::WebhookId.eq(webhook_id))
        .filter(webhook_delivery::Column::State.eq(State::Pending.as_str()))
        .order_by_asc(webhook_delivery::Column::Id)
        .one(db)
        .await
}

/// What one attempt came to.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub state: State,
    pub attempts: i32,
    pub next_at: NaiveDateTime,
    pub at: NaiveDateTime,
    pub status: Option<i32>,
    pub error: Option<String>,
}

/// Records an attempt on a row still pending (one dropped meanwhile stays dropped).
pub async fn record(db: &impl ConnectionTrait, id: i64, attempt: &Attempt) -> Result<(), DbErr> {
    use webhook_delivery::Column;
    let error: Option<String> = attempt
        .error
        .as_ref()
        .map(|e| e.chars().take(255).collect());
    webhook_delivery::Entity::update_many()
        .col_expr(Column::State, Expr::value(attempt.state.as_str()))
        .col_expr(Column::Attempts, Expr::value(attempt.attempts))
        .col_expr(Column::NextAt, Expr::value(attempt.next_at))
        .col_expr(Column::AttemptedAt, Expr::value(Some(attempt.at)))
        .col_expr(Column::Status, Expr::value(attempt.status))
        .col_expr(Column::Error, Expr::value(error))
        .filter(Column::Id.eq(id))
        .filter(Column::State.eq(State::Pending.as_str()))
        .exec(db)
        .await
        .map(|_| ())
}

/// Adds to a finished row's record what went wrong after it was delivered.
pub async fn note(db: &impl ConnectionTrait, id: i64, error: &str) -> Result<(), DbErr> {
    let error: String = error.chars().take(255).collect();
    webhook_delivery::Entity::update_many()
        .col_expr(webhook_delivery::Column::Error, Expr::value(error))
        .filter(webhook_delivery::Column::Id.eq(id))
        .exec(db)
        .await
        .map(|_| ())
}

/// The webhook's newest rows, newest first: its record of deliveries.
pub async fn deliveries(
    db: &impl ConnectionTrait,
    webhook_id: &str,
    limit: u64,
) -> Result<Vec<DeliveryRow>, DbErr> {
    webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::WebhookId.eq(webhook_id))
        .order_by_desc(webhook_delivery::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// Drops the oldest pending rows of each webhook past `keep` waiting (a receiver that
/// has been away long), and deletes records finished before `before`. Returns how many
/// rows were dropped.
pub async fn prune(
    db: &impl ConnectionTrait,
    keep: u64,
    before: NaiveDateTime,
    now: NaiveDateTime,
) -> Result<u64, DbErr> {
    use webhook_delivery::Column;
    let crowded: Vec<String> = webhook_delivery::Entity::find()
        .select_only()
        .column(Column::WebhookId)
        .filter(Column::State.eq(State::Pending.as_str()))
        .group_by(Column::WebhookId)
        .having(Func::count(Expr::col(Column::Id)).gt(keep))
        .into_tuple::<String>()
        .all(db)
        .await?;
    let mut dropped = 0;
    for webhook_id in crowded {
        // The newest row of the ones that go: `keep` newer ones stay.
        let edge: Option<i64> = webhook_delivery::Entity::find()
            .select_only()
            .column(Column::Id)
            .filter(Column::WebhookId.eq(&webhook_id))
            .filter(Column::State.eq(State::Pending.as_str()))
            .order_by_desc(Column::Id)
            .offset(keep)
            .limit(1)
            .into_tuple::<i64>()
            .one(db)
            .await?;
        let Some(edge) = edge else { continue };
        dropped += webhook_delivery::Entity::update_many()
            .col_expr(Column::State, Expr::value(State::Dropped.as_str()))
            .col_expr(Column::AttemptedAt, Expr::value(Some(now)))
            .col_expr(
                Column::Error,
                Expr::value(format!("dropped: more than {keep} events waited")),
            )
            .filter(Column::WebhookId.eq(&webhook_id))
            .filter(Column::State.eq(State::Pending.as_str()))
            .filter(Column::Id.lte(edge))
            .exec(db)
            .await?
            .rows_affected;
    }
    webhook_delivery::Entity::delete_many()
        .filter(Column::State.ne(State::Pending.as_str()))
        .filter(Column::CreatedAt.lt(before))
        .exec(db)
        .await?;
    // Rows of a webhook deleted while a replica that had not heard yet wrote them.
    webhook_delivery::Entity::delete_many()
        .filter(
            Column::WebhookId.not_in_subquery(
                Query::select()
                    .column(webhook::Column::Id)
                    .from(webhook::Entity)
                    .to_owned(),
            ),
        )
        .exec(db)
        .await?;
    Ok(dropped)
}
