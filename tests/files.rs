//! `/api/files`: uploads into a local folder and into a real S3-compatible server (moto),
//! streamed downloads as attachments, the size limit, the type allow-list, and a store
//! that goes away.

mod common;

use common::*;
use reqwest::multipart::{Form, Part};
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

on_every_backend!(files_in_a_local_folder);

async fn upload(
    server: &Server,
    query: &str,
    name: &str,
    mime: &str,
    bytes: Vec<u8>,
) -> (u16, Value) {
    let part = Part::bytes(bytes)
        .file_name(name.to_string())
        .mime_str(mime)
        .unwrap();
    let res = client()
        .post(format!("{}/api/files/upload{query}", server.url))
        .multipart(Form::new().text("note", "ignored").part("file", part))
        .send()
        .await
        .expect("upload");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// A PNG-looking body of `n` bytes.
fn png(n: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend((0..n.saturating_sub(8)).map(|i| (i % 251) as u8));
    bytes.truncate(n);
    bytes
}

/// What every store must do; returns the id of a file left in place.
async fn scenario(server: &Server) -> String {
    let room = room("files");
    let body = png(300_000);
    let (status, file) = upload(
        server,
        &format!("?uploaded_by=u-1&room_id={room}"),
        "../holiday snap.png",
        "image/png",
        body.clone(),
    )
    .await;
    assert_eq!(status, 201, "{file}");
    let id = file["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36);
    assert_eq!(file["original_name"], "holiday snap.png");
    assert_eq!(file["content_type"], "image/png");
    assert_eq!(file["size_bytes"], 300_000);
    assert_eq!(file["uploaded_by"], "u-1");
    assert_eq!(file["room_id"], room.as_str());
    assert_eq!(file["download_url"], format!("/api/files/{id}/download"));
    assert!(chrono::DateTime::parse_from_rfc3339(file["created_at"].as_str().unwrap()).is_ok());

    let (status, meta) = call(server, Method::GET, &format!("/api/files/{id}"), None).await;
    assert_eq!((status, &meta), (200, &file));
    for path in [
        format!("/api/files?room_id={room}"),
        format!("/api/files/files?room_id={room}"),
    ] {
        let (status, list) = call(server, Method::GET, &path, None).await;
        assert_eq!(
            (status, list.as_array().map(Vec::len)),
            (200, Some(1)),
            "{path}"
        );
    }

    let res = client()
        .get(format!("{}/api/files/{id}/download", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let header = |name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(header("content-type"), "image/png");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert!(
        header("content-disposition").starts_with("attachment; filename=\"holiday snap.png\""),
        "{}",
        header("content-disposition")
    );
    assert_eq!(res.bytes().await.unwrap().to_vec(), body);

    // A type off the list, however it is named, and nothing is stored.
    let (status, answer) = upload(
        server,
        "",
        "page.html",
        "text/html",
        b"<script>alert(1)</script>".to_vec(),
    )
    .await;
    assert_eq!(status, 415, "{answer}");
    assert!(answer["detail"].as_str().unwrap().contains("text/html"));
    let (status, _) = upload(
        server,
        "",
        "tool.exe",
        "application/octet-stream",
        b"MZ".to_vec(),
    )
    .await;
    assert_eq!(status, 415);
    // curl's octet-stream for a name it does not know is read from the name.
    let (status, notes) = upload(
        server,
        "",
        "notes.txt",
        "application/octet-stream",
        b"hello".to_vec(),
    )
    .await;
    assert_eq!(
        (status, notes["content_type"].as_str()),
        (201, Some("text/plain"))
    );

    // The limit: 10 MB is taken, one byte more is not.
    let (status, big) = upload(
        server,
        &format!("?room_id={room}"),
        "big.png",
        "image/png",
        png(10 * 1024 * 1024),
    )
    .await;
    assert_eq!(
        (status, big["size_bytes"].as_u64()),
        (201, Some(10 * 1024 * 1024))
    );
    let (status, answer) = upload(
        server,
        &format!("?room_id={room}"),
        "huge.png",
        "image/png",
        png(10 * 1024 * 1024 + 1),
    )
    .await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer["detail"].as_str().unwrap().contains("larger than"));
    let (_, list) = call(
        server,
        Method::GET,
        &format!("/api/files?room_id={room}"),
        None,
    )
    .await;
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(2),
        "the refused file left no row"
    );

    // Bad requests.
    let res = client()
        .post(format!("{}/api/files/upload", server.url))
        .multipart(Form::new().text("other", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = client()
        .post(format!("{}/api/files/upload", server.url))
        .body("raw")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    let res = client()
        .post(format!("{}/api/files/upload", server.url))
        .header("content-type", "multipart/form-data; boundary=xyz")
        .body("--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\nno end")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "a multipart body cut short");
    let (status, _) = upload(server, "", "empty.png", "image/png", Vec::new()).await;
    assert_eq!(status, 400);
    let (status, _) = upload(server, "?room_id=a%2Fb", "a.png", "image/png", png(10)).await;
    assert_eq!(status, 400);
    assert_detail(
        &call(server, Method::GET, "/api/files/no-such-file", None).await,
        404,
        "does not exist",
    );
    assert_detail(
        &call(
            server,
            Method::GET,
            "/api/files/no-such-file/download",
            None,
        )
        .await,
        404,
        "does not exist",
    );

    // Delete.
    let notes_id = notes["id"].as_str().unwrap();
    assert_eq!(
        admin_call(
            server,
            Method::DELETE,
            &format!("/api/files/{notes_id}"),
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(server, Method::GET, &format!("/api/files/{notes_id}"), None)
            .await
            .0,
        404
    );

    let (status, health) = call(server, Method::GET, "/api/files/health", None).await;
    assert_eq!(
        (status, health["store"]["state"].as_str()),
        (200, Some("up")),
        "{health}"
    );
    id
}

async fn files_in_a_local_folder(backend: Backend) {
    let db = TestDb::create(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        ServerOptions::new(&db.url).env("ROCKET_FILES_DIR", dir.path().to_str().unwrap()),
    )
    .await;
    let id = scenario(&server).await;
    // Stored under its UUID, not under the name it was sent with.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.contains(&id), "{names:?}");
    assert!(names.iter().all(|n| n.len() == 36), "{names:?}");
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn files_in_s3() {
    let db = TestDb::create(Backend::MariaDb).await;
    let moto = Moto::start().await;
    moto.create_bucket("chatfiles").await;
    let server = Server::start_with(
        ServerOptions::new(&db.url)
            .env("MINIO_ENDPOINT", &format!("127.0.0.1:{}", moto.port))
            .env("MINIO_ACCESS_KEY", "testing")
            .env("MINIO_SECRET_KEY", "testing"),
    )
    .await;
    let (_, health) = call(&server, Method::GET, "/api/files/health", None).await;
    assert_eq!(health["store"]["kind"], "s3");
    let id = scenario(&server).await;
    let keys = moto.keys("chatfiles").await;
    assert!(keys.contains(&id), "{keys:?}");
    assert!(keys.iter().all(|k| k.len() == 36), "{keys:?}");

    // The store goes away: 503 with a reason, for uploads, downloads and health; chatting
    // goes on.
    let port = moto.kill();
    let (status, answer) = upload(&server, "", "a.png", "image/png", png(1000)).await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer["detail"]
        .as_str()
        .unwrap()
        .starts_with("file store unavailable"));
    assert_detail(
        &call(
            &server,
            Method::GET,
            &format!("/api/files/{id}/download"),
            None,
        )
        .await,
        503,
        "file store unavailable",
    );
    assert_eq!(
        call(&server, Method::GET, "/api/files/health", None)
            .await
            .0,
        503
    );
    assert_eq!(
        call(&server, Method::GET, &format!("/api/files/{id}"), None)
            .await
            .0,
        200,
        "metadata stays readable"
    );
    post_ok(
        &server,
        "general",
        &[("msg", "files are down, chat is not")],
    )
    .await;

    // Back (empty, as moto keeps nothing): a missing bucket is reported, then it works.
    let moto = Moto::start_on(port).await;
    let (status, health) = call(&server, Method::GET, "/api/files/health", None).await;
    assert_eq!(status, 503, "{health}");
    moto.create_bucket("chatfiles").await;
    let back = eventually(Duration::from_secs(10), || async {
        upload(&server, "", "b.png", "image/png", png(1000)).await.0 == 201
    })
    .await;
    assert!(back, "uploads did not come back with the store");
    db.drop_db().await;
}

/// Replicas behind nginx share one S3 bucket: a file uploaded through the front (larger
/// than nginx's default body limit) downloads from every replica.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_behind_nginx_share_the_bucket() {
    let db = TestDb::create(Backend::MariaDb).await;
    let moto = Moto::start().await;
    moto.create_bucket("shared").await;
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let options = ServerOptions::new(&db.url)
            .env("MINIO_ENDPOINT", &moto.endpoint())
            .env("MINIO_BUCKET", "shared");
        replicas.push(Server::start_with(options).await);
    }
    let nginx = Nginx::start(&replicas.iter().collect::<Vec<_>>()).await;
    let front = Server::at(&nginx.url);
    let body = png(3 * 1024 * 1024);
    let (status, file) = upload(
        &front,
        "?room_id=general",
        "big.png",
        "image/png",
        body.clone(),
    )
    .await;
    assert_eq!(status, 201, "{file}");
    for replica in &replicas {
        let url = format!("{}{}", replica.url, file["download_url"].as_str().unwrap());
        let got = client()
            .get(url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(got.to_vec() == body, "a replica served different bytes");
    }
    // Over the limit through nginx: the server's 413, with its reason.
    let (status, answer) = upload(
        &front,
        "",
        "huge.png",
        "image/png",
        png(10 * 1024 * 1024 + 10),
    )
    .await;
    assert_eq!(status, 413, "{answer}");
    db.drop_db().await;
}
