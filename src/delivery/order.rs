//! Room order across replicas, by `seq` (`domain::seq`): a message's is its id's, and
//! every other change of the room is numbered after the room's last change. Numbers are
//! not consecutive (ids are global), so a reader cannot tell from one alone whether a
//! change of its room is still on its way from another replica. With several replicas
//! each writer commits a room's changes one at a time (the room row is locked) and tells
//! each change's predecessor in its room (`prev`). A replica hands a change on only once it
//! has handed on that predecessor; one that arrives early means the changes in between are
//! committed but still travelling, and they are read from the database first. So every
//! reader sees a room in order without gaps, which is what `since=`, `seq=` and `after=`
//! rely on: a client that resumes after N must never be sent a smaller one later.

use std::collections::HashMap;

/// Past this many rooms the record starts over: rooms come into being by posting, so the
/// map must not grow without bound. Starting over only means that each room's next message
/// is taken as it comes.
const MAX_ROOMS: usize = 100_000;

#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// The next message of its room: hand it on now.
    Now,
    /// Handed on before (it came by two ways, say Redis and a database read).
    Already,
    /// Changes of the room after this `seq`, and before the one offered, have not been
    /// handed on yet.
    After(i64),
}

/// Per room, the `seq` of the last change this replica handed on.
#[derive(Default)]
pub struct RoomOrder {
    last: HashMap<String, i64>,
}

impl RoomOrder {
    /// Whether change `id` (a `seq`) of `room`, whose predecessor is `prev` when known,
    /// may be handed on now; if so it is recorded as handed on.
    pub fn admit(&mut self, room: &str, id: i64, prev: Option<i64>) -> Admit {
        match self.last.get_mut(room) {
            Some(last) if id <= *last => Admit::Already,
            Some(last) if prev.is_some_and(|prev| prev > *last) => Admit::After(*last),
            Some(last) => {
                *last = id;
                Admit::Now
            }
            None => {
                if self.last.len() >= MAX_ROOMS {
                    self.last.clear();
                }
                self.last.insert(room.to_string(), id);
                Admit::Now
            }
        }
    }

    /// The last `seq` handed on in `room`, if any.
    pub fn last(&self, room: &str) -> Option<i64> {
        self.last.get(room).copied()
    }

    /// The last `seq` handed on in `room`, if changes up to `prev` are not all handed on.
    pub fn behind(&self, room: &str, prev: i64) -> Option<i64> {
        self.last.get(room).copied().filter(|last| *last < prev)
    }
}

#[cfg(test)]
mod tests {
    use super::{Admit, RoomOrder};

    #[test]
    fn a_message_waits_for_its_predecessor_and_comes_once() {
        let mut order = RoomOrder::default();
        assert_eq!(
            order.admit("r", 10, Some(3)),
            Admit::Now,
            "first seen: taken"
        );
        assert_eq!(order.admit("r", 12, Some(11)), Admit::After(10));
        assert_eq!(order.behind("r", 11), Some(10));
        assert_eq!(order.admit("r", 11, Some(10)), Admit::Now);
        assert_eq!(order.behind("r", 11), None);
        assert_eq!(order.admit("r", 12, Some(11)), Admit::Now);
        assert_eq!(order.admit("r", 11, Some(10)), Admit::Already);
        assert_eq!(order.admit("r", 12, None), Admit::Already);
        // Other rooms' ids in between are no gap.
        assert_eq!(order.admit("other", 13, Some(5)), Admit::Now);
        assert_eq!(order.admit("r", 14, Some(12)), Admit::Now);
        // Without a predecessor (read back from the database): any newer id.
        assert_eq!(order.admit("r", 20, None), Admit::Now);
    }
}
