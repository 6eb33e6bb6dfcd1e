//! Abuse limits, per signed-in user, else per client address (see `guards::ClientAddr`;
//! an IPv6 client counts by its /64, which one subscriber usually holds whole): so people
//! behind one address (an office, a campus) who sign in do not share a bucket, and a
//! flood from one account is stopped wherever it comes from. Token buckets (governor's GCRA) on
//! posts at every door, room creation, uploads (count and bytes a day), heartbeats and
//! typing calls, and on each socket's frames; and a cap on sockets per address. Over a
//! limit: 429 with `Retry-After` and a one-line reason (on a socket, an error frame). Off
//! unless `rate_limits` is set; the defaults are far above a person chatting and far
//! below a script flooding.

use super::client::ClientAddr;
use crate::config::Settings;
use crate::domain::sync::lock;
use crate::domain::Error;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest, Request};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Clients remembered per bucket before the idle ones are forgotten at once, rather than
/// at the next sweep: the buckets cannot grow with an attacker's supply of addresses.
const MAX_CLIENTS: usize = 100_000;
const SWEEP_EVERY: Duration = Duration::from_secs(60);

type Keyed = DefaultKeyedRateLimiter<Key>;

/// Whose bucket: a signed-in user's, or an address's.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    User(Arc<str>),
    Addr(IpAddr),
}

/// What a client may do how often.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    Post,
    RoomCreation,
    Upload,
    Heartbeat,
    /// Registrations and sign-ins.
    Signing,
    ReadMark,
    Search,
    /// Posts through one incoming webhook, whoever sends them.
    HookPost,
    /// Hook URLs read from the database, per client address: made-up ones cost a read.
    HookLookup,
}

