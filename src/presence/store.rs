//! Where presence lives: TTL keys in Redis when replicas share it (the keys ChatFlow's
//! presence service uses, so `redis-cli KEYS "presence:user:*"` still shows who is
//! online), or a TTL map in this process.

use crate::domain::sync::lock;
use crate::domain::Error;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[rocket::async_trait]
pub trait PresenceStore: Send + Sync {
    /// Online for `ttl` from now, under `username`.
    async fn set_online(&self, user_id: &str, username: &str, ttl: Duration) -> Result<(), Error>;
    async fn set_offline(&self, user_id: &str) -> Result<(), Error>;
    /// Online users: (user id, name).
    async fn online(&self) -> Result<Vec<(String, String)>, Error>;
    /// The user's name, if online.
    async fn user(&self, user_id: &str) -> Result<Option<String>, Error>;
    async fn set_typing(
        &self,
        room: &str,
        user_id: &str,
        username: &str,
        ttl: Duration,
    ) -> Result<(), Error>;
    async fn stop_typing(&self, room: &str, user_id: &str) -> Result<(), Error>;
    /// Who is typing in the room: (user id, name).
    async fn typing(&self, room: &str) -> Result<Vec<(String, String)>, Error>;
    /// Records how many sockets this replica holds for the user (0: none) and returns how
    /// many all replicas hold, so the last tab closed anywhere makes the user offline.
    async fn set_sockets(&self, user_id: &str, replica: &str, count: usize)
        -> Result<usize, Error>;
    /// Renews, for every user with sockets here (id, name, count), their presence and
    /// this replica's count, in one go.
    async fn renew(
        &self,
        users: &[(String, String, usize)],
        replica: &str,
        ttl: Duration,
    ) -> Result<(), Error> {
        for (user_id, username, count) in users {
            self.set_sockets(user_id, replica, *count).await?;
            self.set_online(user_id, username, ttl).await?;
        }
        Ok(())
    }
    /// `in-process` or `redis`, and whether it answers.
    fn kind(&self) -> &'static str;
    async fn up(&self) -> bool;
}

/// The presence of a single process.
#[derive(Default)]
pub struct MemoryStore {
    users: Mutex<Lapsing<String, String>>,
    typing: Mutex<Lapsing<(String, String), String>>,
}

/// Entries that lapse. Expired ones go when the map is read, and also when it has doubled
/// since it was last swept: otherwise made-up user ids and rooms that nobody asks about
/// would stay for good.
struct Lapsing<K, V> {
    map: HashMap<K, (V, Instant)>,
    sweep_above: usize,
}

impl<K, V> Default for Lapsing<K, V> {
    fn default() -> Self {
        Lapsing {
            map: HashMap::new(),
            sweep_above: MIN_SWEEP,
        }
    }
}

/// Below this many entries the map is left to its reads.
const MIN_SWEEP: usize = 1024;

impl<K: Clone + Eq + std::hash::Hash, V: Clone> Lapsing<K, V> {
    fn insert(&mut self, key: K, value: V, ttl: Duration) {
        self.map.insert(key, (value, Instant::now() + ttl));
        if self.map.len() > self.sweep_above {
            self.sweep();
            self.sweep_above = (2 * self.map.len()).max(MIN_SWEEP);
        }
    }

    fn remove<Q>(&mut self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + std::hash::Hash + ?Sized,
    {
        self.map.remove(key);
    }

    fn sweep(&mut self) {
        let now = Instant::now();
        self.map.retain(|_, (_, until)| *until > now);
    }

    fn live(&mut self) -> impl Iterator<Item = (K, V)> + '_ {
        self.sweep();
        self.map.iter().map(|(k, (v, _))| (k.clone(), v.clone()))
    }
}

#[rocket::async_trait]
impl PresenceStore for MemoryStore {
    async fn set_online(&self, user_id: &str, username: &str, ttl: Duration) -> Result<(), Error> {
        lock(&self.users).insert(user_id.into(), username.into(), ttl);
        Ok(())
    }

    async fn set_offline(&self, user_id: &str) -> Result<(), Error> {
        lock(&self.users).remove(user_id);
        Ok(())
    }

    async fn online(&self) -> Result<Vec<(String, String)>, Error> {
        Ok(lock(&self.users).live().collect())
    }

    async fn user(&self, user_id: &str) -> Result<Option<String>, Error> {
        Ok(lock(&self.users)
            .live()
            .find(|(id, _)| id == user_id)
            .map(|(_, name)| name))
    }

    async fn set_typing(
        &self,
        room: &str,
        user_id: &str,
        username: &str,
        ttl: Duration,
    ) -> Result<(), Error> {
        lock(&self.typing).insert((room.into(), user_id.into()), username.into(), ttl);
        Ok(())
    }

