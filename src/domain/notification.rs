//! A notification, and what it is about.

use crate::domain::Error;
use sea_orm::sea_query::StringLen;
use sea_orm::{DeriveActiveEnum, EnumIter};
use serde::{Deserialize, Serialize};

/// A notification's kind: sent through the API (`message`, `system`), or the server's own
/// for an `@mention`. Stored as its word (the `notification` table's `notif_type` column)
/// and written so in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, EnumIter, DeriveActiveEnum)]
#[serde(rename_all = "lowercase")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum NotifType {
    #[sea_orm(string_value = "message")]
    Message,
    #[sea_orm(string_value = "mention")]
    Mention,
    #[sea_orm(string_value = "system")]
    System,
}

impl NotifType {
    /// As a client writes it; none is `message`.
    pub fn parse(written: Option<&str>) -> Result<NotifType, Error> {
        match written.unwrap_or("message") {
            "message" => Ok(NotifType::Message),
            "mention" => Ok(NotifType::Mention),
            "system" => Ok(NotifType::System),
            _ => Err(Error::bad_request(
                "notif_type must be message, mention or system",
            )),
        }
    }
}

/// A notification as its user is given it: listed by the notifications API and pushed on
/// their sockets (the `notification` frame), in this one JSON shape, which is also how it
/// crosses the Redis hub between replicas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// A UUID.
    pub id: String,
    pub user_id: String,
    pub title: String,
    pub body: String,
    pub notif_type: NotifType,
    pub room_id: Option<String>,
    pub from_user: Option<String>,
    pub read: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The message a mention is about (the server's own mentions only).
    pub message_id: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::NotifType;

    #[test]
    fn a_kind_is_one_of_three_words() {
        assert_eq!(NotifType::parse(None).unwrap(), NotifType::Message);
        assert_eq!(
            NotifType::parse(Some("mention")).unwrap(),
            NotifType::Mention
        );
        assert_eq!(NotifType::parse(Some("system")).unwrap(), NotifType::System);
        for bad in ["spam", "", "Mention"] {
            assert_eq!(NotifType::parse(Some(bad)).unwrap_err().status_code(), 400);
        }
        assert_eq!(serde_json::to_value(NotifType::Mention).unwrap(), "mention");
    }
}
