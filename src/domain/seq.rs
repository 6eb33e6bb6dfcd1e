//! `seq`: the place of a change in its room's history, on every replica alike. A message
//! is its id shifted left by [`SHIFT`] bits; every other change (an edit, a reaction, a
//! deletion) takes the next number after the room's last change, counted in the bits below.
//! So one number orders a room's messages and changes together, message ids keep their
//! order, and a message's `seq` is known wherever its id is, with no second counter to
//! consult on the path of a post. Every change is given its `seq` by the replica's writer
//! while the room is locked (see `delivery`), so within a room each is greater than every
//! one committed before it.

/// Bits below a message's id: room for a million changes between two messages of a room.
pub const SHIFT: u32 = 20;

/// Changes a room may have between two messages.
pub const MAX_CHANGES_BETWEEN: i64 = (1 << SHIFT) - 1;

/// A message's `seq`.
pub fn of_message(id: i64) -> i64 {
    id << SHIFT
}

/// The id below which (inclusive) every message has a `seq` at or below `seq`.
pub fn message_id_at(seq: i64) -> i64 {
    seq >> SHIFT
}

/// The `seq` of the change after one whose room's last `seq` was `last`, while the room's
/// newest message is `newest_message`; none when the room has had
/// [`MAX_CHANGES_BETWEEN`] changes since its last message.
pub fn next(last: i64, newest_message: i64) -> Option<i64> {
    let base = last.max(of_message(newest_message));
    let next = base + 1;
    // Within the room left under the message it counts from: every later message has a
    // greater id than that one, so a greater `seq` than these.
    (message_id_at(next) == message_id_at(base)).then_some(next)
}

/// What a reader (a room socket, an event stream) has been sent, to send nothing twice:
/// the message ids it has, the newest ones exactly and everything at or below a floor (the
/// `since` it came with, then the oldest id forgotten); and the `seq` of the last change it
/// was sent: changes come in `seq` order, so one at or below it was sent before.
#[derive(Debug)]
pub struct Sent {
    floor: i64,
    ids: std::collections::BTreeSet<i64>,
    /// The `seq` of the last change sent (a message's counts once it is sent).
    pub seq: i64,
}

impl Sent {
    const REMEMBERED: usize = 4096;

    /// Messages up to id `since` and changes up to `seq` count as sent.
    pub fn new(since: i64, seq: i64) -> Self {
        Sent {
            floor: since,
            ids: Default::default(),
            seq,
        }
    }

    /// True if `id` was not sent before (and is now counted as sent).
    pub fn insert(&mut self, id: i64) -> bool {
        if id <= self.floor || !self.ids.insert(id) {
            return false;
        }
        while self.ids.len() > Self::REMEMBERED {
            if let Some(oldest) = self.ids.pop_first() {
                self.floor = oldest;
            }
        }
        true
    }

    /// The `since` a reconnecting peer should give: below it, it has everything.
    pub fn resume_from(&self) -> i64 {
        self.ids
            .first()
            .map_or(self.floor, |first| (first - 1).max(self.floor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_come_after_their_room_s_messages_and_before_the_next() {
        assert_eq!(of_message(3), 3 << 20);
        let after_three = next(of_message(3), 3).unwrap();
        assert!(after_three > of_message(3) && after_three < of_message(4));
        assert_eq!(next(after_three, 3), Some(after_three + 1));
        // A newer message resets the count under it.
        assert_eq!(next(after_three, 9), Some(of_message(9) + 1));
        // The last change's seq holds even when its message is gone.
        assert_eq!(next(of_message(9) + 5, 3), Some(of_message(9) + 6));
        assert_eq!(message_id_at(of_message(9) + 5), 9);
        assert_eq!(next(of_message(2) + MAX_CHANGES_BETWEEN, 2), None);
        assert_eq!(next(0, 0), Some(1));
    }

    #[test]
    fn sent_messages_count_once_and_a_forgotten_one_raises_the_floor() {
        let mut sent = Sent::new(10, of_message(10));
        assert!(!sent.insert(10), "at the floor: sent with the history");
        assert!(sent.insert(12));
        assert!(!sent.insert(12), "never twice");
        assert!(sent.insert(11), "a late one below the newest still goes");
        assert_eq!(sent.resume_from(), 10);
        for id in 13..13 + Sent::REMEMBERED as i64 {
            assert!(sent.insert(id));
        }
        // The oldest ids were forgotten: the floor rose past them, so none comes again.
        assert!(!sent.insert(11) && !sent.insert(12));
        assert_eq!(sent.resume_from(), 12);
        assert_eq!(sent.seq, of_message(10));
    }
}
