//! Accounts and the tokens that carry an identity. Registration and sign-in keep an argon2
//! hash of the password; a token is a JWT: ours (HS256, signed with `token_secret`), or
//! another application's, as Centrifugo accepts them (`JWT_SECRET` for HS256,
//! `JWT_PUBLIC_KEY` for RS256/ES256), whose `sub` is the user id (as `ext:<sub>`) and
//! `name` the display name. `exp` is enforced; `alg: none`, a wrong key or an expired
//! token is refused. Signing out and changing the password revoke an account's tokens.

mod bots;
mod tokens;

pub use bots::{MadeBot, MAX_BOT_ROOMS};

pub use tokens::{TokenConfig, Tokens, Verified, MIN_SECRET_BYTES};

use crate::db::accounts::{self as table, Account};
use crate::db::error::{cause, Cause};
use crate::domain::names::{self};
use crate::domain::sync::lock;
use crate::domain::{now_utc, Error, Limits, Peer, Result};
use crate::realtime::{user_channel, Event, Hub};
use argon2::password_hash::{rand_core::OsRng, PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use sea_orm::DatabaseConnection;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

pub const MIN_PASSWORD_CHARS: usize = 8;
/// Hashing a long password costs the same as a short one, but reading it does not.
pub const MAX_PASSWORD_CHARS: usize = 256;

/// A signed-in user and the token that proves it.
#[derive(Clone, Debug)]
pub struct Session {
    pub user: Peer,
    pub token: String,
    pub expires_in_secs: u64,
}

pub struct Accounts {
    db: DatabaseConnection,
    tokens: Tokens,
    /// Ids of the users who are admins, compared byte for byte: a name could be
    /// registered by anyone first, and an external token may say any name.
    admins: Vec<String>,
    limits: Limits,
    /// Tokens that proved valid, with what they say: checking a signature and parsing
    /// claims on every request of a signed-in client costs more than the rest of a poll.
    /// Only a valid token gets in, so made-up tokens cannot grow it.
    verified: Mutex<HashMap<String, Verified>>,
    /// Accounts' token generations as the database last said, and when: revocation is
    /// stored in the database so that every replica sees it, and asked at most every
    /// [`REVOCATION_RECHECK`] per account rather than on every request.
    generations: Mutex<HashMap<String, (i64, Instant)>>,
    /// Where revocations are told, so the account's open sockets close on every replica.
    hub: Arc<dyn Hub>,
}

/// Valid tokens (and accounts' generations) remembered at most; past this the record
/// starts over.
const MAX_VERIFIED: usize = 10_000;

/// How long a replica may go on taking a token that another replica revoked.
pub const REVOCATION_RECHECK: Duration = Duration::from_secs(2);

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Accounts {
    pub fn new(
        db: DatabaseConnection,
        tokens: Tokens,
        admins: &[String],
        limits: Limits,
        hub: Arc<dyn Hub>,
    ) -> Self {
        Accounts {
            db,
            tokens,
            admins: admins.iter().map(|a| a.trim().to_string()).collect(),
            limits,
            verified: Mutex::default(),
            generations: Mutex::default(),
            hub,
        }
    }

    /// A new account; 409 when the name is taken (ignoring case), 400 for a password
    /// under 8 characters.
    pub async fn register(&self, username: &str, password: &str) -> Result<Session> {
        let username = names::username(Some(username), &self.limits)?;
        if username.trim().is_empty() || username == names::DEFAULT_USERNAME {
            return Err(Error::bad_request("choose a username"));
        }
        check_password(password)?;
        if table::named(&self.db, &username).await?.is_some() {
            return Err(taken(&username));
        }
        let hash = hash(password.to_string()).await?;
        let account = Account {
            user_id: uuid::Uuid::new_v4().to_string(),
            name_key: username.to_lowercase(),
            username,
            password_hash: hash,
            created_at: now_utc(),
            token_generation: 0,
        };
        match table::insert(&self.db, &account).await {
            // Two registrations of one name at once: the unique index decides.
            Err(err) if cause(&err) == Cause::Duplicate => return Err(taken(&account.username)),
            Err(err) => return Err(err.into()),
            Ok(_) => {}
        }
        Ok(self.session(account))
    }

    /// Signs in; 401 for an unknown name or a wrong password, alike and in the same time.
    pub async fn login(&self, username: &str, password: &str) -> Result<Session> {
        if password.chars().count() > MAX_PASSWORD_CHARS {
            return Err(wrong());
        }
        let account = table::named(&self.db, username.trim()).await?;
        let stored = account
            .as_ref()
            .map_or_else(|| DUMMY_HASH.clone(), |a| a.password_hash.clone());
        let matches = verify(password.to_string(), stored).await?;
        match account {
            Some(account) if matches => Ok(self.session(account)),
            _ => Err(wrong()),
        }
    }

    /// The user a token proves and when the token expires (Unix seconds), or 401; one of
    /// our tokens also has to be of its account's current generation (not revoked).
    pub async fn identify(&self, token: &str) -> Result<(Peer, u64, Option<u64>)> {
        let verified = self.verified(token)?;
        if let Some(generation) = verified.generation {
            let current = self
                .generation(&verified.peer.user_id)
                .await?
                .ok_or_else(|| {
                    Error::Unauthorized("the token's account is gone: sign in again".into())
                })?;
            if i64::try_from(generation).map_or(true, |g| g < current) {
                return Err(Error::Unauthorized(
                    "the token was revoked (signed out, or the password changed): sign in again"
                        .into(),
                ));
            }
        }
        Ok((verified.peer, verified.expires_at, verified.generation))
    }

    /// Whether a token of ours of this generation still holds for the account (not
    /// revoked since, the account not gone): what an open socket asks at each ping, in
    /// case the revocation's event went unheard. From memory when the database said it
    /// within [`REVOCATION_RECHECK`]; while the database cannot say, it holds.
    pub async fn still_holds(&self, user_id: &str, generation: u64) -> bool {
        match self.generation(user_id).await {
            Ok(Some(current)) => i64::try_from(generation).is_ok_and(|g| g >= current),
            Ok(None) => false,
            Err(_) => true,
        }
    }

    fn verified(&self, token: &str) -> Result<Verified> {
        if let Some(verified) = lock(&self.verified).get(token) {
            // Valid through its `exp` second, as the token check counts it.
            if verified.expires_at >= unix_now() {
                return Ok(verified.clone());
            }
        }
        let verified = self.verify(token)?;
        let mut cache = lock(&self.verified);
        if cache.len() >= MAX_VERIFIED {
            cache.retain(|_, v| v.expires_at >= unix_now());
            if cache.len() >= MAX_VERIFIED {
                cache.clear();
            }
        }
        cache.insert(token.to_string(), verified.clone());
        Ok(verified)
    }

    fn verify(&self, token: &str) -> Result<Verified> {
        let verified = self.tokens.verify(token)?;
        let user_id = names::user_id(&verified.peer.user_id)
            .map_err(|_| Error::Unauthorized("the token's subject is not a user id".into()))?;
        let username = names::username(Some(&verified.peer.username), &self.limits)
            .map_err(|_| Error::Unauthorized("the token's name is not a user name".into()))?;
        Ok(Verified {
            peer: Peer { user_id, username },
            ..verified
        })
    }

    /// The account's token generation, from memory if the database said it lately. While
    /// the database is away, what it said last stands (it cannot have changed meanwhile
    /// through this replica, and a sign-out elsewhere needs the database too).
    async fn generation(&self, user_id: &str) -> Result<Option<i64>> {
        let known = lock(&self.generations).get(user_id).copied();
        if let Some((generation, at)) = known {
            if at.elapsed() < REVOCATION_RECHECK {
                return Ok(Some(generation));
            }
        }
        match table::token_generation(&self.db, user_id).await {
            Ok(Some(generation)) => {
                self.remember_generation(user_id, generation);
                Ok(Some(generation))
            }
            Ok(None) => {
                lock(&self.generations).remove(user_id);
                Ok(None)
            }
            Err(_) if known.is_some() => Ok(known.map(|(generation, _)| generation)),
            Err(err) => Err(err.into()),
        }
    }

    fn remember_generation(&self, user_id: &str, generation: i64) {
        let mut generations = lock(&self.generations);
        if generations.len() >= MAX_VERIFIED && !generations.contains_key(user_id) {
            generations.retain(|_, (_, at)| at.elapsed() < REVOCATION_RECHECK);
            if generations.len() >= MAX_VERIFIED {
                generations.clear();
            }
        }
        generations.insert(user_id.to_string(), (generation, Instant::now()));
    }

    /// Signs the user out everywhere: every token of their account stops working, here
    /// at once and on other replicas within [`REVOCATION_RECHECK`]. Another application's
    /// tokens are its own to revoke.
    pub async fn sign_out(&self, user: &Peer) -> Result<()> {
        if names::is_external_id(&user.user_id) {
            return Ok(());
        }
        table::revoke_tokens(&self.db, &user.user_id, None).await?;
        self.tokens_revoked(&user.user_id).await
    }

    /// A new password, given the current one (403 if it is wrong): every token handed out
    /// so far is revoked, and the session returned is the only one.
    pub async fn change_password(&self, user: &Peer, current: &str, new: &str) -> Result<Session> {
        if names::is_external_id(&user.user_id) {
            return Err(Error::Forbidden(
                "this identity is another application's: its password is not kept here".into(),
            ));
        }
        check_password(new)?;
        let Some(account) = table::get(&self.db, &user.user_id).await? else {
            return Err(Error::Unauthorized(
                "the token's account is gone: sign in again".into(),
            ));
        };
        if current.chars().count() > MAX_PASSWORD_CHARS
            || !verify(current.to_string(), account.password_hash.clone()).await?
        {
            return Err(Error::Forbidden("the current password is wrong".into()));
        }
        let hash = hash(new.to_string()).await?;
        table::revoke_tokens(&self.db, &user.user_id, Some(hash)).await?;
        self.tokens_revoked(&user.user_id).await?;
        let account = table::get(&self.db, &user.user_id)
            .await?
            .ok_or_else(|| Error::Internal("the account went while its password changed".into()))?;
        Ok(self.session(account))
    }

    /// After the account's tokens were revoked: this replica takes the new generation at
    /// once, and the account's sockets, on every replica, are closed (a socket checks its
    /// token when it opens, not after).
    async fn tokens_revoked(&self, user_id: &str) -> Result<()> {
        if let Some(generation) = table::token_generation(&self.db, user_id).await? {
            self.remember_generation(user_id, generation);
        }
        self.hub
            .publish(&user_channel(user_id), Event::TokensRevoked);
        Ok(())
    }

    /// Users whose id is in `admins` are admins.
    pub fn is_admin(&self, user: &Peer) -> bool {
        self.admins.contains(&user.user_id)
    }

    /// The account's current name, for `/api/auth/me` (a token may be older than a rename).
    pub async fn get(&self, user_id: &str) -> Result<Option<Account>> {
        Ok(table::get(&self.db, user_id).await?)
    }

    /// Up to 10 accounts whose name starts with `prefix` (1 to 64 characters), by name.
    pub async fn starting_with(&self, prefix: &str) -> Result<Vec<Account>> {
        let prefix = prefix.trim();
        if prefix.is_empty() || prefix.chars().count() > 64 {
            return Err(Error::bad_request("q must be 1 to 64 characters"));
        }
        Ok(table::name_starts_with(&self.db, prefix, 10).await?)
    }

    fn session(&self, account: Account) -> Session {
        let user = Peer {
            user_id: account.user_id,
            username: account.username,
        };
        // Known now, so that the token works through a database outage that starts next.
        self.remember_generation(&user.user_id, account.token_generation);
        let generation = u64::try_from(account.token_generation).unwrap_or(0);
        let (token, expires_in_secs) = self.tokens.issue(&user, generation);
        Session {
            user,
            token,
            expires_in_secs,
        }
    }

    /// How long our tokens last.
    pub fn token_ttl_secs(&self) -> u64 {
        self.tokens.ttl_secs()
    }
}

fn taken(name: &str) -> Error {
    Error::Conflict(format!("the name {name} is taken"))
}

fn wrong() -> Error {
    Error::Unauthorized("wrong username or password".into())
}

fn check_password(password: &str) -> Result<()> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(Error::bad_request(format!(
            "the password must be at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(Error::bad_request(format!(
            "the password must be at most {MAX_PASSWORD_CHARS} characters"
        )));
    }
    Ok(())
}

