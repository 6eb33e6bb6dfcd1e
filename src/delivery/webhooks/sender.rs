//! Sends the outbox. Each replica looks every second (at once when it wrote rows) for
//! webhooks whose next event is due, takes the lease of each it has room for, and sends
//! that webhook's events one at a time in id order while it holds the lease, renewing it
//! as it goes. A replica that dies lets its leases lapse (`lease`, 30 s by default) and
//! another carries on; the event it was sending is sent again, under the same delivery
//! id, so a receiver can tell. A replica told to stop lets its leases go as it starts
//! draining, dropping an attempt under way (sent again the same way), so that another
//! carries on within a second rather than after the lease.
//!
//! An attempt is a `POST` of the event's JSON with `X-Ferrochat-Event`,
//! `X-Ferrochat-Delivery`, `X-Ferrochat-Timestamp` (Unix seconds) and
//! `X-Ferrochat-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`.
//! A 2xx within 5 s is delivered; anything else (a redirect is not followed) is tried
//! again after [`BACK_OFF`], and after the last one the event is given up and the next
//! one goes. A 2xx whose body is `{"text": ...}` is posted back into the event's room
//! under the webhook's name, as a bot.

use super::{target, Webhooks};
use crate::db::webhooks::{self as table, Attempt, DeliveryRow, State, Webhook};
use crate::delivery::Delivery;
use crate::domain::names::{self, RoomName};
use crate::domain::sync::lock;
use crate::domain::{now_utc, AuthMode, Caller, Error, Limits, Peer};
use crate::lifecycle::Lifecycle;
use hmac::{Hmac, Mac};
use sea_orm::{DatabaseConnection, DbErr};
use sha2::Sha256;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long a receiver has to answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The waits after the 1st to 6th failed attempts; the 7th failure gives the event up.
pub const BACK_OFF: [Duration; 6] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(3600),
];
/// Webhooks one replica sends to at once: what a receiver that never answers can hold.
pub const MAX_IN_FLIGHT: usize = 32;
/// Events kept waiting per webhook; past it the oldest are dropped (and recorded).
pub const MAX_WAITING: u64 = 10_000;
/// The largest answer read from a receiver.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How often the outbox is looked at when nothing rang.
const POLL: Duration = Duration::from_secs(1);
/// How often finished records are pruned, and how long they are kept.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const KEEP_RECORDS_DAYS: i64 = 7;

pub struct Sender {
    db: DatabaseConnection,
    webhooks: Arc<Webhooks>,
    delivery: Delivery,
    client: reqwest::Client,
    /// This replica's name on the leases it holds.
    holder: String,
    lease: Duration,
    limits: Limits,
    mode: AuthMode,
    slots: Arc<Semaphore>,
    /// Webhooks this replica is sending to now.
    running: Mutex<HashSet<String>>,
    /// Stopping: no lease is taken, an attempt under way is dropped (it is sent again,
    /// under its delivery id), and each lease is let go at once rather than left to lapse.
    lifecycle: Lifecycle,
}

impl Sender {
    /// Starts sending; `lease` is how long a webhook stays with this replica when it
    /// stops renewing (it renews every third of it; at least 3 x [`TIMEOUT`]). Replicas'
    /// clocks are compared through the lease's end: keep them in step (NTP).
    pub fn start(
        db: DatabaseConnection,
        webhooks: Arc<Webhooks>,
        delivery: Delivery,
        limits: Limits,
        mode: AuthMode,
        lease: Duration,
        lifecycle: Lifecycle,
    ) -> Result<Arc<Self>, Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .dns_resolver(Arc::new(target::Guarded {
                allow_private: webhooks.allow_private,
            }))
            .user_agent(concat!("ferrochat-webhooks/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(1)
            .build()
            .map_err(|err| Error::Internal(format!("the webhook client: {err}")))?;
        let sender = Arc::new(Sender {
            db,
            webhooks,
            delivery,
            client,
            holder: uuid::Uuid::new_v4().simple().to_string(),
            // Renewed every third of it, and an attempt takes at most TIMEOUT: a lease
            // shorter than three attempts could lapse while its holder still sends.
            lease: lease.max(3 * TIMEOUT),
            limits,
            mode,
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            running: Mutex::default(),
            lifecycle,
        });
        tokio::spawn(sender.clone().run());
        Ok(sender)
    }

    /// Once the server stops: resolves when every lease is let go, or after `within`.
    pub async fn stopped(&self, within: Duration) {
        let until = tokio::time::Instant::now() + within;
        while !lock(&self.running).is_empty() && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn run(self: Arc<Self>) {
        let mut pruned = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = self.webhooks.written.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = self.lifecycle.draining() => {}
            }
            if self.lifecycle.stopping() {
                return;
            }
            if let Err(err) = self.take_due().await {
                tracing::warn!(error = %err, "could not read the webhook outbox; trying again");
            }
            if pruned.elapsed() >= PRUNE_EVERY {
                pruned = tokio::time::Instant::now();
                let now = now_utc();
                let before = now - chrono::Duration::days(KEEP_RECORDS_DAYS);
                match table::prune(&self.db, MAX_WAITING, before, now).await {
                    Ok(0) => {}
                    Ok(dropped) => {
                        tracing::warn!(
                            dropped,
                            "webhook events dropped: their receivers took none for too long"
                        )
                    }
                    Err(err) => tracing::warn!(error = %err, "could not prune the webhook outbox"),
                }
            }
        }
    }

