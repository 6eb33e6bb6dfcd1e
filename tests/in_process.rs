//! The conversation contracts in process (`tests/app`): who may edit, react, reply, mark a
//! room read, list what is unread, search and page a room's changes, as each persona
//! (anonymous, a guest naming itself, a user, another user, a stranger to a private room,
//! the admin), in open and in required mode. No socket, no service: `scripts/test --fast`
//! runs these. What the sockets are told, on every replica and database, is in
//! `tests/conversations.rs`, `tests/read_and_search.rs` and `tests/changes.rs`.

mod app;

use app::{unique, Persona, TestApp};
use rocket::http::Method;
use serde_json::{json, Value};

async fn make_room(app: &TestApp, owner: &Persona, private: bool) -> String {
    let id = unique("room");
    let (status, body) = app
        .call(
            owner,
            Method::Post,
            "/api/chat/rooms",
            Some(json!({"id": id, "private": private})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    id
}

async fn say(app: &TestApp, who: &Persona, room: &str, body: Value) -> (u16, Value) {
    let path = format!("/api/chat/rooms/{room}/messages");
    app.call(who, Method::Post, &path, Some(body)).await
}

async fn posted(app: &TestApp, who: &Persona, room: &str, content: &str) -> i64 {
    let (status, body) = say(app, who, room, json!({ "content": content })).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}

/// Open mode: editing is its author's (signed in) or the admin's; reacting is anyone's who
/// says who they are; a reply answers a message of its own room; read marks, unread counts,
/// search and the change log answer each persona as the README says.
#[rocket::async_test]
async fn every_persona_gets_the_conversation_contract() {
    let app = TestApp::new().await;
    let (ann, bob, anonymous, admin) = (
        app.signed_in("ann").await,
        app.signed_in("bob").await,
        app.anonymous(),
        app.admin(),
    );
    let room = make_room(&app, &ann, false).await;
    let other = make_room(&app, &bob, false).await;
    let first = posted(&app, &ann, &room, "the plan, v1").await;
    let elsewhere = posted(&app, &bob, &other, "unrelated").await;

    // Edit.
    let edit = |who: Persona, text: &'static str| {
        let app = &app;
        async move {
            let path = format!("/api/chat/messages/{first}");
            app.call(&who, Method::Patch, &path, Some(json!({ "content": text })))
                .await
        }
    };
    assert_eq!(edit(anonymous.clone(), "mine").await.0, 401);
    assert_eq!(edit(bob.clone(), "mine").await.0, 403);
    assert_eq!(edit(ann.clone(), "").await.0, 400);
    let (status, edited) = edit(ann.clone(), "the plan, v2").await;
    assert_eq!(
        (status, edited["content"].as_str()),
        (200, Some("the plan, v2"))
    );
    assert!(edited["edited_at"].is_string());
    assert_eq!(edit(admin.clone(), "the plan, v3").await.0, 200);

    // React.
    let react = |who: Persona, method: Method, query: &'static str| {
        let app = &app;
        async move {
            let path = format!("/api/chat/messages/{first}/reactions/%F0%9F%91%8D{query}");
            app.call(&who, method, &path, None).await
        }
    };
    assert_eq!(react(anonymous.clone(), Method::Put, "").await.0, 400);
    assert_eq!(
        react(anonymous.clone(), Method::Put, "?user_id=guest-1")
            .await
            .0,
        200
    );
    assert_eq!(
        react(anonymous.clone(), Method::Put, "?user_id=").await.0,
        400
    );
    let (status, mine) = react(bob.clone(), Method::Put, "").await;
    assert_eq!((status, mine["count"].as_u64()), (200, Some(2)));
    assert_eq!(react(bob.clone(), Method::Delete, "").await.0, 204);
    let path = format!("/api/chat/messages/{first}?user_id=guest-1");
    let (_, message) = app.call(&anonymous, Method::Get, &path, None).await;
    assert_eq!(
        message["reactions"],
        json!([{"emoji": "👍", "count": 1, "me": true}])
    );

    // Reply.
    let (status, _) = say(
        &app,
        &bob,
        &room,
        json!({"content": "no", "reply_to": elsewhere}),
    )
    .await;
    assert_eq!(status, 400, "another room's message");
    let (status, reply) = say(
        &app,
        &bob,
        &room,
        json!({"content": "ok", "reply_to": first}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(reply["reply_preview"]["content"], "the plan, v3");
    let reply_id = reply["id"].as_i64().unwrap();

    // Read marks and unread counts.
    let mark = |who: Persona, body: Value| {
        let app = &app;
        let path = format!("/api/chat/rooms/{room}/read");
        async move { app.call(&who, Method::Post, &path, Some(body)).await.0 }
    };
    assert_eq!(
        mark(anonymous.clone(), json!({"last_read_id": first})).await,
        400
    );
    assert_eq!(mark(ann.clone(), json!({"last_read_id": -5})).await, 400);
    assert_eq!(mark(ann.clone(), json!({"last_read_id": first})).await, 204);
    let (_, unread) = app.call(&ann, Method::Get, "/api/chat/unread", None).await;
    let line = unread
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["room_id"] == room)
        .cloned();
    assert_eq!(
        line,
        Some(
            json!({"room_id": room, "last_read_id": first, "unread": 1, "mentions": 0,
            "capped": false})
        )
    );
    let (status, _) = app
        .call(
            &ann,
            Method::Get,
            "/api/chat/unread?user_id=someone-else",
            None,
        )
        .await;
    assert_eq!(status, 403);

    // Search.
    let (status, found) = app
        .call(&anonymous, Method::Get, "/api/search?q=plan", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(found[0]["id"], first);
    assert_eq!(found[0]["snippet"], "the <mark>plan</mark>, v3");
    for bad in ["/api/search", "/api/search?q=a", "/api/search?q=ok&limit=0"] {
        assert_eq!(app.call(&ann, Method::Get, bad, None).await.0, 400, "{bad}");
    }

    // The change log: every change of the room, in one order.
    let path = format!("/api/chat/rooms/{room}/changes");
    let (status, log) = app.call(&anonymous, Method::Get, &path, None).await;
    assert_eq!(status, 200);
    let kinds: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "message",
            "message_updated",
            "message_updated",
            "reaction_added",
            "reaction_added",
            "reaction_removed",
            "message"
        ]
    );
    let seqs: Vec<i64> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(log[6]["id"], reply_id);
    assert_eq!(seqs[0], first << 20);
}

