//! Route tests: the whole server wired as `ferrochat::build` wires it, on a database of
//! the test's own (SQLite, or MariaDB or PostgreSQL: `tests/app`), driven in process
//! through Rocket's local client (no port, no process).
//! They hold each mount's contract and error form; the real-process tests beside them
//! hold what needs real HTTP, sockets, replicas and outages.

mod app;

use app::{assert_detail, unique, TestApp};
use rocket::http::{ContentType, Method, Status};
use serde_json::{json, Value};

async fn json_of(res: rocket::local::asynchronous::LocalResponse<'_>) -> Value {
    let text = res.into_string().await.unwrap_or_default();
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

#[rocket::async_test]
async fn the_legacy_chat_answers_as_the_flask_original() {
    let app = TestApp::new().await;
    let client = &app.client;
    let res = client.get("/api/chat/lobby").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(res.content_type(), Some(ContentType::Plain));
    assert_eq!(res.into_string().await.unwrap(), "");

    let res = client
        .post("/api/chat/lobby")
        .header(ContentType::Form)
        .body("username=ann&msg=hello")
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::NoContent);
    let text = client
        .get("/api/chat/lobby")
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    assert!(text.ends_with("] ann: hello"), "{text}");

    let json = json_of(client.get("/api/chat/lobby?format=json").dispatch().await).await;
    assert_eq!(json["room"], "lobby");
    assert_eq!(json["messages"][0]["text"], "hello");
    assert_eq!(json["messages"][0]["username"], "ann");
    assert_eq!(json["last_id"], json["messages"][0]["id"]);
}

#[rocket::async_test]
async fn legacy_errors_are_one_plain_line_and_api_errors_json() {
    let app = TestApp::new().await;
    let client = &app.client;
    let res = client
        .post("/api/chat/lobby")
        .header(ContentType::Form)
        .body("username=ann")
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::BadRequest);
    assert_eq!(res.into_string().await.unwrap(), "msg is required\n");

    let long = "x".repeat(65);
    let res = client.get(format!("/api/chat/{long}")).dispatch().await;
    assert_eq!(res.status(), Status::BadRequest);
    assert_eq!(
        res.into_string().await.unwrap(),
        "room name is longer than 64 characters\n"
    );
    let res = client.get("/api/chat/lobby?wait=soon").dispatch().await;
    assert_eq!(res.status(), Status::BadRequest);
    assert_eq!(res.content_type(), Some(ContentType::Plain));

    // The same kind of mistake on a ChatFlow route: {"detail"}.
    let res = client.get("/api/chat/messages/x").dispatch().await;
    assert_eq!(res.status(), Status::BadRequest);
    assert_eq!(
        json_of(res).await,
        json!({"detail": "a message id is a number"})
    );
    // Rocket's own 404s, in the form of the mount they fall under.
    let res = client.get("/api/nothing/here").dispatch().await;
    assert_eq!(res.status(), Status::NotFound);
    assert_eq!(json_of(res).await, json!({"detail": "not found"}));
    let res = client.get("/static/nothing.js").dispatch().await;
    assert_eq!(res.status(), Status::NotFound);
    assert_eq!(res.into_string().await.unwrap(), "not found\n");
}

