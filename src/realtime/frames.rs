//! The sockets' wire protocol as types: what a client may send and what it is sent, in
//! each of the two dialects. The room socket (`/ws/<room>/<user_id>` and `/ws/<room>`)
//! speaks JSON objects tagged by `"type"`; the single-room relay (`/ws`) speaks
//! `{text, type, ts}` both ways. The JSON each variant makes is the README's, tested below.

use crate::domain::{Message, MessageJson, Notification, Peer, Shape};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What the sockets take, as components of `/openapi.json` (`ClientFrame`, `RelayIn`),
/// which the socket routes' entries name; what they send is listed in those entries (a
/// union of tagged frames is more than the generated clients read).
#[derive(utoipa::OpenApi)]
#[openapi(components(schemas(ClientFrame, RelayIn)))]
pub struct FramesDoc;

/// What the single-room relay (`/ws`) takes and sends: `{text, type, ts}`.
#[derive(ToSchema)]
#[allow(dead_code)] // a description for the document: the relay reads these fields itself
pub struct RelayIn {
    text: String,
    #[schema(rename = "type")]
    kind: String,
    /// Milliseconds since the epoch.
    ts: i64,
}

/// A frame a room socket's client sends.
#[derive(Debug, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// A message to post. `user_id` names its author on `/ws/<room>`, where each frame
    /// says who it is from; `message_type` `file` with a `file_url` shares an upload.
    Message {
        content: Option<String>,
        user_id: Option<String>,
        message_type: Option<String>,
        file_url: Option<String>,
        /// The id of the message of the room it answers.
        reply_to: Option<i64>,
    },
    Typing,
    StopTyping,
}

impl ClientFrame {
    /// One text frame, or the one line its sender is told.
    pub fn parse(text: &str) -> Result<ClientFrame, String> {
        serde_json::from_str(text).map_err(|err| match err.classify() {
            serde_json::error::Category::Data => {
                format!("not a frame this socket takes (message, typing or stop_typing): {err}")
            }
            _ => format!("invalid JSON: {err}"),
        })
    }
}

