//! Test harness: a real ferrochat process on a free port, a fresh database per test on
//! the real servers (MariaDB, PostgreSQL) or a SQLite file, and a TCP proxy that can cut
//! the database off. A database server that cannot be reached fails the test: it is never
//! skipped.
#![allow(dead_code)] // each test file uses its own part of the harness

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

pub mod chrome;

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The admin token every test server gets unless its options say otherwise.
pub const ADMIN_TOKEN: &str = "test-admin-token";

pub mod answers;
pub mod db;
#[allow(unused_imports)] // each test file uses its own part
pub use answers::{assert_detail, assert_every_writer_in_order, lines, UNICODE_CASES};
pub use db::{unique_name, Backend, TestDb};

/// Whether the server named `ident` answers HTTP at `address:port`: a request for
/// `/health/live` gets a response (any status: a server whose database is away still
/// answers) whose `Server` header is `ident`, so another process that took the port
/// meanwhile is not mistaken for it.
async fn answers_http(address: &str, port: u16, ident: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let asked = async {
        let mut stream = TcpStream::connect((address, port)).await.ok()?;
        let request = "GET /health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = Vec::new();
        stream.read_to_end(&mut head).await.ok()?;
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        Some(head.starts_with("http/1.") && head.contains(&format!("server: {ident}\r\n")))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), asked).await,
        Ok(Some(true))
    )
}

