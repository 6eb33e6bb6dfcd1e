//! The message: as a client sends it ([`NewMessage`], checked here), as it is stored and
//! read back ([`Message`]), as one line of the legacy transcript, and as JSON
//! ([`MessageJson`], the one writer of every door's JSON form).

use crate::domain::names::{self, is_control_or_separator};
use crate::domain::{Error, Limits};
use chrono::{Local, NaiveDateTime, TimeZone};
use sea_orm::sea_query::StringLen;
use sea_orm::{DeriveActiveEnum, EnumIter};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// A stored message. Ids are the order of messages within a room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: i64,
    pub room: String,
    /// When the message was stored, in UTC.
    pub timestamp: NaiveDateTime,
    pub username: String,
    pub text: String,
    /// The sender's id when it came through the room API (WebSocket, JSON API).
    pub user_id: Option<String>,
    pub message_type: MessageType,
    pub file_url: Option<String>,
    /// The relay's own fields, when the message came by its socket. Absent from what
    /// replicas of an older version send, so read as none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_stamp: Option<ClientStamp>,
    /// When its author last edited it, in UTC; none until then (and from replicas of an
    /// older version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<NaiveDateTime>,
    /// Its reactions: as the reader who asked sees them in a page of history, their
    /// counts (no `me`) in replays and edits, none on a new message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<ReactionCount>,
    /// The message of the room it answers, if it is a reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<i64>,
    /// What it shows of that message; none once that message is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_preview: Option<ReplyPreview>,
}

/// One reaction on a message as a reader sees it: the emoji, how many reacted with it,
/// and whether the reader did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionCount {
    pub emoji: String,
    pub count: u64,
    pub me: bool,
}

/// What the relay's client sends beside its text (`type`, `ts`), kept with the row so its
/// sockets get back the very object it sent, on every replica and in its history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientStamp {
    pub kind: String,
    pub ts: i64,
}

/// Longest `type` a relay frame may carry (its clients send `chat` or `message`).
pub const MAX_CLIENT_TYPE_CHARS: usize = 32;

/// What a message is: text, a file (with its `file_url`), or a line of the server's own.
/// Stored as its word (the `message` table's `message_type` column) and written so in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, EnumIter, DeriveActiveEnum)]
#[serde(rename_all = "lowercase")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum MessageType {
    #[sea_orm(string_value = "text")]
    Text,
    #[sea_orm(string_value = "file")]
    File,
    #[sea_orm(string_value = "system")]
    System,
}

impl MessageType {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Text => "text",
            MessageType::File => "file",
            MessageType::System => "system",
        }
    }
}

/// A message ready to store: user name defaulted and both fields trimmed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub username: String,
    pub text: String,
    /// The sender's id on the room API (WebSocket, JSON API); none for legacy posts.
    pub user_id: Option<String>,
    pub message_type: MessageType,
    pub file_url: Option<String>,
    /// The relay's `type` and `ts`, when it came by that door.
    pub client_stamp: Option<ClientStamp>,
    /// The message of the same room this one answers, and (once the pipeline has found
    /// it there) what of it the reply shows.
    pub reply_to: Option<i64>,
    pub reply_preview: Option<ReplyPreview>,
}

/// What a reply shows of the message it answers: who wrote it and the start of its text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyPreview {
    pub id: i64,
    pub username: String,
    pub content: String,
}

impl ReplyPreview {
    /// Characters of the answered message a preview keeps.
    pub const CHARS: usize = 140;

    pub fn of(message: &Message) -> ReplyPreview {
        ReplyPreview {
            id: message.id,
            username: message.username.clone(),
            content: message.text.chars().take(Self::CHARS).collect(),
        }
    }
}

/// Who is on the other end of a WebSocket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub user_id: String,
    pub username: String,
}

/// A legacy post (`username`, `msg`).
pub fn new_message(
    username: Option<&str>,
    msg: Option<&str>,
    limits: &Limits,
) -> Result<NewMessage, Error> {
    let username = names::username(username, limits)?;
    let text = msg.map(str::trim).unwrap_or_default();
    if text.is_empty() {
        return Err(Error::bad_request("msg is required"));
    }
    if text.chars().count() > limits.max_message_chars {
        return Err(Error::bad_request(format!(
            "msg is longer than {} characters",
            limits.max_message_chars
        )));
    }
    // Line breaks and tabs are text; other control characters (escape sequences, NUL)
    // are never what a person typed.
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(Error::bad_request("msg contains control characters"));
    }
    Ok(NewMessage {
        username,
        text: text.to_string(),
        user_id: None,
        message_type: MessageType::Text,
        file_url: None,
        client_stamp: None,
        reply_to: None,
        reply_preview: None,
    })
}