    /// Takes the lease of each due webhook this replica has room for, and sends to it.
    async fn take_due(self: &Arc<Self>) -> Result<(), DbErr> {
        for id in table::due(&self.db, now_utc()).await? {
            if self.lifecycle.stopping() {
                return Ok(());
            }
            if lock(&self.running).contains(&id) {
                continue;
            }
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                return Ok(());
            };
            let now = now_utc();
            if !table::lease(&self.db, &id, &self.holder, now, now + self.lease).await? {
                continue; // another replica has it
            }
            lock(&self.running).insert(id.clone());
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(err) = me.send_waiting(&id).await {
                    tracing::warn!(webhook = %id, error = %err, "webhook sending stopped; another look in a second");
                }
                if let Err(err) = table::release(&me.db, &id, &me.holder).await {
                    tracing::warn!(webhook = %id, error = %err, "could not let a webhook's lease go; it lapses");
                }
                lock(&me.running).remove(&id);
                drop(slot);
            });
        }
        Ok(())
    }

    /// Sends the webhook's due events in order, until none is due or an attempt fails.
    async fn send_waiting(&self, id: &str) -> Result<(), DbErr> {
        let Some(webhook) = table::get(&self.db, id).await? else {
            // Deleted while a replica that had not heard yet wrote its events: they go too.
            table::delete(&self.db, id).await?;
            return Ok(());
        };
        let mut renewed = tokio::time::Instant::now();
        loop {
            if renewed.elapsed() >= self.lease / 3 {
                let now = now_utc();
                if !table::lease(&self.db, id, &self.holder, now, now + self.lease).await? {
                    return Ok(()); // it lapsed, and another replica took it
                }
                renewed = tokio::time::Instant::now();
            }
            let Some(row) = table::head(&self.db, id).await? else {
                return Ok(());
            };
            if row.next_at > now_utc() || self.lifecycle.stopping() {
                return Ok(());
            }
            let sent = tokio::select! {
                sent = self.attempt(&webhook, &row) => sent,
                // Not recorded: whoever takes the webhook next sends it again.
                _ = self.lifecycle.draining() => return Ok(()),
            };
            let attempts = row.attempts.saturating_add(1);
            let at = now_utc();
            let mut record = Attempt {
                state: State::Delivered,
                attempts,
                next_at: at,
                at,
                status: sent.status,
                error: sent.error.clone(),
            };
            if sent.error.is_some() {
                match BACK_OFF.get(attempts as usize - 1) {
                    Some(wait) => {
                        record.state = State::Pending;
                        record.next_at = at + chrono::Duration::from_std(*wait).unwrap_or_default();
                    }
                    None => record.state = State::Failed,
                }
            }
            table::record(&self.db, row.id, &record).await?;
            // Recorded first: were the answer posted and the record lost, the event would
            // be sent again and answered twice.
            if let Some(text) = sent.answer {
                if let Err(err) = self.answer(&webhook, &row, text).await {
                    tracing::warn!(webhook = %id, delivery = %row.delivery_id, error = %err,
                        "a webhook's answer was not posted");
                    let note = format!("delivered; its answer was not posted: {err}");
                    table::note(&self.db, row.id, &note).await?;
                }
            }
            tracing::debug!(webhook = %id, delivery = %row.delivery_id, state = record.state.as_str(),
                status = ?record.status, "webhook attempt");
            if record.state == State::Pending {
                // The next attempt is due later; this one holds the ones after it.
                tracing::info!(webhook = %id, delivery = %row.delivery_id, attempts,
                    error = record.error.as_deref().unwrap_or(""), "webhook delivery failed; trying again later");
                return Ok(());
            }
            if record.state == State::Failed {
                tracing::warn!(webhook = %id, delivery = %row.delivery_id,
                    "webhook delivery given up after every attempt");
            }
        }
    }

    /// One `POST` of the event.
    async fn attempt(&self, webhook: &Webhook, row: &DeliveryRow) -> Sent {
        let url = match target::parse(&webhook.url) {
            Ok(url) => url,
            Err(err) => return Sent::failed(None, err.to_string()),
        };
        // An address literal never reaches the resolver: checked here. A name is checked
        // by the resolver at the connection itself.
        if url.domain().is_none() {
            if let Err(err) = target::resolve(&url, self.webhooks.allow_private).await {
                return Sent::failed(None, err.to_string());
            }
        }
        let timestamp = chrono::Utc::now().timestamp();
        let signature = match sign(&webhook.secret, timestamp, &row.body) {
            Ok(signature) => signature,
            Err(err) => return Sent::failed(None, err.to_string()),
        };
        let request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Ferrochat-Event", &row.event)
            .header("X-Ferrochat-Delivery", &row.delivery_id)
            .header("X-Ferrochat-Timestamp", timestamp.to_string())
            .header("X-Ferrochat-Signature", format!("sha256={signature}"))
            .body(row.body.clone());
        let answered = tokio::time::timeout(TIMEOUT, async {
            let mut response = request.send().await?;
            let status = response.status();
            let mut body = Vec::new();
            if status.is_success() {
                while let Some(chunk) = response.chunk().await? {
                    body.extend_from_slice(&chunk);
                    if body.len() > MAX_ANSWER_BYTES {
                        body.clear();
                        break;
                    }
                }
            }
            Ok::<_, reqwest::Error>((status, body))
        })
        .await;
        match answered {
            Err(_) => Sent::failed(None, format!("no answer within {} s", TIMEOUT.as_secs())),
            // The error names the URL, which may hold the receiver's own secret: not kept.
            Ok(Err(err)) => Sent::failed(None, describe(err.without_url())),
            Ok(Ok((status, body))) if status.is_success() => Sent {
                status: Some(status.as_u16().into()),
                error: None,
                answer: serde_json::from_slice::<Answer>(&body)
                    .ok()
                    .and_then(|a| a.text)
                    .filter(|t| !t.trim().is_empty()),
            },
            Ok(Ok((status, _))) if status.is_redirection() => Sent::failed(
                Some(status.as_u16().into()),
                format!("HTTP {status}: redirects are not followed"),
            ),
            Ok(Ok((status, _))) => {
                Sent::failed(Some(status.as_u16().into()), format!("HTTP {status}"))
            }
        }
    }

    /// Posts a receiver's answer into the event's room as the webhook's bot; a room that
    /// is gone stays gone (a bot's post makes no room).
    async fn answer(
        &self,
        webhook: &Webhook,
        row: &DeliveryRow,
        text: String,
    ) -> Result<(), Error> {
        let mut message =
            crate::domain::message::new_message(Some(&webhook.name), Some(&text), &self.limits)?;
        let bot = Peer {
            user_id: format!("{}{}", names::WEBHOOK_ID_PREFIX, webhook.id),
            username: message.username.clone(),
        };
        message.user_id = Some(bot.user_id.clone());
        let caller = Caller {
            mode: self.mode,
            user: Some(bot),
            // Its room, private or not: the owner who made the webhook let it in.
            admin: true,
            rooms: Some(Arc::from(vec![row.room_id.clone()])),
            ..Caller::default()
        };
        let room = RoomName::parse(&row.room_id)?;
        self.delivery.post(&caller, &room, message).await?;
        Ok(())
    }
}

/// What an attempt came to.
struct Sent {
    status: Option<i32>,
    error: Option<String>,
    answer: Option<String>,
}

impl Sent {
    fn failed(status: Option<i32>, error: String) -> Sent {
        Sent {
            status,
            error: Some(error),
            answer: None,
        }
    }
}

#[derive(serde::Deserialize)]
struct Answer {
    text: Option<String>,
}

/// A client error as one line, with its causes (reqwest's own says only "error sending
/// request").
fn describe(err: reqwest::Error) -> String {
    let mut line = if err.is_connect() {
        "could not connect".to_string()
    } else {
        err.to_string()
    };
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

/// The signature of a delivery: hex HMAC-SHA256 over `timestamp.body`, keyed with the
/// webhook's secret as it was shown.
pub fn sign(secret: &str, timestamp: i64, body: &str) -> Result<String, Error> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|err| Error::Internal(format!("the signing key: {err}")))?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    Ok(crate::chat::hooks::hex(&mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_timestamp_dot_body() {
        // `printf '1700000000.{}' | openssl dgst -sha256 -hmac key`
        assert_eq!(
            sign("key", 1_700_000_000, "{}").unwrap(),
            "9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
    }
}