/// A running `ferrochat` process, stopped when dropped.
pub struct Server {
    pub url: String,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

pub struct ServerOptions {
    pub database_url: Option<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
}

impl ServerOptions {
    pub fn new(database_url: &str) -> Self {
        ServerOptions {
            database_url: Some(database_url.to_string()),
            env: Vec::new(),
            cwd: None,
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
}

impl Server {
    pub async fn start(database_url: &str) -> Server {
        Server::start_with(ServerOptions::new(database_url)).await
    }

    pub async fn start_with(options: ServerOptions) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrochat"));
        cmd.env_remove("DATABASE_URL")
            .env_remove("MYSQL_URI")
            .env_remove("PORT")
            .env("ROCKET_CONFIG", Path::new(REPO).join("Rocket.toml"))
            .env("ROCKET_ADDRESS", "127.0.0.1")
            .env("ROCKET_PORT", "0")
            .env("ROCKET_CLI_COLORS", "false")
            .env("RUST_LOG", "info,rocket=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(url) = &options.database_url {
            cmd.env("DATABASE_URL", url);
        }
        // A test that stops servers should not wait out the 5 s drain a balancer needs;
        // the tests of the stop itself set their own.
        cmd.env("ROCKET_SHUTDOWN_DRAIN_SECS", "0");
        // Destructive routes need the admin token; a test that wants none sets it blank.
        cmd.env("ADMIN_TOKEN", ADMIN_TOKEN);
        // Every test's clients come from 127.0.0.1, hundreds at a time in some: the cap
        // per address is for the front door's own tests, which set it.
        if !options
            .env
            .iter()
            .any(|(k, _)| k == "ROCKET_CONNECTIONS_PER_ADDRESS")
        {
            cmd.env("ROCKET_CONNECTIONS_PER_ADDRESS", "1000000");
        }
        // Uploads go to a folder of the test's own unless it names one.
        if !options.env.iter().any(|(k, _)| k == "ROCKET_FILES_DIR") {
            let dir = std::env::temp_dir().join(unique_name("ferrochat-files"));
            cmd.env("ROCKET_FILES_DIR", dir);
        }
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        if let Some(dir) = &options.cwd {
            cmd.current_dir(dir);
        }
        // The port is the test's choice (a free one unless it names one), and the server is
        // ready once it answers HTTP there: found by asking, not by reading its log.
        let setting = |key: &str| {
            let mut chosen = options.env.iter().filter(|(k, _)| k == key);
            chosen.next_back().map(|(_, v)| v.clone())
        };
        let named_port = setting("ROCKET_PORT")
            .and_then(|port| port.parse::<u16>().ok())
            .filter(|port| *port != 0);
        let address = setting("ROCKET_ADDRESS").unwrap_or_else(|| "127.0.0.1".into());
        let mut attempt = 0;
        'start: loop {
            attempt += 1;
            let port = named_port.unwrap_or_else(free_port);
            cmd.env("ROCKET_PORT", port.to_string());
            let ident = unique_name("ferrochat-test").to_ascii_lowercase();
            cmd.env("ROCKET_IDENT", &ident);
            let mut child = cmd.spawn().expect("start ferrochat");
            let stdout = child.stdout.take().expect("stdout");
            let log = Arc::new(Mutex::new(Vec::new()));
            let log_writer = log.clone();
            // Keeps reading the log for the whole run, or the server would block on a full
            // pipe.
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    // FERROCHAT_TEST_ECHO_LOG=1 shows each server's log beside a failing test.
                    if std::env::var_os("FERROCHAT_TEST_ECHO_LOG").is_some() {
                        eprintln!("[server] {line}");
                    }
                    log_writer.lock().unwrap().push(line);
                }
            });
            let url = match address.contains(':') {
                true => format!("http://[{address}]:{port}"),
                false => format!("http://{address}:{port}"),
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if answers_http(&address, port, &ident).await {
                    break;
                }
                let exited = child.try_wait().ok().flatten();
                if exited.is_some() || Instant::now() > deadline {
                    let _ = child.kill();
                    // A free port can be taken by another test's server between its choosing
                    // and this one's binding it: then choose again.
                    let taken = log
                        .lock()
                        .unwrap()
                        .iter()
                        .any(|line| line.contains("Address already in use"));
                    if taken && named_port.is_none() && attempt < 3 {
                        continue 'start;
                    }
                    panic!(
                        "ferrochat did not start at {url} ({exited:?}): {:?}",
                        log.lock().unwrap()
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            return Server { url, child, log };
        }
    }

    /// Something already listening at `url` (a proxy in front of servers), for the
    /// helpers that take a server; nothing is started or stopped.
    pub fn at(url: &str) -> Server {
        let child = Command::new("true").spawn().expect("true");
        Server {
            url: url.to_string(),
            child,
            log: Arc::default(),
        }
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The server's log once some line of it says `needle` (the process writes its log
    /// a moment after it answers, and a thread of ours reads it), or as it is after 10 s.
    pub async fn log_once(&self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.iter().any(|line| line.contains(needle)) || Instant::now() > deadline {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The server's resident memory now, in bytes (from /proc).
    pub fn rss_bytes(&self) -> u64 {
        self.memory("VmRSS:")
    }

    /// The most resident memory the server has had, in bytes (from /proc).
    pub fn peak_rss_bytes(&self) -> u64 {
        self.memory("VmHWM:")
    }

    fn memory(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{field} in the server's /proc status"))
            * 1024
    }

    /// Sends SIGTERM, as a container runtime does, and returns at once.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "SIGTERM sent");
    }

    /// The exit code once the process ended, if it did within `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status.code().unwrap_or(-1));
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the process the way a container runtime does (SIGTERM) and waits for it.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A unique room name, so tests sharing a server never see each other's messages.
pub fn room(prefix: &str) -> String {
    unique_name(prefix)
}

/// POSTs a form message; returns the status and the body.
pub async fn post_form(server: &Server, room: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let res = client()
        .post(format!("{}/api/chat/{room}", server.url))
        .form(fields)
        .send()
        .await
        .expect("POST");
    let status = res.status().as_u16();
    (status, res.text().await.unwrap_or_default())
}

/// POSTs a form message that must be accepted (204).
pub async fn post_ok(server: &Server, room: &str, fields: &[(&str, &str)]) {
    let (status, body) = post_form(server, room, fields).await;
    assert_eq!(status, 204, "POST {fields:?} to {room}: {body}");
}

/// GETs a text body.
pub async fn get_text(url: &str) -> String {
    let res = client().get(url).send().await.expect("GET");
    res.text().await.expect("a text body")
}

/// GETs a JSON document.
pub async fn get_json(url: &str) -> Value {
    let res = client().get(url).send().await.expect("GET");
    res.json().await.expect("a JSON body")
}

/// Waits for something to listen on a loopback port.
pub async fn port_open(port: u16, timeout: Duration) -> bool {
    eventually(timeout, || async move {
        TcpStream::connect(("127.0.0.1", port)).await.is_ok()
    })
    .await
}

pub async fn transcript(server: &Server, room: &str) -> String {
    let res = client()
        .get(format!("{}/api/chat/{room}", server.url))
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status().as_u16(), 200, "GET /api/chat/{room}");
    res.text().await.unwrap()
}

/// A TCP proxy in front of a database server whose link the test can cut and restore.
pub struct Proxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    generation: Arc<AtomicU32>,
}

impl Proxy {
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let generation = Arc::new(AtomicU32::new(0));
        let upstream = upstream.to_string();
        let (up2, gen2) = (up.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound); // refused while cut
                    continue;
                }
                let upstream = upstream.clone();
                let (up3, gen3) = (up2.clone(), gen2.clone());
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let born = gen3.load(Ordering::SeqCst);
                    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    let cut = async {
                        while up3.load(Ordering::SeqCst) && gen3.load(Ordering::SeqCst) == born {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! { _ = copy => {}, _ = cut => {} }
                });
            }
        });
        Proxy {
            port,
            up,
            generation,
        }
    }

    /// Drops every open connection and refuses new ones.
    pub async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
        // Each link notices within 20 ms.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Polls `check` until it returns true or `timeout` passes.
