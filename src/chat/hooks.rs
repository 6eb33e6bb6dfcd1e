//! Incoming webhooks, in the shape the tools people already run speak: Slack's
//! (`{"text": ...}`, or the form field `payload` holding it). A hook belongs to one room;
//! whoever holds its URL (`/hooks/<id>/<secret>`) posts there under the hook's name, as a
//! bot. The secret is 32 random bytes shown once; only its SHA-256 is kept, and it is
//! compared in constant time, with a stand-in when the id names no hook. (A hook read
//! lately answers sooner than an unknown id: the id is a random UUID, found only
//! in the URL beside the secret, so that tells a prober nothing.)

use crate::access::RoomAccess;
use crate::db::hooks::{self as table, Hook};
use crate::domain::names::{self, RoomName};
use crate::domain::sync::lock;
use crate::domain::{now_utc, Caller, Error, Limits, NewMessage, Peer};
use crate::realtime::{Event, Hub};
use argon2::password_hash::rand_core::{OsRng, RngCore};
use sea_orm::DatabaseConnection;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// A hook as its makers see it; `secret` only in the answer that made it.
#[derive(Debug)]
pub struct Made {
    pub hook: Hook,
    pub secret: String,
}

/// The path a hook posts to.
pub fn url(id: &str, secret: &str) -> String {
    format!("/hooks/{id}/{secret}")
}

fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Bytes as lower-case hex: secrets as they are shown, and signatures.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Only a room's owner (signed in) or an admin manages its hooks: a hook speaks in the
/// room with no one signed in behind it. A room the caller may not see is 404.
async fn may_manage(
    db: &DatabaseConnection,
    access: &RoomAccess,
    caller: &Caller,
    room: &str,
) -> Result<(), Error> {
    access.may_read(caller, room).await?;
    let found = crate::db::rooms::get(db, room)
        .await?
        .ok_or_else(|| Error::not_found(format!("room {room} does not exist")))?;
    caller.require_one_of(
        "manage the hooks of this room",
        "its owner or an admin",
        &[found.owner_id.as_deref()],
    )
}

/// The hub's channel on which replicas tell each other that hooks were deleted (by their
/// own call or with their room); no room's name holds `/`.
const CHANNEL: &str = "hooks/changed";
/// How long a hook read for a post is used without reading it again. Deletions are heard
/// at once through the hub; this bounds what a replica that missed the word (the hub down)
/// may still take.
const KEPT: Duration = Duration::from_secs(10);
/// Hooks kept at most: only ones that exist, so made-up URLs cannot fill it.
const MAX_KEPT: usize = 1_000;

/// Hooks read lately, by id (a URL with the right id, whether its secret was right or
/// not), so that a post through a busy hook (a CI fleet, an alert storm) reads no row and
/// costs what a plain POST costs.
pub struct Hooks {
    db: DatabaseConnection,
    hub: Arc<dyn Hub>,
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    hooks: HashMap<String, (Arc<Hook>, Instant)>,
    /// Counts forgettings: a row read before one is not kept after it.
    forgotten: u64,
}

