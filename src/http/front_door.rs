//! ferrochat's own listener in front of Rocket's, for a server that clients reach directly.
//!
//! Rocket 0.5 reads request headers with no deadline (it sets hyper's
//! `header_read_timeout(None)`), takes every connection it is offered, and keeps its
//! listener to itself: a client that sends one header line every few seconds holds a task
//! and a file descriptor for as long as it likes, and a few thousand such clients leave the
//! server unable to accept anyone (slowloris). So the public address is ours. A connection
//! is taken only under `max_connections` and `connections_per_address` (an IPv6 client is
//! counted by its /64), each request header must arrive whole within
//! `header_timeout_secs` of its first byte (a new connection's of its accept), and a
//! connection silent both ways for `idle_timeout_secs` is closed. Only then are its bytes
//! relayed, unchanged, to Rocket on loopback, so a header that never ends never reaches it.
//!
//! Rocket sees the relay's end as the peer, so [`Peers`] maps the relay's end back to
//! the client's address (`http::client` reads it). A request body is relayed by its
//! `Content-Length`, or chunk by chunk when sent chunked, after which the next request's
//! header has its own deadline. An upgrade Rocket grants (`101`, a WebSocket), or a header
//! this relay does not follow, ends the reading of headers: from there the bytes go through as
//! they come, with the idle limit and the caps still on. An upgrade Rocket refuses leaves
//! the connection an HTTP one, each header under its deadline.

use crate::domain::sync::lock;
use crate::metrics::METRICS;
use ipnet::IpNet;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The longest request header relayed; a longer one is answered 431.
const MAX_HEAD_BYTES: usize = 32 * 1024;
/// The most read from a client at once.
const CHUNK: usize = 8192;
/// The longest chunk-size or trailer line followed.
const MAX_LINE: usize = 8192;
/// Header lines a request may have.
const MAX_HEADERS: usize = 128;
/// How long an answer Rocket sent before closing its end may take to come down.
const ANSWER_AFTER_CLOSE: Duration = Duration::from_secs(5);
/// Descriptors kept for everything but relayed connections (database, Redis, files, logs).
const SPARE_DESCRIPTORS: u64 = 512;

/// What the front door admits, from the settings.
#[derive(Clone, Debug)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub per_address: usize,
    /// Trusted proxies, whose connections carry many clients: counted in all, not as one
    /// address (the proxy caps its clients itself).
    pub proxies: Vec<IpNet>,
}

impl Limits {
    pub fn new(settings: &crate::config::Settings, proxies: Vec<IpNet>) -> Limits {
        let max_connections = match settings.network.max_connections {
            0 => from_open_file_limit(),
            n => n,
        };
        Limits {
            header_timeout: Duration::from_secs(settings.network.header_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(settings.network.idle_timeout_secs.max(1)),
            max_connections: max_connections.max(1),
            per_address: settings.network.connections_per_address.max(1),
            proxies,
        }
    }
}

/// Raises this process's limit on open files to its hard limit, and answers how many
/// relayed connections fit in it: three descriptors each (the client's, both ends of the
/// hop), the spare kept for everything else.
fn from_open_file_limit() -> usize {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit read and write the one struct given.
        let soft = unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return 1024;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit.rlim_cur = limit.rlim_max;
                }
            }
            limit.rlim_cur
        };
        (soft.saturating_sub(SPARE_DESCRIPTORS) / 3).clamp(64, 1 << 20) as usize
    }
    #[cfg(not(unix))]
    {
        1024
    }
}

/// Clients of the connections relayed to Rocket, by the address of the relay's end
/// (managed state): no other connection to Rocket's port can have that address while the
/// relay's is open.
#[derive(Default)]
pub struct Peers(Mutex<HashMap<SocketAddr, SocketAddr>>);

impl Peers {
    /// The client that `peer` relays for; `peer` itself when it is no relay of ours.
    pub fn client_of(&self, peer: SocketAddr) -> SocketAddr {
        if !peer.ip().to_canonical().is_loopback() {
            return peer;
        }
        lock(&self.0).get(&peer).copied().unwrap_or(peer)
    }

    fn register(self: &Arc<Self>, relay_end: SocketAddr, client: SocketAddr) -> Registered {
        lock(&self.0).insert(relay_end, client);
        Registered(self.clone(), relay_end)
    }
}

