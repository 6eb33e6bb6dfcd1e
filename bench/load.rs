//! Load generator for `bench/run`, for what wrk cannot do: many slow pollers holding a
//! rhythm, and WebSocket fan-out to thousands of sockets.
//!
//!   cargo run --release --example load -- pollers <base-url>[,<base-url>...] <room> <clients> <seconds>
//!   cargo run --release --example load -- fanout <base-url> <room> <clients> <messages> <server-pid>
//!
//! Each prints one JSON line of results.

use futures_util::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(mut ms: Vec<f64>) -> (f64, f64, f64) {
    ms.sort_by(|a, b| a.total_cmp(b));
    (
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN),
    )
}

/// A minimal HTTP/1.1 keep-alive GET, so 20,000 pollers cost the generator little.
async fn get(
    stream: &mut TcpStream,
    host: &str,
    path: &str,
    etag: &str,
    buf: &mut Vec<u8>,
) -> std::io::Result<u16> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nIf-None-Match: {etag}\r\n\r\n");
    stream.write_all(req.as_bytes()).await?;
    buf.clear();
    let mut chunk = [0u8; 16384];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(status);
        }
    }
}

/// One process may hold only so many sockets (20,000 files here, on each side), so pages
/// are spread over shard processes of at most this many each.
const PAGES_PER_SHARD: usize = 9_000;

/// Pages polling every 1.5 s, over shard processes (see [`PAGES_PER_SHARD`]), each shard
/// on the next of the comma-separated servers; one JSON line for them all.
async fn pollers(bases: &str, room: &str, clients: usize, seconds: u64) {
    let bases: Vec<&str> = bases.split(',').collect();
    let shards = clients
        .div_ceil(PAGES_PER_SHARD)
        .next_multiple_of(bases.len());
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..shards)
        .map(|k| {
            let pages = clients / shards + usize::from(k < clients % shards);
            tokio::process::Command::new(&exe)
                .args(["poll-shard", bases[k % bases.len()], room])
                .args([pages.to_string(), seconds.to_string()])
                .output()
        })
        .collect();
    let (mut steady, mut storm, mut errors, mut failed, mut from) =
        (Vec::new(), Vec::new(), 0u64, 0u64, 0f64);
    for out in futures_util::future::join_all(children).await {
        let out = out.unwrap();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut f = line.split(' ');
            match (f.next(), f.next().and_then(|v| v.parse::<f64>().ok())) {
                (Some("L"), Some(ms)) => steady.push(ms),
                (Some("W"), Some(ms)) => storm.push(ms),
                (Some("E"), Some(e)) => {
                    let rest: Vec<f64> = f.filter_map(|v| v.parse().ok()).collect();
                    errors += e as u64;
                    failed += rest[0] as u64;
                    from = from.max(rest[1]);
                }
                _ => {}
            }
        }
    }
    let requests = steady.len();
    let (p50, p99, max) = summary(steady);
    let (_, storm_p99, storm_max) = summary(storm);
    println!(
        "{{\"clients\":{clients},\"servers\":{},\"shards\":{shards},\"requests\":{requests},\"rps\":{:.1},\"p50_ms\":{p50:.2},\"p99_ms\":{p99:.2},\"max_ms\":{max:.2},\"errors\":{errors},\"clients_failed\":{failed},\"measured_from_s\":{from:.1},\"connecting_p99_ms\":{storm_p99:.2},\"connecting_max_ms\":{storm_max:.2}}}",
        bases.len(),
        requests as f64 / (seconds as f64 - from)
    );
}

/// One shard of [`pollers`]: prints `L <ms>` per poll once every page of the shard is
/// connected and has polled for one period, `W <ms>` per poll before that (the connect
/// storm), and `E <errors> <pages that could not connect> <measured from, s>`.
async fn poll_shard(base: &str, room: &str, clients: usize, seconds: u64) {
    let host = base.trim_start_matches("http://").to_string();
    let etag = reqwest::get(format!("{base}/api/chat/{room}"))
        .await
        .unwrap()
        .headers()["etag"]
        .to_str()
        .unwrap()
        .to_string();
    let path = format!("/api/chat/{room}");
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let period = Duration::from_millis(1500);
    // (pages connected or failed, ms from start when the rhythm is measured from)
    let settled = Arc::new((AtomicU64::new(0), AtomicU64::new(u64::MAX)));
    let mut tasks = Vec::with_capacity(clients);
    for i in 0..clients {
        let (host, path, etag, settled) =
            (host.clone(), path.clone(), etag.clone(), settled.clone());
        tasks.push(tokio::spawn(async move {
            // Spread the first polls over one period, as pages opened at random times are.
            tokio::time::sleep(period * i as u32 / clients as u32).await;
            let connected = TcpStream::connect(&host).await;
            if settled.0.fetch_add(1, Relaxed) + 1 == clients as u64 {
                let at = started.elapsed() + period;
                settled.1.store(at.as_millis() as u64, Relaxed);
            }
            let mut stream = connected.ok()?;
            let (mut steady, mut storm, mut errors, mut buf) =
                (Vec::new(), Vec::new(), 0u64, Vec::new());
            let mut next = tokio::time::Instant::now();
            while Instant::now() < end {
                let t = Instant::now();
                let counted =
                    t.duration_since(started).as_millis() as u64 > settled.1.load(Relaxed);
                match get(&mut stream, &host, &path, &etag, &mut buf).await {
                    Ok(304) if counted => steady.push(t.elapsed().as_secs_f64() * 1000.0),
                    Ok(304) => storm.push(t.elapsed().as_secs_f64() * 1000.0),
                    _ => {
                        errors += 1;
                        stream = TcpStream::connect(&host).await.ok()?;
                    }
                }
                next += period;
                tokio::time::sleep_until(next).await;
            }
            Some((steady, storm, errors))
        }));
    }
    let (mut out, mut errors, mut failed) = (String::new(), 0, 0);
    for t in tasks {
        match t.await.ok().flatten() {
            Some((steady, storm, e)) => {
                steady
                    .iter()
                    .for_each(|ms| out.push_str(&format!("L {ms:.3}\n")));
                storm
                    .iter()
                    .for_each(|ms| out.push_str(&format!("W {ms:.3}\n")));
                errors += e;
            }
            None => failed += 1,
        }
    }
    let from = settled.1.load(Relaxed) as f64 / 1000.0;
    println!("{out}E {errors} {failed} {from:.1}");
}

