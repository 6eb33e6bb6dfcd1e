//! The graceful stop. On SIGTERM or SIGINT: readiness says 503 and new sockets are
//! refused (503) at once while everything else is still served, for `shutdown_drain_secs`,
//! so that a balancer stops routing here; answers in that time carry `Connection: close`,
//! so no idle keep-alive connection is left for a proxy to send a request into as the
//! listener goes. Then open sockets get close 1012 and held long-polls answer; then Rocket
//! stops accepting and lets requests in flight finish (its `grace`). After Rocket returns,
//! `flush` waits for what the hub and RabbitMQ still have to send. A second signal skips
//! the rest of the drain.

use super::App;
use crate::events::Events;
use crate::lifecycle::{Lifecycle, Phase};
use crate::metrics::METRICS;
use crate::realtime::Hub;
use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::Header;
use rocket::{Request, Response, Shutdown};
use std::time::{Duration, Instant};

/// How long open sockets get to send their close frames before Rocket is told to stop.
const SOCKETS_CLOSE_WITHIN: Duration = Duration::from_secs(2);
/// At most this long, after Rocket returned, for the hub's and RabbitMQ's queues.
pub const FLUSH_WITHIN: Duration = Duration::from_secs(2);

/// Rocket's grace for requests in flight once it stops accepting, at most.
const REQUEST_GRACE_MAX: Duration = Duration::from_secs(5);

/// Rocket's own grace for requests in flight: what `shutdown_grace_secs` leaves after the
/// drain, the sockets' close, Rocket's mercy (1 s) and the flush, and at most 5 s. Rocket
/// waits out its whole grace while a client keeps an idle keep-alive connection open (a
/// proxy's pool always does), so a long one would only make every stop slower; by then
/// posts have long been answered and polls told to go, and an upload still running after
/// it is cut (its client sees an error and sends it again, elsewhere).
pub fn request_grace(drain: Duration, total: Duration) -> u32 {
    let others = drain + SOCKETS_CLOSE_WITHIN + Duration::from_secs(1) + FLUSH_WITHIN;
    total
        .saturating_sub(others)
        .min(REQUEST_GRACE_MAX)
        .as_secs()
        .max(1) as u32
}

/// Waits for the first signal, then runs the stop (see the module's comment).
pub async fn on_signal(shutdown: Shutdown, lifecycle: Lifecycle, drain: Duration) {
    let Some(mut signals) = Signals::listen() else {
        return;
    };
    signals.next().await;
    let started = Instant::now();
    lifecycle.advance(Phase::Draining);
    tracing::info!(
        drain_secs = drain.as_secs_f64(),
        "stopping: draining (readiness 503, new sockets refused)"
    );
    tokio::select! {
        () = tokio::time::sleep(drain) => {}
        () = signals.next() => tracing::info!("second signal: drain cut short"),
    }
    lifecycle.advance(Phase::Closing);
    let open = METRICS.websockets_open.get();
    tracing::info!(sockets = open, "stopping: closing sockets with 1012");
    let deadline = Instant::now() + SOCKETS_CLOSE_WITHIN;
    while METRICS.websockets_open.get() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "stopping: no new connections; requests in flight finish"
    );
    shutdown.notify();
}

/// After Rocket stopped: waits (at most `within`) until the hub and the events publisher
/// have sent what they hold; says what was left when they did not.
pub async fn flush(hub: &dyn Hub, events: &Events, within: Duration) {
    let deadline = Instant::now() + within;
    while hub.pending() + events.pending() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (hub_left, events_left) = (hub.pending(), events.pending());
    if hub_left + events_left > 0 {
        tracing::warn!(
            hub = hub_left,
            events = events_left,
            "stopped with events unsent (Redis or RabbitMQ did not take them in time)"
        );
    } else {
        tracing::info!("stopped; everything sent");
    }
}

/// SIGTERM (a container runtime, Kubernetes) and SIGINT (Ctrl-C), as one stream.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> Option<Self> {
        #[cfg(unix)]
        {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => Some(Signals { term }),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot listen for SIGTERM: no graceful stop");
                    None
                }
            }
        }
        #[cfg(not(unix))]
        Some(Signals {})
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// While stopping, every answer closes its connection after it (see the module's comment).
pub struct CloseWhileStopping;

#[rocket::async_trait]
impl Fairing for CloseWhileStopping {
    fn info(&self) -> Info {
        Info {
            name: "Connection: close while stopping",
            kind: Kind::Response,
        }
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let stopping = req
            .rocket()
            .state::<App>()
            .is_some_and(|app| app.lifecycle.stopping());
        // A socket's 101 must keep its connection: it is the socket.
        if stopping && res.status().code != 101 {
            res.set_header(Header::new("Connection", "close"));
        }
    }
}
