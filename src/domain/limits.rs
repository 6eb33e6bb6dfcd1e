//! Limits that are rules of the chat rather than settings of one mount.

use crate::domain::Error;

/// How long a user name and a message may be (settings `max_username_chars`,
/// `max_message_chars`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_username_chars: usize,
    pub max_message_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_username_chars: 64,
            max_message_chars: 4096,
        }
    }
}

/// How many messages a room's channel holds for its slowest reader, by default
/// (`ws_backlog`).
pub const MESSAGE_CAPACITY: usize = 4096;

/// Rows a list route answers with when it is not told: `limit=` 1 to [`MAX_PAGE`]
/// (`http::params::PageLimit`).
pub const DEFAULT_PAGE: u64 = 50;
pub const MAX_PAGE: u64 = 200;

/// The most `minutes=` the relay's history goes back: a day.
pub const MAX_HISTORY_MINUTES: u32 = 24 * 60;

/// `minutes=` of the relay's history: digits only, 1 to a day; 30 when absent. The reasons
/// are its server's.
pub fn history_minutes(raw: Option<&str>) -> Result<u32, Error> {
    let raw = raw.unwrap_or("30");
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::bad_request("minutes is not a valid integer"));
    }
    // Digits that overflow are as far past a day as any.
    let minutes = raw.parse::<u32>().unwrap_or(u32::MAX);
    if minutes < 1 {
        return Err(Error::bad_request("minutes must be a positive number"));
    }
    if minutes > MAX_HISTORY_MINUTES {
        return Err(Error::bad_request("minutes cannot be more than 24 hours"));
    }
    Ok(minutes)
}

/// The longest a poll is held.
pub const MAX_WAIT_SECS: f64 = 30.0;

/// `wait=`: seconds to hold a poll, 0 to 30, fractions allowed.
pub fn wait_secs(raw: &str) -> Result<std::time::Duration, Error> {
    raw.parse::<f64>()
        .ok()
        .filter(|s| (0.0..=MAX_WAIT_SECS).contains(s))
        .map(std::time::Duration::from_secs_f64)
        .ok_or_else(|| Error::bad_request("wait must be 0 to 30 seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_minutes_are_digits_from_1_to_a_day() {
        assert_eq!(history_minutes(None).unwrap(), 30);
        assert_eq!(history_minutes(Some("1")).unwrap(), 1);
        assert_eq!(history_minutes(Some("0030")).unwrap(), 30);
        assert_eq!(history_minutes(Some("1440")).unwrap(), 1440);
        for bad in [
            "0",
            "1441",
            "-1",
            "+5",
            "1.5",
            "",
            "x",
            "99999999999999999999",
            "٣",
        ] {
            assert!(history_minutes(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn waits() {
        assert_eq!(wait_secs("25").unwrap().as_secs(), 25);
        assert_eq!(wait_secs("0.5").unwrap().as_millis(), 500);
        assert_eq!(wait_secs("30").unwrap().as_secs(), 30);
        for odd in ["1e20", "31", "-1", "NaN", "inf", "x", ""] {
            assert_eq!(wait_secs(odd).unwrap_err().status_code(), 400, "{odd}");
        }
    }
}
