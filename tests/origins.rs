//! The edges of HTTP an attacker reaches first: which page a browser request comes from
//! (whole origins: scheme, host and port), where a token in a URL counts and what of a URL
//! reaches the log, and what the health routes tell strangers. Each test failed on the main
//! before its fix.

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

fn required(db: &TestDb) -> ServerOptions {
    ServerOptions::new(&db.url).env("ROCKET_AUTH", "required")
}

/// Registers `name` and returns its user id and token.
async fn sign_up(server: &Server, name: &str) -> (String, String) {
    let (status, body) = call(
        server,
        Method::POST,
        "/api/auth/register",
        Some(json!({"username": name, "password": "correct horse"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    (
        body["user_id"].as_str().unwrap().to_string(),
        body["token"].as_str().unwrap().to_string(),
    )
}

/// Opens a socket with these headers; the status of the refusal, or 101.
async fn socket_status(server: &Server, path: &str, headers: &[(&str, &str)]) -> u16 {
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
    assert_eq!(socket_status(&server, &path, &[]).await, 101);
    let path = format!("/ws?token={token}");
    assert_eq!(socket_status(&server, &path, &[]).await, 101);
    let log = server.log();
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

/// A page of another port or scheme of this host is another site: with the session
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
        format!("https://127.0.0.1:{port}"),
        "http://127.0.0.1".to_string(),
        "null".to_string(),
    ] {
        let headers = [("Cookie", cookie.as_str()), ("Origin", origin.as_str())];
        let status = socket_status(&server, &path, &headers).await;
        assert_eq!(status, 403, "a socket from {origin} was not refused");
    }
    let headers = [("Cookie", cookie.as_str()), ("Origin", own.as_str())];
    let status = socket_status(&server, &path, &headers).await;
    assert_eq!(status, 101, "this server's own origin {own} refused");
    // A client that is no page sends no Origin.
    assert_eq!(
        socket_status(&server, &path, &[("Cookie", &cookie)]).await,
        101
    );

    // Through the shipped nginx, whose address is then the page's origin: it passes on
    // the Host with its port.
    let nginx = Nginx::start(&[&server]).await;
    let front = Server::at(&nginx.url);
    for (origin, status) in [(nginx.url.as_str(), 101), (own.as_str(), 403)] {
        let headers = [("Cookie", cookie.as_str()), ("Origin", origin)];
        let got = socket_status(&front, &path, &headers).await;
        assert_eq!(got, status, "a socket through nginx from {origin}");
    }
    db.drop_db().await;
}
