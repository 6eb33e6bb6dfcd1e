//! What a room name, a user name and a message may be, and how a stored message becomes
//! one line of the transcript.

use crate::http::Error;
use chrono::{Local, NaiveDateTime, TimeZone, Utc};
use rocket::request::FromParam;

pub const MAX_ROOM_CHARS: usize = 64;
pub const DEFAULT_USERNAME: &str = "Anonymous";

/// A room name taken from the URL: 1 to 64 characters, no `/`, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomName(String);

impl RoomName {
    pub fn parse(name: &str) -> Result<Self, Error> {
        if name.is_empty() {
            return Err(Error::bad_request("room name is empty"));
        }
        if name.chars().count() > MAX_ROOM_CHARS {
            return Err(Error::bad_request(format!(
                "room name is longer than {MAX_ROOM_CHARS} characters"
            )));
        }
        if name.contains('/') {
            return Err(Error::bad_request("room name contains '/'"));
        }
        if name.chars().any(is_forbidden_in_name) {
            return Err(Error::bad_request("room name contains control characters"));
        }
        Ok(RoomName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'a> FromParam<'a> for RoomName {
    type Error = Error;

    fn from_param(param: &'a str) -> Result<Self, Self::Error> {
        RoomName::parse(param)
    }
}

/// Control characters, and the Unicode line and paragraph separators that some viewers
/// break lines at.
fn is_forbidden_in_name(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// A message ready to store: user name defaulted and both fields trimmed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub username: String,
    pub text: String,
    /// The sender's id on the ChatFlow side (WebSocket, JSON API); none for legacy posts.
    pub user_id: Option<String>,
    /// `text`, `file` or `system`.
    pub message_type: &'static str,
    pub file_url: Option<String>,
}

pub struct Limits {
    pub max_username_chars: usize,
    pub max_message_chars: usize,
}

/// A user name as sent: trimmed, `Anonymous` when blank, refused when too long or holding
/// control characters.
pub fn username(raw: Option<&str>, limits: &Limits) -> Result<String, Error> {
    let username = raw.map(str::trim).unwrap_or_default();
    let username = if username.is_empty() {
        DEFAULT_USERNAME
    } else {
        username
    };
    if username.chars().count() > limits.max_username_chars {
        return Err(Error::bad_request(format!(
            "username is longer than {} characters",
            limits.max_username_chars
        )));
    }
    if username.chars().any(is_forbidden_in_name) {
        return Err(Error::bad_request("username contains control characters"));
    }
    Ok(username.to_string())
}

pub fn new_message(
    username: Option<&str>,
    msg: Option<&str>,
    limits: &Limits,
) -> Result<NewMessage, Error> {
    let username = self::username(username, limits)?;

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
        message_type: "text",
        file_url: None,
    })
}

/// Names the ChatFlow routes take under `/api/chat`: they are not legacy rooms.
pub const RESERVED_ROOMS: [&str; 3] = ["rooms", "messages", "health"];

/// A user id of the ChatFlow side (WebSocket path, presence, notifications): 1 to 64
/// characters, no control characters.
pub fn user_id(raw: &str) -> Result<String, Error> {
    if raw.is_empty() || raw.chars().count() > 64 || raw.chars().any(is_forbidden_in_name) {
        return Err(Error::bad_request(
            "user_id must be 1 to 64 characters, no control characters",
        ));
    }
    Ok(raw.to_string())
}

/// How many rows a list route answers with: `limit=` 1 to 200, 50 when absent.
pub fn limit(raw: Option<&str>) -> Result<u64, Error> {
    const DEFAULT: u64 = 50;
    const MAX: u64 = 200;
    match raw {
        None => Ok(DEFAULT),
        Some(raw) => raw
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=MAX).contains(n))
            .ok_or_else(|| Error::bad_request(format!("limit must be 1 to {MAX}"))),
    }
}

/// A message as the ChatFlow side sends it (WebSocket frame or JSON API): `content`,
/// optionally `message_type` `file` with its `file_url`.
pub fn chatflow_message(
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
                .filter(|u| !u.is_empty() && u.len() <= 2048 && !u.chars().any(char::is_control))
                .ok_or_else(|| Error::bad_request("a file message needs a file_url"))?;
            message.message_type = "file";
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
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// The current time as stored: UTC, to the microsecond that every backend keeps, so the
/// cache shows what a later read from the database returns.
pub fn now_utc() -> NaiveDateTime {
    use chrono::Timelike;
    let now = Utc::now().naive_utc();
    now.with_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_username_chars: 64,
        max_message_chars: 4096,
    };

    #[test]
    fn room_names() {
        assert!(RoomName::parse("general").is_ok());
        assert!(RoomName::parse("café-☕").is_ok());
        assert!(RoomName::parse("").is_err());
        assert!(RoomName::parse("a/b").is_err());
        assert!(RoomName::parse("a\u{7}b").is_err());
        assert!(RoomName::parse(&"x".repeat(64)).is_ok());
        assert!(RoomName::parse(&"x".repeat(65)).is_err());
    }

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
}