/// A hash of nothing anyone knows, checked when the name is unknown so that an unknown
/// name takes as long as a wrong password.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(uuid::Uuid::new_v4().as_bytes(), &salt)
        .map(|h| h.to_string())
        .unwrap_or_default()
});

/// Argon2 takes tens of milliseconds and 19 MiB on purpose, for each hash while it runs:
/// off the async threads, and at most one per core at once, so that a flood of sign-ins
/// waits its turn instead of taking memory in proportion to how many arrive together.
static HASHING: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    Arc::new(Semaphore::new(
        std::thread::available_parallelism().map_or(2, |n| n.get()),
    ))
});
/// A sign-in that has waited this long for its turn is told to come back (503).
const HASHING_WAIT: Duration = Duration::from_secs(10);

async fn argon2<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let turn = tokio::time::timeout(HASHING_WAIT, HASHING.clone().acquire_owned())
        .await
        .map_err(|_| Error::Unavailable("too many sign-ins at once: try again shortly".into()))?
        .map_err(|e| Error::Internal(format!("hashing closed: {e}")))?;
    // The turn ends with the hash, not with the request: should the request's future be
    // dropped (a reset stream), its hash still runs and must not free a turn before it ends.
    tokio::task::spawn_blocking(move || {
        let done = work();
        drop(turn);
        done
    })
    .await
    .map_err(|e| Error::Internal(format!("hashing stopped: {e}")))
}

