//! The edges of HTTP an attacker reaches first: which page a browser request comes from
//! (whole origins: scheme, host and port), where a token in a URL counts and what of a URL
//! reaches the log, and what the health routes tell strangers. Each test failed on the main
//! before its fix.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

fn required(db: &TestDb) -> ServerOptions {
    ServerOptions::new(&db.url).env("ROCKET_AUTH", "required")
}

/// Opens a socket with these headers; the status of the refusal, or 101.
async fn socket_status_with(server: &Server, path: &str, headers: &[(&str, &str)]) -> u16 {
    let url = format!("{}{path}", server.url.replacen("http://", "ws://", 1));
    let mut req = url.into_client_request().unwrap();
    for (name, value) in headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes());
        req.headers_mut()
            .insert(name.unwrap(), HeaderValue::from_str(value).unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => res.status().as_u16(),
        Err(other) => panic!("socket {path}: {other}"),
    }
}

/// `?token=` signs a socket in, and nothing else: on a page whose path merely starts with
/// `/ws` it is no identity. And no token of a socket's URL reaches the log.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_in_the_url_counts_on_sockets_only_and_is_never_logged() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start_with(required(&db)).await;
    let name = unique_name("tok");
    let (user_id, token) = sign_up(&server, &name).await;

    // The page of the room `wsroom`: its path starts with /ws, but it is no socket.
    let page = client()
        .get(format!("{}/wsroom?token={token}", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<title>Sign in"), "{page}");
    assert!(!page.contains(&name), "the URL's token signed the page in");

    let path = format!("/ws/general/{user_id}?token={token}&since=0");
    assert_eq!(socket_status_with(&server, &path, &[]).await, 101);
    let path = format!("/ws?token={token}");
    assert_eq!(socket_status_with(&server, &path, &[]).await, 101);
    // The last request's line is the last to be written.
    server.log_once("path=/ws?").await;
    let log = server.log_once("/ws/general/").await;
    let requests: Vec<_> = log.iter().filter(|l| l.contains("/ws/general/")).collect();
    assert!(
        !requests.is_empty(),
        "the socket's request is logged: {log:?}"
    );
    assert!(
        requests.iter().all(|l| l.contains("token=<redacted>")),
        "{requests:?}"
    );
    let leaked: Vec<_> = log.iter().filter(|l| l.contains(&token)).collect();
    assert!(leaked.is_empty(), "the token is in the log: {leaked:?}");
    db.drop_db().await;
}

/// A page of another port of this host is another site: with the session
/// cookie, its socket is refused, while this server's own origin is admitted.
#[tokio::test(flavor = "multi_thread")]
async fn a_socket_from_another_port_or_scheme_of_this_host_is_refused() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start_with(required(&db)).await;
    let (user_id, token) = sign_up(&server, &unique_name("sock")).await;
    let cookie = format!("ferrochat_session={token}");
    let own = server.url.clone(); // http://127.0.0.1:<port>
    let port = own.rsplit(':').next().unwrap();
    let path = format!("/ws/general/{user_id}");
    for origin in [
        "http://127.0.0.1:6666".to_string(),
        format!("https://127.0.0.1:{}", port.parse::<u16>().unwrap() + 1),
        "http://127.0.0.1".to_string(),
        "null".to_string(),
    ] {
        let headers = [("Cookie", cookie.as_str()), ("Origin", origin.as_str())];
        let status = socket_status_with(&server, &path, &headers).await;
        assert_eq!(status, 403, "a socket from {origin} was not refused");
    }
    let headers = [("Cookie", cookie.as_str()), ("Origin", own.as_str())];
    let status = socket_status_with(&server, &path, &headers).await;
    assert_eq!(status, 101, "this server's own origin {own} refused");
    // The same host and port by https: a proxy this server does not trust (a Codespace's
    // forwarding) may have taken TLS off, so the page is this site's own.
    let tls_page = format!("https://127.0.0.1:{port}");
    let headers = [("Cookie", cookie.as_str()), ("Origin", tls_page.as_str())];
    assert_eq!(socket_status_with(&server, &path, &headers).await, 101);
    // A client that is no page sends no Origin.
    assert_eq!(
        socket_status_with(&server, &path, &[("Cookie", &cookie)]).await,
        101
    );

    // Through the shipped nginx, whose address is then the page's origin: it passes on
    // the Host with its port.
    let nginx = Nginx::start(&[&server]).await;
    let front = Server::at(&nginx.url);
    for (origin, status) in [(nginx.url.as_str(), 101), (own.as_str(), 403)] {
        let headers = [("Cookie", cookie.as_str()), ("Origin", origin)];
        let got = socket_status_with(&front, &path, &headers).await;
        assert_eq!(got, status, "a socket through nginx from {origin}");
    }
    db.drop_db().await;
}