/// A relay's entry in [`Peers`], removed when the relay ends.
struct Registered(Arc<Peers>, SocketAddr);

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&(self.0).0).remove(&self.1);
    }
}

/// The counts that admit a connection: all of them, and each address's.
struct Gate {
    total: Arc<Semaphore>,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    limit: usize,
    proxies: Vec<IpNet>,
}

/// A connection's place under the caps, given back when it ends.
struct Admission {
    gate: Arc<Gate>,
    key: IpAddr,
    _place: OwnedSemaphorePermit,
}

/// Why a connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Busy,
    Address,
}

impl Gate {
    fn new(limits: &Limits) -> Arc<Gate> {
        Arc::new(Gate {
            total: Arc::new(Semaphore::new(limits.max_connections)),
            per_address: Mutex::new(HashMap::new()),
            limit: limits.per_address,
            proxies: limits.proxies.clone(),
        })
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, Refusal> {
        let key = address_key(ip);
        let place = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Busy)?;
        let proxy = self
            .proxies
            .iter()
            .any(|net| net.contains(&ip.to_canonical()));
        let mut counts = lock(&self.per_address);
        let count = counts.entry(key).or_insert(0);
        if *count >= self.limit && !proxy {
            return Err(Refusal::Address);
        }
        *count += 1;
        METRICS.connections_open.inc();
        Ok(Admission {
            gate: self.clone(),
            key,
            _place: place,
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        METRICS.connections_open.dec();
        let mut counts = lock(&self.gate.per_address);
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// The address a client is counted by: an IPv4 address, or an IPv6 client's /64 (one
/// subscriber's whole allocation, which it may spread its connections over).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

/// Accepts clients on `listener` and relays each one it admits to Rocket at `backend`,
/// until `stop` resolves.
pub async fn serve(
    listener: TcpListener,
    backend: SocketAddr,
    limits: Limits,
    peers: Arc<Peers>,
    stop: impl Future<Output = ()>,
) {
    let gate = Gate::new(&limits);
    let started = Instant::now();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => accepted,
        };
        let (client, addr) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors, or a connection reset before it was taken: waiting a
                // moment lets the ones in flight finish instead of spinning on the error.
                tracing::warn!(error = %err, "front door: cannot accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        match gate.admit(addr.ip()) {
            Ok(admission) => {
                let relay = Relay {
                    backend,
                    limits: limits.clone(),
                    peers: peers.clone(),
                    activity: Activity::new(started),
                    upgrade: Mutex::new(None),
                };
                tokio::spawn(async move {
                    let _admission = admission;
                    relay.run(client, addr).await;
                });
            }
            Err(refusal) => refuse(&client, refusal),
        }
    }
}

/// Answers a connection that was not admitted, without waiting for it: the answer fits in
/// a new socket's send buffer, and a client that never reads it costs nothing.
fn refuse(client: &TcpStream, refusal: Refusal) {
    let (status, reason, label) = match refusal {
        Refusal::Busy => (
            "503 Service Unavailable",
            "the server holds as many connections as it can, try again shortly",
            "busy",
        ),
        Refusal::Address => (
            "429 Too Many Requests",
            "too many connections from your address, close some and try again",
            "address",
        ),
    };
    METRICS.connections_cut.with_label_values(&[label]).inc();
    let _ = client.try_write(plain_answer(status, reason).as_bytes());
}

/// A whole HTTP answer of one line of text, after which the connection closes.
fn plain_answer(status: &str, reason: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 5\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{reason}\n",
        reason.len() + 1
    )
}

/// When bytes last went either way on a connection, in milliseconds since the door opened.
#[derive(Clone)]
struct Activity {
    since: Instant,
    last: Arc<AtomicU64>,
}

impl Activity {
    fn new(since: Instant) -> Activity {
        let activity = Activity {
            since,
            last: Arc::new(AtomicU64::new(0)),
        };
        activity.touch();
        activity
    }

    fn touch(&self) {
        let now = self.since.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        let now = self.since.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)))
    }
}

/// Why a relay ended early.
enum Cut {
    HeaderTimeout,
    Idle,
    BadHeader((&'static str, &'static str)),
    Io,
}

impl From<io::Error> for Cut {
    fn from(_: io::Error) -> Cut {
        Cut::Io
    }
}

