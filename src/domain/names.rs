//! What a room name, a user name and a user id may be.

use crate::domain::{Error, Limits};

pub const MAX_ROOM_CHARS: usize = 64;
pub const MAX_USER_ID_CHARS: usize = 64;
pub const DEFAULT_USERNAME: &str = "Anonymous";

/// Names the room API's routes take under `/api/chat`: they are not legacy rooms.
pub const RESERVED_ROOMS: [&str; 4] = ["rooms", "messages", "health", "unread"];

pub fn is_reserved(name: &str) -> bool {
    RESERVED_ROOMS.contains(&name)
}

/// What the id of every direct conversation begins with. Such ids are made only by
/// asking for the direct room of two users: a room a client names (created, or posted
/// to) may not begin with it, or anyone who can compute a pair's id (user ids are public)
/// could create that room first, own it, and read the pair's messages.
pub const DIRECT_ROOM_PREFIX: &str = "dm-";

/// Whether `name` has the shape of a direct conversation's id (any case).
pub fn is_direct_room_id(name: &str) -> bool {
    name.get(..DIRECT_ROOM_PREFIX.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(DIRECT_ROOM_PREFIX))
}

/// What the user id of another application's subject (an external JWT's `sub`) begins
/// with: `ext:<sub>` can never be one of this server's accounts' ids (UUIDs), so another
/// application's token cannot name a local user; and, as with an account's, only the
/// identity's token may act as one.
pub const EXTERNAL_ID_PREFIX: &str = "ext:";

pub fn is_external_id(user_id: &str) -> bool {
    user_id.starts_with(EXTERNAL_ID_PREFIX)
}

/// The user id an incoming webhook posts under: `hook:<hook id>`. Like an external id,
/// it is never one of our accounts', and nobody may claim it: only the hook's own URL
/// posts as it.
pub const HOOK_ID_PREFIX: &str = "hook:";

/// A bot's account id: `bot:<uuid>`, which no person's account (a UUID) can be.
pub const BOT_ID_PREFIX: &str = "bot:";

/// The user id an outgoing webhook's answers are posted under: `webhook:<webhook id>`.
/// Nobody may claim it either, and its messages are sent to no webhook (two receivers
/// that answer each other would talk forever).
pub const WEBHOOK_ID_PREFIX: &str = "webhook:";

pub fn is_bot_account(user_id: &str) -> bool {
    user_id.starts_with(BOT_ID_PREFIX)
}

/// Whether the id is a program's (a webhook's or a bot's): its messages say
/// `"bot": true`.
pub fn is_bot_id(user_id: &str) -> bool {
    user_id.starts_with(HOOK_ID_PREFIX)
        || user_id.starts_with(WEBHOOK_ID_PREFIX)
        || is_bot_account(user_id)
}

/// A room name: 1 to 64 characters, no `/`, no control characters.
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

    /// A room the room API creates: any room name but the API's own words and the ids
    /// of direct conversations.
    pub fn parse_new(name: &str) -> Result<Self, Error> {
        let room = RoomName::parse(name)?;
        if is_reserved(room.as_str()) {
            return Err(Error::bad_request(format!(
                "'{}' is reserved for the API",
                room.as_str()
            )));
        }
        if is_direct_room_id(room.as_str()) {
            return Err(Error::bad_request(format!(
                "room ids beginning with '{DIRECT_ROOM_PREFIX}' are direct conversations: choose another"
            )));
        }
        Ok(room)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Control characters, and the Unicode line and paragraph separators that some viewers
/// break lines at: never in a name, and (line breaks and tabs apart) never shown as they
/// are in a transcript line.
pub fn is_control_or_separator(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// The invisible characters that make one name look like another: zero-width spaces and
/// joiners, the byte order mark, and bidi marks, embeddings, overrides and isolates
/// (`ann\u{200B}` shows as `ann`; an override shows letters in another order). Refused in
/// names only: a message's text keeps them (emoji sequences are joined by U+200D).
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{061C}'
            | '\u{FEFF}'
    )
}