/// A private room is a missing room to a stranger at every new door (404, the same as a
/// room that does not exist), and search and unread counts never show it.
#[rocket::async_test]
async fn a_private_room_is_missing_to_a_stranger_at_every_new_door() {
    let app = TestApp::new().await;
    let (olga, eve) = (app.signed_in("olga").await, app.signed_in("eve").await);
    let room = make_room(&app, &olga, true).await;
    let id = posted(&app, &olga, &room, "secret plans").await;
    let doors = [
        (
            Method::Patch,
            format!("/api/chat/messages/{id}"),
            Some(json!({"content": "x"})),
        ),
        (
            Method::Put,
            format!("/api/chat/messages/{id}/reactions/%F0%9F%91%8D"),
            None,
        ),
        (
            Method::Post,
            format!("/api/chat/rooms/{room}/read"),
            Some(json!({"last_read_id": id})),
        ),
        (Method::Get, format!("/api/chat/rooms/{room}/changes"), None),
        (Method::Get, format!("/api/chat/messages/{id}"), None),
    ];
    for (method, path, body) in doors {
        for who in [&eve, &app.anonymous()] {
            let (status, answer) = app.call(who, method, &path, body.clone()).await;
            assert_eq!(status, 404, "{method} {path}: {answer}");
        }
    }
    let (_, found) = app
        .call(&eve, Method::Get, "/api/search?q=secret", None)
        .await;
    assert_eq!(found, json!([]));
    let (_, found) = app
        .call(&olga, Method::Get, "/api/search?q=secret", None)
        .await;
    assert_eq!(found[0]["id"], id);
    let (_, unread) = app.call(&eve, Method::Get, "/api/chat/unread", None).await;
    assert!(unread
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["room_id"] != room));
}

