//! Notifications, as ChatFlow's notification service keeps them, in the `notification`
//! table. The server makes `mention` notifications itself: a message that names
//! `@someone` notifies every user id known under that name (see [`crate::presence`]), and
//! every new notification is pushed live to its user's open WebSockets.

use crate::access::RoomAccess;
use crate::db::notifications::{self as table, Notification as Row};
use crate::db::{accounts, users};
use crate::domain::names::{self, RoomName};
use crate::domain::{now_utc, Caller, Error, Message, NotifType, Notification, Result};
use crate::realtime::{user_channel, Event, Hub};
use sea_orm::DatabaseConnection;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Names looked up per message at most: a message listing a thousand `@`s notifies the
/// first few only.
const MAX_MENTIONS: usize = 20;
/// Users notified per message at most, however many share the names it mentions (anyone
/// can take any name in open mode).
const MAX_MENTIONED_USERS: u64 = 50;
/// Messages whose mentions are being written at once; past this, a message's mentions are
/// dropped (and logged) rather than queued without bound.
const MENTION_TASKS: usize = 64;

/// What creates notifications: the API and the mention scanner share it.
#[derive(Clone)]
pub struct Notifier {
    db: DatabaseConnection,
    hub: Arc<dyn Hub>,
    access: Arc<RoomAccess>,
    mention_tasks: Arc<tokio::sync::Semaphore>,
}

/// A notification sent through the API, as the caller wrote it.
#[derive(Debug)]
pub struct NewNotification {
    pub user_id: String,
    pub title: String,
    pub body: String,
    pub notif_type: Option<String>,
    pub room_id: Option<String>,
    pub from_user: Option<String>,
}

impl Notifier {
    pub fn new(db: DatabaseConnection, hub: Arc<dyn Hub>, access: Arc<RoomAccess>) -> Self {
        Notifier {
            db,
            hub,
            access,
            mention_tasks: Arc::new(tokio::sync::Semaphore::new(MENTION_TASKS)),
        }
    }

    /// Stores the notification, then pushes it to the user's sockets.
    async fn store(&self, row: Row) -> Result<Notification> {
        table::insert(&self.db, &row).await?;
        Ok(self.push(row))
    }

    /// Tells the user's sockets, on every replica.
    fn push(&self, row: Row) -> Notification {
        let notification = Notification::from(row);
        self.hub.publish(
            &user_channel(&notification.user_id),
            Event::Notification(Arc::new(notification.clone())),
        );
        notification
    }

    /// A notification sent through the API; a signed-in user notifies only themselves
    /// (an admin, anyone).
    pub async fn create(&self, caller: &Caller, new: NewNotification) -> Result<Notification> {
        let user_id = names::user_id(&new.user_id)?;
        self.access.may_act_as(caller, &user_id).await?;
        let notif_type = NotifType::parse(new.notif_type.as_deref())?;
        let title = new.title.trim().to_string();
        if title.is_empty() || title.chars().count() > 200 {
            return Err(Error::bad_request("title must be 1 to 200 characters"));
        }
        if new.body.chars().count() > 4096 {
            return Err(Error::bad_request("body is longer than 4096 characters"));
        }
        let room_id = new
            .room_id
            .map(|r| RoomName::parse(&r).map(|r| r.as_str().to_string()))
            .transpose()?;
        let from_user = new.from_user.map(|u| names::user_id(&u)).transpose()?;
        self.store(Row {
            id: uuid::Uuid::new_v4().to_string(),
            user_id,
            title,
            body: new.body,
            notif_type,
            room_id,
            from_user,
            is_read: false,
            message_id: None,
            created_at: now_utc(),
        })
        .await
    }

    /// The user's notifications, newest first, `limit` at most.
    pub async fn list(
        &self,
        caller: &Caller,
        user_id: &str,
        unread_only: bool,
        limit: u64,
    ) -> Result<Vec<Notification>> {
        let user_id = names::user_id(user_id)?;
        self.access.may_act_as(caller, &user_id).await?;
        let rows = table::of_user(&self.db, &user_id, unread_only, limit).await?;
        Ok(rows.into_iter().map(Notification::from).collect())
    }

    pub async fn unread_count(&self, caller: &Caller, user_id: &str) -> Result<u64> {
        let user_id = names::user_id(user_id)?;
        self.access.may_act_as(caller, &user_id).await?;
        Ok(table::unread_count(&self.db, &user_id).await?)
    }