pub struct Limiter {
    enabled: bool,
    posts: Keyed,
    rooms: Keyed,
    uploads: Keyed,
    upload_kib: Keyed,
    heartbeats: Keyed,
    signing: Keyed,
    read_marks: Keyed,
    searches: Keyed,
    hook_posts: Keyed,
    hook_lookups: Keyed,
    /// Wrong passwords per account name and client address. Only failures count, and
    /// only from where they came: a stranger's guesses do not lock the owner out.
    sign_in_failures: Mutex<HashMap<(String, IpAddr), Failures>>,
    frames: Quota,
    sockets: Mutex<HashMap<IpAddr, usize>>,
    max_sockets: usize,
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

/// `n` per `period`, all of them at once at most `burst`.
fn quota(n: u32, period: Duration, burst: u32) -> Quota {
    let per_one = period / nonzero(n).get();
    Quota::with_period(per_one.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(nonzero(burst))
}

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

impl Limiter {
    pub fn new(settings: &Settings) -> Arc<Self> {
        let s = settings;
        let limiter = Arc::new(Limiter {
            enabled: s.rate_limits_on(),
            posts: RateLimiter::keyed(quota(
                s.limits.posts_per_minute,
                MINUTE,
                s.limits.posts_burst,
            )),
            rooms: RateLimiter::keyed(quota(
                s.limits.rooms_per_hour,
                HOUR,
                s.limits.rooms_per_hour.min(10),
            )),
            uploads: RateLimiter::keyed(quota(
                s.limits.uploads_per_day,
                DAY,
                s.limits.uploads_per_day.min(20),
            )),
            upload_kib: RateLimiter::keyed(quota(
                s.limits.upload_mib_per_day.saturating_mul(1024),
                DAY,
                s.limits.upload_mib_per_day.saturating_mul(1024),
            )),
            heartbeats: RateLimiter::keyed(quota(
                s.limits.heartbeats_per_minute,
                MINUTE,
                s.limits.heartbeats_per_minute.div_ceil(2),
            )),
            signing: RateLimiter::keyed(quota(
                s.limits.sign_ins_per_hour,
                HOUR,
                s.limits.sign_ins_per_hour.min(10),
            )),
            read_marks: RateLimiter::keyed(quota(
                s.limits.read_marks_per_minute,
                MINUTE,
                s.limits.read_marks_per_minute.div_ceil(2),
            )),
            searches: RateLimiter::keyed(quota(
                s.limits.searches_per_minute,
                MINUTE,
                s.limits.searches_per_minute.div_ceil(3),
            )),
            hook_posts: RateLimiter::keyed(quota(
                s.limits.hook_posts_per_minute,
                MINUTE,
                s.limits.hook_posts_per_minute.div_ceil(3),
            )),
            hook_lookups: RateLimiter::keyed(quota(
                s.limits.hook_lookups_per_minute,
                MINUTE,
                s.limits.hook_lookups_per_minute.div_ceil(3),
            )),
            sign_in_failures: Mutex::default(),
            frames: quota(s.limits.frames_per_minute, MINUTE, s.limits.frames_burst),
            sockets: Mutex::default(),
            max_sockets: s.limits.sockets_per_client.max(1),
        });
        if limiter.enabled {
            let weak = Arc::downgrade(&limiter);
            tokio::spawn(sweep(weak));
        }
        limiter
    }

    fn keyed(&self, bucket: Bucket) -> &Keyed {
        match bucket {
            Bucket::Post => &self.posts,
            Bucket::RoomCreation => &self.rooms,
            Bucket::Upload => &self.uploads,
            Bucket::Heartbeat => &self.heartbeats,
            Bucket::Signing => &self.signing,
            Bucket::ReadMark => &self.read_marks,
            Bucket::Search => &self.searches,
            Bucket::HookPost => &self.hook_posts,
            Bucket::HookLookup => &self.hook_lookups,
        }
    }

    /// Whether this account name may be tried from this address, or 429 once it has had
    /// [`FAILURES_ALLOWED`] wrong passwords from there within [`FAILURE_WINDOW`]. Asked
    /// before the password is checked, so a locked pair learns nothing of its guess.
    pub fn check_sign_in(&self, username: &str, client: ClientAddr) -> Result<(), Error> {
        if !self.enabled {
            return Ok(());
        }
        let key = sign_in_key(username, client);
        let failures = lock(&self.sign_in_failures);
        match failures.get(&key).and_then(Failures::locked_for) {
            Some(wait) => {
                let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                Err(Error::TooManyRequests {
                    reason: format!(
                        "too many wrong passwords for {} from this address: try again in {secs} s",
                        key.0
                    ),
                    retry_after_secs: secs,
                })
            }
            None => Ok(()),
        }
    }

    /// How a sign-in try ended: a wrong password (401, or 403 for a wrong current password)
    /// counts against the name from this address; a right one clears the count. Anything
    /// else (a limit, the database away) says nothing of the password.
    pub fn count_sign_in<T>(&self, username: &str, client: ClientAddr, result: &Result<T, Error>) {
        if !self.enabled {
            return;
        }
        let key = sign_in_key(username, client);
        let mut failures = lock(&self.sign_in_failures);
        match result {
            Ok(_) => {
                failures.remove(&key);
            }
            Err(Error::Unauthorized(_) | Error::Forbidden(_)) => {
                if failures.len() >= MAX_CLIENTS && !failures.contains_key(&key) {
                    failures.retain(|_, f| !f.lapsed());
                    if failures.len() >= MAX_CLIENTS {
                        failures.clear();
                    }
                }
                failures.entry(key).or_insert_with(Failures::new).add();
            }
            Err(_) => {}
        }
    }

    /// One more of `bucket` for this user (signed in), else this client address, or 429.
    pub fn check(
        &self,
        bucket: Bucket,
        client: ClientAddr,
        user: Option<&str>,
    ) -> Result<(), Error> {
        self.check_n(bucket, client, user, 1)
    }

    fn check_n(
        &self,
        bucket: Bucket,
        client: ClientAddr,
        user: Option<&str>,
        n: u32,
    ) -> Result<(), Error> {
        if !self.enabled {
            return Ok(());
        }
        let limiter = match bucket {
            Bucket::Upload if n > 1 => &self.upload_kib,
            other => self.keyed(other),
        };
        let key = match user {
            // Sign-ins are counted by address: whoever tries them has not proven anyone.
            Some(user) if bucket != Bucket::Signing => Key::User(Arc::from(user)),
            _ => Key::Addr(key(client.0)),
        };
        if limiter.len() >= MAX_CLIENTS {
            limiter.retain_recent();
        }
        match limiter.check_key_n(&key, nonzero(n)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(too_many(
                bucket,
                &key,
                not_until.wait_time_from(DefaultClock::default().now()),
            )),
            // More than a whole day's allowance at once.
            Err(_) => Err(too_many(bucket, &key, DAY)),
        }
    }

    /// An upload of about `bytes`: counted against the day's bytes before it is read.
    pub fn check_upload_bytes(
        &self,
        client: ClientAddr,
        user: Option<&str>,
        bytes: u64,
    ) -> Result<(), Error> {
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .max(2);
        self.check_n(Bucket::Upload, client, user, kib)
    }

    /// A socket's own frame bucket; none when limits are off.
    pub fn frames(&self) -> Option<DefaultDirectRateLimiter> {
        self.enabled.then(|| RateLimiter::direct(self.frames))
    }

    /// A socket opened by this client, or 429 when it holds as many as it may. The lease
    /// gives the place back when dropped.
    pub fn open_socket(self: &Arc<Self>, client: ClientAddr) -> Result<SocketLease, Error> {
        if !self.enabled {
            return Ok(SocketLease(None));
        }
        let key = key(client.0);
        let mut sockets = lock(&self.sockets);
        let open = sockets.entry(key).or_default();
        if *open >= self.max_sockets {
            return Err(Error::TooManyRequests {
                reason: format!(
                    "this address holds {} sockets already, the most it may",
                    self.max_sockets
                ),
                retry_after_secs: 10,
            });
        }
        *open += 1;
        Ok(SocketLease(Some((Arc::downgrade(self), key))))
    }
}

/// A socket's place among its client's sockets.
#[derive(Debug)]
pub struct SocketLease(Option<(Weak<Limiter>, IpAddr)>);

impl Drop for SocketLease {
    fn drop(&mut self) {
        let Some((limiter, key)) = self.0.take() else {
            return;
        };
        if let Some(limiter) = limiter.upgrade() {
            let mut sockets = lock(&limiter.sockets);
            if let Some(open) = sockets.get_mut(&key) {
                *open = open.saturating_sub(1);
                if *open == 0 {
                    sockets.remove(&key);
                }
            }
        }
    }
}

/// Wrong passwords one account name may have from one address within the window.
pub const FAILURES_ALLOWED: u32 = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(900);

/// Wrong passwords since the first of a window.
#[derive(Debug)]
struct Failures {
    count: u32,
    since: Instant,
}

impl Failures {
    fn new() -> Self {
        Failures {
            count: 0,
            since: Instant::now(),
        }
    }

    fn lapsed(&self) -> bool {
        self.since.elapsed() >= FAILURE_WINDOW
    }

    fn add(&mut self) {
        if self.lapsed() {
            *self = Failures::new();
        }
        self.count += 1;
    }

    /// How long until the pair may be tried again, if it is locked now.
    fn locked_for(&self) -> Option<Duration> {
        (self.count >= FAILURES_ALLOWED && !self.lapsed())
            .then(|| FAILURE_WINDOW.saturating_sub(self.since.elapsed()))
    }
}

/// An account name as sign-in compares them (trimmed, any case), with the client's
/// address as its bucket counts it.
fn sign_in_key(username: &str, client: ClientAddr) -> (String, IpAddr) {
    let name = username.trim().to_lowercase().chars().take(64).collect();
    (name, key(client.0))
}

/// IPv4 addresses as they are; IPv6 by their /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn too_many(bucket: Bucket, key: &Key, wait: Duration) -> Error {
    let what = match bucket {
        Bucket::Post => "too many messages",
        Bucket::RoomCreation => "too many rooms created",
        Bucket::Upload => "too many uploads",
        Bucket::Heartbeat => "too many presence calls",
        Bucket::Signing => "too many sign-ins",
        Bucket::ReadMark => "too many read marks",
        Bucket::Search => "too many searches",
        Bucket::HookPost => "too many posts through this hook",
        Bucket::HookLookup => "too many unknown hook URLs",
    };
    // A hook's bucket is the hook's own, whoever calls it.
    let from = match (bucket, key) {
        (Bucket::HookPost, _) => "",
        (_, Key::User(_)) => " from this user",
        (_, Key::Addr(_)) => " from this address",
    };
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    Error::TooManyRequests {
        reason: format!("{what}{from}: try again in {secs} s"),
        retry_after_secs: secs,
    }
}

/// Forgets clients whose buckets are full again, so the maps hold only the active ones.
async fn sweep(limiter: Weak<Limiter>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tick.tick().await;
        let Some(limiter) = limiter.upgrade() else {
            return;
        };
        for keyed in [
            &limiter.posts,
            &limiter.rooms,
            &limiter.uploads,
            &limiter.upload_kib,
            &limiter.heartbeats,
            &limiter.signing,
            &limiter.read_marks,
            &limiter.searches,
            &limiter.hook_posts,
            &limiter.hook_lookups,
        ] {
            keyed.retain_recent();
            keyed.shrink_to_fit();
        }
        let mut failures = lock(&limiter.sign_in_failures);
        failures.retain(|_, f| !f.lapsed());
        failures.shrink_to_fit();
    }
}

