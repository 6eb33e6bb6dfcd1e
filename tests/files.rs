//! `/api/files`: uploads into a local folder and into a real S3-compatible server (moto),
//! streamed downloads as attachments, the size limit, the type allow-list, a store that
//! goes away, and the thumbnails of image uploads (their limits, who may read them, and
//! that nothing of a refused image is kept).

mod common;

use common::*;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use reqwest::multipart::{Form, Part};
use reqwest::Method;
use serde_json::{json, Value};
use std::io::Cursor;
use std::path::Path;
use std::time::Duration;

on_every_backend!(files_in_a_local_folder);

async fn upload(
    server: &Server,
    query: &str,
    name: &str,
    mime: &str,
    bytes: Vec<u8>,
) -> (u16, Value) {
    upload_as(server, None, query, name, mime, bytes).await
}

async fn upload_as(
    server: &Server,
    token: Option<&str>,
    query: &str,
    name: &str,
    mime: &str,
    bytes: Vec<u8>,
) -> (u16, Value) {
    let part = Part::bytes(bytes)
        .file_name(name.to_string())
        .mime_str(mime)
        .unwrap();
    let mut req = client()
        .post(format!("{}/api/files/upload{query}", server.url))
        .multipart(Form::new().text("note", "ignored").part("file", part));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.expect("upload");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn encoded(image: DynamicImage) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A PNG chunk: length, type, data, and the CRC of type and data.
fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
    out
}

/// A real 64x48 PNG of exactly `n` bytes: a private chunk, which readers skip, makes up
/// the size. (Below the picture's own size, its first `n` bytes: only for uploads refused
/// before they are read.)
fn png(n: usize) -> Vec<u8> {
    let picture =
        encoded(RgbImage::from_fn(64, 48, |x, y| Rgb([x as u8 * 4, y as u8 * 5, 90])).into());
    let end = picture.len() - 12; // IEND
    if n < picture.len() + 12 {
        return picture
            .into_iter()
            .chain(std::iter::repeat(0))
            .take(n)
            .collect();
    }
    let filler: Vec<u8> = (0..n - picture.len() - 12)
        .map(|i| (i % 251) as u8)
        .collect();
    let mut bytes = picture[..end].to_vec();
    bytes.extend(chunk(b"frPd", &filler));
    bytes.extend_from_slice(&picture[end..]);
    assert_eq!(bytes.len(), n);
    bytes
}

/// A PNG of a few hundred bytes whose header says it is 100000x100000: decoded, it would
/// take 30 GB.
fn bomb() -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no interlace
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend(chunk(b"IHDR", &ihdr));
    // The start of a zlib stream of zeros: the rows a bomb would unpack to.
    bytes.extend(chunk(
        b"IDAT",
        &[0x78, 0x9c, 0xed, 0xc1, 0x01, 0x0d, 0x00, 0x00],
    ));
    bytes.extend(chunk(b"IEND", &[]));
    bytes
}

