//! Outgoing webhooks: a room's events (or every room's) `POST`ed to a receiver, signed,
//! in order, through the receiver's outages and ours.
//!
//! - Making one: a room's owner for that room, an admin for every room; the receiver's
//!   host must resolve to public addresses (`target.rs`) unless `webhook_allow_private`.
//! - Each event a webhook asked for is a row of the outbox (`db::webhooks`), written by
//!   the writer in the same transaction as the message or change it tells of: nothing is
//!   sent for what was not committed, and nothing committed goes unsent, whichever
//!   replica dies when.
//! - `sender.rs` sends each webhook's rows in id order (the rooms' `seq` order), one at
//!   a time, from whichever replica holds the webhook's lease, retrying with back-off.
//!
//! Which webhooks exist is held in memory for the writer (it must not read the table for
//! every batch): read again when any replica makes or deletes one (told through the hub,
//! at once) and every 10 s (should the hub be away).

pub mod sender;
pub mod target;

use crate::access::RoomAccess;
use crate::db::webhooks::{self as table, DeliveryRow, NewDelivery, Webhook};
use crate::domain::names::{self, RoomName};
use crate::domain::sync::lock;
use crate::domain::{now_utc, Caller, Error, Limits, Message};
use crate::realtime::{Event, Hub};
use argon2::password_hash::rand_core::{OsRng, RngCore};
use sea_orm::DatabaseConnection;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// The events a webhook may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    MessageCreated,
    /// A message that names someone with `@`: the message, and the names.
    Mention,
    MessageUpdated,
    MessageDeleted,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::MessageCreated,
        Kind::Mention,
        Kind::MessageUpdated,
        Kind::MessageDeleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::MessageCreated => "message_created",
            Kind::Mention => "mention",
            Kind::MessageUpdated => "message_updated",
            Kind::MessageDeleted => "message_deleted",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// Webhooks one user (not an admin) may make, and that exist in all: each is a row per
/// event in the writer's transaction.
pub const MAX_PER_USER: u64 = 20;
pub const MAX_WEBHOOKS: u64 = 500;
/// Webhooks of one room.
pub const MAX_PER_ROOM: usize = 10;
/// Rows of the record listed at once.
pub const DELIVERIES_LISTED: u64 = 100;
/// The hub's channel on which replicas tell each other the webhooks changed; no room's
/// name holds `/`.
const CHANNEL: &str = "webhooks/changed";
/// How often the webhooks are read again even when nobody said they changed.
const REFRESH: Duration = Duration::from_secs(10);

/// What the writer needs to know of a webhook.
#[derive(Clone, Debug)]
struct Rule {
    id: String,
    room_id: Option<String>,
    kinds: Vec<Kind>,
}

impl Rule {
    fn of(hook: &Webhook) -> Rule {
        Rule {
            id: hook.id.clone(),
            room_id: hook.room_id.clone(),
            kinds: hook.events.split(',').filter_map(Kind::parse).collect(),
        }
    }

    fn wants(&self, room: &str, kind: Kind) -> bool {
        self.room_id.as_deref().is_none_or(|r| r == room) && self.kinds.contains(&kind)
    }
}

/// What a webhook asks for, checked.
pub struct NewWebhook<'a> {
    pub url: &'a str,
    pub events: &'a [String],
    pub room_id: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// The outgoing webhooks: who may make them, which exist, and the events each is owed.
pub struct Webhooks {
    db: DatabaseConnection,
    access: Arc<RoomAccess>,
    hub: Arc<dyn Hub>,
    rules: Mutex<Arc<Vec<Rule>>>,
    /// Receivers on private networks are allowed (`webhook_allow_private`).
    pub allow_private: bool,
    /// Rung when this replica wrote outbox rows: its sender looks at once.
    pub(crate) written: Notify,
}