/// A proxy in front of the test database's server, and the database's URL through it, so
/// a test can cut the database off under a running server.
pub async fn database_behind_proxy(db: &TestDb) -> (Proxy, String) {
    let upstream = match db.backend {
        Backend::MariaDb => "127.0.0.1:3306",
        Backend::Postgres => "127.0.0.1:5432",
        Backend::Sqlite => panic!("SQLite is a file: there is no link to cut"),
    };
    let proxy = Proxy::start(upstream).await;
    let url = db.url.replace(
        &format!("@{upstream}"),
        &format!("@127.0.0.1:{}", proxy.port),
    );
    assert_ne!(url, db.url, "the database URL names {upstream}");
    (proxy, url)
}

pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Generates one `#[tokio::test]` per backend for each listed `async fn name(Backend)`.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread")]
               async fn $name() { super::$name($crate::common::Backend::Sqlite).await } )*
        }
        mod mariadb {
            $( #[tokio::test(flavor = "multi_thread")]
               async fn $name() { super::$name($crate::common::Backend::MariaDb).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread")]
               async fn $name() { super::$name($crate::common::Backend::Postgres).await } )*
        }
    };
}

/// A `redis-server` of the test's own, so the test can kill it.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    pub async fn start_on(port: u16) -> Redis {
        Redis::launch(port, &["--port", &port.to_string()]).await
    }

    /// A `redis-server` with these arguments (its ports among them), ready once `port`
    /// answers; on loopback, keeping nothing.
    pub async fn launch(port: u16, args: &[&str]) -> Redis {
        let child =
            Command::new(std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into()))
                .args(args)
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server is required (apt-get install redis-server)");
        let up = port_open(port, Duration::from_secs(10)).await;
        assert!(up, "redis-server did not start on {port}");
        Redis { child, port }
    }

    pub async fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Redis::start_on(port).await
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for Redis {
    // (SIGKILL: it keeps nothing, and a test may want it gone at once.)
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The server's memory is within tens of MB of `before` after `what`.
pub fn assert_flat(server: &Server, before: u64, what: &str) {
    let after = server.rss_bytes();
    let grown = after.saturating_sub(before) / (1024 * 1024);
    assert!(
        grown < 48,
        "memory grew {grown} MB over {what} ({before} -> {after})"
    );
}

/// The `since=<id>` a close frame's reason tells the client to reconnect with.
pub fn since_in(reason: &str) -> i64 {
    reason
        .rsplit("since=")
        .next()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no since= in {reason:?}"))
}

pub async fn open_socket(server: &Server, path: &str) -> Socket {
    let url = format!("{}{path}", server.url.replacen("http://", "ws://", 1));
    tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket upgrade")
        .0
}

/// Message frames received until `count` have come (or `timeout` passed), then for a
/// little longer, so that a repeat would be caught too.
pub async fn messages_until(ws: &mut Socket, count: usize, timeout: Duration) -> Vec<Value> {
    let mut got = Vec::new();
    let mut deadline = tokio::time::Instant::now() + timeout;
    let mut grace_started = false;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, ws.next()).await {
        if let Message::Text(text) = frame {
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["type"] == "message" {
                got.push(v);
            }
        }
        if got.len() >= count && !grace_started {
            grace_started = true;
            deadline = tokio::time::Instant::now() + Duration::from_millis(300);
        }
    }
    got
}

/// The hub's state as `/health` reports it.
pub async fn hub_state(server: &Server) -> String {
    let health = get_json(&format!("{}/health", server.url)).await;
    health["hub"]["state"].as_str().unwrap_or("").to_string()
}