/// How the bytes after a request header are to be read.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    /// No body: the next bytes are the next request's header.
    None,
    /// A body of this many bytes, then the next request's header.
    Length(u64),
    /// An upgrade asked for (a socket's handshake): if Rocket's answer is `101`, the rest
    /// of the connection goes through as it comes; if not, the next request follows.
    Upgrade,
    /// A body sent chunked, followed chunk by chunk, then the next request's header.
    Chunked,
    /// Anything this relay does not follow (a `CONNECT`, two lengths, a length that is no
    /// number, an upgrade with a body): the rest of the connection goes through as it comes.
    Through,
}

struct Relay {
    backend: SocketAddr,
    limits: Limits,
    peers: Arc<Peers>,
    activity: Activity,
    /// Told, by the first bytes Rocket sends after an upgrade was asked for, whether they
    /// are a `101`.
    upgrade: Mutex<Option<tokio::sync::oneshot::Sender<bool>>>,
}

impl Relay {
    async fn run(self, client: TcpStream, addr: SocketAddr) {
        let (mut from_client, mut to_client) = client.into_split();
        let mut buf = Vec::new();
        // The first request's header arrives whole before Rocket hears of the connection.
        let first = tokio::time::timeout(
            self.limits.header_timeout,
            read_head(&mut from_client, &mut buf),
        )
        .await;
        let (head_len, framing) = match first {
            Ok(Ok(Some(head))) => head,
            Ok(Ok(None)) | Ok(Err(Cut::Io)) => return,
            Ok(Err(cut)) => return self.cut(&mut to_client, cut).await,
            Err(_) => return self.cut(&mut to_client, Cut::HeaderTimeout).await,
        };
        let backend = match TcpStream::connect(self.backend).await {
            Ok(backend) => backend,
            Err(err) => {
                tracing::warn!(error = %err, "front door: Rocket's listener is not answering");
                refuse(to_client.as_ref(), Refusal::Busy);
                return;
            }
        };
        let _ = backend.set_nodelay(true);
        let Ok(relay_end) = backend.local_addr() else {
            return;
        };
        let _registered = self.peers.register(relay_end, addr);
        let (from_backend, mut to_backend) = backend.into_split();
        self.relay(
            (&mut from_client, &mut to_client),
            (from_backend, &mut to_backend),
            &mut buf,
            (head_len, framing),
        )
        .await;
        let _ = to_client.shutdown().await;
        linger(&mut from_client, buf).await;
    }

    async fn relay(
        &self,
        (from_client, to_client): (&mut OwnedReadHalf, &mut OwnedWriteHalf),
        (from_backend, to_backend): (OwnedReadHalf, &mut OwnedWriteHalf),
        buf: &mut Vec<u8>,
        first: (usize, Framing),
    ) {
        let up = async {
            let result = self.upstream(from_client, to_backend, buf, first).await;
            // The client is done sending: so is the hop, and Rocket answers what it has.
            let _ = to_backend.shutdown().await;
            result
        };
        let down = self.copy_down(from_backend, to_client);
        tokio::pin!(up, down);
        tokio::select! {
            result = &mut up => match result {
                Ok(()) => {
                    let _ = tokio::time::timeout(self.limits.idle_timeout, down).await;
                }
                // Rocket may answer a request before its body (a 404 or a 413 needs none
                // of it) and close: the body then cannot be written, and the answer is
                // on its way down.
                Err(Cut::Io) => {
                    let _ = tokio::time::timeout(ANSWER_AFTER_CLOSE, down).await;
                }
                // A later request's header that never ended, or was no header: the
                // answers to the ones before it still go down, for a moment.
                Err(cut) => {
                    self.count(cut);
                    let _ = tokio::time::timeout(ANSWER_AFTER_CLOSE, down).await;
                }
            },
            _ = &mut down => {}
        }
    }

