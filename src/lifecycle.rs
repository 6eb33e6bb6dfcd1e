//! The process's phase, for a graceful stop. Serving; then draining: readiness answers
//! 503 and new sockets are refused while everything else is still served, so that a
//! balancer stops routing here before anything is cut; then closing: open sockets are
//! told to reconnect elsewhere (close 1012) and held long-polls answer at once. The signal
//! handler (wired in `lib.rs`) moves the phase on; everyone else only reads it.

use std::sync::Arc;
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Serving,
    Draining,
    Closing,
}

#[derive(Clone)]
pub struct Lifecycle(Arc<watch::Sender<Phase>>);

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle(Arc::new(watch::channel(Phase::Serving).0))
    }
}

impl Lifecycle {
    pub fn phase(&self) -> Phase {
        *self.0.borrow()
    }

    /// Draining or closing: no new long-lived work (sockets) should start here.
    pub fn stopping(&self) -> bool {
        self.phase() >= Phase::Draining
    }

    /// Moves forward only: a second signal never brings a stopping server back.
    pub fn advance(&self, to: Phase) {
        self.0.send_if_modified(|phase| {
            let later = *phase < to;
            if later {
                *phase = to;
            }
            later
        });
    }

    /// Resolves once the server is closing (at once if it already is).
    pub async fn closing(&self) {
        self.reached(Phase::Closing).await
    }

    /// Resolves once the server is stopping: draining or closing.
    pub async fn draining(&self) {
        self.reached(Phase::Draining).await
    }

    async fn reached(&self, to: Phase) {
        let mut phase = self.0.subscribe();
        // The sender lives as long as `self`: the wait ends only by reaching the phase.
        let _ = phase.wait_for(|phase| *phase >= to).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn phases_only_move_forward_and_closing_wakes_waiters() {
        let life = Lifecycle::default();
        assert!(!life.stopping());
        let waiter = tokio::spawn({
            let life = life.clone();
            async move { life.closing().await }
        });
        life.advance(Phase::Draining);
        assert!(life.stopping());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "draining is not closing");
        life.advance(Phase::Closing);
        life.advance(Phase::Serving);
        assert_eq!(life.phase(), Phase::Closing);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("closing wakes a waiter")
            .unwrap();
        // A late waiter resolves at once.
        tokio::time::timeout(Duration::from_millis(100), life.closing())
            .await
            .expect("already closing");
    }
}