    /// A notification, if the caller may touch it: their own (anyone's in open mode).
    async fn own(&self, caller: &Caller, id: &str) -> Result<Row> {
        caller.require_identity()?;
        let row = table::get(&self.db, id)
            .await?
            .ok_or_else(|| Error::not_found("notification not found"))?;
        // Someone else's is as good as absent: its id tells nothing.
        self.access
            .may_act_as(caller, &row.user_id)
            .await
            .map_err(|_| Error::not_found("notification not found"))?;
        Ok(row)
    }

    pub async fn mark_read(&self, caller: &Caller, id: &str) -> Result<()> {
        self.own(caller, id).await?;
        if !table::mark_read(&self.db, id).await? {
            return Err(Error::not_found("notification not found"));
        }
        Ok(())
    }

    /// Marks all the user's notifications read; returns how many were unread.
    pub async fn read_all(&self, caller: &Caller, user_id: &str) -> Result<u64> {
        let user_id = names::user_id(user_id)?;
        self.access.may_act_as(caller, &user_id).await?;
        Ok(table::mark_all_read(&self.db, &user_id).await?)
    }

    pub async fn delete(&self, caller: &Caller, id: &str) -> Result<()> {
        self.own(caller, id).await?;
        if !table::delete(&self.db, id).await? {
            return Err(Error::not_found("notification not found"));
        }
        Ok(())
    }

    /// Whether the database answers.
    pub async fn up(&self) -> bool {
        self.db.ping().await.is_ok()
    }

    /// Called with every committed message (see `delivery`); returns at once.
    pub fn on_message(&self, row: &Message) {
        let names = mentioned_names(&row.text);
        if names.is_empty() {
            return;
        }
        let Ok(permit) = self.mention_tasks.clone().try_acquire_owned() else {
            tracing::warn!(
                message = row.id,
                "too many mentions being written; these are dropped"
            );
            return;
        };
        let (notifier, row) = (self.clone(), row.clone());
        tokio::spawn(async move {
            if let Err(err) = notifier.notify_mentions(&row, names).await {
                tracing::warn!(error = %err, message = row.id, "mentions not notified");
            }
            drop(permit);
        });
    }

    /// Who a message's names are: an account's name is that account's alone, from its
    /// registration on (however many others claim it in open mode, they are not told, and
    /// they cannot push the account out of the count); any other name is whoever was last
    /// seen under it, `MAX_MENTIONED_USERS` in all.
    async fn mentioned(&self, names: BTreeSet<String>) -> Result<Vec<(String, String)>> {
        let owned = accounts::with_names(&self.db, names.clone()).await?;
        let mut found: Vec<(String, String)> = owned
            .into_iter()
            .map(|account| (account.user_id, account.name_key))
            .collect();
        let taken: BTreeSet<&str> = found.iter().map(|(_, name)| name.as_str()).collect();
        let rest: Vec<String> = names
            .into_iter()
            .filter(|name| !taken.contains(name.as_str()))
            .collect();
        let room_left = MAX_MENTIONED_USERS.saturating_sub(found.len() as u64);
        if !rest.is_empty() && room_left > 0 {
            let seen = users::named(&self.db, rest, room_left).await?;
            found.extend(seen.into_iter().map(|user| (user.user_id, user.name_key)));
        }
        Ok(found)
    }

    /// One statement for all the users the message names, then one push each. In a
    /// private room only those who may read it are told.
    async fn notify_mentions(&self, row: &Message, names: BTreeSet<String>) -> Result<()> {
        let mut readers = Vec::new();
        for (user_id, name_key) in self.mentioned(names).await? {
            if self.access.user_may_read(&user_id, &row.room).await? {
                readers.push((user_id, name_key));
            }
        }
        let users = readers;
        let sender = row.username.to_lowercase();
        let body: String = row.text.chars().take(500).collect();
        let rows: Vec<Row> = users
            .into_iter()
            // Naming oneself is not a mention.
            .filter(|(user_id, name_key)| {
                !(row.user_id.as_deref() == Some(user_id.as_str())
                    || (row.user_id.is_none() && *name_key == sender))
            })
            .map(|(user_id, _)| Row {
                id: uuid::Uuid::new_v4().to_string(),
                user_id,
                title: format!("{} mentioned you in #{}", row.username, row.room),
                body: body.clone(),
                notif_type: NotifType::Mention,
                room_id: Some(row.room.clone()),
                from_user: Some(row.username.clone()),
                is_read: false,
                message_id: Some(row.id),
                created_at: now_utc(),
            })
            .collect();
        table::insert_many(&self.db, &rows).await?;
        for row in rows {
            self.push(row);
        }
        Ok(())
    }
}

