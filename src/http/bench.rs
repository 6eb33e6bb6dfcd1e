//! Fixed answers the benchmark measures this server's own ceiling with (mounted only when
//! `bench_routes` is set): the same response type as a transcript, with no work behind it.

use crate::chat::Transcript;
use rocket::{get, routes, Route, State};

pub struct Fixed(pub Transcript);

impl Default for Fixed {
    /// 1000 lines exactly like those `bench/run` fills its 1000-message room with.
    fn default() -> Self {
        let text = (0..1000)
            .map(|i| {
                let user = i % 17;
                format!("[2026-11-22 00:00:00] user{user}: message {i}: the quick brown fox jumps over the lazy dog")
            })
            .collect::<Vec<_>>()
            .join("\n");
        Fixed(Transcript::from(text))
    }
}

pub fn routes() -> Vec<Route> {
    routes![fixed, hello]
}

/// The cheapest answer this server can give: the ceiling a 304 is measured against.
#[get("/hello")]
fn hello() -> &'static str {
    "hello"
}

#[get("/fixed")]
fn fixed(body: &State<Fixed>) -> Transcript {
    body.0.clone()
}