/// The names in the uploads folder.
fn stored(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// An object's name: a UUID, or a UUID and `.thumb` for its thumbnail.
fn object_name(name: &str) -> bool {
    name.len() == 36 || name.len() == 42 && name.ends_with(".thumb")
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
    // Never enlarged.
    assert_eq!(file["thumbnail_url"], format!("/api/files/{id}/thumbnail"));
    assert_eq!(
        (&file["thumbnail_width"], &file["thumbnail_height"]),
        (&json!(64), &json!(48))
    );
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
    assert_eq!(notes["thumbnail_url"], Value::Null);

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
    assert!(names.contains(&format!("{id}.thumb")), "{names:?}");
    assert!(names.iter().all(|n| object_name(n)), "{names:?}");
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
    assert!(keys.contains(&format!("{id}.thumb")), "{keys:?}");
    assert!(keys.iter().all(|k| object_name(k)), "{keys:?}");

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

/// GETs `path` (with the token, if any): status, content type and bytes.
async fn fetch_bytes(server: &Server, path: &str, token: Option<&str>) -> (u16, String, Vec<u8>) {
    let mut req = client().get(format!("{}{path}", server.url));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, content_type, res.bytes().await.unwrap().to_vec())
}

/// Image uploads get a thumbnail made by the server; other files, SVG among them, do not;
/// an image too large to decode (413) or not an image at all (415) leaves nothing behind;
/// a private room's thumbnails are its members'; deleting the file, or its room, takes
/// the thumbnail too.
#[tokio::test(flavor = "multi_thread")]
async fn thumbnails() {
    let db = TestDb::create(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        ServerOptions::new(&db.url)
            .env("ROCKET_FILES_DIR", dir.path().to_str().unwrap())
            .env(
                "ROCKET_ALLOWED_FILE_TYPES",
                r#"["image/png", "image/jpeg", "image/svg+xml", "text/plain"]"#,
            ),
    )
    .await;
    let (_, olga) = sign_up(&server, &unique_name("olga")).await;
    let (_, bob) = sign_up(&server, &unique_name("bob")).await;
    let room = make_room(&server, "pictures", true, &olga).await;
    let query = format!("?room_id={room}");

    // 1200x800, opaque: a 360x240 JPEG.
    let photo = RgbImage::from_fn(1200, 800, |x, y| Rgb([(x / 5) as u8, (y / 4) as u8, 128]));
    let (status, file) = upload_as(
        &server,
        Some(&olga),
        &query,
        "photo.png",
        "image/png",
        encoded(photo.into()),
    )
    .await;
    assert_eq!(status, 201, "{file}");
    let id = file["id"].as_str().unwrap().to_string();
    let url = format!("/api/files/{id}/thumbnail");
    assert_eq!(file["thumbnail_url"], url.as_str());
    assert_eq!(
        (&file["thumbnail_width"], &file["thumbnail_height"]),
        (&json!(360), &json!(240))
    );
    let res = client()
        .get(format!("{}{url}", server.url))
        .bearer_auth(&olga)
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
    assert_eq!(header("content-type"), "image/jpeg");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("content-security-policy"), "sandbox");
    assert_eq!(
        header("cache-control"),
        "private, max-age=31536000, immutable"
    );
    assert_eq!(header("content-disposition"), "", "shown inline");
    let thumb = image::load_from_memory(&res.bytes().await.unwrap()).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (360, 240));

    // To a stranger, signed in or not, a private room's file does not exist.
    for token in [Some(bob.as_str()), None] {
        assert_detail(
            &call_with_token(&server, Method::GET, &url, None, token).await,
            404,
            "does not exist",
        );
    }

    // See-through pixels stay see-through: a PNG.
    let sticker = RgbaImage::from_fn(800, 800, |x, _| {
        Rgba([255, 0, 0, if x < 400 { 0 } else { 255 }])
    });
    let (status, file) = upload_as(
        &server,
        Some(&olga),
        &query,
        "sticker.png",
        "image/png",
        encoded(sticker.into()),
    )
    .await;
    assert_eq!(status, 201, "{file}");
    assert_eq!(
        (&file["thumbnail_width"], &file["thumbnail_height"]),
        (&json!(360), &json!(360))
    );
    let (status, content_type, bytes) = fetch_bytes(
        &server,
        file["thumbnail_url"].as_str().unwrap(),
        Some(&olga),
    )
    .await;
    assert_eq!((status, content_type.as_str()), (200, "image/png"));
    assert!(image::load_from_memory(&bytes).unwrap().color().has_alpha());

    // SVG is a document, never a picture of ours: stored, downloadable, no thumbnail.
    let (status, svg) = upload_as(
        &server,
        Some(&olga),
        &query,
        "logo.svg",
        "image/svg+xml",
        br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#.to_vec(),
    )
    .await;
    assert_eq!(status, 201, "{svg}");
    assert_eq!(
        (
            &svg["thumbnail_url"],
            &svg["thumbnail_width"],
            &svg["thumbnail_height"]
        ),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    assert_detail(
        &call_with_token(
            &server,
            Method::GET,
            &format!("/api/files/{}/thumbnail", svg["id"].as_str().unwrap()),
            None,
            Some(&olga),
        )
        .await,
        404,
        "this file has no thumbnail",
    );

    // A bomb: refused from its header, and nothing of it kept.
    let before = stored(dir.path());
    let (status, answer) = upload_as(
        &server,
        Some(&olga),
        &query,
        "bomb.png",
        "image/png",
        bomb(),
    )
    .await;
    assert_detail(
        &(status, answer),
        413,
        "image is 100000x100000 pixels; at most 40 megapixels are accepted",
    );
    // Named and typed as a PNG, but text.
    let (status, answer) = upload_as(
        &server,
        Some(&olga),
        &query,
        "x.png",
        "application/octet-stream",
        b"this is not a picture".to_vec(),
    )
    .await;
    assert_detail(&(status, answer), 415, "not a readable PNG image");
    assert_eq!(stored(dir.path()), before, "a refused image left an object");
    let (status, list) = call_with_token(
        &server,
        Method::GET,
        &format!("/api/files?room_id={room}"),
        None,
        Some(&olga),
    )
    .await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["original_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        (status, names),
        (200, vec!["logo.svg", "sticker.png", "photo.png"])
    );

    // Deleting the file takes its thumbnail.
    assert_eq!(
        call_with_token(
            &server,
            Method::DELETE,
            &format!("/api/files/{id}"),
            None,
            Some(&olga)
        )
        .await
        .0,
        200
    );
    assert_eq!(fetch_bytes(&server, &url, Some(&olga)).await.0, 404);
    let names = stored(dir.path());
    assert!(!names.iter().any(|n| n.starts_with(&id)), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with(".thumb")), "{names:?}");

    // Deleting the room takes the rest, thumbnails included.
    let (status, deleted) = call_with_token(
        &server,
        Method::DELETE,
        &format!("/api/chat/rooms/{room}"),
        None,
        Some(&olga),
    )
    .await;
    assert_eq!(
        (status, &deleted["files_deleted"]),
        (200, &json!(2)),
        "{deleted}"
    );
    assert_eq!(stored(dir.path()), Vec::<String>::new());
    db.drop_db().await;
}