    async fn stop_typing(&self, room: &str, user_id: &str) -> Result<(), Error> {
        lock(&self.typing).remove(&(room.to_string(), user_id.to_string()));
        Ok(())
    }

    async fn typing(&self, room: &str) -> Result<Vec<(String, String)>, Error> {
        Ok(lock(&self.typing)
            .live()
            .filter(|((r, _), _)| r == room)
            .map(|((_, user), name)| (user, name))
            .collect())
    }

    async fn set_sockets(&self, _: &str, _: &str, count: usize) -> Result<usize, Error> {
        Ok(count)
    }

    fn kind(&self) -> &'static str {
        "in-process"
    }

    async fn up(&self) -> bool {
        true
    }
}

/// `presence:typing:<room>:`, ChatFlow's key, with `%` and `:` in the room name written
/// `%25` and `%3A`: user ids may hold `:`, so otherwise room `t` with user `a:b` and room
/// `t:a` with user `b` would share a key. Room names without them keep ChatFlow's keys.
fn typing_prefix(room: &str) -> String {
    let room = room.replace('%', "%25").replace(':', "%3A");
    format!("{TYPING_PREFIX}{room}:")
}

const USER_PREFIX: &str = "presence:user:";
const TYPING_PREFIX: &str = "presence:typing:";
const SOCKETS_PREFIX: &str = "presence:sockets:";
/// A replica that dies leaves its socket count behind this long at most.
const SOCKETS_TTL_SECS: i64 = 60;
/// A Redis that does not answer within this long is taken to be away.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Presence in Redis: `presence:user:<id>` holds the name with a TTL, as in ChatFlow;
/// `presence:typing:<room>:<id>` likewise (see [`typing_prefix`]); `presence:sockets:<id>`
/// is a hash of open sockets per replica.
pub struct RedisStore {
    client: crate::realtime::RedisSource,
    conn: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl RedisStore {
    pub fn new(source: crate::realtime::RedisSource) -> Self {
        RedisStore {
            client: source,
            conn: Default::default(),
        }
    }

    async fn conn(&self) -> Result<redis::aio::MultiplexedConnection, Error> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT));
        let master = self.client.client().await.map_err(unavailable)?;
        let conn = master
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(unavailable)?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Runs one command or pipeline. A failure drops the connection and tries once more
    /// on a new one: a connection from before a Redis restart fails once, then works.
    async fn run<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, Error> {
        let mut last = None;
        for _ in 0..2 {
            let mut conn = self.conn().await?;
            match tokio::time::timeout(REDIS_TIMEOUT, pipe.query_async(&mut conn)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(err)) => {
                    *self.conn.lock().await = None;
                    last = Some(unavailable(err));
                }
                Err(_) => {
                    *self.conn.lock().await = None;
                    return Err(Error::Unavailable(
                        "presence store (Redis) did not answer".into(),
                    ));
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Unavailable("presence store (Redis) unavailable".into())))
    }

    /// Keys matching `prefix*` (the prefix taken literally), by SCAN, never KEYS, which
    /// stops Redis for everyone while it runs.
    async fn scan(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let pattern = format!("{}*", escape_glob(prefix));
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let mut pipe = redis::pipe();
            pipe.cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let ((next, batch),): ((u64, Vec<String>),) = self.run(&pipe).await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    async fn set_ex(&self, key: &str, value: &str, ttl: Duration) -> Result<(), Error> {
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(key)
            .arg(value)
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .ignore();
        self.run::<()>(&pipe).await
    }

    async fn del(&self, key: &str) -> Result<(), Error> {
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(key).ignore();
        self.run::<()>(&pipe).await
    }

    /// The names under `keys`, skipping keys that expired meanwhile.
    async fn names(&self, keys: &[String]) -> Result<Vec<Option<String>>, Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        pipe.cmd("MGET").arg(keys);
        let (names,): (Vec<Option<String>>,) = self.run(&pipe).await?;
        Ok(names)
    }
}

fn unavailable(err: redis::RedisError) -> Error {
    tracing::warn!(error = %err, "presence store (Redis) unavailable");
    Error::Unavailable("presence store (Redis) unavailable, try again".into())
}

fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[rocket::async_trait]
impl PresenceStore for RedisStore {
    async fn set_online(&self, user_id: &str, username: &str, ttl: Duration) -> Result<(), Error> {
        self.set_ex(&format!("{USER_PREFIX}{user_id}"), username, ttl)
            .await
    }

    async fn set_offline(&self, user_id: &str) -> Result<(), Error> {
        self.del(&format!("{USER_PREFIX}{user_id}")).await
    }

