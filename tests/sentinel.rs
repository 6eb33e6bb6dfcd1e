//! Redis that fails over: two replicas find Redis through a Sentinel; the master dies,
//! the Sentinel promotes its replica, and the replicas carry on through the new master:
//! a post on one again reaches a socket on the other, and presence answers again. And
//! `REDIS_URL=redis+sentinel://:password@.../master/db` reaches a master that wants a
//! password, in the database it names.

mod common;

use common::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A process of the test's own (a Redis replica or a Sentinel), killed with the test.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_server() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

async fn start(args: &[String], port: u16) -> Process {
    let child = Command::new(redis_server())
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is required (apt-get install redis-server)");
    assert!(
        port_open(port, Duration::from_secs(10)).await,
        "a redis-server on {port} did not start"
    );
    Process(child)
}

/// A Sentinel watching the master on `master_port` as `mymaster`, with `more` lines of
/// configuration; its folder lives as long as the process.
async fn start_sentinel(master_port: u16, more: &str) -> ((Process, tempfile::TempDir), u16) {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\n\
             sentinel monitor mymaster 127.0.0.1 {master_port} 1\n{more}",
            dir.path().display(),
        ),
    )
    .unwrap();
    let process = start(&[conf.display().to_string(), "--sentinel".into()], port).await;
    ((process, dir), port)
}

/// What `redis-cli` would answer, through our own small client: the Sentinel's master.
async fn master_port(sentinel: u16) -> Option<u16> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{sentinel}")).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    let addr: Vec<String> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg("mymaster")
        .query_async(&mut conn)
        .await
        .ok()?;
    addr.get(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_carry_on_when_the_sentinel_promotes_a_new_master() {
    let master = Redis::start().await;
    let replica_port = free_port();
    let _replica = start(
        &[
            "--port".into(),
            replica_port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--replicaof".into(),
            "127.0.0.1".into(),
            master.port.to_string(),
        ],
        replica_port,
    )
    .await;
    let (_sentinel, sentinel_port) = start_sentinel(
        master.port,
        "sentinel down-after-milliseconds mymaster 1000\n\
         sentinel failover-timeout mymaster 5000\n",
    )
    .await;
    let watched = eventually(Duration::from_secs(10), || async {
        master_port(sentinel_port).await == Some(master.port)
    })
    .await;
    assert!(watched, "the Sentinel does not name the master");

    let db = TestDb::create(Backend::MariaDb).await;
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let options = ServerOptions::new(&db.url)
            .env("REDIS_SENTINELS", &format!("127.0.0.1:{sentinel_port}"))
            .env("REDIS_SENTINEL_MASTER", "mymaster");
        replicas.push(Server::start_with(options).await);
    }
    for r in &replicas {
        let up = eventually(Duration::from_secs(10), || async {
            hub_state(r).await == "up"
        })
        .await;
        assert!(up, "the hub did not reach Redis through the Sentinel");
    }
    let room = room("failover");
    post_ok(&replicas[0], &room, &[("username", "a"), ("msg", "before")]).await;
    let mut ws = open_socket(&replicas[1], &format!("/ws/{room}/reader?since=0")).await;
    let got = messages_until(&mut ws, 1, Duration::from_secs(10)).await;
    assert_eq!(got[0]["content"], "before");

    // The master dies; the Sentinel promotes the replica.
    let old = master.kill();
    let promoted = eventually(Duration::from_secs(30), || async {
        master_port(sentinel_port).await == Some(replica_port)
    })
    .await;
    assert!(promoted, "the Sentinel did not fail over from {old}");

    // Both replicas find the new master: a post on one reaches the other's socket live,
    // and presence (in Redis) answers again.
    let mut delivered = false;
    for i in 0..40 {
        let text = format!("after {i}");
        let (status, _) =
            post_form(&replicas[0], &room, &[("username", "a"), ("msg", &text)]).await;
        assert_eq!(status, 204);
        let got = messages_until(&mut ws, 1, Duration::from_secs(1)).await;
        if got
            .iter()
            .any(|m| m["content"].as_str() == Some(text.as_str()))
        {
            delivered = true;
            break;
        }
    }
    assert!(
        delivered,
        "no post reached the other replica through the new master"
    );
    let back = eventually(Duration::from_secs(20), || async {
        let (status, _) = call(
            &replicas[1],
            reqwest::Method::POST,
            "/api/presence/someone/heartbeat?username=someone",
            None,
        )
        .await;
        (200..300).contains(&status)
    })
    .await;
    assert!(back, "presence does not answer through the new master");
    for r in &replicas {
        assert_eq!(hub_state(r).await, "up");
    }
    db.drop_db().await;
}

/// One `REDIS_URL` names the Sentinel, the master's name, its password and a database: the
/// hub connects (a master with `requirepass` refuses it otherwise) and presence writes its
/// keys in that database.
#[tokio::test(flavor = "multi_thread")]
async fn a_sentinel_url_carries_the_masters_password_and_database() {
    let master_port = free_port();
    let _master = start(
        &[
            "--port".into(),
            master_port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--requirepass".into(),
            "p@ss word".into(),
        ],
        master_port,
    )
    .await;
    let (_sentinel, sentinel_port) =
        start_sentinel(master_port, "sentinel auth-pass mymaster \"p@ss word\"\n").await;

    let db = TestDb::create(Backend::Sqlite).await;
    let url = format!("redis+sentinel://:p%40ss%20word@127.0.0.1:{sentinel_port}/mymaster/3");
    let server = Server::start_with(ServerOptions::new(&db.url).env("REDIS_URL", &url)).await;
    let up = eventually(Duration::from_secs(10), || async {
        hub_state(&server).await == "up"
    })
    .await;
    assert!(
        up,
        "the hub did not reach the master through the Sentinel URL"
    );
    let (status, _) = call(
        &server,
        reqwest::Method::POST,
        "/api/presence/someone/heartbeat?username=someone",
        None,
    )
    .await;
    assert!((200..300).contains(&status), "heartbeat: {status}");

    let presence_keys = |db: u8| async move {
        let url = format!("redis://:p%40ss%20word@127.0.0.1:{master_port}/{db}");
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("presence:*")
            .query_async(&mut conn)
            .await
            .unwrap();
        keys
    };
    let keys = presence_keys(3).await;
    assert!(!keys.is_empty(), "presence wrote no key in database 3");
    let keys = presence_keys(0).await;
    assert!(keys.is_empty(), "presence wrote in database 0: {keys:?}");

    // Its log names the Sentinel and the master, never the password.
    let log = server.log().join("\n");
    assert!(log.contains("hub: Redis through Sentinel"), "{log}");
    assert!(
        !log.contains("p@ss") && !log.contains("p%40ss"),
        "the password reached the log"
    );
    db.drop_db().await;
}
