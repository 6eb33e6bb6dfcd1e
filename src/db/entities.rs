//! SeaORM entities: the tables. Above `db`, a message is a `domain::Message`.

pub mod message {
    use sea_orm::entity::prelude::*;

    /// One chat message, in the table the Flask original created (`message`), so a
    /// database that original already filled is read as it is.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "message")]
    pub struct Model {
        /// Ids are the order of messages within a room.
        #[sea_orm(primary_key)]
        pub id: i64,
        pub room: String,
        /// When the message was stored, in UTC.
        pub timestamp: DateTime,
        pub username: String,
        #[sea_orm(column_type = "Text")]
        pub text: String,
        /// The sender's id when it came through the room API (WebSocket, JSON API).
        pub user_id: Option<String>,
        /// `text`, `file` or `system`.
        pub message_type: crate::domain::MessageType,
        pub file_url: Option<String>,
        /// The relay's `type` and `ts`, when the message came by its socket.
        pub client_type: Option<String>,
        pub client_ts: Option<i64>,
        /// When its author last edited it, in UTC; none until then.
        pub edited_at: Option<DateTime>,
        /// The message of the same room it answers, if it is a reply.
        pub reply_to: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl From<Model> for crate::domain::Message {
        fn from(m: Model) -> Self {
            crate::domain::Message {
                id: m.id,
                room: m.room,
                timestamp: m.timestamp,
                username: m.username,
                text: m.text,
                user_id: m.user_id,
                message_type: m.message_type,
                file_url: m.file_url,
                client_stamp: match (m.client_type, m.client_ts) {
                    (Some(kind), Some(ts)) => {
                        Some(crate::domain::message::ClientStamp { kind, ts })
                    }
                    _ => None,
                },
                edited_at: m.edited_at,
                reactions: Vec::new(),
                reply_to: m.reply_to,
                reply_preview: None,
            }
        }
    }
}

pub mod reaction {
    use sea_orm::entity::prelude::*;

    /// One user's reaction to one message: one row per message, user and emoji.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "reaction")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub message_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub emoji: String,
        pub created_at: DateTime,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod room {
    use sea_orm::entity::prelude::*;

    /// A room of the room API; a legacy room comes into being with its first message.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "room")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        #[sea_orm(column_type = "Text", nullable)]
        pub description: Option<String>,
        pub created_at: DateTime,
        /// The signed-in user who created it; none for legacy rooms and open mode.
        pub owner_id: Option<String>,
        /// `public`, `private` or `direct` (see `domain::Visibility`).
        pub visibility: crate::domain::Visibility,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl From<Model> for crate::domain::Room {
        fn from(m: Model) -> Self {
            crate::domain::Room {
                id: m.id,
                name: m.name,
                description: m.description,
                created_at: m.created_at,
                owner_id: m.owner_id,
                visibility: m.visibility,
            }
        }
    }
}

pub mod room_read {
    use sea_orm::entity::prelude::*;

