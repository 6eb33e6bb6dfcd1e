//! Three small mechanisms several layers need, each written once.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Locks a mutex, recovering it when a panic poisoned it. Every lock of this server guards
/// a cache or a count that stays usable after a panic elsewhere (the worst is one stale
/// entry), so refusing to serve would be worse than going on.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A process-unique random id (a replica's name on Redis), from the standard library's
/// randomly seeded hasher: no crate needed for 64 bits nobody can guess in advance.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// How long to wait before the `attempt`-th retry of a connection: 200 ms doubling, at
/// most 5 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((100u64 << attempt.clamp(1, 6)).min(5_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stops_at_five_seconds() {
        assert_eq!(backoff(0), Duration::from_millis(200));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(2), Duration::from_millis(400));
        assert_eq!(backoff(6), Duration::from_millis(5_000));
        assert_eq!(backoff(60), Duration::from_millis(5_000));
    }

    #[test]
    fn a_poisoned_lock_is_still_usable() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _guard = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(random_u64(), random_u64());
    }
}
