//! The in-process tier: the whole server as `ferrochat::build_from` wires it, on a
//! database of the test's own, driven through Rocket's local client. On SQLite (the
//! default): no port, no process, no service, no network, so these tests run anywhere
//! `cargo` does (`scripts/test --fast`). `FERROCHAT_TEST_DATABASE=mariadb` or `postgres`
//! runs the same tests on a fresh database of the real server each (`scripts/test` runs
//! all three).
//! What needs sockets, replicas, outages, restarts or a browser stays with the process
//! tests (`tests/common`).
//!
//! `TestApp::new()` (open mode) or `TestApp::required()`, then personas:
//! `app.anonymous()`, `app.signed_in("ann").await`, `app.admin()`; and
//! `app.call(&who, Method::Post, path, Some(body)).await` -> `(status, JSON)`.

#![allow(dead_code)] // each test file uses the part it needs

#[path = "../common/answers.rs"]
pub mod answers;
#[path = "../common/db.rs"]
pub mod db;

#[allow(unused_imports)] // each test file uses its own part
pub use answers::{assert_detail, assert_every_writer_in_order, lines, UNICODE_CASES};

use db::{Backend, TestDb};
use ferrochat::config;
use rocket::http::{ContentType, Header, Method};
use rocket::local::asynchronous::Client;
use serde_json::{json, Value};

/// The admin token every in-process app is given.
pub const ADMIN_TOKEN: &str = "in-process-admin-token";

pub struct TestApp {
    pub client: Client,
    /// The app's database, dropped after the app (fields drop in order).
    pub db: TestDb,
    _dir: tempfile::TempDir,
}

/// The database these tests run on: `FERROCHAT_TEST_DATABASE` (`sqlite`, `mariadb`,
/// `postgres`), SQLite when it is not set. Any other word fails the test rather than
/// quietly run on SQLite.
pub fn backend() -> Backend {
    match std::env::var("FERROCHAT_TEST_DATABASE").as_deref() {
        Err(_) | Ok("sqlite") => Backend::Sqlite,
        Ok("mariadb") => Backend::MariaDb,
        Ok("postgres") => Backend::Postgres,
        Ok(other) => panic!("FERROCHAT_TEST_DATABASE={other}: sqlite, mariadb or postgres"),
    }
}

/// Who calls: anonymous, a signed-in user (with their token), or the admin.
#[derive(Clone, Debug, Default)]
pub struct Persona {
    pub token: Option<String>,
    pub user_id: Option<String>,
    pub username: String,
}

impl TestApp {
    /// Open mode, limits off, as the server starts by default.
    pub async fn new() -> Self {
        Self::with(&[]).await
    }

    /// `auth = "required"`: every call needs an identity, and the abuse limits are on.
    pub async fn required() -> Self {
        Self::with(&[("auth", "required")]).await
    }

    /// With settings of the test's own: merged after `config::figment()`, they win over the
    /// environment (`DATABASE_URL` and the rest) and every file.
    pub async fn with(settings: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = TestDb::create(backend()).await;
        let mut figment = config::figment()
            .merge(("database_url", db.url.clone()))
            .merge(("files_dir", dir.path().join("files").display().to_string()))
            .merge(("admin_token", ADMIN_TOKEN))
            .merge(("token_secret", "in-process tests' secret, 32 bytes or more"));
        // A number or a boolean as such, as it would be written in Rocket.toml.
        for (key, value) in settings {
            figment = match (value.parse::<i64>(), value.parse::<bool>()) {
                (Ok(number), _) => figment.merge((*key, number)),
                (_, Ok(boolean)) => figment.merge((*key, boolean)),
                _ => figment.merge((*key, *value)),
            };
        }
        let rocket = ferrochat::build_from(figment).await.expect("build");
        // Untracked: a sign-in's cookie must not make every later call that user's.
        TestApp {
            client: Client::untracked(rocket).await.expect("a valid server"),
            db,
            _dir: dir,
        }
    }

    /// The server's one state (`ferrochat::http::App`): its services, for tests that drive
    /// one without HTTP (the socket session).
    pub fn state(&self) -> &ferrochat::http::App {
        self.client
            .rocket()
            .state::<ferrochat::http::App>()
            .expect("the App is managed")
    }

    pub fn anonymous(&self) -> Persona {
        Persona {
            username: "anonymous".into(),
            ..Persona::default()
        }
    }

    pub fn admin(&self) -> Persona {
        Persona {
            token: Some(ADMIN_TOKEN.into()),
            username: "admin".into(),
            ..Persona::default()
        }
    }

    /// A new account named `name` (made unique), signed in.
    pub async fn signed_in(&self, name: &str) -> Persona {
        let username = unique(name);
        let (status, body) = self
            .call(
                &self.anonymous(),
                Method::Post,
                "/api/auth/register",
                Some(json!({"username": username, "password": "correct horse battery"})),
            )
            .await;
        assert_eq!(status, 201, "register {username}: {body}");
        Persona {
            token: body["token"].as_str().map(str::to_string),
            user_id: body["user_id"].as_str().map(str::to_string),
            username,
        }
    }

    /// One request as `who`; the answer's status and JSON body (`Null` when it has none).
    /// It comes from no address, so the abuse limits (counted per client address) pass it:
    /// `call_from` is a request from somewhere.
    pub async fn call(
        &self,
        who: &Persona,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.request(None, who, method, path, body).await
    }

    /// One request from a client address, which the abuse limits count.
    pub async fn call_from(
        &self,
        from: std::net::SocketAddr,
        who: &Persona,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.request(Some(from), who, method, path, body).await
    }

    /// A room made through the JSON API by `owner`, public or private; its id is `prefix`
    /// made unique.
    pub async fn make_room(&self, prefix: &str, private: bool, owner: &Persona) -> String {
        let name = unique(prefix);
        let (status, body) = self
            .call(
                owner,
                Method::Post,
                "/api/chat/rooms",
                Some(json!({"id": name, "private": private})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        name
    }

    /// A body sent as it is, with its content type (a broken JSON body, say).
    pub async fn send(
        &self,
        who: &Persona,
        method: Method,
        path: &str,
        content_type: ContentType,
        body: &str,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .req(method, path.to_string())
            .header(content_type)
            .body(body);
        if let Some(token) = &who.token {
            req = req.header(Header::new("Authorization", format!("Bearer {token}")));
        }
        let res = req.dispatch().await;
        let status = res.status().code;
        let text = res.into_string().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A post to the Flask original's `POST /api/chat/<room>` as its page sends it (a form);
    /// the status and the plain-text answer.
    pub async fn post_form(&self, room: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let res = self
            .client
            .post(format!("/api/chat/{room}"))
            .header(ContentType::Form)
            .body(body)
            .dispatch()
            .await;
        let status = res.status().code;
        (status, res.into_string().await.unwrap_or_default())
    }

    async fn request(
        &self,
        from: Option<std::net::SocketAddr>,
        who: &Persona,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.client.req(method, path.to_string());
        if let Some(from) = from {
            req = req.remote(from);
        }
        if let Some(token) = &who.token {
            req = req.header(Header::new("Authorization", format!("Bearer {token}")));
        }
        if let Some(body) = body {
            req = req.header(ContentType::JSON).body(body.to_string());
        }
        let res = req.dispatch().await;
        let status = res.status().code;
        let text = res.into_string().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// A name no other test of this process uses.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