    /// Relays the client's requests to Rocket, each header only once it is whole.
    async fn upstream(
        &self,
        from_client: &mut (impl AsyncRead + Unpin),
        to_backend: &mut (impl AsyncWrite + Unpin),
        buf: &mut Vec<u8>,
        first: (usize, Framing),
    ) -> Result<(), Cut> {
        let (mut head_len, mut framing) = first;
        loop {
            // Listening for the answer starts before the request goes out.
            let answer = (framing == Framing::Upgrade).then(|| {
                let (tell, told) = tokio::sync::oneshot::channel();
                *lock(&self.upgrade) = Some(tell);
                told
            });
            to_backend.write_all(&buf[..head_len]).await?;
            buf.drain(..head_len);
            // A large header's buffer is not kept for the connection's life (a socket's).
            if buf.capacity() > 4 * CHUNK {
                buf.shrink_to(CHUNK);
            }
            self.activity.touch();
            match framing {
                Framing::None => {}
                Framing::Length(left) => {
                    if !self.relay_bytes(from_client, to_backend, buf, left).await? {
                        return Ok(());
                    }
                }
                Framing::Chunked => {
                    if !self.relay_chunks(from_client, to_backend, buf).await? {
                        return Ok(());
                    }
                }
                Framing::Upgrade => {
                    let Some(told) = answer else { return Ok(()) };
                    match tokio::time::timeout(self.limits.idle_timeout, told).await {
                        Ok(Ok(true)) => return self.through(from_client, to_backend, buf).await,
                        Ok(Ok(false)) => {}
                        // Rocket closed, or said nothing for the idle limit.
                        Ok(Err(_)) | Err(_) => return Ok(()),
                    }
                }
                Framing::Through => return self.through(from_client, to_backend, buf).await,
            }
            // Between requests: the next header's first byte may take as long as the idle
            // limit allows; from then on the whole header has the header deadline.
            if buf.is_empty() && self.read_idle(from_client, buf, CHUNK).await? == 0 {
                return Ok(());
            }
            match tokio::time::timeout(self.limits.header_timeout, read_head(from_client, buf))
                .await
            {
                Ok(Ok(Some((len, next)))) => (head_len, framing) = (len, next),
                Ok(Ok(None)) => return Ok(()),
                Ok(Err(cut)) => return Err(cut),
                Err(_) => return Err(Cut::HeaderTimeout),
            }
        }
    }

    /// Exactly `left` bytes of a body (what came with the header first, then the rest as
    /// it comes); false when the client closed first.
    async fn relay_bytes(
        &self,
        from_client: &mut (impl AsyncRead + Unpin),
        to_backend: &mut (impl AsyncWrite + Unpin),
        buf: &mut Vec<u8>,
        mut left: u64,
    ) -> Result<bool, Cut> {
        loop {
            let held = (buf.len() as u64).min(left) as usize;
            to_backend.write_all(&buf[..held]).await?;
            buf.drain(..held);
            left -= held as u64;
            if left == 0 {
                return Ok(true);
            }
            let want = left.min(CHUNK as u64) as usize;
            if self.read_idle(from_client, buf, want).await? == 0 {
                return Ok(false);
            }
        }
    }