/// A request guard per bucket: the client has room for one more of it.
macro_rules! bucket_guard {
    ($($guard:ident => $bucket:expr),* $(,)?) => {$(
        pub struct $guard;

        #[rocket::async_trait]
        impl<'r> FromRequest<'r> for $guard {
            type Error = Error;

            async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Error> {
                // Limits off (open mode's default): nothing to look up on the hot path.
                let Some(limiter) = req.rocket().state::<Arc<Limiter>>().filter(|l| l.enabled) else {
                    return Outcome::Success($guard);
                };
                let Some(client) = ClientAddr::of(req) else {
                    return Outcome::Success($guard);
                };
                // The caller is worked out once per request (and cached): a token that is
                // not valid fails the handler's own `Caller` guard.
                let caller = req.guard::<crate::domain::Caller>().await.succeeded();
                let user = caller.as_ref().and_then(|c| c.user.as_ref()).map(|u| u.user_id.as_str());
                match limiter.check($bucket, client, user) {
                    Ok(()) => Outcome::Success($guard),
                    Err(err) => super::client::fail(req, err),
                }
            }
        }
    )*};
}

bucket_guard! {
    Posting => Bucket::Post,
    RoomCreation => Bucket::RoomCreation,
    Uploading => Bucket::Upload,
    Heartbeating => Bucket::Heartbeat,
    Signing => Bucket::Signing,
    MarkingRead => Bucket::ReadMark,
    Searching => Bucket::Search,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(posts_per_minute: u32, burst: u32) -> Arc<Limiter> {
        let mut settings = Settings::default();
        settings.limits.rate_limits = Some(true);
        settings.limits.posts_per_minute = posts_per_minute;
        settings.limits.posts_burst = burst;
        settings.limits.sockets_per_client = 2;
        Limiter::new(&settings)
    }

    #[tokio::test]
    async fn a_burst_passes_and_a_flood_is_told_when_to_come_back() {
        let limiter = limiter(60, 5);
        let me = ClientAddr("10.0.0.1".parse().unwrap());
        let other = ClientAddr("10.0.0.2".parse().unwrap());
        for _ in 0..5 {
            limiter.check(Bucket::Post, me, None).unwrap();
        }
        match limiter.check(Bucket::Post, me, None) {
            Err(Error::TooManyRequests {
                retry_after_secs, ..
            }) => assert_eq!(retry_after_secs, 1),
            other => panic!("not limited: {other:?}"),
        }
        limiter.check(Bucket::Post, other, None).unwrap();
        // A signed-in user has a bucket of their own, wherever they come from.
        limiter.check(Bucket::Post, me, Some("ann")).unwrap();
        for _ in 1..5 {
            limiter.check(Bucket::Post, other, Some("ann")).unwrap();
        }
        let err = limiter.check(Bucket::Post, other, Some("ann")).unwrap_err();
        assert!(err.to_string().contains("from this user"), "{err}");
        limiter.check(Bucket::Post, me, Some("bob")).unwrap();
        // Other buckets are apart.
        limiter.check(Bucket::Heartbeat, me, None).unwrap();
    }

    #[tokio::test]
    async fn ipv6_clients_count_by_their_64() {
        let limiter = limiter(60, 1);
        let a = ClientAddr("2001:db8:1:2::1".parse().unwrap());
        let b = ClientAddr("2001:db8:1:2:ffff::9".parse().unwrap());
        limiter.check(Bucket::Post, a, None).unwrap();
        assert!(limiter.check(Bucket::Post, b, None).is_err());
    }

    #[tokio::test]
    async fn sockets_per_address_are_capped_and_given_back() {
        let limiter = limiter(60, 5);
        let me = ClientAddr("10.0.0.1".parse().unwrap());
        let first = limiter.open_socket(me).unwrap();
        let _second = limiter.open_socket(me).unwrap();
        assert_eq!(limiter.open_socket(me).unwrap_err().status_code(), 429);
        drop(first);
        let _third = limiter.open_socket(me).unwrap();
    }

    /// Only wrong passwords count, per name and address: the owner elsewhere still signs
    /// in, and a right password clears the count.
    #[tokio::test]
    async fn wrong_passwords_lock_a_name_from_one_address_only() {
        let limiter = limiter(60, 5);
        let stranger = ClientAddr("10.0.0.66".parse().unwrap());
        let owner = ClientAddr("10.0.0.7".parse().unwrap());
        let wrong: Result<(), Error> = Err(Error::Unauthorized("wrong".into()));
        for _ in 0..FAILURES_ALLOWED {
            limiter.check_sign_in("Ann", stranger).unwrap();
            limiter.count_sign_in("Ann", stranger, &wrong);
        }
        let err = limiter.check_sign_in(" ann ", stranger).unwrap_err();
        assert_eq!(err.status_code(), 429);
        assert!(err.to_string().contains("from this address"), "{err}");
        limiter.check_sign_in("ann", owner).unwrap();
        limiter.check_sign_in("bob", stranger).unwrap();
        // Right passwords and other errors do not count; a right one starts over.
        for _ in 0..10 {
            limiter.count_sign_in("ann", owner, &Ok(()));
            limiter.count_sign_in::<()>("ann", owner, &Err(Error::Unavailable("busy".into())));
        }
        limiter.check_sign_in("ann", owner).unwrap();
        for _ in 1..FAILURES_ALLOWED {
            limiter.count_sign_in("ann", owner, &wrong);
        }
        limiter.count_sign_in("ann", owner, &Ok(()));
        limiter.count_sign_in("ann", owner, &wrong);
        limiter.check_sign_in("ann", owner).unwrap();
    }

    #[tokio::test]
    async fn off_means_off() {
        let limiter = Limiter::new(&Settings::default());
        let me = ClientAddr("10.0.0.1".parse().unwrap());
        for _ in 0..1000 {
            limiter.check(Bucket::Post, me, None).unwrap();
        }
        assert!(limiter.frames().is_none());
    }
}
