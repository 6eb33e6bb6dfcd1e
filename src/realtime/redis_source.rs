//! Where the Redis that replicas share is: one server at `redis_url`, or whichever server
//! Redis Sentinel names the master now (`config::redis_at`). Every connection (the
//! hub's publisher and subscriber, presence) asks again each time it connects, so after a
//! failover the next reconnection finds the new master.

use crate::config::SentinelTarget;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::RedisConnectionInfo;
use std::sync::Arc;
use tokio::sync::Mutex;

#[derive(Clone)]
pub enum RedisSource {
    /// Boxed: with TLS a client holds its certificates, and is far larger than the other.
    Direct(Box<redis::Client>),
    Sentinel(Arc<Mutex<SentinelClient>>),
}

impl RedisSource {
    /// One server. A `rediss://` one's certificate is checked against the public
    /// authorities, or against `ca` (PEM) when given.
    pub fn direct(url: &str, ca: Option<Vec<u8>>) -> redis::RedisResult<Self> {
        let client = match ca {
            Some(root_cert) => {
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                };
                redis::Client::build_with_tls(url, certificates)?
            }
            None => redis::Client::open(url)?,
        };
        Ok(RedisSource::Direct(Box::new(client)))
    }

    /// Each Sentinel is `host:port` (or a `redis://` URL, with its own password); the
    /// target's user name, password and database are the master's.
    pub fn sentinel(target: &SentinelTarget) -> redis::RedisResult<Self> {
        let urls: Vec<String> = target
            .sentinels
            .iter()
            .map(|s| match s.contains("://") {
                true => s.clone(),
                false => format!("redis://{s}"),
            })
            .collect();
        let mut master = RedisConnectionInfo::default().set_db(target.db);
        if let Some(username) = &target.username {
            master = master.set_username(username);
        }
        if let Some(password) = &target.password {
            master = master.set_password(password);
        }
        let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(master);
        let client = SentinelClient::build(
            urls,
            target.master.clone(),
            Some(node),
            SentinelServerType::Master,
        )?;
        Ok(RedisSource::Sentinel(Arc::new(Mutex::new(client))))
    }

    /// A client of the master as it is now.
    pub async fn client(&self) -> redis::RedisResult<redis::Client> {
        match self {
            RedisSource::Direct(client) => Ok((**client).clone()),
            RedisSource::Sentinel(sentinel) => sentinel.lock().await.async_get_client().await,
        }
    }
}