    /// A body sent chunked: each chunk's size line, its bytes and their line end, then
    /// the last chunk's trailer lines up to an empty one; false when the client closed
    /// first. A size line or trailer line that is no such thing ends the connection.
    async fn relay_chunks(
        &self,
        from_client: &mut (impl AsyncRead + Unpin),
        to_backend: &mut (impl AsyncWrite + Unpin),
        buf: &mut Vec<u8>,
    ) -> Result<bool, Cut> {
        loop {
            let (used, size) = loop {
                match httparse::parse_chunk_size(buf) {
                    Ok(httparse::Status::Complete(found)) => break found,
                    Ok(httparse::Status::Partial) if buf.len() < MAX_LINE => {
                        if self.read_idle(from_client, buf, CHUNK).await? == 0 {
                            return Ok(false);
                        }
                    }
                    _ => return Err(Cut::BadHeader(MALFORMED)),
                }
            };
            to_backend.write_all(&buf[..used]).await?;
            buf.drain(..used);
            if size > 0 {
                // The chunk's bytes and the line end after them.
                let whole = size.saturating_add(2);
                if !self
                    .relay_bytes(from_client, to_backend, buf, whole)
                    .await?
                {
                    return Ok(false);
                }
                continue;
            }
            // The last chunk: trailer lines, each whole, until the empty one.
            loop {
                let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                    if buf.len() >= MAX_LINE {
                        return Err(Cut::BadHeader(MALFORMED));
                    }
                    if self.read_idle(from_client, buf, CHUNK).await? == 0 {
                        return Ok(false);
                    }
                    continue;
                };
                to_backend.write_all(&buf[..end + 2]).await?;
                buf.drain(..end + 2);
                if end == 0 {
                    return Ok(true);
                }
            }
        }
    }

    /// The rest of the connection, as it comes (the idle limit still holds).
    async fn through(
        &self,
        from_client: &mut (impl AsyncRead + Unpin),
        to_backend: &mut (impl AsyncWrite + Unpin),
        buf: &mut Vec<u8>,
    ) -> Result<(), Cut> {
        loop {
            to_backend.write_all(buf).await?;
            buf.clear();
            if self.read_idle(from_client, buf, CHUNK).await? == 0 {
                return Ok(());
            }
        }
    }

    /// Rocket's answers to the client, as they come; the first bytes after an upgrade
    /// was asked for say whether it was granted.
    async fn copy_down(
        &self,
        mut from_backend: impl AsyncRead + Unpin,
        to_client: &mut (impl AsyncWrite + Unpin),
    ) {
        let mut chunk = vec![0u8; 8192];
        loop {
            match from_backend.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    self.activity.touch();
                    if let Some(tell) = lock(&self.upgrade).take() {
                        let _ = tell.send(chunk[..n].starts_with(b"HTTP/1.1 101"));
                    }
                    if to_client.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// One read of at most `most` bytes from the client onto `buf`, given up when neither
    /// side has sent anything for the idle limit (a long answer still streaming down keeps
    /// the client's side open).
    async fn read_idle(
        &self,
        from: &mut (impl AsyncRead + Unpin),
        buf: &mut Vec<u8>,
        most: usize,
    ) -> Result<usize, Cut> {
        loop {
            let read = read_some(from, buf, most);
            match tokio::time::timeout(self.limits.idle_timeout, read).await {
                Ok(Ok(n)) => {
                    self.activity.touch();
                    return Ok(n);
                }
                Ok(Err(_)) => return Err(Cut::Io),
                Err(_) if self.activity.quiet_for() < self.limits.idle_timeout => continue,
                Err(_) => return Err(Cut::Idle),
            }
        }
    }

    /// Ends a connection whose first request never reached Rocket, telling the client why.
    async fn cut(&self, to_client: &mut (impl AsyncWrite + Unpin), cut: Cut) {
        let answer = match &cut {
            Cut::BadHeader(reason) => Some(*reason),
            _ => None,
        };
        self.count(cut);
        if let Some((status, reason)) = answer {
            let answer = plain_answer(status, reason);
            let write = to_client.write_all(answer.as_bytes());
            let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
        }
        let _ = to_client.shutdown().await;
    }

    fn count(&self, cut: Cut) {
        let label = match cut {
            Cut::HeaderTimeout => "header_timeout",
            Cut::Idle => "idle",
            Cut::BadHeader(_) => "bad_header",
            Cut::Io => return,
        };
        METRICS.connections_cut.with_label_values(&[label]).inc();
    }
}

/// What a client still sends once its connection is over (the rest of a body Rocket
/// refused without reading it, a request sent behind the last one) is read and dropped
/// for a moment before the socket closes: closing with bytes unread resets the
/// connection, and a reset can reach the client before the answer it has not read yet.
async fn linger(from_client: &mut (impl AsyncRead + Unpin), mut buf: Vec<u8>) {
    const LINGER: Duration = Duration::from_secs(2);
    const MOST: usize = 1 << 20;
    let mut read = 0;
    let deadline = tokio::time::Instant::now() + LINGER;
    while read < MOST {
        buf.clear();
        match tokio::time::timeout_at(deadline, read_some(from_client, &mut buf, CHUNK)).await {
            Ok(Ok(n)) if n > 0 => read += n,
            _ => return,
        }
    }
}

/// A header refused: its status and the one line that says why.
const TOO_LARGE: (&str, &str) = (
    "431 Request Header Fields Too Large",
    "the request's header is too large",
);
const MALFORMED: (&str, &str) = ("400 Bad Request", "the request's header is malformed");

/// Reads at most `most` bytes onto the end of `buf`, which grows by 2 KiB at a time: a
/// connection that sends little (a dribbled header, a socket's frames) holds little.
async fn read_some(
    from: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
    most: usize,
) -> io::Result<usize> {
    if buf.capacity() - buf.len() < 256 {
        buf.reserve(2048);
    }
    (&mut *from).take(most as u64).read_buf(buf).await
}

/// Reads until `buf` holds a whole request header (reading nothing when it already does),
/// and answers its length and how what follows it is framed. `None`: the client closed
/// the connection before a header began.
async fn read_head(
    from: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
) -> Result<Option<(usize, Framing)>, Cut> {
    loop {
        if let Some(head) = parse_head(buf)? {
            return Ok(Some(head));
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Err(Cut::BadHeader(TOO_LARGE));
        }
        let n = read_some(from, buf, CHUNK.min(MAX_HEAD_BYTES - buf.len())).await?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(Cut::Io)
            };
        }
    }
}

