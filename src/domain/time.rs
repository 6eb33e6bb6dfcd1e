//! Time as stored.

use chrono::{NaiveDateTime, Timelike, Utc};

/// The current time as stored: UTC, to the microsecond that every backend keeps, so a
/// cache shows what a later read from the database returns.
pub fn now_utc() -> NaiveDateTime {
    let now = Utc::now().naive_utc();
    now.with_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    #[test]
    fn stored_time_has_whole_microseconds() {
        use chrono::Timelike;
        assert_eq!(super::now_utc().nanosecond() % 1_000, 0);
    }
}