/// A request signed in by the session cookie that changes something must come from this
/// site's pages (its Origin, else its Referer): a page of another site, or of another port
/// of this host, which the browser would send the cookie with, is refused 403 and stores
/// nothing. Clients that are no page (no Origin, no Referer), bearer tokens and anonymous
/// posts are as before.
#[tokio::test(flavor = "multi_thread")]
async fn cookie_signed_changes_from_another_origin_are_refused() {
    let db = TestDb::create(Backend::Sqlite).await;
    let files = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        ServerOptions::new(&db.url).env("ROCKET_FILES_DIR", files.path().to_str().unwrap()),
    )
    .await;
    let name = unique_name("csrf");
    let (_, token) = sign_up(&server, &name).await;
    let cookie = format!("ferrochat_session={token}");
    let room = room("csrf");
    let own = server.url.clone();
    let post = |headers: &[(&str, &str)], msg: &str| {
        let mut req = client()
            .post(format!("{}/api/chat/{room}", server.url))
            .form(&[("username", "claimed"), ("msg", msg)]);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let upload = |headers: &[(&str, &str)]| {
        let mut req = client()
            .post(format!("{}/api/files/upload", server.url))
            .multipart(reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(b"hello".to_vec()).file_name("a.txt"),
            ));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    let referer = "http://evil.example/page?x=1".to_string();
    let other_port = "http://127.0.0.1:6666".to_string();
    let foreign = [
        ("Origin", "http://evil.example".to_string()),
        ("Origin", other_port.clone()),
        ("Origin", "null".to_string()),
        ("Referer", referer),
        ("Referer", format!("{other_port}/general")),
    ];
    for (header, value) in &foreign {
        let headers = [("Cookie", cookie.as_str()), (*header, value.as_str())];
        assert_detail(&post(&headers, "forged").await, 403, "session cookie");
        assert_detail(&upload(&headers).await, 403, "session cookie");
        let logout = client()
            .post(format!("{}/api/auth/logout", server.url))
            .header("Cookie", &cookie)
            .header(*header, value)
            .send()
            .await
            .unwrap();
        assert_eq!(logout.status(), 403, "a logout from {value}");
        assert!(logout.headers().get("set-cookie").is_none());
    }
    assert_eq!(
        transcript(&server, &room).await,
        "",
        "a forged post was stored"
    );
    let stored: Vec<_> = std::fs::read_dir(files.path()).unwrap().collect();
    assert!(stored.is_empty(), "a forged upload was stored: {stored:?}");
    let (_, listed) = call(&server, Method::GET, "/api/files", None).await;
    assert_eq!(listed, json!([]));

    // This site's own pages; a client that is no page; a bearer token; nobody.
    let cookie_own = [("Cookie", cookie.as_str()), ("Origin", own.as_str())];
    let own_page = format!("{own}/{room}");
    let cookie_referer = [("Cookie", cookie.as_str()), ("Referer", own_page.as_str())];
    let bearer = format!("Bearer {token}");
    let evil = "http://evil.example";
    let bearer_evil = [("Authorization", bearer.as_str()), ("Origin", evil)];
    let anonymous_evil = [("Origin", evil)];
    for headers in [
        &cookie_own[..],
        &cookie_referer[..],
        &[("Cookie", cookie.as_str())][..],
        &bearer_evil[..],
        &anonymous_evil[..],
    ] {
        assert_eq!(post(headers, "fine").await.0, 204, "{headers:?}");
        assert_eq!(upload(headers).await.0, 201, "{headers:?}");
    }
    let lines = lines(&transcript(&server, &room).await);
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(lines[0], format!("{name}: fine"));
    assert_eq!(lines[4], "claimed: fine");
    let logout = client()
        .post(format!("{}/api/auth/logout", server.url))
        .header("Cookie", &cookie)
        .header("Origin", &own)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 200);
    db.drop_db().await;
}

/// `/api/files/health` says whether the store answers, not where it is nor with which
/// keys.
#[tokio::test(flavor = "multi_thread")]
async fn the_files_health_names_no_path_and_no_credentials() {
    let db = TestDb::create(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let dir_name = dir.path().to_str().unwrap().to_string();
    let server =
        Server::start_with(ServerOptions::new(&db.url).env("ROCKET_FILES_DIR", &dir_name)).await;
    let (status, health) = call(&server, Method::GET, "/api/files/health", None).await;
    assert_eq!(
        (status, health["store"]["state"].as_str()),
        (200, Some("up"))
    );
    assert!(!health.to_string().contains(&dir_name), "{health}");
    drop(server);

    // An S3 store that does not answer: neither its address, its bucket nor its keys.
    let endpoint = format!("127.0.0.1:{}", free_port());
    let server = Server::start_with(
        ServerOptions::new(&db.url)
            .env("MINIO_ENDPOINT", &endpoint)
            .env("MINIO_ACCESS_KEY", "accesskeyid")
            .env("MINIO_SECRET_KEY", "secretaccesskey")
            .env("MINIO_BUCKET", "privatebucket"),
    )
    .await;
    let (status, health) = call(&server, Method::GET, "/api/files/health", None).await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["store"]["state"], "down");
    let text = health.to_string();
    for secret in [
        &endpoint[..],
        "accesskeyid",
        "secretaccesskey",
        "privatebucket",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    db.drop_db().await;
}

/// In required mode a stranger learns from `/api/chat/health` that the chat is up, not
/// how many messages it holds; a signed-in caller (and open mode) still sees the count.
#[tokio::test(flavor = "multi_thread")]
async fn the_chat_health_keeps_the_message_count_from_strangers() {
    let db = TestDb::create(Backend::Sqlite).await;
    let server = Server::start_with(required(&db)).await;
    let (_, token) = sign_up(&server, &unique_name("count")).await;
    let (status, health) = call(&server, Method::GET, "/api/chat/health", None).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("healthy")));
    assert!(health.get("messages").is_none(), "{health}");
    let signed_in =
        call_with_token(&server, Method::GET, "/api/chat/health", None, Some(&token)).await;
    assert_eq!(signed_in.1["messages"], 0, "{signed_in:?}");
    drop(server);

    let server = Server::start(&db.url).await;
    let (_, health) = call(&server, Method::GET, "/api/chat/health", None).await;
    assert_eq!(health["messages"], 0, "{health}");
    db.drop_db().await;
}