impl Hooks {
    /// Starts listening for deletions on other replicas.
    pub fn start(db: DatabaseConnection, hub: Arc<dyn Hub>) -> Arc<Self> {
        let hooks = Arc::new(Hooks {
            db,
            hub,
            kept: Mutex::default(),
        });
        let mut told = hooks.hub.subscribe(CHANNEL);
        let weak = Arc::downgrade(&hooks);
        tokio::spawn(async move {
            loop {
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) =
                    told.messages.recv().await
                {
                    return;
                }
                // Lagged or heard: either way, forget all (a deletion is rare).
                let Some(hooks) = weak.upgrade() else {
                    return;
                };
                hooks.forget_here();
            }
        });
        hooks
    }

    /// The hook a URL names, or 404 whether the id or the secret is wrong: the secret's
    /// hash is compared in constant time, against a stand-in when there is no such hook.
    /// `may_read` is asked before the table is, for an id not held here at all: its error
    /// (a client's bucket of lookups spent) is the answer.
    pub async fn open(
        &self,
        id: &str,
        secret: &str,
        may_read: impl FnOnce() -> Result<(), Error>,
    ) -> Result<Arc<Hook>, Error> {
        let missing = || Error::not_found("no such hook");
        let hook = match uuid::Uuid::parse_str(id) {
            Ok(_) => self.read(id, may_read).await?,
            Err(_) => None,
        };
        let given = hash(secret);
        let stored = hook.as_ref().map_or(STAND_IN, |h| h.secret_hash.as_str());
        let same: bool = given.as_bytes().ct_eq(stored.as_bytes()).into();
        match hook {
            Some(hook) if same => Ok(hook),
            _ => Err(missing()),
        }
    }

    async fn read(
        &self,
        id: &str,
        may_read: impl FnOnce() -> Result<(), Error>,
    ) -> Result<Option<Arc<Hook>>, Error> {
        let (forgotten, known) = {
            let kept = lock(&self.kept);
            let held = kept.hooks.get(id);
            if let Some((hook, at)) = held {
                if at.elapsed() < KEPT {
                    return Ok(Some(hook.clone()));
                }
            }
            (kept.forgotten, held.is_some())
        };
        // Reading a hook held before (its 10 s are over) is no stranger's guess.
        if !known {
            may_read()?;
        }
        let Some(hook) = table::get(&self.db, id).await?.map(Arc::new) else {
            return Ok(None);
        };
        let mut kept = lock(&self.kept);
        if kept.forgotten != forgotten {
            return Ok(Some(hook));
        }
        if kept.hooks.len() >= MAX_KEPT {
            kept.hooks.retain(|_, (_, at)| at.elapsed() < KEPT);
            if kept.hooks.len() >= MAX_KEPT {
                kept.hooks.clear();
            }
        }
        kept.hooks
            .insert(id.to_string(), (hook.clone(), Instant::now()));
        Ok(Some(hook))
    }

    fn forget_here(&self) {
        let mut kept = lock(&self.kept);
        kept.hooks.clear();
        kept.forgotten += 1;
    }

    /// Makes a hook for `room` posting as `name`.
    pub async fn create(
        &self,
        access: &RoomAccess,
        caller: &Caller,
        room: &str,
        name: &str,
        limits: &Limits,
    ) -> Result<Made, Error> {
        let db = &self.db;
        let room = RoomName::parse(room)?;
        if name.trim().is_empty() {
            return Err(Error::bad_request("name is required"));
        }
        let name = names::username(Some(name), limits)?;
        caller.not_a_bot("make hooks")?;
        may_manage(db, access, caller, room.as_str()).await?;
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        let secret = hex(&bytes);
        let hook = Hook {
            id: uuid::Uuid::new_v4().to_string(),
            room_id: room.as_str().to_string(),
            name,
            secret_hash: hash(&secret),
            created_by: caller.user.as_ref().map(|u| u.user_id.clone()),
            created_at: now_utc(),
        };
        table::insert(db, &hook).await?;
        tracing::info!(hook = %hook.id, room = %hook.room_id, "hook made");
        Ok(Made { hook, secret })
    }

    /// The hooks the caller manages: every one for an admin, else those of the rooms it owns
    /// (`room` keeps one room's).
    pub async fn list(
        &self,
        access: &RoomAccess,
        caller: &Caller,
        room: Option<&str>,
    ) -> Result<Vec<Hook>, Error> {
        let db = &self.db;
        match room {
            Some(room) => {
                may_manage(db, access, caller, room).await?;
                Ok(table::list(db, Some(&[room.to_string()])).await?)
            }
            None if caller.admin => Ok(table::list(db, None).await?),
            None => {
                let Some(user) = caller.require_identity()? else {
                    return Err(Error::Unauthorized(
                        "sign in, or use the admin token, to list hooks".into(),
                    ));
                };
                let owned = crate::db::rooms::owned_by(db, &user.user_id).await?;
                Ok(table::list(db, Some(&owned)).await?)
            }
        }
    }

    /// Deletes a hook: its URL stops working at once here, and on every other replica as soon
    /// as the hub tells it.
    pub async fn delete(
        &self,
        access: &RoomAccess,
        caller: &Caller,
        id: &str,
    ) -> Result<(), Error> {
        let db = &self.db;
        let missing = || Error::not_found(format!("hook {id} does not exist"));
        let hook = table::get(db, id).await?.ok_or_else(missing)?;
        may_manage(db, access, caller, &hook.room_id)
            .await
            .map_err(|err| match err {
                Error::NotFound(_) => missing(),
                other => other,
            })?;
        table::delete(db, id).await?;
        self.forget();
        tracing::info!(hook = %id, "hook deleted");
        Ok(())
    }

    /// Hooks were deleted (one, or a room's): forget them here and on every replica.
    pub fn forget(&self) {
        self.forget_here();
        self.hub.publish(CHANNEL, Event::AccessChanged);
    }
}