impl Webhooks {
    /// Reads the webhooks, and keeps reading them when they change.
    pub async fn start(
        db: DatabaseConnection,
        access: Arc<RoomAccess>,
        hub: Arc<dyn Hub>,
        allow_private: bool,
    ) -> Result<Arc<Self>, Error> {
        let webhooks = Arc::new(Webhooks {
            db,
            access,
            hub,
            rules: Mutex::default(),
            allow_private,
            written: Notify::new(),
        });
        webhooks.reload().await?;
        let mut told = webhooks.hub.subscribe(CHANNEL);
        let weak = Arc::downgrade(&webhooks);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    heard = told.messages.recv() => {
                        if let Err(tokio::sync::broadcast::error::RecvError::Closed) = heard {
                            return;
                        }
                    }
                    _ = tokio::time::sleep(REFRESH) => {}
                }
                let Some(webhooks) = weak.upgrade() else {
                    return;
                };
                if let Err(err) = webhooks.reload().await {
                    tracing::warn!(error = %err, "could not read the webhooks again; the last known ones stay");
                }
            }
        });
        Ok(webhooks)
    }

    async fn reload(&self) -> Result<(), Error> {
        let all = table::list(&self.db, None).await?;
        *lock(&self.rules) = Arc::new(all.iter().map(Rule::of).collect());
        Ok(())
    }

    /// Read again here, and on every other replica.
    async fn changed(&self) -> Result<(), Error> {
        self.reload().await?;
        self.hub.publish(CHANNEL, Event::AccessChanged);
        Ok(())
    }

    /// A room was deleted, and its webhooks with it: every replica forgets them.
    pub async fn room_deleted(&self) {
        if let Err(err) = self.changed().await {
            tracing::warn!(error = %err, "could not read the webhooks again; they are read in 10 s");
        }
    }

    fn rules(&self) -> Arc<Vec<Rule>> {
        lock(&self.rules).clone()
    }

    /// Whether any webhook may want an event of a message in one of these rooms: the
    /// writer then writes its batch in a transaction with the outbox.
    pub fn want_messages<'a>(&self, mut rooms: impl Iterator<Item = &'a str>) -> bool {
        let rules = self.rules();
        !rules.is_empty()
            && rooms.any(|room| {
                rules
                    .iter()
                    .any(|r| r.wants(room, Kind::MessageCreated) || r.wants(room, Kind::Mention))
            })
    }

    /// The outbox rows of a new message: `message_created`, and `mention` when it names
    /// someone. A webhook's own answers are sent to no webhook. Each event's JSON is made
    /// once, whichever webhooks want it.
    pub fn for_message(&self, message: &Message) -> Vec<NewDelivery> {
        if from_a_webhook(message) {
            return Vec::new();
        }
        let rules = self.rules();
        let mut rows = Vec::new();
        let mut created = None;
        let mut mention = None;
        for rule in rules.iter() {
            if rule.wants(&message.room, Kind::MessageCreated) {
                let body = created.get_or_insert_with(|| body(Kind::MessageCreated, message, None));
                rows.push(row(rule, Kind::MessageCreated, message, body));
            }
            if rule.wants(&message.room, Kind::Mention) {
                let body = mention.get_or_insert_with(|| {
                    let names = crate::notifications::mentioned_names(&message.text);
                    (!names.is_empty()).then(|| body(Kind::Mention, message, Some(names)))
                });
                if let Some(body) = body {
                    rows.push(row(rule, Kind::Mention, message, body));
                }
            }
        }
        rows
    }

    /// The outbox rows of an edit or a deletion of `message`.
    pub fn for_change(&self, kind: Kind, message: &Message) -> Vec<NewDelivery> {
        if from_a_webhook(message) {
            return Vec::new();
        }
        let mut made = None;
        self.rules()
            .iter()
            .filter(|rule| rule.wants(&message.room, kind))
            .map(|rule| {
                let body = made.get_or_insert_with(|| body(kind, message, None));
                row(rule, kind, message, body)
            })
            .collect()
    }

    /// Tells this replica's sender that rows were written.
    pub fn written(&self) {
        self.written.notify_one();
    }

    /// Makes a webhook; the caller shows its secret once.
    pub async fn create(
        &self,
        caller: &Caller,
        new: NewWebhook<'_>,
        limits: &Limits,
    ) -> Result<Webhook, Error> {
        caller.not_a_bot("make webhooks")?;
        let url = target::parse(new.url)?;
        let mut kinds = Vec::new();
        for name in new.events {
            let kind = Kind::parse(name).ok_or_else(|| {
                Error::bad_request(format!(
                    "events: {name:?} is none of {}",
                    Kind::ALL.map(Kind::as_str).join(", ")
                ))
            })?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        if kinds.is_empty() {
            return Err(Error::bad_request("events must name at least one event"));
        }
        let room_id = match new.room_id {
            Some(room) => {
                let room = RoomName::parse(room)?;
                self.may_manage(caller, Some(room.as_str())).await?;
                Some(room.as_str().to_string())
            }
            None => {
                self.may_manage(caller, None).await?;
                None
            }
        };
        // Checked as a person's name is, now: its answers are posted under it.
        let name = match new.name.map(str::trim).filter(|n| !n.is_empty()) {
            Some(name) => names::username(Some(name), limits)?,
            None => {
                let host = url.host_str().unwrap_or("webhook");
                let short: String = host.chars().take(limits.max_username_chars).collect();
                names::username(Some(&short), limits)?
            }
        };
        target::resolve(&url, self.allow_private).await?;
        let creator = caller.user.as_ref().map(|u| u.user_id.as_str());
        let (all, theirs) = table::count(&self.db, creator).await?;
        if all >= MAX_WEBHOOKS {
            return Err(Error::Conflict(format!(
                "this server has {MAX_WEBHOOKS} webhooks, the most it keeps: delete one first"
            )));
        }
        if !caller.admin && theirs >= MAX_PER_USER {
            return Err(Error::Conflict(format!(
                "you have made {MAX_PER_USER} webhooks, the most one may: delete one first"
            )));
        }
        if let Some(room) = &room_id {
            if table::list(&self.db, Some(std::slice::from_ref(room)))
                .await?
                .len()
                >= MAX_PER_ROOM
            {
                return Err(Error::Conflict(format!(
                    "room {room} has {MAX_PER_ROOM} webhooks, the most it keeps: delete one first"
                )));
            }
        }
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        let webhook = Webhook {
            id: uuid::Uuid::new_v4().to_string(),
            room_id,
            url: url.to_string(),
            events: kinds
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(","),
            name,
            secret: crate::chat::hooks::hex(&bytes),
            created_by: caller.user.as_ref().map(|u| u.user_id.clone()),
            created_at: now_utc(),
            lease_holder: None,
            lease_until: None,
        };
        table::insert(&self.db, &webhook).await?;
        self.changed().await?;
        tracing::info!(webhook = %webhook.id, room = ?webhook.room_id, "webhook made");
        Ok(webhook)
    }

    /// The webhooks the caller manages: every one for an admin, else those of the rooms
    /// it owns.
    pub async fn list(&self, caller: &Caller) -> Result<Vec<Webhook>, Error> {
        caller.not_a_bot("manage webhooks")?;
        if caller.admin {
            return Ok(table::list(&self.db, None).await?);
        }
        let Some(user) = caller.require_identity()? else {
            return Err(Error::Unauthorized(
                "sign in, or use the admin token, to list webhooks".into(),
            ));
        };
        let owned = crate::db::rooms::owned_by(&self.db, &user.user_id).await?;
        Ok(table::list(&self.db, Some(&owned)).await?)
    }

    /// Deletes a webhook and whatever it had waiting: nothing more is sent to it.
    pub async fn delete(&self, caller: &Caller, id: &str) -> Result<(), Error> {
        let webhook = self.managed(caller, id).await?;
        table::delete(&self.db, &webhook.id).await?;
        self.changed().await?;
        tracing::info!(webhook = %id, "webhook deleted");
        Ok(())
    }

    /// A webhook's newest deliveries, newest first.
    pub async fn deliveries(&self, caller: &Caller, id: &str) -> Result<Vec<DeliveryRow>, Error> {
        let webhook = self.managed(caller, id).await?;
        Ok(table::deliveries(&self.db, &webhook.id, DELIVERIES_LISTED).await?)
    }

    /// The webhook, if the caller manages it; 404 as if there were none otherwise (a
    /// stranger learns nothing of another room's webhooks).
    async fn managed(&self, caller: &Caller, id: &str) -> Result<Webhook, Error> {
        let missing = || Error::not_found(format!("webhook {id} does not exist"));
        caller.not_a_bot("manage webhooks")?;
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(missing());
        }
        let webhook = table::get(&self.db, id).await?.ok_or_else(missing)?;
        self.may_manage(caller, webhook.room_id.as_deref())
            .await
            .map_err(|err| match err {
                Error::NotFound(_) | Error::Forbidden(_) if !caller.admin => missing(),
                other => other,
            })?;
        Ok(webhook)
    }

    /// A room's owner (signed in) or an admin manages its webhooks; only an admin those
    /// of every room. A room the caller may not see is 404.
    async fn may_manage(&self, caller: &Caller, room: Option<&str>) -> Result<(), Error> {
        let Some(room) = room else {
            return caller.require_admin("manage webhooks of every room");
        };
        self.access.may_read(caller, room).await?;
        let found = crate::db::rooms::get(&self.db, room)
            .await?
            .ok_or_else(|| Error::not_found(format!("room {room} does not exist")))?;
        caller.require_one_of(
            "manage the webhooks of this room",
            "its owner or an admin",
            &[found.owner_id.as_deref()],
        )
    }
}

