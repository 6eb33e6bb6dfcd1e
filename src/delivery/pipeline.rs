//! The one delivery pipeline. Read top to bottom, it is the life of a message:
//!
//! 1. A door (legacy POST, JSON POST, WebSocket frame) calls [`Delivery::post`] with a
//!    checked message; its room gets its row if it has none.
//! 2. The writer task commits whatever posts are waiting as one batch: under load many
//!    messages share one commit (the expensive part of an insert). One writer per replica
//!    means its batches commit, and are handed on, in id order.
//! 3. Each committed message passes the room's order gate (several replicas only: see
//!    `order.rs`), then goes
//! 4. into its room's transcript (what polls read),
//! 5. to this replica's readers (sockets, held polls),
//! 6. to the other replicas through Redis, with the `seq` of the change before it in the
//!    room,
//! 7. to RabbitMQ as an event, and
//! 8. to the mention scanner, which notifies the `@named`.
//!
//!    Its poster is answered once it has reached the readers (step 5), so a poll right
//!    after a 204 holds it.
//! 9. Messages from other replicas arrive through the hub and pass the same gate into
//!    transcripts and local readers; after a Redis outage, what was missed is read from
//!    the database.
//!
//! Every other change of a room (an edit, a reaction, a message or the room deleted) goes
//! down the same line: its door checks who may, the writer applies it after the posts it
//! found waiting, numbers it (`domain::seq`) and records it in the change log in the same
//! transaction, and it passes the same gate to the transcripts and the readers everywhere.
//! So messages and changes reach every reader in one order, and a reader that comes back
//! with its last `seq` is given what it missed (`chat::changes`).
//!
//! The writer never waits on a database read to hand a change on: one that arrives before
//! the change before it is parked, and a task of its own reads the gap.

use super::order::{Admit, RoomOrder};
use super::webhooks::{Kind, Webhooks};
use crate::access::RoomAccess;
use crate::chat::hooks::Hooks;
use crate::chat::reactions::Reacted;
use crate::chat::{self, rooms::NewRoom, Rooms, Transcripts};
use crate::db::error::{cause, lock_conflict, Cause};
use crate::db::messages::{self, InsertMode, ToInsert};
use crate::db::rooms::{Deleted, Room};
use crate::domain;
use crate::domain::seq;
use crate::domain::sync::lock;
use crate::domain::{Caller, Error, Limits, Message, NewMessage, RoomName};
use crate::events::Events;
use crate::metrics::METRICS;
use crate::notifications::Notifier;
use crate::realtime::{Arrival, Event, Hub};
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// Most messages committed together.
const MAX_BATCH: usize = 256;
/// Rows read per query when catching up after a Redis outage.
const CATCH_UP_PAGE: u64 = 1000;

/// The write side of the chat, shared by every door. Cheap to clone: a socket's task
/// keeps its own handle.
#[derive(Clone)]
pub struct Delivery {
    queue: mpsc::Sender<Pending>,
    rooms: Arc<Rooms>,
    stage: Arc<AfterCommit>,
}

/// What happens to a committed message, from whichever replica it came.
struct AfterCommit {
    db: DatabaseConnection,
    access: Arc<RoomAccess>,
    transcripts: Arc<Transcripts>,
    hub: Arc<dyn Hub>,
    events: Events,
    notifier: Notifier,
    /// Outgoing webhooks: the writer puts their events in the outbox.
    webhooks: Arc<Webhooks>,
    /// Incoming hooks, forgotten when their room goes.
    hooks: Arc<Hooks>,
    /// Several replicas: messages pass the gate. One: they come in order already.
    gate: Option<Mutex<Gate>>,
}

/// What waits for the writer: a post, or a change of a room already checked (who may,
/// what it says) for the writer to apply and number (`seq`), and where the answer goes.
enum Pending {
    Post {
        row: ToInsert,
        done: Answer,
    },
    Change {
        change: Change,
        done: oneshot::Sender<Result<Changed, Error>>,
    },
}

/// A change of a room other than a post, checked, for the writer to apply.
enum Change {
    /// The message as it stands, and its new text.
    Edit {
        message: Message,
        text: String,
    },
    React {
        message: Message,
        emoji: String,
        user_id: String,
        add: bool,
    },
    DeleteMessage {
        message: Message,
    },
    DeleteRoom {
        room: Room,
    },
}

impl Change {
    fn room(&self) -> &str {
        match self {
            Change::Edit { message, .. }
            | Change::React { message, .. }
            | Change::DeleteMessage { message } => &message.room,
            Change::DeleteRoom { room } => &room.id,
        }
    }
}

/// What the writer did.
enum Changed {
    Edited(Message),
    Reacted(Reacted),
    MessageDeleted(Message),
    RoomDeleted(Room, Deleted),
}

/// Where a post's outcome goes; none for messages of other replicas.
type Answer = Option<oneshot::Sender<Result<Message, Error>>>;

