//! `/openapi.json` documents every route the server mounts; `/docs` works with no network;
//! `/metrics` counts what happens.

mod common;

use common::*;
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

/// Every route Rocket mounts, but the page and its assets, is in the document, by method.
#[tokio::test(flavor = "multi_thread")]
async fn the_document_lists_every_route() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var(
        "DATABASE_URL",
        format!("sqlite://{}/d.db?mode=rwc", dir.path().display()),
    );
    std::env::set_var("ROCKET_FILES_DIR", dir.path().join("files"));
    let rocket = ferrochat::build().await.expect("build");
    let doc = serde_json::to_value(ferrochat::http::openapi::document()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let mut checked = 0;
    for route in rocket.routes() {
        let path = route.uri.path().to_string();
        let page = path == "/"
            || path == "/<room>"
            || path.starts_with("/static")
            || path.starts_with("/docs")
            || path == "/favicon.ico"
            || path == "/openapi.json";
        if page {
            continue;
        }
        // `/a/<b>` is `/a/{b}` in OpenAPI.
        let documented: String = path.replace('<', "{").replace('>', "}");
        let method = route.method.as_str().to_lowercase();
        assert!(
            paths
                .get(&documented)
                .and_then(|p| p.get(&method))
                .is_some(),
            "{method} {documented} is not in /openapi.json"
        );
        checked += 1;
    }
    assert!(checked >= 35, "only {checked} routes checked");
    // Generated clients name a method after each operation id: two alike collide.
    let mut ids = std::collections::HashSet::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(
                ids.insert(id.to_string()),
                "operationId {id} of {method} {path} is taken"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn docs_work_offline_and_metrics_count() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;

    let page = client()
        .get(format!("{}/docs/", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui-bundle.js"));
    assert!(
        !html.contains("https://"),
        "the docs page must not load anything from the network"
    );
    let bundle = client()
        .get(format!("{}/docs/swagger-ui-bundle.js", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(bundle.status(), 200);
    assert!(bundle.bytes().await.unwrap().len() > 100_000);
    let (status, doc) = call(&server, Method::GET, "/openapi.json", None).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/api/chat/rooms/{id}/messages"]["get"].is_object());

    let room = room("metrics");
    let mut ws = open_socket(&server, "/ws/general/m1?username=m").await;
    next_about(&mut ws, "user_joined", "m1").await;
    post_ok(&server, "general", &[("msg", "counted")]).await;
    next_of(&mut ws, &["message"]).await;
    post_ok(&server, &room, &[("msg", "counted too")]).await;
    call(&server, Method::GET, "/api/chat/rooms/nowhere", None).await;

    let text = get_text(&format!("{}/metrics", server.url)).await;
    let value = |series: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(value("ferrochat_messages_stored_total"), 2.0);
    assert_eq!(value("ferrochat_messages_delivered_total"), 1.0);
    assert_eq!(value("ferrochat_websockets_open"), 1.0);
    assert_eq!(
        value(
            r#"ferrochat_http_requests_total{method="POST",route="/api/chat/<room>",status="204"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            r#"ferrochat_http_requests_total{method="GET",route="/api/chat/rooms/<id>",status="404"}"#
        ),
        1.0
    );
    assert_eq!(value(r#"ferrochat_up{kind="sqlite",part="database"}"#), 1.0);
    assert_eq!(value(r#"ferrochat_up{kind="in-process",part="hub"}"#), 1.0);
    assert_eq!(
        value(r#"ferrochat_up{kind="local",part="file_store"}"#),
        1.0
    );

    drop(ws);
    let closed = eventually(Duration::from_secs(5), || async {
        let text = get_text(&format!("{}/metrics", server.url)).await;
        text.lines().any(|l| l == "ferrochat_websockets_open 0")
    })
    .await;
    assert!(closed, "a closed socket is no longer counted");
    db.drop_db().await;
}

/// Every metric the Grafana dashboard draws is in README's table, and every name in that
/// table is served by `/metrics` of a server that chatted (RabbitMQ events included).
#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_and_the_readme_name_served_metrics() {
    let names = |text: &str| -> std::collections::BTreeSet<String> {
        let mut names = std::collections::BTreeSet::new();
        let mut rest = text;
        while let Some(at) = rest.find("ferrochat_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            names.insert(base.to_string());
        }
        names
    };
    let dashboard = std::fs::read_to_string(format!(
        "{}/deploy/grafana/dashboards/ferrochat.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let _: Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let readme =
        std::fs::read_to_string(format!("{}/README.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let table = readme
        .split("### Metrics")
        .nth(1)
        .and_then(|s| s.split("\n\n").nth(2))
        .expect("README has a table under ### Metrics");
    let documented = names(table);
    let drawn = names(&dashboard);
    assert!(drawn.len() >= 6, "{drawn:?}");
    assert!(
        drawn.is_subset(&documented),
        "drawn but not documented: {:?}",
        drawn.difference(&documented).collect::<Vec<_>>()
    );

    let db = TestDb::create(Backend::Sqlite).await;
    let amqp = std::env::var("FERROCHAT_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let server = Server::start_with(ServerOptions::new(&db.url).env("AMQP_URL", &amqp)).await;
    let mut ws = open_socket(&server, "/ws/general/m1?username=m").await;
    post_ok(&server, "general", &[("msg", "counted")]).await;
    next_of(&mut ws, &["message"]).await;
    let served = eventually(Duration::from_secs(15), || async {
        let text = get_text(&format!("{}/metrics", server.url)).await;
        let served = names(
            &text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        documented.is_subset(&served)
    })
    .await;
    assert!(served, "every documented metric is served: {documented:?}");
    db.drop_db().await;
}

/// The document tells the truth: schemathesis (`SCHEMATHESIS`, which `scripts/test`
/// installs) generates requests for every operation of `/openapi.json` and finds no server
/// error, no undocumented status, content type or body, and no schema error.
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_untrue_in_the_document() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    schemathesis(&server, &["1", "2"], &[]).await;
    db.drop_db().await;
}

/// The same in `auth = "required"`, signed in: past the 401s, every operation's own
/// answers are what the document says.
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_untrue_in_required_mode() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server =
        Server::start_with(ServerOptions::new(&db.url).env("ROCKET_AUTH", "required")).await;
    let (status, body) = call(
        &server,
        reqwest::Method::POST,
        "/api/auth/register",
        Some(serde_json::json!({"username": "fuzz", "password": "correct horse"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let header = format!("Authorization: Bearer {}", body["token"].as_str().unwrap());
    // Signing out revokes the token every other operation is tried with. One seed, its
    // own: the document's test runs two over the same operations in open mode.
    schemathesis(
        &server,
        &["4"],
        &["--header", &header, "--exclude-path", "/api/auth/logout"],
    )
    .await;
    db.drop_db().await;
}

/// A client generated from the document works: openapi-python-client (`OPENAPI_PYTHON_CLIENT`,
/// which `scripts/test` installs) generates one from `/openapi.json`, and
/// `tests/clients/generated_client.py` signs up, creates a room, posts at two doors and reads
/// both back through it, every answer parsed into its generated model.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_generated_from_the_document_chats() {
    let generator =
        std::env::var("OPENAPI_PYTHON_CLIENT").unwrap_or_else(|_| "openapi-python-client".into());
    let generator = std::fs::canonicalize(&generator)
        .unwrap_or_else(|e| panic!("{generator} is required (scripts/test installs it): {e}"));
    // The generated package needs httpx and attrs, which the generator's own venv has.
    let python = generator.with_file_name("python");
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start(&db.url).await;
    let dir = tempfile::tempdir().unwrap();
    let doc = get_text(&format!("{}/openapi.json", server.url)).await;
    std::fs::write(dir.path().join("openapi.json"), doc).unwrap();
    let generated = tokio::process::Command::new(&generator)
        .current_dir(dir.path())
        .args([
            "generate",
            "--path",
            "openapi.json",
            "--output-path",
            "client",
        ])
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&generated.stdout).to_string()
        + &String::from_utf8_lossy(&generated.stderr);
    assert!(generated.status.success(), "generation failed: {said}");
    // A part of the document it could not read is left out of the client with a warning.
    assert!(
        !said.contains("Unable to"),
        "the generator skipped part of the document: {said}"
    );
    let run = tokio::process::Command::new(&python)
        .arg(format!("{REPO}/tests/clients/generated_client.py"))
        .arg(&server.url)
        .env("PYTHONPATH", dir.path().join("client"))
        .output()
        .await
        .unwrap();
    assert!(
        run.status.success(),
        "the generated client failed:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    db.drop_db().await;
}

/// Runs schemathesis with the four checks against `server`, once per fixed seed (one run
/// of 30 examples per operation misses some answers, so the document's test takes two;
/// fixed seeds keep every CI run the same), and fails on any finding.
async fn schemathesis(server: &Server, seeds: &[&str], extra: &[&str]) {
    let schemathesis = std::env::var("SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".into());
    // It runs in a folder of its own: a relative path is made absolute first.
    let schemathesis = match std::fs::canonicalize(&schemathesis) {
        Ok(path) if schemathesis.contains('/') => path.display().to_string(),
        _ => schemathesis,
    };
    // Its cache of findings goes to a folder of the test's own, not into the repository.
    let workdir = tempfile::tempdir().unwrap();
    // A valid `wait` holds the poll up to 30 s for a message that never comes; it is
    // tried in tests/legacy_contract.rs, here it would only make every example slow.
    std::fs::write(
        workdir.path().join("schemathesis.toml"),
        "[[operations]]\ninclude-path = \"/api/chat/{room}\"\nparameters = { \"query.wait\" = 0 }\n",
    )
    .unwrap();
    for seed in seeds {
        let out = tokio::process::Command::new(&schemathesis)
            .current_dir(workdir.path())
            .args([
                "run",
                &format!("{}/openapi.json", server.url),
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--max-examples",
                "30",
                "--seed",
                seed,
                "--request-timeout",
                "35",
                // A room's event stream answers 200 and stays open: every valid example
                // would wait out the timeout. tests/sse.rs tries it.
                "--exclude-path",
                "/api/chat/rooms/{id}/events",
                "--no-color",
            ])
            .args(extra)
            .output()
            .await
            .unwrap_or_else(|e| panic!("{schemathesis} is required (scripts/test installs it): {e}"));
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "schemathesis (seed {seed}) found something:\n{report}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary = report.lines().last().unwrap_or("");
        assert!(
            !summary.contains("failure") && !summary.contains("error"),
            "seed {seed}: {summary}"
        );
    }
}

/// With the database away, every operation of the document answers a status the document
/// declares for it (most of them 503), never a 500, and its error body is the documented
/// one: what schemathesis cannot bring about, tried once per operation.
#[tokio::test(flavor = "multi_thread")]
async fn with_the_database_away_every_operation_answers_as_documented() {
    let db = TestDb::create(Backend::MariaDb).await;
    let (proxy, url) = database_behind_proxy(&db).await;
    let server = Server::start_with(
        ServerOptions::new(&url)
            .env("ROCKET_DB_TIMEOUT_SECS", "1")
            .env("ROCKET_AUTH", "required"),
    )
    .await;
    let (status, body) = call(
        &server,
        reqwest::Method::POST,
        "/api/auth/register",
        Some(serde_json::json!({"username": "away", "password": "correct horse"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    let user_id = body["user_id"].as_str().unwrap().to_string();
    let doc = get_json(&format!("{}/openapi.json", server.url)).await;

    proxy.cut().await;
    let mut unavailable = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        // A socket's answer is the upgrade; its refusals are tried in tests/websocket.rs.
        if path.starts_with("/ws") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let filled = path
                .replace("{room}", "away")
                .replace("{room_id}", "away")
                .replace("{user_id}", &user_id)
                .replace(
                    "{id}",
                    if path.contains("/messages/") {
                        "1"
                    } else {
                        "away"
                    },
                );
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut request = client()
                .request(method.clone(), format!("{}{filled}", server.url))
                .bearer_auth(&token);
            if let Some(content) = op["requestBody"]["content"].as_object() {
                request = if content.contains_key("application/json") {
                    request.json(&serde_json::json!({
                        "name": "away", "content": "hi", "user_id": user_id,
                        "username": "away", "password": "correct horse",
                        "title": "t", "body": "b"
                    }))
                } else if content.contains_key("multipart/form-data") {
                    request.multipart(reqwest::multipart::Form::new().part(
                        "file",
                        reqwest::multipart::Part::bytes(b"hi".to_vec()).file_name("a.txt"),
                    ))
                } else {
                    request.form(&[("msg", "hi")])
                };
            }
            let res = request.send().await.unwrap();
            let status = res.status().as_u16().to_string();
            let kind = res
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body = res.text().await.unwrap();
            let what = format!("{method} {path} -> {status} {kind}: {body}");
            assert!(
                op["responses"].get(&status).is_some(),
                "undocumented: {what}"
            );
            assert_ne!(status, "500", "{what}");
            if status == "503" {
                unavailable += 1;
                let content = op["responses"]["503"]["content"].as_object().unwrap();
                let declared = content.keys().any(|k| kind.starts_with(k.as_str()));
                assert!(declared, "content type not declared: {what}");
                if kind.starts_with("application/json") {
                    let detail: serde_json::Value = serde_json::from_str(&body).unwrap();
                    assert!(
                        detail["detail"].is_string() || detail["status"].is_string(),
                        "{what}"
                    );
                }
            }
        }
    }
    // The database is behind nearly everything: sign-in, rooms, history, files, notifications.
    assert!(unavailable >= 25, "only {unavailable} operations said 503");
    proxy.restore();
    db.drop_db().await;
}