/// Required mode: without a token every new door answers 401 before anything else; a
/// signed-in user is served.
#[rocket::async_test]
async fn required_mode_asks_every_new_door_for_an_identity() {
    let app = TestApp::required().await;
    let ann = app.signed_in("ann").await;
    let room = make_room(&app, &ann, false).await;
    let id = posted(&app, &ann, &room, "hello there").await;
    let anonymous = app.anonymous();
    for (method, path) in [
        (Method::Get, "/api/search?q=hello".to_string()),
        (Method::Get, "/api/chat/unread".to_string()),
        (Method::Post, format!("/api/chat/rooms/{room}/read")),
        (Method::Get, format!("/api/chat/rooms/{room}/changes")),
        (
            Method::Put,
            format!("/api/chat/messages/{id}/reactions/%F0%9F%91%8D"),
        ),
    ] {
        let body = (method == Method::Post).then(|| json!({"last_read_id": id}));
        let (status, answer) = app.call(&anonymous, method, &path, body.clone()).await;
        assert_eq!(status, 401, "{method} {path}: {answer}");
        let (status, answer) = app.call(&ann, method, &path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {answer}"
        );
    }
}

/// The directory the page starts a direct conversation from: the signed in (and the admin)
/// look accounts up by the start of a name; a guest may not; a bad `q` is 400; with limits
/// on, a flood of lookups is 429. A direct conversation is named by its two people.
#[rocket::async_test]
async fn people_are_found_by_name_by_the_signed_in_only() {
    // Required mode, whose abuse limits are on: `searches_per_minute` is 30.
    let app = TestApp::required().await;
    let (ann, anonymous, admin) = (app.signed_in("ann").await, app.anonymous(), app.admin());
    let benedict = app.signed_in("Benedict").await;
    let ben = app.signed_in("ben").await;
    let bert = app.signed_in("bert_x").await;

    let (status, found) = app
        .call(&ann, Method::Get, "/api/auth/users?q=BE", None)
        .await;
    assert_eq!(status, 200, "{found}");
    let names: Vec<&str> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    // By name, ignoring case (each persona's name carries a suffix of the test's own).
    assert_eq!(
        names,
        [&ben.username, &benedict.username, &bert.username].map(String::as_str)
    );
    // `_` and `%` are themselves, not wildcards.
    let (_, found) = app
        .call(&ann, Method::Get, "/api/auth/users?q=b_r", None)
        .await;
    assert_eq!(found, json!([]));
    let (status, _) = app
        .call(&admin, Method::Get, "/api/auth/users?q=ann", None)
        .await;
    assert_eq!(status, 200);
    let (status, body) = app
        .call(&anonymous, Method::Get, "/api/auth/users?q=ann", None)
        .await;
    assert_eq!(status, 401, "{body}");
    for q in ["", "%20", &"x".repeat(65)] {
        let (status, body) = app
            .call(&ann, Method::Get, &format!("/api/auth/users?q={q}"), None)
            .await;
        assert_eq!(status, 400, "q={q}: {body}");
    }
    let mut statuses = Vec::new();
    // Counted per client address and user: the 31st lookup in a minute is one too many.
    let from = "192.0.2.1:4000".parse().unwrap();
    for _ in 0..31 {
        let path = "/api/auth/users?q=ben";
        statuses.push(app.call_from(from, &ann, Method::Get, path, None).await.0);
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");

    let id = benedict.user_id.clone().unwrap();
    let (status, room) = app
        .call(&ann, Method::Post, &format!("/api/chat/direct/{id}"), None)
        .await;
    assert_eq!(status, 201, "{room}");
    let name = room["name"].as_str().unwrap();
    let (a, b) = (&ann.username, &benedict.username);
    assert!(
        name == format!("{a}, {b}") || name == format!("{b}, {a}"),
        "a direct conversation is named {name:?}"
    );
}

/// The page keeps to its own origin: a Content-Security-Policy that allows nothing else,
/// and no script of another site in it.
#[rocket::async_test]
async fn the_page_loads_nothing_from_another_origin() {
    let app = TestApp::new().await;
    let res = app.client.get("/devops").dispatch().await;
    assert_eq!(res.status().code, 200);
    let policy = res
        .headers()
        .get_one("Content-Security-Policy")
        .unwrap_or_default()
        .to_string();
    assert!(policy.contains("default-src 'self'") && policy.contains("script-src 'self'"));
    let html = res.into_string().await.unwrap_or_default();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
}

/// Every bounded query parameter `/openapi.json` documents is the server's own: taken at
/// its bounds, and refused one past them with a 400 whose reason names it (never quietly
/// read as absent), on every GET route that has one. The document and the parser are one
/// definition (`http::params`); this holds them to each other through the real routes.
#[rocket::async_test]
async fn the_documented_query_bounds_are_the_ones_the_server_keeps() {
    let app = TestApp::new().await;
    let room = make_room(&app, &app.anonymous(), false).await;
    let user = unique("someone");
    let doc = serde_json::to_value(ferrochat::http::openapi::document()).unwrap();
    let mut checked = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        // A socket without its upgrade is handed on to other routes: there is no query to
        // check there over plain HTTP (`tests/websocket.rs` does).
        let Some(get) = item.get("get").filter(|_| !path.starts_with("/ws")) else {
            continue;
        };
        let url = path
            .replace("{room}", &room)
            .replace("{room_id}", &room)
            .replace("{id}", &room)
            .replace("{user_id}", &user);
        let params: Vec<&Value> = get["parameters"].as_array().into_iter().flatten().collect();
        for param in &params {
            if param["in"] != "query" {
                continue;
            }
            let name = param["name"].as_str().unwrap();
            // What the route needs besides the parameter tried (a search's words).
            let required: String = params
                .iter()
                .filter(|p| p["in"] == "query" && p["required"] == true && p["name"] != name)
                .map(|p| format!("{}=hello&", p["name"].as_str().unwrap()))
                .collect();
            let url = format!("{url}?{required}");
            let schema = &param["schema"];
            let mut refused = Vec::new();
            let mut taken = Vec::new();
            if let Some(min) = schema["minimum"].as_i64() {
                refused.push((min - 1).to_string());
                taken.push(min.to_string());
            }
            if let Some(max) = schema["maximum"].as_f64() {
                refused.push(format!("{}", max + 1.0));
                // A poll held `wait` seconds would hold the test as long.
                if name != "wait" {
                    taken.push(format!("{max}"));
                }
            }
            if let Some(words) = schema["enum"].as_array() {
                refused.push("none-of-these".into());
                taken.extend(words.iter().map(|w| w.as_str().unwrap().to_string()));
            }
            if let Some(max) = schema["maxLength"].as_u64() {
                refused.push("a".repeat(max as usize + 1));
                taken.push("a".repeat(max as usize));
            }
            if let Some(min) = schema["minLength"].as_u64().filter(|min| *min > 1) {
                refused.push("a".repeat(min as usize - 1));
                taken.push("a".repeat(min as usize));
            }
            if schema["type"] == "boolean" {
                refused.push("maybe".into());
                taken.extend(["true".into(), "false".into()]);
            }
            if refused.is_empty() {
                continue;
            }
            for value in &refused {
                let (status, text) = get_raw(&app, &format!("{url}{name}={value}")).await;
                assert_eq!(status, 400, "{url}{name}={value}: {text}");
                assert!(text.contains(name), "{url}{name}={value}: {text}");
            }
            // A stream that opens stays open: its refusals are what can be read here.
            if !path.ends_with("/events") {
                for value in &taken {
                    let (status, text) = get_raw(&app, &format!("{url}{name}={value}")).await;
                    assert_eq!(status, 200, "{url}{name}={value}: {text}");
                }
            }
            checked.push(format!("{path}?{name}"));
        }
    }
    // The routes this was written with: the test cannot pass by finding no bounds at all.
    for expected in [
        "/api/chat/{room}?after",
        "/api/chat/{room}?wait",
        "/api/chat/{room}?format",
        "/api/chat/rooms/{id}/messages?limit",
        "/api/chat/rooms/{id}/messages?before",
        "/api/chat/rooms/{id}/changes?limit",
        "/api/chat/rooms/{id}/events?seq",
        "/api/search?limit",
        "/api/files?limit",
        "/api/notifications/{user_id}?unread_only",
        "/messages?minutes",
        "/api/chat/rooms/{id}/messages?q",
        "/api/search?q",
    ] {
        assert!(
            checked.iter().any(|c| c == expected),
            "{expected} not checked: {checked:?}"
        );
    }
}