/// A reaction as a client names it: one emoji (one grapheme cluster of at most 32 bytes,
/// such as `👍`, `👍🏽` or a family joined by U+200D), or a short name `:[a-z0-9_+-]{1,32}:`
/// (`:+1:`, `:party_parrot:`). ASCII alone is no emoji (its forms are the short names);
/// nothing invisible stands alone or reorders text. Other single characters (`é`, `中`)
/// pass: a person may react with any one of them.
pub fn reaction(raw: &str) -> Result<String, Error> {
    use unicode_segmentation::UnicodeSegmentation;
    const MAX_BYTES: usize = 32;
    let refused = || {
        Error::bad_request(
            "a reaction is one emoji (at most 32 bytes) or a :short_name: of a-z, 0-9, _, + and -",
        )
    };
    if let Some(name) = raw.strip_prefix(':').and_then(|r| r.strip_suffix(':')) {
        let ok = (1..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'+' | b'-'));
        return if ok {
            Ok(raw.to_string())
        } else {
            Err(refused())
        };
    }
    let mut clusters = raw.graphemes(true);
    let one = clusters.next().is_some() && clusters.next().is_none();
    let joiners = |c: char| matches!(c, '\u{200D}' | '\u{FE0E}' | '\u{FE0F}');
    let ok = one
        && raw.len() <= MAX_BYTES
        && !raw.is_ascii()
        && !raw.chars().any(|c| {
            is_control_or_separator(c) || c.is_whitespace() || (is_invisible(c) && !joiners(c))
        })
        && !raw.starts_with(joiners);
    if ok {
        Ok(raw.to_string())
    } else {
        Err(refused())
    }
}

/// What a name (a room's, a user's, a user id) may not hold.
pub fn is_forbidden_in_name(c: char) -> bool {
    is_control_or_separator(c) || is_invisible(c)
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
        return Err(Error::bad_request(
            "username contains control or invisible characters",
        ));
    }
    Ok(username.to_string())
}

/// A user id of the room API (WebSocket path, presence, notifications): 1 to 64
/// characters, no control characters.
pub fn user_id(raw: &str) -> Result<String, Error> {
    if raw.is_empty()
        || raw.chars().count() > MAX_USER_ID_CHARS
        || raw.chars().any(is_forbidden_in_name)
    {
        return Err(Error::bad_request(
            "user_id must be 1 to 64 characters, no control characters",
        ));
    }
    Ok(raw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        assert!(RoomName::parse("general").is_ok());
        assert!(RoomName::parse("café-☕").is_ok());
        assert!(RoomName::parse("").is_err());
        assert!(RoomName::parse("a/b").is_err());
        assert!(RoomName::parse("a\u{7}b").is_err());
        assert!(RoomName::parse(&"x".repeat(64)).is_ok());
        assert!(RoomName::parse(&"x".repeat(65)).is_err());
        assert!(RoomName::parse("rooms").is_ok());
        assert!(RoomName::parse_new("rooms").is_err());
        assert!(RoomName::parse_new("dm-0123").is_err());
        assert!(RoomName::parse_new("DM-0123").is_err());
        assert!(RoomName::parse_new("dmz").is_ok());
        assert!(
            RoomName::parse("dm-0123").is_ok(),
            "an existing direct room is named so"
        );
    }

    #[test]
    fn user_names_and_ids() {
        let limits = Limits::default();
        assert_eq!(username(None, &limits).unwrap(), "Anonymous");
        assert_eq!(username(Some(" zoë "), &limits).unwrap(), "zoë");
        assert!(username(Some("a\u{2028}b"), &limits).is_err());
        for invisible in [
            '\u{200B}', '\u{200D}', '\u{200F}', '\u{202E}', '\u{2066}', '\u{FEFF}',
        ] {
            let err = username(Some(&format!("ann{invisible}")), &limits).unwrap_err();
            assert!(
                err.to_string().contains("invisible"),
                "{invisible:?}: {err}"
            );
        }
        assert!(username(Some(&"é".repeat(65)), &limits).is_err());
        assert!(user_id("u-1").is_ok());
        assert!(user_id("").is_err());
        assert!(user_id(&"x".repeat(65)).is_err());
        assert!(user_id("a\nb").is_err());
    }

    #[test]
    fn a_reaction_is_one_emoji_or_a_short_name() {
        for good in [
            "👍",
            "👍🏽",
            "👨\u{200D}👩\u{200D}👧",
            "❤\u{FE0F}",
            "🇫🇷",
            ":+1:",
            ":party_parrot:",
            ":a-b:",
        ] {
            assert_eq!(reaction(good).ok().as_deref(), Some(good), "{good:?}");
        }
        for bad in [
            "",
            "a",
            "ok",
            "👍👍",
            " 👍",
            "👍 ",
            ":",
            "::",
            ":Big:",
            ":a b:",
            ":x\u{0}:",
            "\u{200B}",
            "\u{200D}👍",
            "\u{202E}",
            "\u{FEFF}",
            "\n",
            &format!(":{}:", "a".repeat(33)),
            // One cluster over 32 bytes: a long chain of joined emoji.
            &["👨"; 9].join("\u{200D}"),
        ] {
            assert!(reaction(bad).is_err(), "{bad:?}");
        }
    }
}
