//! The metrics registry, a leaf every layer may count into: requests by route and status,
//! open WebSockets, messages stored and delivered, events, and the state of the database,
//! the hub (Redis) and the file store. `/metrics` (in `http::ops`) renders it.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::LazyLock;

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub websockets_open: IntGauge,
    pub messages_stored: IntCounter,
    pub messages_delivered: IntCounter,
    pub relay_frames_dropped: IntCounter,
    pub events_published: IntCounterVec,
    pub connections_open: IntGauge,
    pub connections_cut: IntCounterVec,
    up: IntGaugeVec,
}

/// One set per process: counters are bumped from deep inside the message path, where
/// threading a handle through would add nothing.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Self {
        let registry =
            Registry::new_custom(Some("ferrochat".into()), None).expect("a valid metrics prefix");
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let request_seconds = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "Time to answer, by route")
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    10.0, 30.0,
                ]),
            &["route"],
        )
        .expect("valid metric");
        let websockets_open =
            IntGauge::new("websockets_open", "WebSockets open now").expect("valid metric");
        let messages_stored = IntCounter::new(
            "messages_stored_total",
            "Messages committed by this process",
        )
        .expect("valid metric");
        let messages_delivered = IntCounter::new(
            "messages_delivered_total",
            "Message frames sent to WebSockets by this process",
        )
        .expect("valid metric");
        let relay_frames_dropped = IntCounter::new(
            "webchat_frames_dropped_total",
            "Frames of the relay socket dropped as not a {text, type, ts} object",
        )
        .expect("valid metric");
        let events_published = IntCounterVec::new(
            Opts::new(
                "amqp_events_total",
                "Events for RabbitMQ, by outcome (published, dropped)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let connections_open = IntGauge::new(
            "connections_open",
            "Client connections the front door holds now",
        )
        .expect("valid metric");
        let connections_cut = IntCounterVec::new(
            Opts::new(
                "connections_cut_total",
                "Client connections the front door refused or cut, by reason (busy, address, \
                 header_timeout, idle, bad_header)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let up = IntGaugeVec::new(
            Opts::new(
                "up",
                "1 while the part (database, hub, file_store) answers, 0 while it does not",
            ),
            &["part", "kind"],
        )
        .expect("valid metric");
        for metric in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_seconds.clone()),
            Box::new(websockets_open.clone()),
            Box::new(messages_stored.clone()),
            Box::new(messages_delivered.clone()),
            Box::new(relay_frames_dropped.clone()),
            Box::new(events_published.clone()),
            Box::new(connections_open.clone()),
            Box::new(connections_cut.clone()),
            Box::new(up.clone()),
        ] {
            registry.register(metric).expect("metric names are unique");
        }
        Metrics {
            registry,
            requests,
            request_seconds,
            websockets_open,
            messages_stored,
            messages_delivered,
            relay_frames_dropped,
            events_published,
            connections_open,
            connections_cut,
            up,
        }
    }
}

impl Metrics {
    /// Records whether a part (`database`, `hub`, `file_store`) of a kind answers.
    pub fn set_up(&self, part: &str, kind: &str, up: bool) {
        self.up.with_label_values(&[part, kind]).set(i64::from(up));
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        match TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            Ok(()) => String::from_utf8_lossy(&out).into_owned(),
            Err(err) => format!("# metrics could not be encoded: {err}\n"),
        }
    }
}
