//! The Flask original's contract where it needs a real `ferrochat` process restarted on
//! its database, on SQLite, MariaDB and PostgreSQL: what a fresh server reads back from the
//! database (unicode as written; 20 concurrent writers x 25 posts, all 500 present once,
//! each writer's in order, also one INSERT per row as on MySQL) and a restart that keeps
//! the data. The contract itself (`GET` and `POST /api/chat/<room>`, the page and
//! `/health`) is in process, in `tests/legacy_contract.rs`.

mod common;

use common::*;

on_every_backend!(
    unicode_round_trips_through_the_database,
    concurrent_writes_survive_a_restart,
    restart_keeps_the_data,
);

/// Names, messages and a room name in many scripts, read back from the database itself,
/// through a second server process. (As the first server answers them: in
/// `tests/legacy_contract.rs`.)
async fn unicode_round_trips_through_the_database(backend: Backend) {
    let db = TestDb::create(backend).await;
    let server = Server::start(&db.url).await;
    let room = format!("{}-café-☕-房间", room("u"));
    let cases = UNICODE_CASES;
    for (user, msg) in cases {
        post_ok(&server, &room, &[("username", user), ("msg", msg)]).await;
    }
    let expected: Vec<String> = cases.iter().map(|(u, m)| format!("{u}: {m}")).collect();
    // From the database itself, through a second server process.
    server.stop();
    let server = Server::start(&db.url).await;
    assert_eq!(lines(&transcript(&server, &room).await), expected);
    db.drop_db().await;
}

async fn concurrent_writes_survive_a_restart(backend: Backend) {
    concurrent_writers(backend, true).await
}

/// The path MySQL 8 takes (no `RETURNING`), on MariaDB.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writes_one_insert_per_row_survive_a_restart() {
    concurrent_writers(Backend::MariaDb, false).await
}

/// 20 writers x 25 posts at once over real HTTP, then a fresh server on the database: all
/// 500 there, once each, each writer's in its order. (The first server's answer, with a
/// reader polling meanwhile: in `tests/legacy_contract.rs`.)
async fn concurrent_writers(backend: Backend, returning: bool) {
    let db = TestDb::create(backend).await;
    let options =
        ServerOptions::new(&db.url).env("ROCKET_DB_INSERT_RETURNING", &returning.to_string());
    let server = Server::start_with(options).await;
    let room = room("busy");
    let mut writers = Vec::new();
    for w in 0..20 {
        let url = format!("{}/api/chat/{room}", server.url);
        writers.push(tokio::spawn(async move {
            let client = client();
            for i in 0..25 {
                let res = client
                    .post(&url)
                    .form(&[("username", format!("w{w}")), ("msg", format!("{i}"))])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 204);
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    // The database has them all, as the cache had (a fresh server reads it).
    server.stop();
    let server = Server::start(&db.url).await;
    let text = transcript(&server, &room).await;
    assert_every_writer_in_order(&lines(&text), 20, 25);
    db.drop_db().await;
}

async fn restart_keeps_the_data(backend: Backend) {
    let db = TestDb::create(backend).await;
    let room = room("restart");
    let server = Server::start(&db.url).await;
    post_ok(&server, &room, &[("username", "a"), ("msg", "before")]).await;
    let before = transcript(&server, &room).await;
    server.stop();
    let server = Server::start(&db.url).await;
    assert_eq!(transcript(&server, &room).await, before);
    post_ok(&server, &room, &[("username", "a"), ("msg", "after")]).await;
    assert_eq!(
        lines(&transcript(&server, &room).await),
        ["a: before", "a: after"]
    );
    db.drop_db().await;
}