fn from_a_webhook(message: &Message) -> bool {
    message
        .user_id
        .as_deref()
        .is_some_and(|id| id.starts_with(names::WEBHOOK_ID_PREFIX))
}

/// An event's JSON: RabbitMQ's event of the same name (`events.rs`), with `mentions` for
/// a mention.
fn body(kind: Kind, message: &Message, mentions: Option<BTreeSet<String>>) -> String {
    use crate::domain::message::{MessageJson, Shape};
    let mut body = json!({
        "event": kind.as_str(),
        "message": MessageJson(message, Shape::Api),
    });
    if let Some(names) = mentions {
        body["mentions"] = json!(names);
    }
    body.to_string()
}

fn row(rule: &Rule, kind: Kind, message: &Message, body: &str) -> NewDelivery {
    NewDelivery {
        webhook_id: rule.id.clone(),
        event: kind.as_str(),
        room_id: message.room.clone(),
        body: body.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_pick_their_rooms_and_events() {
        let every = Rule {
            id: "a".into(),
            room_id: None,
            kinds: vec![Kind::Mention],
        };
        let one = Rule {
            id: "b".into(),
            room_id: Some("ops".into()),
            kinds: vec![Kind::MessageCreated, Kind::MessageDeleted],
        };
        assert!(every.wants("anything", Kind::Mention));
        assert!(!every.wants("anything", Kind::MessageCreated));
        assert!(one.wants("ops", Kind::MessageDeleted));
        assert!(!one.wants("dev", Kind::MessageCreated));
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(Kind::parse("reaction_added"), None);
    }
}