fn now_ms() -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    now.as_secs_f64() * 1000.0
}

fn rss_kb(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_string)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

async fn fanout(base: &str, room: &str, clients: usize, messages: usize, pid: &str) {
    let ws_base = base.replacen("http://", "ws://", 1);
    let before = rss_kb(pid);
    // Every socket is read from the moment it opens (a socket nobody reads is a slow
    // reader, and the server rightly drops it). Joins are announced to everyone already in
    // the room, so connecting is a storm of frames; it is counted, and waited out.
    let frames = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<f64>();
    for batch in (0..clients).collect::<Vec<_>>().chunks(100) {
        let connects = batch.iter().map(|i| {
            let url = format!("{ws_base}/ws/{room}/bench{i}");
            async move {
                tokio_tungstenite::connect_async(url)
                    .await
                    .ok()
                    .map(|c| c.0)
            }
        });
        for ws in futures_util::future::join_all(connects).await {
            let Some(mut ws) = ws else {
                refused.fetch_add(1, Relaxed);
                continue;
            };
            let (tx, frames, closed) = (tx.clone(), frames.clone(), closed.clone());
            tokio::spawn(async move {
                while let Some(Ok(frame)) = ws.next().await {
                    frames.fetch_add(1, Relaxed);
                    let Message::Text(text) = frame else { continue };
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                        continue;
                    };
                    // Only timed messages count (the warm-up post is not one).
                    let sent = v["content"].as_str().and_then(|c| c.parse::<f64>().ok());
                    if let (true, Some(sent)) = (v["type"] == "message", sent) {
                        let _ = tx.send(now_ms() - sent);
                    }
                }
                closed.fetch_add(1, Relaxed);
            });
        }
    }
    drop(tx);
    let mut last = u64::MAX;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = frames.load(Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    let idle_rss = rss_kb(pid);
    let per_conn_kb = (idle_rss.saturating_sub(before)) as f64 / clients as f64;

    let client = reqwest::Client::new();
    // One unmeasured post first: it opens the generator's HTTP connection.
    let res = client
        .post(format!("{base}/api/chat/{room}"))
        .form(&[("username", "bench"), ("msg", "warm-up")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..messages {
        let now = now_ms();
        let res = client
            .post(format!("{base}/api/chat/{room}"))
            .form(&[("username", "bench"), ("msg", &format!("{now:.3}"))])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let expected = clients * messages;
    let mut lat = Vec::with_capacity(expected);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while lat.len() < expected {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ms)) => lat.push(ms),
            _ => break,
        }
    }
    let received = lat.len();
    let (p50, p99, max) = summary(lat);
    println!(
        "{{\"clients\":{clients},\"refused\":{},\"closed\":{},\"messages\":{messages},\"delivered\":{received},\"expected\":{expected},\"p50_ms\":{p50:.2},\"p99_ms\":{p99:.2},\"max_ms\":{max:.2},\"rss_idle_kb\":{idle_rss},\"rss_before_kb\":{before},\"kb_per_connection\":{per_conn_kb:.1}}}",
        refused.load(Relaxed),
        closed.load(Relaxed)
    );
    std::process::exit(0);
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("pollers") => pollers(&args[2], &args[3], args[4].parse().unwrap(), args[5].parse().unwrap()).await,
        Some("poll-shard") => poll_shard(&args[2], &args[3], args[4].parse().unwrap(), args[5].parse().unwrap()).await,
        Some("fanout") => fanout(&args[2], &args[3], args[4].parse().unwrap(), args[5].parse().unwrap(), &args[6]).await,
        _ => eprintln!("usage: load pollers <url>[,<url>...] <room> <clients> <seconds> | load fanout <url> <room> <clients> <messages> <pid>"),
    }
}