/// A frame a room socket is sent. Each that changes the room carries its `seq`
/// (`domain::seq`): a socket opened again with `?seq=` of the last one seen gets every
/// change after it, and `GET /api/chat/rooms/<id>/changes` pages the same frames.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    /// A message of the room, its sender's own included: the API's fields, with
    /// `timestamp` for `created_at`.
    Message(Sequenced<'a>),
    /// Someone else in the room started or stopped typing.
    Typing(Who<'a>),
    StopTyping(Who<'a>),
    UserJoined(Presence<'a>),
    UserLeft(Presence<'a>),
    /// A message's text was edited: the message as it now is, with `edited_at`.
    MessageUpdated(Sequenced<'a>),
    ReactionAdded(ReactionFrame<'a>),
    ReactionRemoved(ReactionFrame<'a>),
    MessageDeleted {
        id: i64,
        room_id: &'a str,
        seq: i64,
    },
    /// The room is gone; the socket closes next (4004).
    RoomDeleted {
        room_id: &'a str,
        seq: i64,
    },
    /// Changes after the `seq` asked for are no longer kept (`change_log_days`): reload
    /// the history; live changes follow.
    Resync {
        room_id: &'a str,
    },
    /// The user marked a room read (on this device or another): their new mark there.
    Read {
        room_id: &'a str,
        last_read_id: i64,
    },
    /// One of the user's notifications, as the notifications API lists it.
    Notification(&'a Notification),
    /// What the socket could not take, in one line; the socket stays open.
    Error {
        detail: &'a str,
    },
}

/// A message's JSON (the fields of `MessageOut`, with `timestamp` for `created_at`) and
/// the `seq` of the change it tells of.
#[derive(Debug, Serialize)]
pub struct Sequenced<'a> {
    #[serde(flatten)]
    pub message: MessageJson<'a>,
    pub seq: i64,
}

/// A reaction added or taken off, and how many of that emoji the message has now.
#[derive(Debug, Serialize)]
pub struct ReactionFrame<'a> {
    pub message_id: i64,
    pub room_id: &'a str,
    pub emoji: &'a str,
    pub user_id: &'a str,
    pub count: u64,
    pub seq: i64,
}

/// Who a typing frame is about.
#[derive(Debug, Serialize)]
pub struct Who<'a> {
    pub user_id: &'a str,
    pub username: &'a str,
    pub room_id: &'a str,
}

/// Who joined or left, and when.
#[derive(Debug, Serialize)]
pub struct Presence<'a> {
    pub user_id: &'a str,
    pub username: &'a str,
    pub room_id: &'a str,
    pub timestamp: chrono::DateTime<chrono::Utc>,
}

impl<'a> ServerFrame<'a> {
    pub fn message(row: &'a Message) -> Self {
        ServerFrame::Message(Sequenced {
            message: MessageJson(row, Shape::Socket),
            seq: crate::domain::seq::of_message(row.id),
        })
    }

    pub fn message_updated(row: &'a Message, seq: i64) -> Self {
        ServerFrame::MessageUpdated(Sequenced {
            message: MessageJson(row, Shape::Socket),
            seq,
        })
    }

    /// The frame a change of room `room_id` is told in; none for what is no change of a
    /// room's history.
    pub fn of_change(event: &'a crate::realtime::Event, room_id: &'a str) -> Option<Self> {
        use crate::realtime::Event;
        Some(match event {
            Event::Message(row) => ServerFrame::message(row),
            Event::MessageUpdated { message, seq } => ServerFrame::message_updated(message, *seq),
            Event::Reaction {
                message_id,
                emoji,
                user_id,
                count,
                added,
                seq,
            } => {
                let reaction = ReactionFrame {
                    message_id: *message_id,
                    room_id,
                    emoji,
                    user_id,
                    count: *count,
                    seq: *seq,
                };
                match added {
                    true => ServerFrame::ReactionAdded(reaction),
                    false => ServerFrame::ReactionRemoved(reaction),
                }
            }
            Event::MessageDeleted { id, seq } => ServerFrame::MessageDeleted {
                id: *id,
                room_id,
                seq: *seq,
            },
            Event::RoomDeleted { seq } => ServerFrame::RoomDeleted { room_id, seq: *seq },
            _ => return None,
        })
    }

    pub fn typing(user: &'a Peer, room_id: &'a str, active: bool) -> Self {
        let who = Who {
            user_id: &user.user_id,
            username: &user.username,
            room_id,
        };
        match active {
            true => ServerFrame::Typing(who),
            false => ServerFrame::StopTyping(who),
        }
    }

    pub fn presence(
        user: &'a Peer,
        room_id: &'a str,
        at: chrono::DateTime<chrono::Utc>,
        joined: bool,
    ) -> Self {
        let presence = Presence {
            user_id: &user.user_id,
            username: &user.username,
            room_id,
            timestamp: at,
        };
        match joined {
            true => ServerFrame::UserJoined(presence),
            false => ServerFrame::UserLeft(presence),
        }
    }
}

/// A frame the single-room relay (`/ws`) is sent: `{text, type, ts}`, as its clients send.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum RelayFrame<'a> {
    /// A message: its client's own as it was sent, any other as `"<username>: <text>"`.
    Message(MessageJson<'a>),
    /// A message of the sender's that was not taken, told to the sender alone (the
    /// protocol has no error frame: it is a line its page shows).
    NotSent {
        text: String,
        #[serde(rename = "type")]
        kind: &'static str,
        ts: i64,
    },
}

impl<'a> RelayFrame<'a> {
    pub fn message(row: &'a Message) -> Self {
        RelayFrame::Message(MessageJson(row, Shape::Relay))
    }

    pub fn not_sent(reason: &str, ts: i64) -> Self {
        RelayFrame::NotSent {
            text: format!("[not sent: {reason}]"),
            kind: "error",
            ts,
        }
    }
}

/// The text of a frame (serializing these types cannot fail: no map has keys that are
/// not strings).
pub fn to_text(frame: &impl Serialize) -> String {
    serde_json::to_string(frame).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn value(frame: &impl Serialize) -> Value {
        serde_json::from_str(&to_text(frame)).unwrap()
    }

    #[test]
    fn client_frames_are_the_readmes() {
        assert_eq!(
            ClientFrame::parse(r#"{"type":"message","content":"Hello!"}"#),
            Ok(ClientFrame::Message {
                content: Some("Hello!".into()),
                user_id: None,
                message_type: None,
                file_url: None,
                reply_to: None,
            })
        );
        assert_eq!(
            ClientFrame::parse(
                r#"{"type":"message","content":"plan.png","message_type":"file","file_url":"/api/files/1/download"}"#
            ),
            Ok(ClientFrame::Message {
                content: Some("plan.png".into()),
                user_id: None,
                message_type: Some("file".into()),
                file_url: Some("/api/files/1/download".into()),
                reply_to: None,
            })
        );
        assert_eq!(
            ClientFrame::parse(
                r#"{"type":"message","content":"Hello, everyone!","user_id":"user_123"}"#
            )
            .map(|f| matches!(f, ClientFrame::Message { user_id: Some(u), .. } if u == "user_123")),
            Ok(true)
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"typing"}"#),
            Ok(ClientFrame::Typing)
        );
        // Fields a frame does not use are passed over, as before.
        assert_eq!(
            ClientFrame::parse(r#"{"type":"stop_typing","room_id":"x"}"#),
            Ok(ClientFrame::StopTyping)
        );
    }

    #[test]
    fn a_frame_it_cannot_take_is_told_why_in_one_line() {
        for (text, starts) in [
            ("{not json", "invalid JSON"),
            ("", "invalid JSON"),
            (r#"{"type":"dance"}"#, "not a frame this socket takes"),
            (r#"{"content":"no type"}"#, "not a frame this socket takes"),
            (
                r#"{"type":"message","content":5}"#,
                "not a frame this socket takes",
            ),
            ("[1,2]", "not a frame this socket takes"),
        ] {
            let err = ClientFrame::parse(text).unwrap_err();
            assert!(err.starts_with(starts), "{text:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn server_frames_are_the_readmes() {
        let ann = Peer {
            user_id: "u1".into(),
            username: "ann".into(),
        };
        let at = chrono::DateTime::from_timestamp(0, 0).unwrap();
        assert_eq!(
            to_text(&ServerFrame::typing(&ann, "general", true)),
            r#"{"type":"typing","user_id":"u1","username":"ann","room_id":"general"}"#
        );
        assert_eq!(
            value(&ServerFrame::typing(&ann, "general", false))["type"],
            "stop_typing"
        );
        assert_eq!(
            value(&ServerFrame::presence(&ann, "general", at, true)),
            json!({"type": "user_joined", "user_id": "u1", "username": "ann",
                "room_id": "general", "timestamp": "1970-01-01T00:00:00Z"})
        );
        assert_eq!(
            value(&ServerFrame::presence(&ann, "general", at, false))["type"],
            "user_left"
        );
        assert_eq!(
            to_text(&ServerFrame::MessageDeleted {
                id: 7,
                room_id: "general",
                seq: 7340033
            }),
            r#"{"type":"message_deleted","id":7,"room_id":"general","seq":7340033}"#
        );
        let reaction = ReactionFrame {
            message_id: 7,
            room_id: "general",
            emoji: "👍",
            user_id: "u1",
            count: 2,
            seq: 7340034,
        };
        assert_eq!(
            to_text(&ServerFrame::ReactionAdded(reaction)),
            r#"{"type":"reaction_added","message_id":7,"room_id":"general","emoji":"👍","user_id":"u1","count":2,"seq":7340034}"#
        );
        assert_eq!(
            to_text(&ServerFrame::RoomDeleted {
                room_id: "general",
                seq: 9
            }),
            r#"{"type":"room_deleted","room_id":"general","seq":9}"#
        );
        assert_eq!(
            to_text(&ServerFrame::Resync { room_id: "general" }),
            r#"{"type":"resync","room_id":"general"}"#
        );
        assert_eq!(
            to_text(&ServerFrame::Read {
                room_id: "general",
                last_read_id: 9
            }),
            r#"{"type":"read","room_id":"general","last_read_id":9}"#
        );
        assert_eq!(
            to_text(&ServerFrame::Error { detail: "no" }),
            r#"{"type":"error","detail":"no"}"#
        );
        let notification = Notification {
            id: "n1".into(),
            user_id: "u1".into(),
            title: "t".into(),
            body: "b".into(),
            notif_type: crate::domain::NotifType::Mention,
            room_id: Some("general".into()),
            from_user: Some("bob".into()),
            read: false,
            created_at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            message_id: Some(7),
        };
        assert_eq!(
            value(&ServerFrame::Notification(&notification)),
            json!({"type": "notification", "id": "n1", "user_id": "u1", "title": "t",
                "body": "b", "notif_type": "mention", "room_id": "general", "from_user": "bob",
                "read": false, "created_at": "1970-01-01T00:00:00Z", "message_id": 7})
        );
    }

    #[test]
    fn a_message_frame_is_the_api_shape_with_type_and_timestamp() {
        let row = Message {
            id: 7,
            room: "r".into(),
            timestamp: chrono::DateTime::from_timestamp(0, 0).unwrap().naive_utc(),
            username: "u".into(),
            text: "hi".into(),
            user_id: Some("u1".into()),
            message_type: crate::domain::MessageType::Text,
            file_url: None,
            client_stamp: None,
            edited_at: None,
            reactions: Vec::new(),
            reply_to: None,
            reply_preview: None,
        };
        let frame = to_text(&ServerFrame::message(&row));
        assert!(frame.starts_with(r#"{"type":"message","id":7,"#), "{frame}");
        assert_eq!(
            serde_json::from_str::<Value>(&frame).unwrap(),
            json!({"type": "message", "id": 7, "room_id": "r", "user_id": "u1",
                "username": "u", "content": "hi", "message_type": "text", "file_url": null,
                "timestamp": "1970-01-01T00:00:00Z", "edited_at": null, "reactions": [],
                "reply_to": null, "reply_preview": null, "bot": false, "seq": 7 << 20})
        );
        assert_eq!(
            value(&RelayFrame::message(&row)),
            json!({"text": "u: hi", "type": "message", "ts": 0})
        );
        assert_eq!(
            value(&RelayFrame::not_sent("slow down", 5)),
            json!({"text": "[not sent: slow down]", "type": "error", "ts": 5})
        );
    }
}