/// The names after `@` in a message, lower-cased: letters, digits, `_`, `-` and `.`
/// (not ending in `.`); an `@` inside a word (an e-mail address) is not a mention.
pub fn mentioned_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut previous: Option<char> = None;
    for (i, c) in text.char_indices() {
        let starts_word = previous.is_none_or(|p| !p.is_alphanumeric() && p != '_');
        previous = Some(c);
        if c != '@' || !starts_word {
            continue;
        }
        let rest = &text[i + 1..];
        let end = rest
            .char_indices()
            .find(|(_, c)| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.')))
            .map_or(rest.len(), |(j, _)| j);
        let name = rest[..end].trim_end_matches('.');
        if !name.is_empty() && name.chars().count() <= 64 {
            names.insert(name.to_lowercase());
            if names.len() == MAX_MENTIONS {
                break;
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::InProcessHub;

    fn new(user_id: &str, title: &str) -> NewNotification {
        NewNotification {
            user_id: user_id.into(),
            title: title.into(),
            body: "b".into(),
            notif_type: None,
            room_id: None,
            from_user: None,
        }
    }

    #[tokio::test]
    async fn a_user_lists_counts_reads_and_deletes_their_own() {
        let db = crate::db::memory().await;
        let hub = Arc::new(InProcessHub::new(16));
        let mut ann = hub.subscribe(&user_channel("ann"));
        let pushed = &mut ann.signals;
        let access = Arc::new(RoomAccess::new(db.clone()));
        let notifier = Notifier::new(db, hub, access);
        let any = Caller::default();
        let first = notifier.create(&any, new("ann", "one")).await.unwrap();
        assert!(matches!(pushed.try_recv(), Ok(Event::Notification(n)) if n.id == first.id));
        notifier.create(&any, new("ann", "two")).await.unwrap();
        notifier
            .create(&any, new("bob", "not ann's"))
            .await
            .unwrap();
        assert_eq!(notifier.unread_count(&any, "ann").await.unwrap(), 2);
        notifier.mark_read(&any, &first.id).await.unwrap();
        notifier.mark_read(&any, &first.id).await.unwrap(); // twice is fine
        let unread = notifier.list(&any, "ann", true, 50).await.unwrap();
        assert_eq!(
            unread.iter().map(|n| n.title.as_str()).collect::<Vec<_>>(),
            ["two"]
        );
        assert_eq!(notifier.read_all(&any, "ann").await.unwrap(), 1);
        notifier.delete(&any, &first.id).await.unwrap();
        assert_eq!(
            notifier
                .delete(&any, &first.id)
                .await
                .unwrap_err()
                .status_code(),
            404
        );
        assert_eq!(
            notifier
                .mark_read(&any, "nope")
                .await
                .unwrap_err()
                .status_code(),
            404
        );
        assert_eq!(
            notifier.list(&any, "ann", false, 50).await.unwrap().len(),
            1
        );
    }

    #[tokio::test]
    async fn bad_notifications_are_refused() {
        let db = crate::db::memory().await;
        let access = Arc::new(RoomAccess::new(db.clone()));
        let notifier = Notifier::new(db, Arc::new(InProcessHub::new(16)), access);
        let any = Caller::default();
        let mut bad_type = new("ann", "t");
        bad_type.notif_type = Some("spam".into());
        let mut bad_room = new("ann", "t");
        bad_room.room_id = Some("a/b".into());
        for bad in [
            new("", "t"),
            new("ann", " "),
            new("ann", &"t".repeat(201)),
            bad_type,
            bad_room,
        ] {
            assert_eq!(
                notifier.create(&any, bad).await.unwrap_err().status_code(),
                400
            );
        }
    }

    #[test]
    fn mentions_are_words_after_an_at() {
        let names: Vec<_> = mentioned_names("hi @Alice, @bob. mail x@y.z @@ @carol_2-x!")
            .into_iter()
            .collect();
        assert_eq!(names, ["alice", "bob", "carol_2-x"]);
        assert!(mentioned_names("no mentions here").is_empty());
        assert!(mentioned_names("trailing @").is_empty());
    }
}