    async fn online(&self) -> Result<Vec<(String, String)>, Error> {
        let keys = self.scan(USER_PREFIX).await?;
        let names = self.names(&keys).await?;
        Ok(keys
            .iter()
            .zip(names)
            .filter_map(|(key, name)| Some((key.strip_prefix(USER_PREFIX)?.to_string(), name?)))
            .collect())
    }

    async fn user(&self, user_id: &str) -> Result<Option<String>, Error> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(format!("{USER_PREFIX}{user_id}"));
        let (name,): (Option<String>,) = self.run(&pipe).await?;
        Ok(name)
    }

    async fn set_typing(
        &self,
        room: &str,
        user_id: &str,
        username: &str,
        ttl: Duration,
    ) -> Result<(), Error> {
        self.set_ex(&format!("{}{user_id}", typing_prefix(room)), username, ttl)
            .await
    }

    async fn stop_typing(&self, room: &str, user_id: &str) -> Result<(), Error> {
        self.del(&format!("{}{user_id}", typing_prefix(room))).await
    }

    async fn typing(&self, room: &str) -> Result<Vec<(String, String)>, Error> {
        let prefix = typing_prefix(room);
        let keys = self.scan(&prefix).await?;
        let names = self.names(&keys).await?;
        Ok(keys
            .iter()
            .zip(names)
            .filter_map(|(key, name)| Some((key.strip_prefix(&prefix)?.to_string(), name?)))
            .collect())
    }

    async fn set_sockets(
        &self,
        user_id: &str,
        replica: &str,
        count: usize,
    ) -> Result<usize, Error> {
        let key = format!("{SOCKETS_PREFIX}{user_id}");
        let mut pipe = redis::pipe();
        pipe.atomic();
        if count == 0 {
            pipe.cmd("HDEL").arg(&key).arg(replica).ignore();
        } else {
            pipe.cmd("HSET").arg(&key).arg(replica).arg(count).ignore();
            pipe.cmd("EXPIRE").arg(&key).arg(SOCKETS_TTL_SECS).ignore();
        }
        pipe.cmd("HVALS").arg(&key);
        let (counts,): (Vec<usize>,) = self.run(&pipe).await?;
        Ok(counts.iter().sum())
    }

    /// One pipeline for all of them: ten thousand sockets are one round trip.
    async fn renew(
        &self,
        users: &[(String, String, usize)],
        replica: &str,
        ttl: Duration,
    ) -> Result<(), Error> {
        for chunk in users.chunks(1000) {
            let mut pipe = redis::pipe();
            for (user_id, username, count) in chunk {
                let sockets = format!("{SOCKETS_PREFIX}{user_id}");
                pipe.cmd("HSET")
                    .arg(&sockets)
                    .arg(replica)
                    .arg(*count)
                    .ignore();
                pipe.cmd("EXPIRE")
                    .arg(&sockets)
                    .arg(SOCKETS_TTL_SECS)
                    .ignore();
                pipe.cmd("SET")
                    .arg(format!("{USER_PREFIX}{user_id}"))
                    .arg(username)
                    .arg("EX")
                    .arg(ttl.as_secs().max(1))
                    .ignore();
            }
            self.run::<()>(&pipe).await?;
        }
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn up(&self) -> bool {
        let mut pipe = redis::pipe();
        pipe.cmd("PING");
        self.run::<(String,)>(&pipe).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn glob_characters_match_only_themselves() {
        assert_eq!(super::escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    /// 20,000 made-up users and typists that nobody asks about: what lapsed is swept as
    /// the maps grow, so they hold about what is live, not everything ever written.
    #[tokio::test]
    async fn lapsed_entries_go_though_nobody_reads() {
        use super::{MemoryStore, PresenceStore, MIN_SWEEP};
        use std::time::Duration;
        let store = MemoryStore::default();
        for i in 0..20_000 {
            let (user, room) = (format!("u{i}"), format!("r{i}"));
            store.set_online(&user, "n", Duration::ZERO).await.unwrap();
            store
                .set_typing(&room, &user, "n", Duration::ZERO)
                .await
                .unwrap();
        }
        assert!(store.users.lock().unwrap().map.len() <= MIN_SWEEP + 1);
        assert!(store.typing.lock().unwrap().map.len() <= MIN_SWEEP + 1);
        // What is live stays.
        store
            .set_online("ann", "Ann", Duration::from_secs(60))
            .await
            .unwrap();
        for i in 0..5_000 {
            store
                .set_online(&format!("v{i}"), "n", Duration::ZERO)
                .await
                .unwrap();
        }
        assert_eq!(store.user("ann").await.unwrap().as_deref(), Some("Ann"));
    }
}
