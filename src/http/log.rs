//! One `info` line per request, and the request counters of `/metrics`. The line's path
//! has its secrets redacted: a log is read by more people, and kept longer, than a token
//! lives.

use crate::metrics::METRICS;
use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::RawStr;
use rocket::{Data, Request, Response};
use std::time::Instant;

/// Query parameters (by name, any case) whose values are credentials: a socket's
/// `?token=`, and the names other clients give a credential in a URL.
const SECRET_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "id_token",
    "refresh_token",
    "jwt",
    "key",
    "api_key",
    "apikey",
    "secret",
    "password",
    "signature",
    "sig",
];

/// Path segments that are credentials: (a segment's name, how many segments after it the
/// secret is). `/hooks/<id>/<secret>`: an incoming hook is authenticated by its URL alone.
const SECRET_SEGMENTS: &[(&str, usize)] = &[("hooks", 2)];

const REDACTED: &str = "<redacted>";

/// `path` and `query` (both as sent, percent-encoded) with every secret in them replaced
/// by `<redacted>`. Names are compared decoded, as Rocket reads them, so `tok%65n=` is
/// `token=` here too.
pub fn redacted(path: &str, query: Option<&str>) -> String {
    let segments: Vec<&str> = path.split('/').collect();
    // Counted over the segments that are not empty, as Rocket routes them: `/hooks//1/s`
    // reaches the hook route too.
    let filled: Vec<usize> = (0..segments.len())
        .filter(|&i| !segments[i].is_empty())
        .collect();
    let secret_at = |i: usize| {
        let Some(place) = filled.iter().position(|&f| f == i) else {
            return false;
        };
        SECRET_SEGMENTS.iter().any(|(name, after)| {
            place
                .checked_sub(*after)
                .and_then(|at| segments.get(filled[at]))
                .is_some_and(|s| RawStr::new(s).url_decode_lossy().eq_ignore_ascii_case(name))
        })
    };
    let mut out = segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if secret_at(i) && !s.is_empty() {
                REDACTED
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    if let Some(query) = query {
        let fields = query.split(['&', ';']).map(|field| {
            let name = field.split('=').next().unwrap_or(field);
            let spaced = name.replace('+', " ");
            let decoded = RawStr::new(&spaced).url_decode_lossy();
            // `token[]` or `token.x` is a `token` to a form parser.
            let key = decoded.split(['[', '.']).next().unwrap_or_default();
            let secret = SECRET_PARAMS.iter().any(|p| key.eq_ignore_ascii_case(p));
            if secret && field.contains('=') {
                format!("{name}={REDACTED}")
            } else {
                field.to_string()
            }
        });
        out.push('?');
        out.push_str(&fields.collect::<Vec<_>>().join("&"));
    }
    out
}

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
            path = %redacted(req.uri().path().as_str(), req.uri().query().map(|q| q.as_str())),
            status = res.status().code,
            micros = started.elapsed().as_micros() as u64,
            "request"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn secrets_in_a_path_are_redacted() {
        assert_eq!(redacted("/ws/general/u1", None), "/ws/general/u1");
        assert_eq!(
            redacted("/ws/general/u1", Some("token=eyJ.a.b&since=4")),
            "/ws/general/u1?token=<redacted>&since=4"
        );
        assert_eq!(
            redacted("/ws", Some("since=1&TOKEN=x&tok%65n=y&token%5B%5D=z;api_key=k")),
            "/ws?since=1&TOKEN=<redacted>&tok%65n=<redacted>&token%5B%5D=<redacted>&api_key=<redacted>"
        );
        // A name alone carries no value; other parameters stay as they were.
        assert_eq!(
            redacted("/x", Some("token&q=token%3Da")),
            "/x?token&q=token%3Da"
        );
        assert_eq!(redacted("/hooks//42/s3cr3t", None), "/hooks//42/<redacted>");
        assert_eq!(redacted("/hooks/42//s3cr3t", None), "/hooks/42//<redacted>");
        assert_eq!(
            redacted("/hooks/42/s3cr3t", Some("x=1")),
            "/hooks/42/<redacted>?x=1"
        );
        assert_eq!(
            redacted("/api/hooks/42/s3cr3t/extra", None),
            "/api/hooks/42/<redacted>/extra"
        );
        assert_eq!(redacted("/hooks/42", None), "/hooks/42");
        assert_eq!(redacted("/hooks/42/", None), "/hooks/42/");
        assert_eq!(redacted("/rooms/hooks", None), "/rooms/hooks");
    }
}
