//! One `info` line per request, and the request counters of `/metrics`.

use crate::metrics::METRICS;
use rocket::fairing::{Fairing, Info, Kind};
use rocket::{Data, Request, Response};
use std::time::Instant;

pub struct RequestLog;

#[rocket::async_trait]
impl Fairing for RequestLog {
    fn info(&self) -> Info {
        Info {
            name: "request log",
            kind: Kind::Request | Kind::Response,
        }
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut Data<'_>) {
        req.local_cache(Instant::now);
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        let started = req.local_cache(Instant::now);
        // The route's template, not the path: one series per route, however many rooms.
        let route = req.route().map_or("unmatched", |r| r.uri.path());
        METRICS
            .requests
            .with_label_values(&[
                route,
                req.method().as_str(),
                res.status().code.to_string().as_str(),
            ])
            .inc();
        METRICS
            .request_seconds
            .with_label_values(&[route])
            .observe(started.elapsed().as_secs_f64());
        tracing::info!(
            method = %req.method(),
            path = %req.uri(),
            status = res.status().code,
            micros = started.elapsed().as_micros() as u64,
            "request"
        );
    }
}