/// What an unknown hook's secret is compared with: no secret hashes to it.
const STAND_IN: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a tool posts: Slack's incoming-webhook payload. Anything else it holds (`channel`,
/// `icon_emoji`, `blocks` beyond their text, ...) is accepted and ignored.
#[derive(Debug, Default, Deserialize)]
pub struct Payload {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    #[serde(default)]
    pub blocks: Vec<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Attachment {
    #[serde(default)]
    pub fallback: Option<String>,
    #[serde(default)]
    pub pretext: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub title_link: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
}

impl Payload {
    /// The text to post: `text`, else what the attachments or blocks say (Alertmanager
    /// and Grafana send their alert in attachments, with no `text`), with Slack's link
    /// and escape syntax made plain.
    pub fn message_text(&self) -> Option<String> {
        fn given(s: &Option<String>) -> Option<&str> {
            s.as_deref().map(str::trim).filter(|s| !s.is_empty())
        }
        if let Some(text) = given(&self.text) {
            return Some(plain(text));
        }
        let mut parts = Vec::new();
        for a in &self.attachments {
            let mut own: Vec<String> = [&a.pretext, &a.title, &a.text]
                .into_iter()
                .filter_map(given)
                .map(plain)
                .collect();
            if let (Some(link), false) = (given(&a.title_link), own.is_empty()) {
                own.push(link.to_string());
            }
            if own.is_empty() {
                own.extend(given(&a.fallback).map(plain));
            }
            parts.extend(own);
        }
        for block in &self.blocks {
            let text = block["text"]["text"].as_str().map(str::trim);
            parts.extend(text.filter(|t| !t.is_empty()).map(plain));
            for field in block["fields"].as_array().into_iter().flatten() {
                parts.extend(field["text"].as_str().map(plain));
            }
        }
        (!parts.is_empty()).then(|| parts.join("\n"))
    }
}

/// Slack's markup made plain: `<url|label>` as `label (url)`, `<url>` as the url, and
/// its three escapes undone.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('>') {
            Some(end) => {
                let inner = &after[..end];
                match inner.split_once('|') {
                    Some((url, label)) => {
                        out.push_str(label);
                        out.push_str(" (");
                        out.push_str(url);
                        out.push(')');
                    }
                    None => out.push_str(inner),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push('<');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The message a hook posts, and who posts it: the hook itself (`hook:<id>`), under its
/// name or the one the payload gives, allowed into its room whoever may read it.
pub fn message(
    hook: &Hook,
    payload: &Payload,
    limits: &Limits,
    mode: crate::domain::AuthMode,
) -> Result<(Caller, NewMessage), Error> {
    let text = payload
        .message_text()
        .ok_or_else(|| Error::bad_request("text is required"))?;
    let username = match payload.username.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => hook.name.clone(),
    };
    let mut message = crate::domain::message::new_message(Some(&username), Some(&text), limits)?;
    let bot = Peer {
        user_id: format!("{}{}", names::HOOK_ID_PREFIX, hook.id),
        username: message.username.clone(),
    };
    message.user_id = Some(bot.user_id.clone());
    // The hook's own room, private or not: the owner who made it let it in. Only that
    // room, and only while it exists: like a bot's, a hook's post makes no room (a
    // replica may still hold a hook whose room was just deleted).
    let caller = Caller {
        mode,
        user: Some(bot),
        admin: true,
        rooms: Some(std::sync::Arc::from([hook.room_id.clone()])),
        ..Caller::default()
    };
    Ok((caller, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text_of(value: serde_json::Value) -> Option<String> {
        serde_json::from_value::<Payload>(value)
            .unwrap()
            .message_text()
    }

    #[test]
    fn slack_payloads_become_plain_text() {
        assert_eq!(
            text_of(json!({"text": "deploy done"})).as_deref(),
            Some("deploy done")
        );
        assert_eq!(
            text_of(
                json!({"text": "see <https://ci.example/1|build 1> &amp; <https://x.example>"})
            )
            .as_deref(),
            Some("see build 1 (https://ci.example/1) & https://x.example")
        );
        // Alertmanager: no text, the alert in an attachment.
        let alert = json!({"channel": "#ops", "username": "alertmanager", "attachments": [
            {"title": "[FIRING:1] HighLatency", "title_link": "http://am.example/#/alerts",
             "text": "p99 over 1 s", "fallback": "[FIRING:1] HighLatency", "color": "danger"}]});
        assert_eq!(
            text_of(alert).as_deref(),
            Some("[FIRING:1] HighLatency\np99 over 1 s\nhttp://am.example/#/alerts")
        );
        // Only a fallback.
        assert_eq!(
            text_of(json!({"attachments": [{"fallback": "just this"}]})).as_deref(),
            Some("just this")
        );
        // Blocks.
        let blocks = json!({"blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Incident"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "*db* is down"},
             "fields": [{"type": "mrkdwn", "text": "sev 1"}]}]});
        assert_eq!(
            text_of(blocks).as_deref(),
            Some("Incident\n*db* is down\nsev 1")
        );
        assert_eq!(text_of(json!({"text": "  ", "icon_emoji": ":x:"})), None);
        assert_eq!(text_of(json!({})), None);
        assert_eq!(plain("a < b"), "a < b");
    }

    #[test]
    fn secrets_are_kept_as_their_hash() {
        assert_eq!(hash("abc").len(), 64);
        assert_ne!(hash("abc"), hash("abd"));
        assert_eq!(STAND_IN.len(), 64);
    }
}