/// A message as the room API sends it (WebSocket frame or JSON API): `content`,
/// optionally `message_type` `file` with its `file_url`.
pub fn room_message(
    username: &str,
    user_id: Option<String>,
    content: Option<&str>,
    message_type: Option<&str>,
    file_url: Option<String>,
    limits: &Limits,
) -> Result<NewMessage, Error> {
    let mut message = new_message(Some(username), content, limits)
        .map_err(|e| Error::bad_request(e.to_string().replace("msg ", "content ")))?;
    message.user_id = user_id;
    match message_type.unwrap_or("text") {
        "text" => {}
        "file" => {
            let url = file_url
                .filter(|u| !u.is_empty())
                .ok_or_else(|| Error::bad_request("a file message needs a file_url"))?;
            if !is_safe_file_url(&url) {
                return Err(Error::bad_request(
                    "file_url must be this server's /api/files/<id>/download or an https: URL",
                ));
            }
            message.message_type = MessageType::File;
            message.file_url = Some(url);
        }
        other => {
            return Err(Error::bad_request(format!(
                "message_type '{other}' is not text or file"
            )))
        }
    }
    Ok(message)
}

/// A file message's link, which every client shows as a link: a download path of this
/// server (as an upload's `download_url` gives it), or an `https:` URL. Anything else
/// (`javascript:`, `data:`, another scheme, a path elsewhere on this site) could run or
/// act in the reader's browser when clicked.
pub fn is_safe_file_url(url: &str) -> bool {
    const MAX_CHARS: usize = 2048;
    if url.len() > MAX_CHARS || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return false;
    }
    if let Some(id) = url
        .strip_prefix("/api/files/")
        .and_then(|rest| rest.strip_suffix("/download"))
    {
        return !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    }
    url.get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
        && url.len() > 8
}

/// A text frame of the relay socket: exactly the keys `text`, `type` and `ts`, a
/// string, a string and an integer, as its client and its tests send them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebchatFrame {
    text: String,
    #[serde(rename = "type")]
    kind: String,
    ts: i64,
}

/// A frame of the relay socket as a message of `username`. Its text is kept as sent (not
/// trimmed), since the sender gets that same object back; it is checked as any message's.
pub fn relay_message(
    frame: &str,
    username: &str,
    user_id: Option<String>,
    limits: &Limits,
) -> Result<NewMessage, Error> {
    let frame: WebchatFrame = serde_json::from_str(frame)
        .map_err(|e| Error::bad_request(format!("not a {{text, type, ts}} object: {e}")))?;
    let checked = new_message(Some(username), Some(&frame.text), limits)
        .map_err(|e| Error::bad_request(e.to_string().replace("msg ", "text ")))?;
    if frame.kind.chars().count() > MAX_CLIENT_TYPE_CHARS
        || frame.kind.chars().any(char::is_control)
    {
        return Err(Error::bad_request(format!(
            "type is longer than {MAX_CLIENT_TYPE_CHARS} characters or holds control characters"
        )));
    }
    Ok(NewMessage {
        text: frame.text,
        user_id,
        client_stamp: Some(ClientStamp {
            kind: frame.kind,
            ts: frame.ts,
        }),
        ..checked
    })
}

/// Shown in place of a line break inside a message, so that every message is exactly one
/// line of the transcript and no message can pass itself off as another.
pub const LINE_BREAK_MARK: char = '↵';

/// `[YYYY-MM-DD HH:MM:SS] username: text`, in the server's local time as the original.
pub fn transcript_line(timestamp_utc: NaiveDateTime, username: &str, text: &str) -> String {
    let local = Local.from_utc_datetime(&timestamp_utc);
    let mut line = String::with_capacity(24 + username.len() + text.len());
    line.push_str(&local.format("[%Y-%m-%d %H:%M:%S] ").to_string());
    push_one_line(&mut line, username);
    line.push_str(": ");
    push_one_line(&mut line, text);
    line
}

/// Copies `text` with every line break (`\r\n`, `\r`, `\n`, NEL, U+2028, U+2029) as one
/// mark and any other control character as U+FFFD. Rows written by other programs pass
/// through here too, so this does not rely on validation alone.
fn push_one_line(out: &mut String, text: &str) {
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push(LINE_BREAK_MARK);
            }
            '\n' | '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{0B}' | '\u{0C}' => {
                out.push(LINE_BREAK_MARK)
            }
            '\t' => out.push('\t'),
            c if is_control_or_separator(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// The JSON forms of a message; each door's clients read their own field names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// The room API and events: `id, room_id, user_id, username, content,
    /// message_type, file_url, created_at, edited_at` (null until edited).
    Api,
    /// The body of a room socket's `message` frame (`realtime::ServerFrame` adds its
    /// `type`): the API's fields, with `timestamp` in place of `created_at`.
    Socket,
    /// `GET /api/chat/<room>?format=json`: `id, room, username, text, timestamp`.
    Legacy,
    /// The relay socket and `GET /messages`: `text, type, ts` (milliseconds). Its own
    /// clients' messages as they sent them; any other's as `"<username>: <text>"`, type
    /// `message`, the time it was stored.
    Relay,
}