/// A whole request header at the start of `buf`, if there is one yet.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, Framing)>, Cut> {
    // Blank lines before a request are allowed (RFC 9112, 2.2); httparse passes them over.
    if buf.is_empty() {
        return Ok(None);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Cut::BadHeader(TOO_LARGE)),
        Err(_) => return Err(Cut::BadHeader(MALFORMED)),
    };
    let mut length = None;
    let mut upgrade = false;
    let mut chunked = false;
    let mut through = request.method == Some("CONNECT");
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("transfer-encoding") {
            // Only `chunked` alone is followed; any other coding, or a list, goes through.
            match header.value.eq_ignore_ascii_case(b"chunked") && !chunked {
                true => chunked = true,
                false => through = true,
            }
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
            match (length, value) {
                (None, Some(n)) => length = Some(n),
                (Some(a), Some(b)) if a == b => {}
                // Two lengths, or one that is no number: Rocket refuses it, and this relay
                // does not guess where the body ends.
                _ => through = true,
            }
        }
    }
    // A chunked body with a length too is a smuggler's request: Rocket refuses it, and this
    // relay follows neither.
    let framing = match (through, chunked, upgrade, length) {
        (true, ..) | (_, true, _, Some(_)) | (_, true, true, _) | (_, _, true, Some(1..)) => {
            Framing::Through
        }
        (_, true, false, None) => Framing::Chunked,
        (_, false, true, _) => Framing::Upgrade,
        (_, false, false, Some(0) | None) => Framing::None,
        (_, false, false, Some(n)) => Framing::Length(n),
    };
    Ok(Some((len, framing)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(head: &str) -> Option<Framing> {
        match parse_head(head.as_bytes()) {
            Ok(Some((len, framing))) => {
                assert_eq!(len, head.find("\r\n\r\n").unwrap() + 4);
                Some(framing)
            }
            Ok(None) => None,
            Err(_) => panic!("refused: {head:?}"),
        }
    }

    #[test]
    fn a_header_is_whole_only_at_its_blank_line() {
        assert_eq!(framing("GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(
            framing("GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(Framing::None)
        );
        assert_eq!(
            framing("POST /api/chat/x HTTP/1.1\r\nContent-Length: 12\r\n\r\n"),
            Some(Framing::Length(12))
        );
        assert_eq!(
            framing("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            Some(Framing::None)
        );
    }

    #[test]
    fn what_the_relay_cannot_follow_goes_through_whole() {
        assert_eq!(
            framing("GET /ws/a/b HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
            Some(Framing::Upgrade)
        );
        assert_eq!(
            framing("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some(Framing::Chunked)
        );
        for head in [
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST /x HTTP/1.1\r\nUpgrade: h2c\r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: five\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(framing(head), Some(Framing::Through), "{head:?}");
        }
    }

    #[test]
    fn a_malformed_or_endless_header_is_refused() {
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"),
            Err(Cut::BadHeader(_))
        ));
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            (0..MAX_HEADERS + 1)
                .map(|i| format!("X-{i}: a\r\n"))
                .collect::<String>()
        );
        assert!(matches!(
            parse_head(many.as_bytes()),
            Err(Cut::BadHeader(TOO_LARGE))
        ));
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let v4: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        assert_eq!(address_key(v4), "203.0.113.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_caps_count_all_and_each_address() {
        let gate = Gate::new(&Limits {
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            max_connections: 4,
            per_address: 2,
            proxies: vec!["10.0.0.0/8".parse().unwrap()],
        });
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let b: IpAddr = "203.0.113.2".parse().unwrap();
        let first = gate.admit(a).unwrap();
        let _second = gate.admit(a).unwrap();
        assert_eq!(gate.admit(a).err(), Some(Refusal::Address));
        let _third = gate.admit(b).unwrap();
        // A trusted proxy brings many clients: past the per-address cap, not past the total.
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let _proxied = [gate.admit(proxy).unwrap()];
        assert_eq!(gate.admit(b).err(), Some(Refusal::Busy));
        assert_eq!(gate.admit(proxy).err(), Some(Refusal::Busy));
        drop(first);
        let _again = gate.admit(a).unwrap();
        assert_eq!(lock(&gate.per_address).len(), 3);
    }
}