#[rocket::async_test]
async fn rooms_and_messages_through_the_chatflow_api() {
    let app = TestApp::new().await;
    let client = &app.client;
    let res = client
        .post("/api/chat/rooms")
        .json(&json!({"name": "Dev Ops", "description": "d"}))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Created);
    assert_eq!(json_of(res).await["id"], "dev-ops");
    let res = client
        .post("/api/chat/rooms")
        .json(&json!({"id": "dev-ops"}))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Conflict);
    assert_eq!(
        json_of(res).await["detail"],
        "room 'dev-ops' already exists"
    );
    let res = client
        .post("/api/chat/rooms")
        .header(ContentType::JSON)
        .body("{not json")
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::BadRequest);

    let res = client
        .post("/api/chat/rooms/dev-ops/messages")
        .json(&json!({"content": "hi", "user_id": "u1"}))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Created);
    let posted = json_of(res).await;
    assert_eq!(posted["room_id"], "dev-ops");
    assert_eq!(posted["username"], "u1", "no name: the user id");
    assert_eq!(posted["content"], "hi");
    assert!(posted["created_at"].is_string());
    let id = posted["id"].as_i64().unwrap();

    let history = json_of(
        client
            .get("/api/chat/rooms/dev-ops/messages")
            .dispatch()
            .await,
    )
    .await;
    assert_eq!(history, json!([posted.clone()]));
    let one = json_of(
        client
            .get(format!("/api/chat/messages/{id}"))
            .dispatch()
            .await,
    )
    .await;
    assert_eq!(one, posted);
    // The legacy door sees the same row.
    let text = client
        .get("/api/chat/dev-ops")
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    assert!(text.ends_with("] u1: hi"), "{text}");

    let res = client
        .post("/api/chat/rooms/nowhere/messages")
        .json(&json!({"content": "hi"}))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::NotFound);
}

#[rocket::async_test]
async fn presence_notifications_and_health_answer() {
    let app = TestApp::new().await;
    let client = &app.client;
    let res = client
        .post("/api/presence/u1/heartbeat?username=Ann")
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    let online = json_of(client.get("/api/presence").dispatch().await).await;
    assert_eq!(online[0]["username"], "Ann");

    let res = client
        .post("/api/notifications")
        .json(&json!({"user_id": "u1", "title": "t", "body": "b"}))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Created);
    let count = json_of(
        client
            .get("/api/notifications/u1/unread-count")
            .dispatch()
            .await,
    )
    .await;
    assert_eq!(count["unread_count"], 1);

    let health = json_of(client.get("/health").dispatch().await).await;
    assert_eq!(health["status"], "ok");
    // SeaORM's name for the backend the test runs on.
    let backend = match app::backend() {
        app::db::Backend::Sqlite => "sqlite",
        app::db::Backend::MariaDb => "mysql",
        app::db::Backend::Postgres => "postgres",
    };
    assert_eq!(health["database"]["backend"], backend);
    let res = client.get("/metrics").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    assert!(res.into_string().await.unwrap().contains("ferrochat_up"));
}