/// The one JSON writer of a message, in the shape its door's clients read.
#[derive(Debug)]
pub struct MessageJson<'a>(pub &'a Message, pub Shape);

impl Serialize for MessageJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let MessageJson(m, shape) = self;
        let at = m.timestamp.and_utc();
        let mut map = serializer.serialize_map(None)?;
        if *shape == Shape::Relay {
            match &m.client_stamp {
                Some(echo) => {
                    map.serialize_entry("text", &m.text)?;
                    map.serialize_entry("type", &echo.kind)?;
                    map.serialize_entry("ts", &echo.ts)?;
                }
                None => {
                    map.serialize_entry("text", &format!("{}: {}", m.username, m.text))?;
                    map.serialize_entry("type", "message")?;
                    map.serialize_entry("ts", &at.timestamp_millis())?;
                }
            }
            return map.end();
        }
        map.serialize_entry("id", &m.id)?;
        if *shape == Shape::Legacy {
            map.serialize_entry("room", &m.room)?;
            map.serialize_entry("username", &m.username)?;
            map.serialize_entry("text", &m.text)?;
            map.serialize_entry("timestamp", &at)?;
            return map.end();
        }
        map.serialize_entry("room_id", &m.room)?;
        map.serialize_entry("user_id", &m.user_id)?;
        map.serialize_entry("username", &m.username)?;
        map.serialize_entry("content", &m.text)?;
        map.serialize_entry("message_type", &m.message_type)?;
        // Rows stored before links were checked, or by another program, may hold any
        // scheme: a link no client should follow is sent as none.
        map.serialize_entry(
            "file_url",
            &m.file_url.as_deref().filter(|url| is_safe_file_url(url)),
        )?;
        let time_key = if *shape == Shape::Socket {
            "timestamp"
        } else {
            "created_at"
        };
        map.serialize_entry(time_key, &at)?;
        map.serialize_entry("edited_at", &m.edited_at.map(|at| at.and_utc()))?;
        map.serialize_entry("reactions", &m.reactions)?;
        map.serialize_entry("reply_to", &m.reply_to)?;
        map.serialize_entry("reply_preview", &m.reply_preview)?;
        // Posted by an integration (a webhook), not a person.
        let bot = m.user_id.as_deref().is_some_and(names::is_bot_id);
        map.serialize_entry("bot", &bot)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_username_chars: 64,
        max_message_chars: 4096,
    };

    #[test]
    fn messages_are_trimmed_and_defaulted() {
        let m = new_message(None, Some("  hi  "), &LIMITS).unwrap();
        assert_eq!(m.username, "Anonymous");
        assert_eq!(m.text, "hi");
        let m = new_message(Some("  "), Some("x"), &LIMITS).unwrap();
        assert_eq!(m.username, "Anonymous");
        let m = new_message(Some(" zoë "), Some("a\nb"), &LIMITS).unwrap();
        assert_eq!(m.username, "zoë");
        assert_eq!(m.text, "a\nb");
    }

    #[test]
    fn bad_messages_are_refused() {
        for (user, msg) in [
            (None, None),
            (None, Some("   ")),
            (Some("a\nb"), Some("x")),
            (Some("a\u{2028}b"), Some("x")),
            (None, Some("\u{1b}[2J")),
        ] {
            assert!(new_message(user, msg, &LIMITS).is_err(), "{user:?} {msg:?}");
        }
        assert!(new_message(Some(&"é".repeat(64)), Some("x"), &LIMITS).is_ok());
        assert!(new_message(Some(&"é".repeat(65)), Some("x"), &LIMITS).is_err());
        assert!(new_message(None, Some(&"é".repeat(4096)), &LIMITS).is_ok());
        assert!(new_message(None, Some(&"é".repeat(4097)), &LIMITS).is_err());
    }

    #[test]
    fn file_urls_are_downloads_here_or_https() {
        for good in [
            "/api/files/123/download",
            "/api/files/0b6c1f1e-7d1a-4c57-9f55-6f1c0f0c2c1e/download",
            "https://example.com/a.png",
            "HTTPS://example.com/a.png",
        ] {
            assert!(is_safe_file_url(good), "{good}");
        }
        for bad in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            " javascript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "http://example.com/a.png",
            "//evil.example/a.png",
            "/api/auth/logout",
            "/api/files/../auth/logout/download",
            "/api/files//download",
            "https://",
            "https://a b",
            &format!("https://{}", "a".repeat(2048)),
        ] {
            assert!(!is_safe_file_url(bad), "{bad}");
        }
        let limits = Limits::default();
        let file = |url: &str| {
            room_message(
                "a",
                None,
                Some("f"),
                Some("file"),
                Some(url.into()),
                &limits,
            )
            .map(|m| m.file_url)
            .map_err(|e| e.status_code())
        };
        assert_eq!(file("javascript:alert(1)"), Err(400));
        assert_eq!(
            file("/api/files/1/download"),
            Ok(Some("/api/files/1/download".into()))
        );
    }

    #[test]
    fn room_messages_name_their_fields() {
        let err = room_message("a", None, None, None, None, &LIMITS).unwrap_err();
        assert_eq!(err.to_string(), "content is required");
        let file = room_message(
            "a",
            None,
            Some("x"),
            Some("file"),
            Some("/api/files/f/download".into()),
            &LIMITS,
        )
        .unwrap();
        assert_eq!(file.message_type, MessageType::File);
        assert!(room_message("a", None, Some("x"), Some("file"), None, &LIMITS).is_err());
        assert!(room_message("a", None, Some("x"), Some("video"), None, &LIMITS).is_err());
    }

    #[test]
    fn webchat_frames_are_exactly_text_type_and_ts() {
        let m = relay_message(
            r#"{"type":"chat","text":" hi ","ts":17}"#,
            "ann",
            None,
            &LIMITS,
        )
        .unwrap();
        assert_eq!((m.text.as_str(), m.username.as_str()), (" hi ", "ann"));
        assert_eq!(
            m.client_stamp,
            Some(ClientStamp {
                kind: "chat".into(),
                ts: 17
            })
        );
        for bad in [
            "hi",
            "[]",
            r#"{"text":"hi","type":"chat"}"#,
            r#"{"text":"hi","type":"chat","ts":"17"}"#,
            r#"{"text":"hi","type":"chat","ts":1.5}"#,
            r#"{"text":1,"type":"chat","ts":17}"#,
            r#"{"text":"hi","type":"chat","ts":17,"extra":1}"#,
            r#"{"text":"  ","type":"chat","ts":17}"#,
            r#"{"text":"\u001b[2J","type":"chat","ts":17}"#,
            r#"{"text":"hi","type":"\u0000","ts":17}"#,
        ] {
            assert!(relay_message(bad, "ann", None, &LIMITS).is_err(), "{bad}");
        }
        let long = format!(r#"{{"text":"hi","type":"{}","ts":1}}"#, "t".repeat(33));
        assert!(relay_message(&long, "ann", None, &LIMITS).is_err());
    }

    #[test]
    fn a_message_is_always_one_line() {
        let ts = chrono::NaiveDate::from_ymd_opt(2026, 1, 2)
            .unwrap()
            .and_hms_opt(3, 4, 5)
            .unwrap();
        let line = transcript_line(
            ts,
            "bob",
            "hi\r\n[2026-01-01 00:00:00] alice: x\ry\u{2028}z\u{1}",
        );
        assert!(!line.contains(['\n', '\r', '\u{2028}']));
        assert!(line.ends_with("bob: hi↵[2026-01-01 00:00:00] alice: x↵y↵z\u{FFFD}"));
        assert!(line.starts_with('['));
    }

    #[test]
    fn one_writer_four_shapes() {
        let m = Message {
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
        let json = |shape| serde_json::to_value(MessageJson(&m, shape)).unwrap();
        assert_eq!(
            json(Shape::Api),
            serde_json::json!({"id": 7, "room_id": "r", "user_id": "u1", "username": "u",
                "content": "hi", "message_type": "text", "file_url": null,
                "created_at": "1970-01-01T00:00:00Z", "edited_at": null, "reactions": [],
                "reply_to": null, "reply_preview": null, "bot": false})
        );
        let socket = json(Shape::Socket);
        assert_eq!(socket["timestamp"], "1970-01-01T00:00:00Z");
        assert!(socket.get("created_at").is_none());
        assert_eq!(
            json(Shape::Legacy),
            serde_json::json!({"id": 7, "room": "r", "username": "u", "text": "hi",
                "timestamp": "1970-01-01T00:00:00Z"})
        );
        assert_eq!(
            json(Shape::Relay),
            serde_json::json!({"text": "u: hi", "type": "message", "ts": 0})
        );
        let echoed = Message {
            client_stamp: Some(ClientStamp {
                kind: "chat".into(),
                ts: 42,
            }),
            ..m.clone()
        };
        assert_eq!(
            serde_json::to_value(MessageJson(&echoed, Shape::Relay)).unwrap(),
            serde_json::json!({"text": "hi", "type": "chat", "ts": 42})
        );
    }
}