/// Debian's nginx with the repository's `deploy/nginx.conf`, in front of test replicas.
pub struct Nginx {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// nginx with the repository's site config, its upstream pointed at `replicas`.
    pub async fn start(replicas: &[&Server]) -> Nginx {
        Nginx::start_with(replicas, &[]).await
    }

    /// As [`Nginx::start`], with each `(shipped, instead)` line of the site config
    /// replaced (the shipped line must be there): for a test whose clients all come from
    /// one address where real ones would come from many.
    pub async fn start_with(replicas: &[&Server], replace: &[(&str, &str)]) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let site = std::fs::read_to_string(format!("{REPO}/deploy/nginx.conf")).unwrap();
        // The shipped upstream line, with its health-check parameters, once per replica.
        let line = site
            .lines()
            .find(|l| l.trim_start().starts_with("server chat:5000"))
            .expect("deploy/nginx.conf names its upstream `server chat:5000 ...;`")
            .to_string();
        let servers: String = replicas
            .iter()
            .map(|r| line.replace("chat:5000", r.url.trim_start_matches("http://")) + "\n")
            .collect();
        assert!(site.contains("listen 80;"));
        let mut site = site
            .replace(&format!("{line}\n"), &servers)
            .replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
        for (shipped, instead) in replace {
            assert!(site.contains(shipped), "deploy/nginx.conf has `{shipped}`");
            site = site.replace(shipped, instead);
        }
        // The shipped bound on connections (deploy/nginx-main.conf's events block and the
        // files a worker may open), in a main config of the test's own paths.
        let main = std::fs::read_to_string(format!("{REPO}/deploy/nginx-main.conf")).unwrap();
        let rlimit = main
            .lines()
            .find(|l| l.starts_with("worker_rlimit_nofile "))
            .expect("deploy/nginx-main.conf sets worker_rlimit_nofile");
        let events = main
            .find("events {")
            .and_then(|start| Some(&main[start..start + main[start..].find("\n}")? + 2]))
            .expect("deploy/nginx-main.conf has an events block");
        let d = dir.path().display();
        std::fs::write(dir.path().join("site.conf"), site).unwrap();
        std::fs::write(
            dir.path().join("nginx.conf"),
            format!(
                "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nworker_processes 1;\n\
                 {rlimit}\n{events}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n\
                 proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
                 uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
                 include {d}/site.conf;\n}}\n"
            ),
        )
        .unwrap();
        let nginx = std::env::var("NGINX").unwrap_or_else(|_| "nginx".into());
        let child = Command::new(&nginx)
            .args([
                "-p",
                &d.to_string(),
                "-c",
                &format!("{d}/nginx.conf"),
                "-g",
                "daemon off;",
            ])
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{nginx} is required (apt-get install nginx-light): {e}"));
        let url = format!("http://127.0.0.1:{port}");
        let health = format!("{url}/health");
        let up = eventually(Duration::from_secs(10), || {
            let health = health.clone();
            async move {
                client()
                    .get(health)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
            }
        })
        .await;
        assert!(
            up,
            "nginx did not come up: {:?}",
            std::fs::read_to_string(dir.path().join("error.log"))
        );
        Nginx {
            child,
            url,
            _dir: dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, so the master stops its worker too.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// `n` replicas on one database and one Redis, each with its hub connected.
pub async fn replicas(db: &TestDb, redis: &Redis, n: usize) -> Vec<Server> {
    let mut replicas = Vec::new();
    for _ in 0..n {
        let options = ServerOptions::new(&db.url).env("REDIS_URL", &redis.url());
        replicas.push(Server::start_with(options).await);
    }
    for r in &replicas {
        let up = eventually(Duration::from_secs(10), || async {
            hub_state(r).await == "up"
        })
        .await;
        assert!(up, "hub connected to Redis");
    }
    replicas
}

/// The contents of message frames, sorted, after checking that they came in id order and
/// none twice;
/// and the highest id among them.
pub fn contents_once_each(got: &[Value], what: &str) -> (Vec<String>, Option<i64>) {
    let ids: Vec<i64> = got.iter().map(|m| m["id"].as_i64().unwrap()).collect();
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "{what}: no message twice");
    // A client resumes after the last id it has (`since=`, `after=`): a smaller id
    // arriving later would be lost to it.
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "{what}: messages in id order: {ids:?}"
    );
    let mut contents: Vec<String> = got
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect();
    contents.sort();
    (contents, ids.into_iter().max())
}