    /// How far one user has read one room: the last message they have seen.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "room_read")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub room_id: String,
        pub last_read_id: i64,
        pub updated_at: DateTime,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod room_change {
    use sea_orm::entity::prelude::*;

    /// A change of a room other than a new message, as its readers were told it.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "room_change")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub room_id: String,
        /// Its place in the room's history (`domain::seq`).
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i64,
        /// The message it is about, if any.
        pub message_id: Option<i64>,
        /// The event, as JSON.
        #[sea_orm(column_type = "Text")]
        pub event: String,
        pub created_at: DateTime,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod change_log_pruned {
    use sea_orm::entity::prelude::*;

    /// The highest `seq` of a room whose change was pruned from the log.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "change_log_pruned")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub room_id: String,
        pub through: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod room_member {
    use sea_orm::entity::prelude::*;

    /// A member of a private or direct room.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "room_member")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub room_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        pub added_at: DateTime,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl From<Model> for crate::domain::Member {
        fn from(m: Model) -> Self {
            crate::domain::Member {
                room_id: m.room_id,
                user_id: m.user_id,
                added_at: m.added_at,
            }
        }
    }
}

pub mod chat_user {
    use sea_orm::entity::prelude::*;

    /// A user id seen through presence or a WebSocket, under the name it last used.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "chat_user")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        pub username: String,
        /// The name in lower case: `@Alice` and `@alice` are one mention.
        pub name_key: String,
        pub last_seen: DateTime,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod notification {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notification")]
    pub struct Model {
        /// A UUID, as ChatFlow's notification service gives.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub user_id: String,
        pub title: String,
        #[sea_orm(column_type = "Text")]
        pub body: String,
        pub notif_type: crate::domain::NotifType,
        pub room_id: Option<String>,
        pub from_user: Option<String>,
        pub is_read: bool,
        /// The message a mention is about; none for other notifications.
        pub message_id: Option<i64>,
        pub created_at: DateTime,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl From<Model> for crate::domain::Notification {
        fn from(n: Model) -> Self {
            crate::domain::Notification {
                id: n.id,
                user_id: n.user_id,
                title: n.title,
                body: n.body,
                notif_type: n.notif_type,
                room_id: n.room_id,
                from_user: n.from_user,
                read: n.is_read,
                created_at: n.created_at.and_utc(),
                message_id: n.message_id,
            }
        }
    }
}

pub mod stored_file {
    use sea_orm::entity::prelude::*;

    /// An uploaded file's metadata; its bytes are in the object store under `object_key`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "stored_file")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub original_name: String,
        pub content_type: String,
        pub size_bytes: i64,
        pub uploaded_by: Option<String>,
        pub room_id: Option<String>,
        pub object_key: String,
        pub created_at: DateTime,
        /// The thumbnail of an image upload, under its own object key; null for every
        /// other file, and for files uploaded before thumbnails were made.
        pub thumbnail_key: Option<String>,
        pub thumbnail_type: Option<String>,
        pub thumbnail_width: Option<i32>,
        pub thumbnail_height: Option<i32>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl From<Model> for crate::domain::File {
        fn from(f: Model) -> Self {
            crate::domain::File {
                thumbnail: f.thumbnail_key.is_some().then_some(
                    crate::domain::file::ThumbnailSize {
                        width: f.thumbnail_width,
                        height: f.thumbnail_height,
                    },
                ),
                id: f.id,
                name: f.original_name,
                content_type: f.content_type,
                size_bytes: f.size_bytes,
                uploaded_by: f.uploaded_by,
                room_id: f.room_id,
                created_at: f.created_at,
            }
        }
    }
}

pub mod account {
    use sea_orm::entity::prelude::*;

    /// A registered user.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "account")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        pub username: String,
        /// The name in lower case: `Alice` and `alice` are one account.
        pub name_key: String,
        /// Argon2, in the PHC string format.
        pub password_hash: String,
        pub created_at: DateTime,
        /// Tokens issued before the account's generation reached this are revoked.
        pub token_generation: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod hook {
    use sea_orm::entity::prelude::*;

    /// An incoming webhook: whoever holds its URL posts into `room_id` as `name`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "hook")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub room_id: String,
        pub name: String,
        /// SHA-256 of the secret in its URL, as hex.
        pub secret_hash: String,
        /// Who made it: a user's id, or none for the admin token.
        pub created_by: Option<String>,
        pub created_at: DateTime,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod bot {
    use sea_orm::entity::prelude::*;

    /// A bot: its account's id, and the rooms its token may use.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "bot")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        /// The room ids, as a JSON list.
        #[sea_orm(column_type = "Text")]
        pub rooms: String,
        pub created_by: Option<String>,
        pub created_at: DateTime,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod webhook {
    use sea_orm::entity::prelude::*;

    /// An outgoing webhook: the events of `room_id` (every room's when none) are `POST`ed
    /// to `url`, signed with `secret`; the replica `lease_holder` sends them until
    /// `lease_until`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub room_id: Option<String>,
        pub url: String,
        /// The event names it is sent, separated by commas.
        pub events: String,
        /// The name its answers are posted under.
        pub name: String,
        /// What signs its deliveries (hex): the server needs it whole.
        pub secret: String,
        pub created_by: Option<String>,
        pub created_at: DateTime,
        pub lease_holder: Option<String>,
        pub lease_until: Option<DateTime>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod webhook_delivery {
    use sea_orm::entity::prelude::*;

    /// One event for one webhook: the outbox row, then its record.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_delivery")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub webhook_id: String,
        /// The same on every attempt (`X-Ferrochat-Delivery`).
        pub delivery_id: String,
        pub event: String,
        pub room_id: String,
        #[sea_orm(column_type = "Text")]
        pub body: String,
        /// `pending`, `delivered`, `failed` (given up) or `dropped` (the queue was full).
        pub state: String,
        pub attempts: i32,
        pub next_at: DateTime,
        pub attempted_at: Option<DateTime>,
        /// The receiver's status code at the last attempt, if it answered.
        pub status: Option<i32>,
        pub error: Option<String>,
        pub created_at: DateTime,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
