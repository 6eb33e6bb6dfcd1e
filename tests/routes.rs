//! Route tests: the whole server wired as `ferrochat::build` wires it, on a SQLite file of
//! the test's own, driven in process through Rocket's local client (`tests/app`: no port,
//! no process, no service).
//! They hold each mount's contract and error form; the real-process tests beside them
//! hold what needs real HTTP, sockets, replicas and outages.

mod app;

use app::TestApp;
use rocket::http::{ContentType, Status};
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
    assert_eq!(health["database"]["backend"], "sqlite");
    let res = client.get("/metrics").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    assert!(res.into_string().await.unwrap().contains("ferrochat_up"));
}