/// A room's history: the newest page, paging back and forth, search (case, `%` and `_`
/// as plain characters), the bounds refused, and a room that does not exist.
#[rocket::async_test]
async fn history_pages_and_searches() {
    let app = TestApp::new().await;
    let who = app.anonymous();
    let room = unique("hist").replace('_', "-");
    for i in 1..=120 {
        let text = if i % 10 == 0 {
            format!("Deploy #{i} 100%_done")
        } else {
            format!("m{i}")
        };
        let (status, body) = app
            .post_form(&room, &[("username", "u"), ("msg", &text)])
            .await;
        assert_eq!(status, 204, "{body}");
    }
    let get = |q: String| {
        let (app, who) = (&app, &who);
        async move {
            let (status, body) = app.call(who, Method::Get, &q, None).await;
            assert_eq!(status, 200, "{q}: {body}");
            body.as_array().unwrap().clone()
        }
    };
    let contents = |rows: &[Value]| {
        rows.iter()
            .map(|r| r["content"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let base = format!("/api/chat/rooms/{room}/messages");

    // Default: the newest 50, oldest first.
    let newest = get(base.clone()).await;
    assert_eq!(newest.len(), 50);
    assert_eq!(newest[0]["content"], "m71");
    assert_eq!(newest[49]["content"], "Deploy #120 100%_done");
    let ids: Vec<i64> = newest.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(newest[0]["room_id"], room.as_str());
    assert_eq!(newest[0]["username"], "u");
    assert_eq!(newest[0]["message_type"], "text");
    assert_eq!(newest[0]["user_id"], Value::Null);
    assert!(
        chrono::DateTime::parse_from_rfc3339(newest[0]["created_at"].as_str().unwrap()).is_ok()
    );

    // Paging back with before=, then forward with after=.
    let older = get(format!("{base}?limit=30&before={}", ids[0])).await;
    assert_eq!(contents(&older).first().map(String::as_str), Some("m41"));
    assert_eq!(
        contents(&older).last().map(String::as_str),
        Some("Deploy #70 100%_done")
    );
    let first_id = get(format!("{base}?limit=200")).await[0]["id"]
        .as_i64()
        .unwrap();
    let forward = get(format!("{base}?limit=3&after={first_id}")).await;
    assert_eq!(contents(&forward), ["m2", "m3", "m4"]);
    assert_eq!(get(format!("{base}?limit=200")).await.len(), 120);
    assert_eq!(get(format!("{base}?limit=1")).await.len(), 1);

    // Search ignores case; % and _ are plain characters.
    let found = get(format!("{base}?q=deploy")).await;
    assert_eq!(found.len(), 12);
    assert_eq!(get(format!("{base}?q=100%25_DONE&limit=5")).await.len(), 5);
    assert_eq!(get(format!("{base}?q=%25")).await.len(), 12);
    assert!(get(format!("{base}?q=_x")).await.is_empty());

    for bad in ["limit=0", "limit=201", "limit=x", "before=abc", "after=1.5"] {
        let answer = app
            .call(&who, Method::Get, &format!("{base}?{bad}"), None)
            .await;
        assert_eq!(answer.0, 400, "{bad}: {answer:?}");
        assert!(answer.1["detail"].is_string());
    }
    assert_detail(
        &app.call(&who, Method::Get, "/api/chat/rooms/nowhere/messages", None)
            .await,
        404,
        "does not exist",
    );
}

/// Bad input to the room API gets a 4xx with a one-line `detail`, and stores nothing; the
/// Flask original's routes keep their plain-text reasons.
#[rocket::async_test]
async fn bad_input_gets_a_detail() {
    let app = TestApp::new().await;
    let who = app.anonymous();
    let post = |path: &'static str, body: &'static str| {
        let (app, who) = (&app, &who);
        async move {
            app.send(who, Method::Post, path, ContentType::JSON, body)
                .await
        }
    };
    assert_detail(
        &post("/api/chat/rooms", "{\"id\": ").await,
        400,
        "invalid JSON",
    );
    assert_detail(&post("/api/chat/rooms", "{}").await, 400, "required");
    assert_detail(
        &post("/api/chat/rooms", "{\"id\": \"a/b\"}").await,
        400,
        "'/'",
    );
    assert_detail(
        &post("/api/chat/rooms", "{\"id\": \"rooms\"}").await,
        400,
        "reserved",
    );
    assert_detail(
        &post("/api/chat/rooms/general/messages", "{\"content\": \"  \"}").await,
        400,
        "content",
    );
    assert_detail(
        &post("/api/chat/rooms/general/messages", "[1]").await,
        400,
        "invalid JSON",
    );
    assert_detail(
        &post(
            "/api/chat/rooms/general/messages",
            "{\"content\": \"x\", \"message_type\": \"file\"}",
        )
        .await,
        400,
        "file_url",
    );
    assert_detail(
        &post("/api/chat/rooms/nowhere/messages", "{\"content\": \"x\"}").await,
        404,
        "does not exist",
    );
    assert_detail(
        &app.call(&who, Method::Get, "/api/chat/messages/abc", None)
            .await,
        400,
        "number",
    );
    assert_detail(
        &app.call(&who, Method::Get, "/api/chat/rooms/general/nothing", None)
            .await,
        404,
        "not found",
    );
    // Nothing was stored by any of them.
    let (_, history) = app
        .call(&who, Method::Get, "/api/chat/rooms/general/messages", None)
        .await;
    assert_eq!(history, json!([]));
    // The legacy routes keep their plain-text reasons.
    let (status, body) = app.post_form("general", &[("username", "x")]).await;
    assert_eq!((status, body.as_str()), (400, "msg is required\n"));
}
