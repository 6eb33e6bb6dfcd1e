//! Accounts and the tokens that carry an identity. Registration and sign-in keep an argon2
//! hash of the password; a token is a JWT: ours (HS256, signed with `token_secret`), or
//! another application's, as Centrifugo accepts them (`JWT_SECRET` for HS256,
//! `JWT_PUBLIC_KEY` for RS256/ES256), whose `sub` is the user id and `name` the display
//! name. `exp` is enforced; `alg: none`, a wrong key or an expired token is refused.

mod tokens;

pub use tokens::{TokenConfig, Tokens};

use crate::db::accounts::{self as table, Account};
use crate::domain::names::{self};
use crate::domain::sync::lock;
use crate::domain::{now_utc, Error, Limits, Peer, Result};
use argon2::password_hash::{rand_core::OsRng, PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use sea_orm::DatabaseConnection;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
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
    /// Names (lower case) of the users who are admins.
    admins: Vec<String>,
    limits: Limits,
    /// Tokens that proved valid, with who they name and until when: checking a signature
    /// and parsing claims on every request of a signed-in client costs more than the rest
    /// of a poll. Only a valid token gets in, so made-up tokens cannot grow it.
    verified: Mutex<HashMap<String, (Peer, u64)>>,
}

/// Valid tokens remembered at most; past this the record starts over.
const MAX_VERIFIED: usize = 10_000;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Accounts {
    pub fn new(db: DatabaseConnection, tokens: Tokens, admins: &[String], limits: Limits) -> Self {
        Accounts {
            db,
            tokens,
            admins: admins.iter().map(|a| a.trim().to_lowercase()).collect(),
            limits,
            verified: Mutex::default(),
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
        };
        if let Err(err) = table::insert(&self.db, &account).await {
            // Two registrations of one name at once: the unique index decides.
            return Err(match table::named(&self.db, &account.username).await? {
                Some(_) => taken(&account.username),
                None => err.into(),
            });
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

    /// The user a token proves and when the token expires (Unix seconds), or 401.
    pub fn identify(&self, token: &str) -> Result<(Peer, u64)> {
        if let Some((peer, expires_at)) = lock(&self.verified).get(token) {
            // Valid through its `exp` second, as the token check counts it.
            if *expires_at >= unix_now() {
                return Ok((peer.clone(), *expires_at));
            }
        }
        let (peer, expires_at) = self.verify(token)?;
        let mut verified = lock(&self.verified);
        if verified.len() >= MAX_VERIFIED {
            verified.retain(|_, (_, exp)| *exp >= unix_now());
            if verified.len() >= MAX_VERIFIED {
                verified.clear();
            }
        }
        verified.insert(token.to_string(), (peer.clone(), expires_at));
        Ok((peer, expires_at))
    }

    fn verify(&self, token: &str) -> Result<(Peer, u64)> {
        let (peer, expires_at) = self.tokens.verify(token)?;
        let user_id = names::user_id(&peer.user_id)
            .map_err(|_| Error::Unauthorized("the token's subject is not a user id".into()))?;
        let username = names::username(Some(&peer.username), &self.limits)
            .map_err(|_| Error::Unauthorized("the token's name is not a user name".into()))?;
        Ok((Peer { user_id, username }, expires_at))
    }

    /// Users named in `admins` are admins.
    pub fn is_admin(&self, user: &Peer) -> bool {
        self.admins.contains(&user.username.to_lowercase())
    }

    /// The account's current name, for `/api/auth/me` (a token may be older than a rename).
    pub async fn get(&self, user_id: &str) -> Result<Option<Account>> {
        Ok(table::get(&self.db, user_id).await?)
    }

    fn session(&self, account: Account) -> Session {
        let user = Peer {
            user_id: account.user_id,
            username: account.username,
        };
        let (token, expires_in_secs) = self.tokens.issue(&user);
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
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn accounts() -> Accounts {
        let tokens = Tokens::new(&TokenConfig::default()).unwrap();
        Accounts::new(
            crate::db::memory().await,
            tokens,
            &["Root".to_string()],
            Limits::default(),
        )
    }

    #[tokio::test]
    async fn register_sign_in_and_be_known_by_the_token() {
        let accounts = accounts().await;
        let ann = accounts.register("Ann", "correct horse").await.unwrap();
        assert_eq!(accounts.identify(&ann.token).unwrap().0, ann.user);
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
            accounts.identify("not.a.token").unwrap_err().status_code(),
            401
        );
        let root = accounts.register("root", "rootroot").await.unwrap();
        assert!(accounts.is_admin(&root.user));
        assert!(!accounts.is_admin(&ann.user));
    }

    #[tokio::test]
    async fn a_remembered_token_still_ends_at_its_expiry() {
        let tokens = Tokens::new(&TokenConfig {
            ttl: Some(std::time::Duration::ZERO),
            ..TokenConfig::default()
        })
        .unwrap();
        let accounts = Accounts::new(crate::db::memory().await, tokens, &[], Limits::default());
        let peer = Peer {
            user_id: "u1".into(),
            username: "Ann".into(),
        };
        let (token, _) = accounts.tokens.issue(&peer);
        assert_eq!(accounts.identify(&token).unwrap().0, peer);
        assert_eq!(accounts.identify(&token).unwrap().0, peer, "from memory");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(accounts.identify(&token).unwrap_err().status_code(), 401);
        assert_eq!(
            accounts
                .identify("made.up.token")
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
