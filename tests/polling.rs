//! Polling `GET /api/chat/<room>` where it needs a real `ferrochat` process restarted, on
//! the three databases: a fresh server, nothing cached, answers a room larger than a socket
//! replay's page whole on its first read. ETag and 304, `after`, `wait` (long-poll), JSON,
//! compression and the `transcript_max_messages` bound are in process, in
//! `tests/legacy_contract.rs`.

mod common;

use common::*;

on_every_backend!(a_fresh_servers_first_read_of_a_big_room_is_whole);

/// A room larger than a socket replay's page (500) is answered whole on a fresh server's
/// first read. (A room larger than `transcript_max_messages` answering its newest that
/// many: in `tests/legacy_contract.rs`.)
async fn a_fresh_servers_first_read_of_a_big_room_is_whole(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start_with(
        ServerOptions::new(&db.url).env("ROCKET_TRANSCRIPT_MAX_MESSAGES", "300"),
    )
    .await;
    let small = room("big-520");
    for i in 0..520 {
        post_ok(
            &server,
            &small,
            &[("username", "p"), ("msg", &format!("s{i:03}"))],
        )
        .await;
    }
    // A fresh server, nothing cached: its first read of a 520-message room is whole.
    server.stop();
    let again = Server::start(&db.url).await;
    let first = lines(&transcript(&again, &small).await);
    assert_eq!(first.len(), 520);
    assert!(first[0].ends_with("p: s000"), "{}", first[0]);
    again.stop();
    db.drop_db().await;
}