/// A GET as nobody in particular, from an address (the event stream counts its client's
/// streams): the status and the body as text (the Flask original's route answers plain
/// text).
async fn get_raw(app: &TestApp, path: &str) -> (u16, String) {
    let from: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let res = app
        .client
        .get(path.to_string())
        .remote(from)
        .dispatch()
        .await;
    let status = res.status().code;
    (status, res.into_string().await.unwrap_or_default())
}

/// What each JSON route writes is what `/openapi.json` says it writes: every answer read
/// here (a history with an edit, a reply and a reaction in it; one message; the Flask
/// original's JSON transcript; the relay's history; rooms, search hits, unread counts,
/// notifications, members, presence) is valid against its route's schema, with no property
/// the schema does not name. Several schemas describe a writer that is not their own type
/// (`MessageJson` writes the messages), so this is what holds each to its writer.
#[rocket::async_test]
async fn every_answer_is_what_the_document_says_it_is() {
    let app = TestApp::new().await;
    let ann = app.signed_in("ann").await;
    let bob = app.signed_in("bob").await;
    let room = make_room(&app, &ann, true).await;
    let (status, body) = app
        .call(
            &ann,
            Method::Post,
            &format!("/api/chat/rooms/{room}/members"),
            Some(json!({"user_id": bob.user_id})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let first = posted(&app, &ann, &room, "hello everyone").await;
    let (status, body) = say(
        &app,
        &bob,
        &room,
        json!({"content": format!("hello @{}", ann.username), "reply_to": first}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let reply = body["id"].as_i64().unwrap();
    let reacted = format!("/api/chat/messages/{first}/reactions/%F0%9F%91%8D");
    assert_eq!(app.call(&bob, Method::Put, &reacted, None).await.0, 200);
    let edit = format!("/api/chat/messages/{reply}");
    let (status, body) = app
        .call(
            &bob,
            Method::Patch,
            &edit,
            Some(json!({"content": "hello again"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The relay's room (`webchat_room`, "general"), through the Flask original's form.
    let res = app
        .client
        .post("/api/chat/general")
        .header(rocket::http::ContentType::Form)
        .body("username=carol&msg=hi+there")
        .dispatch()
        .await;
    assert_eq!(res.status().code, 204);
    let read = format!("/api/chat/rooms/{room}/read");
    let (status, body) = app
        .call(
            &ann,
            Method::Post,
            &read,
            Some(json!({"last_read_id": first})),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    // The mention's notification is written after the post is answered: wait for it.
    let mentions = format!("/api/notifications/{}", ann.user_id.as_deref().unwrap());
    let mut waited = 0;
    while app.call(&ann, Method::Get, &mentions, None).await.1 == json!([]) {
        assert!(waited < 100, "the mention was never notified");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waited += 1;
    }

    let doc = serde_json::to_value(ferrochat::http::openapi::document()).unwrap();
    let ann_id = ann.user_id.clone().unwrap();
    for (who, template, path) in [
        (&ann, "/api/chat/rooms", "/api/chat/rooms".to_string()),
        (
            &ann,
            "/api/chat/rooms/{id}",
            format!("/api/chat/rooms/{room}"),
        ),
        (
            &ann,
            "/api/chat/rooms/{id}/messages",
            format!("/api/chat/rooms/{room}/messages"),
        ),
        (
            &ann,
            "/api/chat/rooms/{id}/members",
            format!("/api/chat/rooms/{room}/members"),
        ),
        (
            &ann,
            "/api/chat/messages/{id}",
            format!("/api/chat/messages/{reply}"),
        ),
        (
            &ann,
            "/api/chat/messages/{id}",
            format!("/api/chat/messages/{first}"),
        ),
        (
            &ann,
            "/api/chat/{room}",
            format!("/api/chat/{room}?format=json"),
        ),
        (&ann, "/api/chat/unread", "/api/chat/unread".to_string()),
        (&ann, "/api/search", "/api/search?q=hello".to_string()),
        (
            &ann,
            "/api/notifications/{user_id}",
            format!("/api/notifications/{ann_id}"),
        ),
        (
            &ann,
            "/api/presence/{user_id}",
            format!("/api/presence/{ann_id}"),
        ),
        (&ann, "/messages", "/messages".to_string()),
    ] {
        let (status, answer) = app.call(who, Method::Get, &path, None).await;
        assert_eq!(status, 200, "{path}: {answer}");
        let schema = strict(
            &doc,
            &doc["paths"][template]["get"]["responses"]["200"]["content"]["application/json"]
                ["schema"],
        );
        assert!(!schema["components"].is_null(), "{template}: no schema");
        let validator = jsonschema::validator_for(&schema).expect("a schema");
        let errors: Vec<String> = validator
            .iter_errors(&answer)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{path} is not as documented: {errors:?}\n{answer:#}"
        );
        // Something was there to check: an empty list agrees with any schema.
        assert!(
            answer.as_array().is_none_or(|a| !a.is_empty()),
            "{path}: empty"
        );
        let inner = answer.get("messages").and_then(Value::as_array);
        assert!(inner.is_none_or(|m| !m.is_empty()), "{path}: no messages");
    }
}

/// A route's answer schema with the document's components beside it (for its `$ref`s), and
/// every object in it closed: a property the schema does not name is an error.
fn strict(doc: &Value, schema: &Value) -> Value {
    fn close(value: &mut Value) {
        match value {
            Value::Object(map) => {
                if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                    map.insert("additionalProperties".into(), Value::Bool(false));
                }
                map.values_mut().for_each(close);
            }
            Value::Array(items) => items.iter_mut().for_each(close),
            _ => {}
        }
    }
    let mut schema = schema.clone();
    if let Value::Object(map) = &mut schema {
        map.insert("components".into(), doc["components"].clone());
    }
    close(&mut schema);
    schema
}

/// A `redis_ca_file` the server could not use stops its start with a one-line reason,
/// rather than leaving the hub to fail later with less said: one with a plain `redis://`
/// URL or with none (it would be ignored, and the link not encrypted), one with no PEM
/// certificate in it, one that is not there.
#[rocket::async_test]
async fn a_redis_ca_file_that_cannot_be_used_stops_the_start_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("ca.pem");
    std::fs::write(
        &pem,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let der = dir.path().join("ca.der");
    std::fs::write(&der, [0x30u8, 0x82, 0x01, 0x0a]).unwrap();
    let missing = dir.path().join("nowhere.pem");
    let path = |p: &std::path::Path| p.display().to_string();
    for (redis_url, ca, reason) in [
        (
            Some("redis://127.0.0.1:6379"),
            path(&pem),
            "is for a rediss:// redis_url",
        ),
        (None, path(&pem), "is for a rediss:// redis_url"),
        (
            Some("rediss://127.0.0.1:6380"),
            path(&der),
            "holds no PEM certificate",
        ),
        (
            Some("rediss://127.0.0.1:6380"),
            path(&missing),
            "nowhere.pem",
        ),
    ] {
        let url = format!("sqlite://{}/chat.db", dir.path().display());
        let mut figment = ferrochat::config::figment()
            .merge(("database_url", url))
            .merge(("files_dir", path(&dir.path().join("files"))))
            .merge(("redis_ca_file", ca.clone()));
        if let Some(redis_url) = redis_url {
            figment = figment.merge(("redis_url", redis_url));
        }
        let err = match ferrochat::build_from(figment).await {
            Ok(_) => panic!("started with redis_ca_file {ca} and redis_url {redis_url:?}"),
            Err(err) => err.to_string(),
        };
        assert!(
            err.contains("redis_ca_file") && err.contains(reason),
            "{ca}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}