async fn hash(password: String) -> Result<String> {
    argon2(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal(format!("password not hashed: {e}")))
    })
    .await?
}

async fn verify(password: String, stored: String) -> Result<bool> {
    argon2(move || {
        // A bot's account holds no hash: checked against the stand-in all the same, so
        // that its name takes as long to refuse as a person's wrong password.
        let (stored, known) = match PasswordHash::new(&stored) {
            Ok(_) => (stored, true),
            Err(_) => (DUMMY_HASH.clone(), false),
        };
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return false;
        };
        if !known {
            let _ = Argon2::default().verify_password(password.as_bytes(), &parsed);
            return false;
        }
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_hub() -> Arc<dyn Hub> {
        Arc::new(crate::realtime::InProcessHub::new(16))
    }

    async fn accounts(admins: &[String]) -> Accounts {
        let tokens = Tokens::new(&TokenConfig::default()).unwrap();
        Accounts::new(
            crate::db::memory().await,
            tokens,
            admins,
            Limits::default(),
            test_hub(),
        )
    }

    #[tokio::test]
    async fn register_sign_in_and_be_known_by_the_token() {
        let accounts = accounts(&["root".to_string()]).await;
        let ann = accounts.register("Ann", "correct horse").await.unwrap();
        assert_eq!(accounts.identify(&ann.token).await.unwrap().0, ann.user);
        assert_eq!(
            accounts
                .register("ann", "another one")
                .await
                .unwrap_err()
                .status_code(),
            409,
            "names are one ignoring case"
        );
        assert_eq!(
            accounts
                .register("bob", "short")
                .await
                .unwrap_err()
                .status_code(),
            400
        );
        let again = accounts.login("ANN", "correct horse").await.unwrap();
        assert_eq!(again.user, ann.user);
        for (name, password) in [("ann", "wrong password"), ("nobody", "correct horse")] {
            assert_eq!(
                accounts
                    .login(name, password)
                    .await
                    .unwrap_err()
                    .status_code(),
                401
            );
        }
        assert_eq!(
            accounts
                .identify("not.a.token")
                .await
                .unwrap_err()
                .status_code(),
            401
        );
    }

    /// `admins` names ids: whoever registers a name listed there first gets nothing.
    #[tokio::test]
    async fn admins_are_named_by_id() {
        let accounts = accounts(&["root".to_string()]).await;
        let root = accounts.register("root", "rootroot").await.unwrap();
        assert!(!accounts.is_admin(&root.user), "a name is not an admin");
        let by_id = self::accounts(&[format!(" {} ", root.user.user_id)]).await;
        assert!(by_id.is_admin(&root.user));
        let upper = Peer {
            user_id: root.user.user_id.to_uppercase(),
            ..root.user.clone()
        };
        assert!(!by_id.is_admin(&upper), "ids compare byte for byte");
    }

    #[tokio::test]
    async fn signing_out_and_a_new_password_revoke_tokens() {
        let accounts = accounts(&[]).await;
        let ann = accounts.register("ann", "correct horse").await.unwrap();
        let phone = accounts.login("ann", "correct horse").await.unwrap();
        accounts.sign_out(&ann.user).await.unwrap();
        for token in [&ann.token, &phone.token] {
            let err = accounts.identify(token).await.unwrap_err();
            assert!(err.to_string().contains("revoked"), "{err}");
        }
        let laptop = accounts.login("ann", "correct horse").await.unwrap();
        assert!(accounts.identify(&laptop.token).await.is_ok());
        let wrong = accounts
            .change_password(&ann.user, "not it at all", "battery staple")
            .await
            .unwrap_err();
        assert_eq!(wrong.status_code(), 403);
        assert!(accounts.identify(&laptop.token).await.is_ok());
        let new = accounts
            .change_password(&ann.user, "correct horse", "battery staple")
            .await
            .unwrap();
        assert_eq!(accounts.identify(&new.token).await.unwrap().0, ann.user);
        assert_eq!(
            accounts
                .identify(&laptop.token)
                .await
                .unwrap_err()
                .status_code(),
            401
        );
        assert_eq!(
            accounts
                .login("ann", "correct horse")
                .await
                .unwrap_err()
                .status_code(),
            401
        );
        assert!(accounts.login("ann", "battery staple").await.is_ok());
    }

    #[tokio::test]
    async fn a_remembered_token_still_ends_at_its_expiry() {
        let tokens = Tokens::new(&TokenConfig {
            ttl: Some(std::time::Duration::ZERO),
            ..TokenConfig::default()
        })
        .unwrap();
        let accounts = Accounts::new(
            crate::db::memory().await,
            tokens,
            &[],
            Limits::default(),
            test_hub(),
        );
        let ann = accounts.register("ann", "correct horse").await.unwrap();
        assert_eq!(accounts.identify(&ann.token).await.unwrap().0, ann.user);
        assert_eq!(
            accounts.identify(&ann.token).await.unwrap().0,
            ann.user,
            "from memory"
        );
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(
            accounts
                .identify(&ann.token)
                .await
                .unwrap_err()
                .status_code(),
            401
        );
        assert_eq!(
            accounts
                .identify("made.up.token")
                .await
                .unwrap_err()
                .status_code(),
            401
        );
        assert_eq!(
            lock(&accounts.verified).len(),
            1,
            "only valid tokens are kept"
        );
    }
}