/// The next JSON frame of one of the given types, skipping others.
pub async fn next_of(ws: &mut Socket, types: &[&str]) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {types:?} frame within 10 s"))
            .expect("socket open")
            .expect("frame");
        if let Message::Text(text) = frame {
            let value: Value = serde_json::from_str(&text).unwrap();
            if types.contains(&value["type"].as_str().unwrap_or("")) {
                return value;
            }
        }
    }
}

/// The next event of `kind` about `user_id` (everyone, oneself included, hears of a join).
pub async fn next_about(ws: &mut Socket, kind: &str, user_id: &str) -> Value {
    loop {
        let event = next_of(ws, &[kind]).await;
        if event["user_id"] == user_id {
            return event;
        }
    }
}

pub async fn send(ws: &mut Socket, value: Value) {
    ws.send(Message::Text(value.to_string())).await.unwrap();
}

/// One JSON API call: the status and the JSON body (`Null` when there is none).
pub async fn call(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    call_with_token(server, method, path, body, None).await
}

/// [`call`] as the admin (the test servers' [`ADMIN_TOKEN`]).
pub async fn admin_call(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    call_with_token(server, method, path, body, Some(ADMIN_TOKEN)).await
}

/// [`call`] with `Authorization: Bearer <token>`.
pub async fn call_with_token(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut req = client().request(method, format!("{}{path}", server.url));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A real S3-compatible server of the test's own: moto's, from PyPI (`scripts/test`
/// installs it under target/tools).
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    pub async fn start_on(port: u16) -> Moto {
        let bin = std::env::var("MOTO_SERVER").unwrap_or_else(|_| {
            let venv = Path::new(REPO).join("target/tools/py/bin/moto_server");
            if venv.exists() {
                venv.display().to_string()
            } else {
                "moto_server".into()
            }
        });
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e} (scripts/test installs moto[server])"));
        assert!(
            port_open(port, Duration::from_secs(30)).await,
            "moto_server did not start"
        );
        Moto { child, port }
    }

    pub async fn start() -> Moto {
        Moto::start_on(free_port()).await
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (moto takes unsigned requests).
    pub async fn create_bucket(&self, bucket: &str) {
        let res = client()
            .put(format!("{}/{bucket}", self.endpoint()))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "create bucket: {}", res.status());
    }

    /// The keys in a bucket.
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let xml = client()
            .get(format!("{}/{bucket}?list-type=2", self.endpoint()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        xml.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(String::from)
            .collect()
    }

    pub fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Registers `name` (password "correct horse"): its user id and token.
pub async fn sign_up(server: &Server, name: &str) -> (String, String) {
    let (status, body) = call(
        server,
        reqwest::Method::POST,
        "/api/auth/register",
        Some(serde_json::json!({"username": name, "password": "correct horse"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    (
        body["user_id"].as_str().unwrap().to_string(),
        body["token"].as_str().unwrap().to_string(),
    )
}

pub fn ws_url(server: &Server, path: &str) -> String {
    format!("{}{path}", server.url.replacen("http://", "ws://", 1))
}

/// The status a socket's upgrade got (101 when it opened).
pub async fn socket_status(server: &Server, path: &str) -> u16 {
    match tokio_tungstenite::connect_async(ws_url(server, path)).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => res.status().as_u16(),
        Err(err) => panic!("socket {path}: {err}"),
    }
}

/// A room made through the JSON API by the holder of `token`, public or private; its id
/// is `prefix` made unique.
pub async fn make_room(server: &Server, prefix: &str, private: bool, token: &str) -> String {
    let name = room(prefix);
    let (status, body) = call_with_token(
        server,
        reqwest::Method::POST,
        "/api/chat/rooms",
        Some(serde_json::json!({"id": name, "private": private})),
        Some(token),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    name
}

/// Posts `body` to the room through the JSON API as the holder of `token`.
pub async fn say_json(server: &Server, room: &str, body: Value, token: &str) -> (u16, Value) {
    let path = format!("/api/chat/rooms/{room}/messages");
    call_with_token(
        server,
        reqwest::Method::POST,
        &path,
        Some(body),
        Some(token),
    )
    .await
}

/// Posts `content` to the room as the holder of `token`; its id.
pub async fn posted(server: &Server, room: &str, content: &str, token: &str) -> i64 {
    let (status, body) = say_json(
        server,
        room,
        serde_json::json!({ "content": content }),
        token,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}