impl Delivery {
    /// Starts the writer, and with Redis the reader of other replicas' arrivals.
    #[allow(clippy::too_many_arguments)] // the parts it is wired from; lib.rs is its one caller
    pub async fn start(
        db: DatabaseConnection,
        insert_returning: bool,
        access: Arc<RoomAccess>,
        transcripts: Arc<Transcripts>,
        hub: Arc<dyn Hub>,
        arrivals: Option<mpsc::Receiver<Arrival>>,
        events: Events,
        notifier: Notifier,
        webhooks: Arc<Webhooks>,
        hooks: Arc<Hooks>,
        change_log_days: u32,
    ) -> Result<Self, Error> {
        let mode = messages::insert_mode(&db, insert_returning).await?;
        let stage = Arc::new(AfterCommit {
            gate: hub.replicated().then(Mutex::default),
            db,
            access,
            transcripts,
            hub,
            events,
            notifier,
            webhooks,
            hooks,
        });
        let (queue, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(writer(stage.clone(), rx, mode));
        tokio::spawn(prune_changes(stage.db.clone(), change_log_days));
        if let Some(arrivals) = arrivals {
            tokio::spawn(arrive(stage.clone(), arrivals));
        }
        Ok(Delivery {
            queue,
            rooms: Arc::default(),
            stage,
        })
    }

    // 1. A door posts.

    /// Stores one message as the caller may post it (see `access`); returns once it
    /// is committed and handed on, with its id and timestamp. A room that does not exist
    /// yet comes into being with its first message.
    pub async fn post(
        &self,
        caller: &Caller,
        room: &RoomName,
        mut message: NewMessage,
    ) -> Result<Message, Error> {
        self.stage
            .access
            .may_post(caller, room, &mut message)
            .await?;
        if let Some(answered) = message.reply_to {
            message.reply_preview =
                Some(chat::messages::answerable(&self.stage.db, room, answered).await?);
        }
        // A bot or a hook makes no room, not even by posting to one of its own that was
        // deleted; anyone else's post makes a legacy room as the Flask original did.
        if caller.rooms.is_some() {
            if !self.rooms.exists(&self.stage.db, room).await? {
                return Err(Error::not_found(format!(
                    "room {} does not exist",
                    room.as_str()
                )));
            }
        } else {
            self.rooms.ensure(&self.stage.db, room).await?;
        }
        let (done, answer) = oneshot::channel();
        let row = ToInsert {
            room: room.as_str().to_string(),
            message,
        };
        let stopped = || Error::Unavailable("the server is shutting down".into());
        self.queue
            .send(Pending::Post {
                row,
                done: Some(done),
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Deletes a message (see `chat::messages::check_delete` for who may); every reader
    /// drops it, and a reader that comes back with an older `seq` is told.
    pub async fn delete_message(&self, caller: &Caller, id: &str) -> Result<Message, Error> {
        let message =
            chat::messages::check_delete(&self.stage.db, &self.stage.access, caller, id).await?;
        match self.change(Change::DeleteMessage { message }).await? {
            Changed::MessageDeleted(message) => Ok(message),
            _ => Err(Error::Internal("the writer answered another change".into())),
        }
    }

    /// Edits a message's text (see `chat::messages::check_edit` for who may); every reader
    /// of its room, on every replica, is told, and polls read the new text.
    pub async fn edit_message(
        &self,
        caller: &Caller,
        id: &str,
        content: Option<&str>,
        limits: &Limits,
    ) -> Result<Message, Error> {
        let (message, text) = chat::messages::check_edit(
            &self.stage.db,
            &self.stage.access,
            caller,
            id,
            content,
            limits,
        )
        .await?;
        match self.change(Change::Edit { message, text }).await? {
            Changed::Edited(message) => Ok(message),
            _ => Err(Error::Internal("the writer answered another change".into())),
        }
    }

    /// Adds (`add`) or takes off a reaction (see `chat::reactions` for who may); when
    /// that changed anything, every reader of the room on every replica is told.
    pub async fn react(
        &self,
        caller: &Caller,
        message_id: &str,
        emoji: &str,
        user_id: Option<&str>,
        add: bool,
    ) -> Result<Reacted, Error> {
        let (db, access) = (&self.stage.db, &self.stage.access);
        let message = chat::messages::read(db, access, caller, message_id).await?;
        let (emoji, user_id) = chat::reactions::check(access, caller, emoji, user_id).await?;
        let change = Change::React {
            message,
            emoji,
            user_id,
            add,
        };
        match self.change(change).await? {
            Changed::Reacted(reacted) => Ok(reacted),
            _ => Err(Error::Internal("the writer answered another change".into())),
        }
    }

    /// Hands a checked change to the writer, and waits for what it did.
    async fn change(&self, change: Change) -> Result<Changed, Error> {
        let (done, answer) = oneshot::channel();
        let stopped = || Error::Unavailable("the server is shutting down".into());
        self.queue
            .send(Pending::Change { change, done })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Marks a room read for the acting user (see `chat::read_state::mark`); when the mark
    /// moved, every socket of that user, on every replica, is told, so all their tabs and
    /// devices show the same unread counts.
    pub async fn mark_read(
        &self,
        caller: &Caller,
        room_id: &str,
        last_read_id: Option<i64>,
        user_id: Option<&str>,
    ) -> Result<(), Error> {
        let (db, access) = (&self.stage.db, &self.stage.access);
        let moved =
            chat::read_state::mark(db, access, caller, room_id, last_read_id, user_id).await?;
        if let Some(moved) = moved {
            self.stage.hub.publish(
                &crate::realtime::user_channel(&moved.user_id),
                Event::Read {
                    room_id: moved.room_id,
                    last_read_id: moved.last_read_id,
                },
            );
        }
        Ok(())
    }

    /// Creates a room (see `chat::rooms::create`). Sockets and polls may be open on its
    /// name already (a name with no row is open to all): every replica reads its rule
    /// again, and readers it does not admit are let go.
    pub async fn create_room(&self, caller: &Caller, new: NewRoom) -> Result<domain::Room, Error> {
        let room = chat::rooms::create(&self.stage.db, caller, new).await?;
        self.access_changed(&room.id);
        Ok(room.into())
    }

    /// The direct room of the caller and `other` (see `chat::rooms::direct`), created on
    /// first asking, with the same care for readers already on its id as a new room.
    pub async fn direct_room(
        &self,
        caller: &Caller,
        other: &str,
    ) -> Result<(domain::Room, bool), Error> {
        let (room, new) = chat::rooms::direct(&self.stage.db, caller, other).await?;
        if new {
            self.access_changed(&room.id);
        }
        Ok((room.into(), new))
    }

    /// Deletes a room with its messages and files' rows (see `chat::rooms::check_delete`
    /// for who may); returns its id and what went with it. Its sockets are told and let
    /// go, on every replica.
    pub async fn delete_room(&self, caller: &Caller, id: &str) -> Result<(String, Deleted), Error> {
        let room =
            chat::rooms::check_delete(&self.stage.db, &self.stage.access, caller, id).await?;
        match self.change(Change::DeleteRoom { room }).await? {
            Changed::RoomDeleted(room, deleted) => {
                // Its hooks and webhooks went with it: hooks first, before anything
                // waits, so no post through one finds the room known here.
                self.stage.hooks.forget();
                self.rooms.forget(&room.id);
                self.stage.webhooks.room_deleted().await;
                Ok((room.id, deleted))
            }
            _ => Err(Error::Internal("the writer answered another change".into())),
        }
    }

    /// Adds a member to a private room (see `chat::rooms::add_member` for who may); every
    /// replica reads the room's rule again.
    pub async fn add_member(
        &self,
        caller: &Caller,
        room: &str,
        user_id: &str,
    ) -> Result<(domain::Member, bool), Error> {
        let (member, new) =
            chat::rooms::add_member(&self.stage.db, &self.stage.access, caller, room, user_id)
                .await?;
        self.access_changed(&member.room_id);
        Ok((member.into(), new))
    }

    /// Removes a member from a private room (see `chat::rooms::remove_member`); their
    /// sockets in it are closed and their polls of it answer 404, on every replica.
    pub async fn remove_member(
        &self,
        caller: &Caller,
        room: &str,
        user_id: &str,
    ) -> Result<(), Error> {
        let room =
            chat::rooms::remove_member(&self.stage.db, &self.stage.access, caller, room, user_id)
                .await?;
        self.access_changed(&room.id);
        Ok(())
    }

    fn access_changed(&self, room: &str) {
        self.stage.access.forget(room);
        self.stage.hub.publish(room, Event::AccessChanged);
    }
}

// 2. The writer commits batches.

async fn writer(stage: Arc<AfterCommit>, mut rx: mpsc::Receiver<Pending>, mode: InsertMode) {
    let ordered = stage.gate.is_some();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return; // every sender is gone: the server is shutting down
        }
        let mut posts = Vec::new();
        let mut changes = Vec::new();
        for pending in batch.drain(..) {
            match pending {
                Pending::Post { row, done } => posts.push((row, done)),
                Pending::Change { change, done } => changes.push((change, done)),
            }
        }
        if !posts.is_empty() {
            write_posts(&stage, posts, mode, ordered).await;
        }
        // After the posts: a change is numbered after every message committed before it.
        if !changes.is_empty() {
            write_changes(&stage, changes, ordered).await;
        }
    }
}

async fn write_posts(
    stage: &Arc<AfterCommit>,
    posts: Vec<(ToInsert, Answer)>,
    mode: InsertMode,
    ordered: bool,
) {
    let (rows, answers): (Vec<ToInsert>, Vec<_>) = posts.into_iter().unzip();
    let webhooks = &stage.webhooks;
    let for_message = |m: &Message| webhooks.for_message(m);
    let outbox: Option<messages::Outbox> = webhooks
        .want_messages(rows.iter().map(|r| r.room.as_str()))
        .then_some(&for_message);
    let mut result = messages::insert_batch(&stage.db, &rows, mode, ordered, outbox).await;
    // A batch that lost to another writer (SQLite has one at a time: the webhook sender's
    // updates, an account's row) was rolled back whole: it is run again before anyone is
    // told 503.
    for wait in [10, 50, 200] {
        match &result {
            Err(err) if lock_conflict(err) => {
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                result = messages::insert_batch(&stage.db, &rows, mode, ordered, outbox).await;
            }
            _ => break,
        }
    }
    if outbox.is_some() && result.is_ok() {
        webhooks.written();
    }
    match result {
        Ok(committed) => {
            for (done, (message, prev)) in answers.into_iter().zip(committed) {
                stage.committed(message, prev, done);
            }
        }
        // One row the database refuses (a value too long for its column, a character
        // an adopted latin1 table cannot hold) must not fail the posts that shared its
        // transaction: each is tried alone.
        Err(err) if rows.len() > 1 && cause(&err) != Cause::Unavailable => {
            let mut unavailable: Option<Error> = None;
            for (row, done) in rows.into_iter().zip(answers) {
                let result = match &unavailable {
                    Some(err) => Err(err.clone()),
                    None => {
                        let one = std::slice::from_ref(&row);
                        messages::insert_batch(&stage.db, one, mode, ordered, outbox)
                            .await
                            .map_err(Error::from)
                            .map(|mut one| {
                                if outbox.is_some() {
                                    webhooks.written();
                                }
                                one.remove(0)
                            })
                    }
                };
                match result {
                    Ok((message, prev)) => stage.committed(message, prev, done),
                    Err(err) => {
                        if let Error::Unavailable(_) = err {
                            unavailable = Some(err.clone());
                        }
                        answer(done, Err(err));
                    }
                }
            }
        }
        Err(err) => {
            let err = Error::from(err);
            for done in answers {
                answer(done, Err(err.clone()));
            }
        }
    }
}

type ChangeAnswer = oneshot::Sender<Result<Changed, Error>>;

/// Applies the changes in one transaction (their rooms locked with several replicas), each
/// numbered after its room's last change and recorded with it; then hands them on in that
/// order. A database error fails the transaction: each change is then tried alone.
async fn write_changes(
    stage: &Arc<AfterCommit>,
    changes: Vec<(Change, ChangeAnswer)>,
    ordered: bool,
) {
    let (changes, answers): (Vec<Change>, Vec<ChangeAnswer>) = changes.into_iter().unzip();
    match apply_changes(&stage.db, &stage.webhooks, &changes, ordered).await {
        Ok(results) => {
            for (done, result) in answers.into_iter().zip(results) {
                let result = result.map(|(changed, told)| {
                    if let Some((room, event, prev)) = told {
                        stage.changed(&room, event, prev, &changed);
                    }
                    changed
                });
                let _ = done.send(result);
            }
        }
        Err(err) if changes.len() > 1 && cause(&err) != Cause::Unavailable => {
            for (change, done) in changes.into_iter().zip(answers) {
                let result = match apply_changes(
                    &stage.db,
                    &stage.webhooks,
                    std::slice::from_ref(&change),
                    ordered,
                )
                .await
                {
                    Ok(mut one) => one.remove(0).map(|(changed, told)| {
                        if let Some((room, event, prev)) = told {
                            stage.changed(&room, event, prev, &changed);
                        }
                        changed
                    }),
                    Err(err) => Err(Error::from(err)),
                };
                let _ = done.send(result);
            }
        }
        Err(err) => {
            let err = Error::from(err);
            for done in answers {
                let _ = done.send(Err(err.clone()));
            }
        }
    }
}

/// A change applied: what it did, and, when it changed the room, the event readers are
/// told (with its `seq`) and the `seq` before it in the room.
type Applied = Result<(Changed, Option<(String, Event, i64)>), Error>;

async fn apply_changes(
    db: &DatabaseConnection,
    webhooks: &Webhooks,
    changes: &[Change],
    ordered: bool,
) -> Result<Vec<Applied>, DbErr> {
    let txn = db.begin().await?;
    let rooms: BTreeSet<&str> = changes.iter().map(Change::room).collect();
    // One replica has one writer; but on SQLite the transaction must write before it
    // reads (see `lock_rooms`), whoever else writes.
    if ordered || db.get_database_backend() == sea_orm::DbBackend::Sqlite {
        messages::lock_rooms(&txn, &rooms).await?;
    }
    let rooms: Vec<&str> = rooms.into_iter().collect();
    let mut heads = crate::db::changes::heads(&txn, &rooms).await?;
    let mut results = Vec::with_capacity(changes.len());
    let mut wrote_outbox = false;
    for change in changes {
        let room = change.room().to_string();
        let (last, newest) = heads.get(&room).copied().unwrap_or((0, 0));
        let Some(seq) = seq::next(last, newest) else {
            results.push(Err(Error::TooManyRequests {
                reason: "this room has had a million changes since its last message: post one"
                    .into(),
                retry_after_secs: 60,
            }));
            continue;
        };
        let (changed, event) = match apply(&txn, change, seq).await? {
            Ok(done) => done,
            Err(refused) => {
                results.push(Err(refused));
                continue;
            }
        };
        // Its webhooks' events, in its transaction.
        let outbox = match (&changed, &event) {
            (Changed::Edited(m), Some(_)) => webhooks.for_change(Kind::MessageUpdated, m),
            (Changed::MessageDeleted(m), Some(_)) => webhooks.for_change(Kind::MessageDeleted, m),
            _ => Vec::new(),
        };
        if !outbox.is_empty() {
            crate::db::webhooks::enqueue(&txn, outbox, crate::domain::now_utc()).await?;
            wrote_outbox = true;
        }
        let told = match event {
            Some(event) => {
                // A deleted room keeps no log: one made later under its id starts afresh
                // (its readers were told, and were let go).
                if !matches!(event, Event::RoomDeleted { .. }) {
                    let record = chat::changes::record(&room, seq, &event);
                    crate::db::changes::insert(&txn, &[record]).await?;
                }
                heads.insert(room.clone(), (seq, newest));
                Some((room, event, last.max(seq::of_message(newest))))
            }
            None => None,
        };
        results.push(Ok((changed, told)));
    }
    txn.commit().await?;
    if wrote_outbox {
        webhooks.written();
    }
    Ok(results)
}

/// One change, in the writer's transaction: what it did and, when it changed the room,
/// its event numbered `seq`. The outer error is the database's; the inner a refusal.
async fn apply(
    txn: &DatabaseTransaction,
    change: &Change,
    seq: i64,
) -> Result<Result<(Changed, Option<Event>), Error>, DbErr> {
    Ok(Ok(match change {
        Change::Edit { message, text } => {
            let at = crate::domain::now_utc();
            if !messages::set_text(txn, message.id, text, at).await? {
                return Ok(Err(chat::messages::gone(message.id)));
            }
            let mut edited = message.clone();
            edited.text = text.clone();
            edited.edited_at = Some(at);
            let event = Event::MessageUpdated {
                message: Arc::new(edited.clone()),
                seq,
            };
            (Changed::Edited(edited), Some(event))
        }
        Change::React {
            message,
            emoji,
            user_id,
            add,
        } => {
            let reacted =
                match chat::reactions::apply(txn, message, emoji.clone(), user_id.clone(), *add)
                    .await?
                {
                    Ok(reacted) => reacted,
                    Err(refused) => return Ok(Err(refused)),
                };
            let event = reacted.changed.then(|| Event::Reaction {
                message_id: reacted.message_id,
                emoji: reacted.emoji.clone(),
                user_id: reacted.user_id.clone(),
                count: reacted.count,
                added: reacted.added,
                seq,
            });
            (Changed::Reacted(reacted), event)
        }
        Change::DeleteMessage { message } => {
            let deleted = messages::delete(txn, message.id).await?;
            // Its edits' text goes with it: nobody reads it back from the log.
            crate::db::changes::forget_message(txn, &message.room, message.id).await?;
            let event = deleted.then_some(Event::MessageDeleted {
                id: message.id,
                seq,
            });
            (Changed::MessageDeleted(message.clone()), event)
        }
        Change::DeleteRoom { room } => {
            let deleted = crate::db::rooms::delete_with_messages(txn, &room.id).await?;
            (
                Changed::RoomDeleted(room.clone(), deleted),
                Some(Event::RoomDeleted { seq }),
            )
        }
    }))
}

fn answer(done: Answer, result: Result<Message, Error>) {
    if let Some(done) = done {
        let _ = done.send(result);
    }
}

impl AfterCommit {
    /// Steps 3 to 8 for a message this replica committed, in commit order.
    fn committed(self: &Arc<Self>, message: Message, prev: Option<i64>, done: Answer) {
        METRICS.messages_stored.inc();
        let message = Arc::new(message);
        // 3 to 5: through the gate into the transcript and to local readers; the poster
        // is answered there.
        self.through_gate(&message.room, Event::Message(message.clone()), prev, done);
        // 6. Other replicas.
        self.hub
            .send_out(&message.room, Event::Message(message.clone()), prev);
        // 7. RabbitMQ.
        self.events.message_created(&message);
        // 8. Mentions.
        self.notifier.on_message(&message);
    }

    /// The same steps for another change this replica committed: the gate, the other
    /// replicas, RabbitMQ.
    fn changed(self: &Arc<Self>, room: &str, event: Event, prev: i64, changed: &Changed) {
        self.through_gate(room, event.clone(), Some(prev), None);
        self.hub.send_out(room, event, Some(prev));
        match changed {
            Changed::Edited(message) => self.events.message_updated(message),
            Changed::MessageDeleted(message) => self.events.message_deleted(message),
            Changed::Reacted(r) => self.events.reaction(
                &r.room,
                r.message_id,
                &r.emoji,
                &r.user_id,
                r.count,
                r.added,
            ),
            Changed::RoomDeleted(..) => {}
        }
    }

    // 3. The order gate.

    /// Hands a change of a room (a message among them) to the room's transcript and this
    /// replica's readers once the change before it (`prev`, a `seq`) has been handed on;
    /// one that comes early is parked while the changes in between are read from the
    /// database (they are committed: see `db::messages`). `prev: None` (one replica, or a
    /// change read back) takes it as it comes, in `seq` order.
    fn through_gate(self: &Arc<Self>, room: &str, event: Event, prev: Option<i64>, done: Answer) {
        let Some(gate) = &self.gate else {
            return self.reach_readers(room, event, done);
        };
        let Some(seq) = event.seq() else {
            return self.reach_readers(room, event, done);
        };
        let mut gate = lock(gate);
        match gate.order.admit(room, seq, prev) {
            Admit::Now => {
                self.reach_readers(room, event, done);
                self.release_parked(&mut gate, room);
            }
            // Read back from the database while it travelled: its readers have it.
            Admit::Already => answer_with(done, &event),
            Admit::After(last) => {
                gate.park(room, seq, (event, prev, done));
                if gate.filling.insert(room.to_string()) {
                    self.spawn_fill(Gap {
                        room: room.to_string(),
                        after: last,
                        up_to: Some(seq),
                    });
                }
            }
        }
    }

    /// 4 and 5: the transcript, then the readers, in the gate's order; then the poster.
    fn reach_readers(&self, room: &str, event: Event, done: Answer) {
        match &event {
            Event::Message(message) => self.transcripts.record(message),
            Event::MessageUpdated { .. } | Event::MessageDeleted { .. } => {
                self.transcripts.forget(room)
            }
            Event::RoomDeleted { .. } => {
                self.transcripts.forget(room);
                self.access.forget(room);
            }
            _ => {}
        }
        self.hub.deliver(room, event.clone());
        answer_with(done, &event);
    }

    /// Parked changes of the room that are next now, in `seq` order.
    fn release_parked(&self, gate: &mut Gate, room: &str) {
        while let Some((seq, (event, prev, done))) = gate.next_parked(room) {
            match gate.order.admit(room, seq, prev) {
                Admit::Now => self.reach_readers(room, event, done),
                Admit::Already => answer_with(done, &event),
                Admit::After(_) => {
                    gate.park(room, seq, (event, prev, done));
                    return;
                }
            }
        }
    }

    /// Reads the gap in a task of its own, then any gap that opened meanwhile.
    fn spawn_fill(self: &Arc<Self>, gap: Gap) {
        let stage = self.clone();
        tokio::spawn(async move {
            let mut next = Some(gap);
            while let Some(gap) = next {
                next = stage.fill(gap).await;
            }
        });
    }

    /// Reads the room's changes in the gap from the database (page by page) and hands
    /// them on, then whatever was parked behind them. If the database cannot be read, the
    /// parked changes go on all the same: late beats lost. Returns the room's next gap, if
    /// one opened while this one was read.
    async fn fill(&self, gap: Gap) -> Option<Gap> {
        let Gap { room, after, up_to } = gap;
        let mut from = after;
        let read = loop {
            match chat::changes::between(&self.db, &room, from, up_to, CATCH_UP_PAGE).await {
                Ok(events) => {
                    let full = events.len() as u64 >= CATCH_UP_PAGE;
                    let mut gate = lock(self.gate.as_ref()?);
                    for event in events {
                        let Some(seq) = event.seq() else { continue };
                        from = seq;
                        if gate.order.admit(&room, seq, None) == Admit::Now {
                            self.reach_readers(&room, event, None);
                        }
                    }
                    if !full {
                        break Ok(());
                    }
                }
                Err(err) => break Err(err),
            }
        };
        let mut gate = lock(self.gate.as_ref()?);
        gate.filling.remove(&room);
        match read {
            Ok(()) => self.release_parked(&mut gate, &room),
            Err(err) => {
                tracing::warn!(error = %err, room, "reading changes still on their way failed");
                while let Some((seq, (event, _, done))) = gate.next_parked(&room) {
                    if gate.order.admit(&room, seq, None) == Admit::Now {
                        self.reach_readers(&room, event, done);
                    } else {
                        answer_with(done, &event);
                    }
                }
            }
        }
        // What is still parked waits for changes after a newer gap.
        let (seq, parked) = gate.next_parked(&room)?;
        let next = gate
            .order
            .behind(&room, parked.1.unwrap_or(0))
            .map(|last| Gap {
                room: room.clone(),
                after: last,
                up_to: Some(seq),
            });
        gate.park(&room, seq, parked);
        if next.is_some() {
            gate.filling.insert(room);
        }
        next
    }
}

/// Answers a poster whose message this is.
fn answer_with(done: Answer, event: &Event) {
    if let (Some(done), Event::Message(message)) = (done, event) {
        let _ = done.send(Ok((**message).clone()));
    }
}

/// Changes of a room, after one `seq` and up to another (none: all there are), that are
/// still on their way.
struct Gap {
    room: String,
    after: i64,
    up_to: Option<i64>,
}

/// The order record and what waits for it.
#[derive(Default)]
struct Gate {
    order: RoomOrder,
    /// Changes that came before the ones before them, by room and `seq`.
    parked: HashMap<String, BTreeMap<i64, Parked>>,
    /// Rooms whose gap is being read.
    filling: std::collections::HashSet<String>,
}

/// A change waiting at the gate, the `seq` before it, and its poster when it is our
/// message.
type Parked = (Event, Option<i64>, Answer);

impl Gate {
    fn park(&mut self, room: &str, seq: i64, parked: Parked) {
        self.parked
            .entry(room.to_string())
            .or_default()
            .insert(seq, parked);
    }

    /// Takes the room's lowest parked change.
    fn next_parked(&mut self, room: &str) -> Option<(i64, Parked)> {
        let parked = self.parked.get_mut(room)?;
        let next = parked.pop_first();
        if parked.is_empty() {
            self.parked.remove(room);
        }
        next
    }
}

/// How often the change log is pruned, and how many rows one statement deletes at most.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
const PRUNE_ROWS: u64 = 5000;

/// Deletes changes older than `days` now and every hour, a bounded batch at a time, on
/// every replica (deleting what another deleted is nothing).
async fn prune_changes(db: DatabaseConnection, days: u32) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    loop {
        tick.tick().await;
        let before = crate::domain::now_utc() - chrono::Duration::days(i64::from(days));
        loop {
            match crate::db::changes::prune(&db, before, PRUNE_ROWS).await {
                Ok(n) if n >= PRUNE_ROWS => continue,
                Ok(_) => break,
                Err(err) => {
                    tracing::warn!(error = %err, "pruning the change log failed; trying again later");
                    break;
                }
            }
        }
    }
}

// 9. Other replicas' messages and events.

async fn arrive(stage: Arc<AfterCommit>, mut arrivals: mpsc::Receiver<Arrival>) {
    while let Some(arrival) = arrivals.recv().await {
        match arrival {
            Arrival::Event { room, event, prev } if event.seq().is_some() => {
                stage.through_gate(&room, event, prev, None)
            }
            Arrival::Event {
                room,
                event: Event::AccessChanged,
                ..
            } => {
                stage.access.forget(&room);
                stage.hub.deliver(&room, Event::AccessChanged);
            }
            Arrival::Event { room, event, .. } => stage.hub.deliver(&room, event),
            Arrival::Reconnected { after, since } => {
                // Rules changed meanwhile went unheard.
                stage.access.forget_all();
                catch_up(&stage, after, since).await
            }
        }
    }
}

/// Hands on every change committed during a Redis outage (by any replica), room by room
/// in `seq` order: the rooms with messages above `after` or other changes recorded from
/// `since` on, each from the last change this replica handed on there.
async fn catch_up(stage: &Arc<AfterCommit>, after: i64, since: chrono::NaiveDateTime) {
    let rooms = async {
        let mut rooms: HashMap<String, i64> = HashMap::new();
        for (room, id) in messages::rooms_after(&stage.db, after).await? {
            rooms.insert(room, seq::of_message(id) - 1);
        }
        for (room, first) in crate::db::changes::rooms_changed_since(&stage.db, since).await? {
            let from = rooms.entry(room).or_insert(first - 1);
            *from = (*from).min(first - 1);
        }
        Ok::<_, DbErr>(rooms)
    };
    let rooms = match rooms.await {
        Ok(rooms) => rooms,
        Err(err) => {
            // The next outage's catch-up, or the transcripts' own refresh, covers it.
            tracing::warn!(error = %err, "catching up after Redis failed");
            return;
        }
    };
    for (room, from) in rooms {
        let after = {
            let Some(gate) = stage.gate.as_ref() else {
                return;
            };
            // A gap of the room being read ends where it was asked to: wait for it, then
            // read on from where it left the room.
            let mut waited = 0;
            loop {
                let ours = {
                    let mut gate = lock(gate);
                    (gate.filling.insert(room.clone()) || waited >= 500)
                        .then(|| gate.order.last(&room).unwrap_or(from))
                };
                if let Some(after) = ours {
                    break after;
                }
                waited += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        };
        let mut next = Some(Gap {
            room,
            after,
            up_to: None,
        });
        while let Some(gap) = next {
            next = stage.fill(gap).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::memory;
    use crate::domain::message::new_message;
    use crate::domain::Limits;
    use crate::realtime::{user_channel, InProcessHub, RedisHub};
    use std::time::Duration;
    use tokio::sync::broadcast;

    async fn delivery(hub: Arc<dyn Hub>) -> (Delivery, DatabaseConnection) {
        let db = memory().await;
        let transcripts = Arc::new(Transcripts::new(
            Duration::from_secs(3600),
            100,
            1000,
            usize::MAX,
        ));
        let access = Arc::new(RoomAccess::new(db.clone()));
        let notifier = Notifier::new(db.clone(), hub.clone(), access.clone());
        let webhooks = Webhooks::start(db.clone(), access.clone(), hub.clone(), false)
            .await
            .unwrap();
        let hooks = Hooks::start(db.clone(), hub.clone());
        let delivery = Delivery::start(
            db.clone(),
            true,
            access,
            transcripts,
            hub,
            None,
            Events::off(),
            notifier,
            webhooks,
            hooks,
            30,
        )
        .await
        .unwrap();
        (delivery, db)
    }

    fn text(t: &str) -> NewMessage {
        new_message(Some("u"), Some(t), &Limits::default()).unwrap()
    }

    async fn next_id(rx: &mut broadcast::Receiver<Event>) -> i64 {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Ok(Event::Message(m))) => m.id,
            other => panic!("no message: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_post_reaches_transcript_and_readers_before_its_poster_hears() {
        let (delivery, db) = delivery(Arc::new(InProcessHub::new(16))).await;
        let room = RoomName::parse("r").unwrap();
        let mut room_r = delivery.stage.hub.subscribe("r");
        let readers = &mut room_r.messages;
        let cache = &delivery.stage.transcripts;
        // The room is held (read once, empty), so the post is recorded into it.
        assert_eq!(cache.view(&db, &room, None, true).await.unwrap().count, 0);
        let posted = delivery
            .post(&Caller::default(), &room, text("hello"))
            .await
            .unwrap();
        // Already there when the poster is answered: no waiting.
        match readers.try_recv() {
            Ok(Event::Message(m)) => assert_eq!(m.id, posted.id),
            other => panic!("the reader has nothing yet: {other:?}"),
        }
        let view = cache.view(&db, &room, None, true).await.unwrap();
        assert_eq!(
            view.rows.iter().map(|m| m.id).collect::<Vec<_>>(),
            [posted.id]
        );
        assert_eq!(view.rows[0].text, "hello");
    }

    /// A bot's or a hook's post (a caller held to its rooms) makes no room: one deleted
    /// while a replica still held the hook stays deleted. Anyone else's makes it.
    #[tokio::test]
    async fn a_caller_held_to_its_rooms_makes_none() {
        let (delivery, db) = delivery(Arc::new(InProcessHub::new(16))).await;
        let room = RoomName::parse("gone").unwrap();
        let hook = Caller {
            admin: true,
            rooms: Some(Arc::from([room.as_str().to_string()])),
            ..Caller::default()
        };
        match delivery.post(&hook, &room, text("x")).await {
            Err(Error::NotFound(_)) => {}
            other => panic!("a held caller made a room: {other:?}"),
        }
        assert!(crate::db::rooms::get(&db, "gone").await.unwrap().is_none());
        delivery
            .post(&Caller::default(), &room, text("made"))
            .await
            .unwrap();
        assert!(crate::db::rooms::get(&db, "gone").await.unwrap().is_some());
        // Known now, and posted to without a read.
        delivery.post(&hook, &room, text("y")).await.unwrap();
    }

    #[tokio::test]
    async fn deleting_a_message_reaches_transcript_and_readers() {
        let (delivery, db) = delivery(Arc::new(InProcessHub::new(16))).await;
        let room = RoomName::parse("r").unwrap();
        let a = delivery
            .post(&Caller::default(), &room, text("a"))
            .await
            .unwrap();
        let b = delivery
            .post(&Caller::default(), &room, text("b"))
            .await
            .unwrap();
        let cache = &delivery.stage.transcripts;
        assert_eq!(cache.view(&db, &room, None, false).await.unwrap().count, 2);
        let mut room_r = delivery.stage.hub.subscribe("r");
        let changes = &mut room_r.messages;
        let admin = Caller {
            admin: true,
            ..Caller::default()
        };
        delivery
            .delete_message(&admin, &a.id.to_string())
            .await
            .unwrap();
        // Told in the room's order: after b, numbered after it.
        let deleted = changes.try_recv();
        assert!(
            matches!(deleted, Ok(Event::MessageDeleted { id, seq }) if id == a.id && seq > seq::of_message(b.id)),
            "{deleted:?}"
        );
        let view = cache.view(&db, &room, None, true).await.unwrap();
        assert_eq!(view.rows.iter().map(|m| m.id).collect::<Vec<_>>(), [b.id]);
        let (id, deleted) = delivery.delete_room(&admin, "r").await.unwrap();
        assert_eq!((id.as_str(), deleted.messages), ("r", 1));
        assert!(matches!(changes.try_recv(), Ok(Event::RoomDeleted { .. })));
        assert_eq!(cache.view(&db, &room, None, false).await.unwrap().count, 0);
    }

    #[tokio::test]
    async fn a_mention_notifies_the_named_user_on_their_own_channel() {
        let (delivery, db) = delivery(Arc::new(InProcessHub::new(16))).await;
        crate::db::users::upsert(&db, "id-bob", "Bob")
            .await
            .unwrap();
        let mut bob = delivery.stage.hub.subscribe(&user_channel("id-bob"));
        let room = RoomName::parse("r").unwrap();
        delivery
            .post(&Caller::default(), &room, text("hi @bob"))
            .await
            .unwrap();
        match tokio::time::timeout(Duration::from_secs(5), bob.signals.recv()).await {
            Ok(Ok(Event::Notification(n))) => {
                assert_eq!(n.notif_type, crate::domain::NotifType::Mention)
            }
            other => panic!("no notification: {other:?}"),
        }
    }

    /// With several replicas, a message whose predecessor has not arrived waits at the
    /// gate while the gap is read from the database; readers get the room in id order,
    /// each message once.
    #[tokio::test]
    async fn an_early_message_waits_for_the_ones_before_it() {
        // A hub with replicas (Redis that is not there: local delivery still works).
        let (hub, _arrivals) = RedisHub::start(
            crate::realtime::RedisSource::direct("redis://127.0.0.1:1", None).unwrap(),
            16,
        )
        .unwrap();
        let (delivery, db) = delivery(hub).await;
        let room = RoomName::parse("r").unwrap();
        delivery.rooms.ensure(&db, &room).await.unwrap();
        // Three messages committed by "another replica", ordered, with their predecessors.
        let rows: Vec<ToInsert> = ["one", "two", "three"]
            .iter()
            .map(|t| ToInsert {
                room: "r".into(),
                message: text(t),
            })
            .collect();
        let committed = messages::insert_batch(&db, &rows, InsertMode::Returning, true, None)
            .await
            .unwrap();
        let ids: Vec<i64> = committed.iter().map(|(m, _)| m.id).collect();
        assert_eq!(
            committed[2].1,
            Some(seq::of_message(ids[1])),
            "each row knows the change before it"
        );
        let mut room_r = delivery.stage.hub.subscribe("r");
        let readers = &mut room_r.messages;
        let arrive = |i: usize| {
            let (message, prev) = committed[i].clone();
            delivery
                .stage
                .through_gate("r", Event::Message(Arc::new(message)), prev, None)
        };
        arrive(0);
        arrive(2); // the second is still on its way: the third waits, the gap is read
        assert_eq!(next_id(readers).await, ids[0]);
        assert_eq!(next_id(readers).await, ids[1]);
        assert_eq!(next_id(readers).await, ids[2]);
        arrive(1); // arrives at last: already handed on
        let own = delivery
            .post(&Caller::default(), &room, text("four"))
            .await
            .unwrap();
        assert_eq!(next_id(readers).await, own.id, "nothing came twice");
    }
}
