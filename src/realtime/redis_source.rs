//! Where the Redis that replicas share is: one server at `redis_url`, or whichever server
//! Redis Sentinel names the master of `redis_sentinel_master` now. Every connection (the
//! hub's publisher and subscriber, presence) asks again each time it connects, so after a
//! failover the next reconnection finds the new master.

use redis::sentinel::{SentinelClient, SentinelServerType};
use std::sync::Arc;
use tokio::sync::Mutex;

#[derive(Clone)]
pub enum RedisSource {
    Direct(redis::Client),
    Sentinel(Arc<Mutex<SentinelClient>>),
}

impl RedisSource {
    pub fn direct(url: &str) -> redis::RedisResult<Self> {
        Ok(RedisSource::Direct(redis::Client::open(url)?))
    }

    /// `sentinels`: each `host:port` (or `redis://host:port`) of a Sentinel.
    pub fn sentinel(sentinels: &[String], master: &str) -> redis::RedisResult<Self> {
        let urls: Vec<String> = sentinels
            .iter()
            .map(|s| match s.contains("://") {
                true => s.clone(),
                false => format!("redis://{s}"),
            })
            .collect();
        let client =
            SentinelClient::build(urls, master.to_string(), None, SentinelServerType::Master)?;
        Ok(RedisSource::Sentinel(Arc::new(Mutex::new(client))))
    }

    /// A client of the master as it is now.
    pub async fn client(&self) -> redis::RedisResult<redis::Client> {
        match self {
            RedisSource::Direct(client) => Ok(client.clone()),
            RedisSource::Sentinel(sentinel) => sentinel.lock().await.async_get_client().await,
        }
    }
}
