//! JWTs: ours, and other applications'.

use crate::domain::{names, Error, Peer};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ISSUER: &str = "ferrochat";

/// The shortest HS256 secret taken: RFC 7518 asks for a key as long as the hash (256
/// bits), and a short one falls to an offline guess from any token it signed.
pub const MIN_SECRET_BYTES: usize = 32;

/// Where the keys come from (settings `token_secret`, `token_ttl_secs`; `JWT_SECRET`,
/// `JWT_PUBLIC_KEY`, `jwt_issuer`, `jwt_audience`, `jwt_max_ttl_secs`).
#[derive(Clone, Debug, Default)]
pub struct TokenConfig {
    /// Signs our tokens; replicas must share it. None: a random one for this process.
    pub secret: Option<String>,
    pub ttl: Option<Duration>,
    /// Another application's HS256 secret.
    pub jwt_secret: Option<String>,
    /// Another application's RS256 or ES256 public key, PEM.
    pub jwt_public_key: Option<String>,
    /// The `iss` another application's tokens must carry, when set.
    pub jwt_issuer: Option<String>,
    /// The `aud` another application's tokens must carry, when set.
    pub jwt_audience: Option<String>,
    /// The longest another application's token may live (from `iat`, or from now); None:
    /// a day.
    pub jwt_max_ttl: Option<Duration>,
}

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub peer: Peer,
    /// Unix seconds.
    pub expires_at: u64,
    /// Our tokens: the account's token generation when it was issued (a token is revoked
    /// once the account's moves past it). None: another application's token.
    pub generation: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    /// Our tokens' account generation; tokens from before revocation existed have none,
    /// and count as the first.
    #[serde(default, rename = "gen", skip_serializing_if = "Option::is_none")]
    generation: Option<u64>,
}

pub struct Tokens {
    encoding: EncodingKey,
    own: (DecodingKey, Validation),
    external: Option<(DecodingKey, Validation)>,
    ttl: Duration,
    external_max_ttl: Duration,
}

const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// A secret, if set, long enough; `what` names it in the reason (never its value).
fn checked_secret<'a>(secret: Option<&'a str>, what: &str) -> Result<Option<&'a str>, String> {
    match secret.filter(|s| !s.trim().is_empty()) {
        Some(secret) if secret.len() < MIN_SECRET_BYTES => Err(format!(
            "{what} is {} bytes, and must be at least {MIN_SECRET_BYTES} (openssl rand -hex 32)",
            secret.len()
        )),
        other => Ok(other),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Tokens {
    pub fn new(config: &TokenConfig) -> Result<Self, String> {
        let own_secret = checked_secret(config.secret.as_deref(), "TOKEN_SECRET")?;
        let jwt_secret = checked_secret(config.jwt_secret.as_deref(), "JWT_SECRET")?;
        if own_secret.is_some() && own_secret == jwt_secret {
            // The other application could then sign our tokens, for any local account.
            return Err("JWT_SECRET must not be TOKEN_SECRET".into());
        }
        let secret = match own_secret {
            Some(secret) => secret.as_bytes().to_vec(),
            None => {
                // Random for this process: its tokens end with it, and other replicas do
                // not take them (set `token_secret` for several replicas).
                let mut bytes = uuid::Uuid::new_v4().as_bytes().to_vec();
                bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
                bytes
            }
        };
        let mut own = Validation::new(Algorithm::HS256);
        own.set_issuer(&[ISSUER]);
        own.set_required_spec_claims(&["exp", "sub", "iss"]);
        own.leeway = 0;
        let external = match (jwt_secret, &config.jwt_public_key) {
            (_, Some(pem)) if !pem.trim().is_empty() => Some(public_key(pem)?),
            (Some(secret), _) => Some((
                DecodingKey::from_secret(secret.as_bytes()),
                Validation::new(Algorithm::HS256),
            )),
            _ => None,
        }
        .map(|(key, mut validation)| {
            external_rules(&mut validation, config);
            (key, validation)
        });
        Ok(Tokens {
            encoding: EncodingKey::from_secret(&secret),
            own: (DecodingKey::from_secret(&secret), own),
            external,
            ttl: config.ttl.unwrap_or(DEFAULT_TTL),
            external_max_ttl: config.jwt_max_ttl.unwrap_or(DEFAULT_TTL),
        })
    }

    pub fn ttl_secs(&self) -> u64 {
        self.ttl.as_secs()
    }

    /// A token for the user, of the account's token `generation`, and how long it lasts.
    pub fn issue(&self, user: &Peer, generation: u64) -> (String, u64) {
        self.issue_for(user, generation, self.ttl)
    }

    /// A token that lasts `ttl` (a bot's lasts until the bot is deleted, which revokes it).
    pub fn issue_for(&self, user: &Peer, generation: u64, ttl: Duration) -> (String, u64) {
        let issued = now();
        let claims = Claims {
            sub: user.user_id.clone(),
            name: Some(user.username.clone()),
            exp: issued + ttl.as_secs(),
            iat: Some(issued),
            iss: Some(ISSUER.into()),
            generation: Some(generation),
        };
        // Encoding HS256 claims of strings and numbers cannot fail.
        let token =
            encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).unwrap_or_default();
        (token, ttl.as_secs())
    }

    /// The user a token names, if it is ours or the configured application's, and valid.
    /// Another application's subjects are `ext:<sub>`.
    pub fn verify(&self, token: &str) -> Result<Verified, Error> {
        let own = decode::<Claims>(token, &self.own.0, &self.own.1);
        let (claims, ours) = match (own, &self.external) {
            (Ok(data), _) => (data.claims, true),
            (Err(_), Some((key, validation))) => (
                decode::<Claims>(token, key, validation)
                    .map_err(refused)?
                    .claims,
                false,
            ),
            (Err(err), None) => return Err(refused(err)),
        };
        if !ours {
            // A signature proves who issued it, not that they meant it to last: a token
            // that lives longer than this is one a leak would hand out for that long.
            let from = claims.iat.map_or(now(), |iat| iat.min(now()));
            let max = self.external_max_ttl.as_secs();
            if claims.exp.saturating_sub(from) > max {
                return Err(Error::Unauthorized(format!(
                    "the token lives longer than {max} s: ask for a shorter one"
                )));
            }
        }
        let name = claims.name.unwrap_or_else(|| claims.sub.clone());
        let user_id = if ours {
            claims.sub
        } else {
            format!("{}{}", names::EXTERNAL_ID_PREFIX, claims.sub)
        };
        Ok(Verified {
            peer: Peer {
                user_id,
                username: name,
            },
            expires_at: claims.exp,
            generation: ours.then(|| claims.generation.unwrap_or(0)),
        })
    }
}

fn refused(err: jsonwebtoken::errors::Error) -> Error {
    use jsonwebtoken::errors::ErrorKind;
    let why = match err.kind() {
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet",
        ErrorKind::InvalidIssuer => "the token is not of the configured issuer",
        ErrorKind::InvalidAudience => "the token is not for this audience",
        _ => "the token is not valid",
    };
    Error::Unauthorized(format!("{why}: sign in again"))
}

/// What another application's tokens must be: `exp` and `sub`, not used before `nbf`,
/// and of the configured issuer and audience when those are set.
fn external_rules(validation: &mut Validation, config: &TokenConfig) {
    let mut required = vec!["exp", "sub"];
    if let Some(iss) = config
        .jwt_issuer
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    {
        validation.set_issuer(&[iss]);
        required.push("iss");
    }
    if let Some(aud) = config
        .jwt_audience
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    {
        validation.set_audience(&[aud]);
        required.push("aud");
    }
    validation.set_required_spec_claims(&required);
    validation.validate_nbf = true;
    validation.leeway = 0;
}

/// An RSA or EC public key in PEM, with the algorithms it verifies.
fn public_key(pem: &str) -> Result<(DecodingKey, Validation), String> {
    let (key, algorithms) = match DecodingKey::from_rsa_pem(pem.as_bytes()) {
        Ok(key) => (
            key,
            vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512],
        ),
        Err(_) => match DecodingKey::from_ec_pem(pem.as_bytes()) {
            Ok(key) => (key, vec![Algorithm::ES256, Algorithm::ES384]),
            Err(err) => {
                return Err(format!(
                    "JWT_PUBLIC_KEY is not an RSA or EC public key: {err}"
                ))
            }
        },
    };
    let mut validation = Validation::new(algorithms[0]);
    validation.algorithms = algorithms;
    Ok((key, validation))
}

#[cfg(test)]
mod tests {
    use super::*;

    const THEIRS: &str = "their secret, of thirty-two bytes or more";

    fn user() -> Peer {
        Peer {
            user_id: "u1".into(),
            username: "Ann".into(),
        }
    }

    fn external(secret: &str, exp: u64, alg: Algorithm) -> String {
        signed(
            secret,
            alg,
            serde_json::json!({"sub": "7", "name": "Ext", "exp": exp}),
        )
    }

    fn signed(secret: &str, alg: Algorithm, claims: serde_json::Value) -> String {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn theirs(config: TokenConfig) -> Tokens {
        Tokens::new(&TokenConfig {
            jwt_secret: Some(THEIRS.into()),
            ..config
        })
        .unwrap()
    }

    #[test]
    fn our_tokens_prove_who_and_end() {
        let tokens = Tokens::new(&TokenConfig::default()).unwrap();
        let (token, ttl) = tokens.issue(&user(), 3);
        let verified = tokens.verify(&token).unwrap();
        assert_eq!(verified.peer, user());
        assert_eq!(verified.generation, Some(3));
        assert!(ttl > 3600 && verified.expires_at <= now() + ttl);
        // Another process's random secret does not take them.
        let other = Tokens::new(&TokenConfig::default()).unwrap();
        assert_eq!(other.verify(&token).unwrap_err().status_code(), 401);
        let short = Tokens::new(&TokenConfig {
            ttl: Some(Duration::ZERO),
            ..TokenConfig::default()
        })
        .unwrap();
        let (expired, _) = short.issue(&user(), 0);
        std::thread::sleep(Duration::from_millis(1100));
        let err = short.verify(&expired).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
    }

    #[test]
    fn another_applications_tokens_with_its_secret() {
        let tokens = theirs(TokenConfig::default());
        let good = external(THEIRS, now() + 60, Algorithm::HS256);
        assert_eq!(
            tokens.verify(&good).unwrap(),
            Verified {
                peer: Peer {
                    user_id: "ext:7".into(),
                    username: "Ext".into()
                },
                expires_at: now() + 60,
                generation: None,
            }
        );
        for bad in [
            external(
                "a wrong key, of thirty-two bytes or more",
                now() + 60,
                Algorithm::HS256,
            ),
            external(THEIRS, now() - 120, Algorithm::HS256),
            external(THEIRS, now() + 60, Algorithm::HS512),
        ] {
            assert_eq!(tokens.verify(&bad).unwrap_err().status_code(), 401, "{bad}");
        }
        // alg: none, unsigned.
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(format!(r#"{{"sub":"ext-7","exp":{}}}"#, now() + 60))
        );
        assert_eq!(tokens.verify(&none).unwrap_err().status_code(), 401);
    }

    #[test]
    fn another_applications_tokens_are_held_to_nbf_lifetime_issuer_and_audience() {
        let open = theirs(TokenConfig::default());
        let claims = |extra: serde_json::Value| {
            let mut claims = serde_json::json!({"sub": "7", "exp": now() + 60});
            claims
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            signed(THEIRS, Algorithm::HS256, claims)
        };
        let refused = |tokens: &Tokens, token: &str| tokens.verify(token).unwrap_err().to_string();
        assert!(
            refused(&open, &claims(serde_json::json!({"nbf": now() + 30})))
                .contains("not valid yet")
        );
        assert!(
            refused(&open, &claims(serde_json::json!({"exp": 1u64 << 62}))).contains("longer than")
        );
        assert!(refused(
            &open,
            &claims(serde_json::json!({"iat": now() - 200_000, "exp": now() + 60}))
        )
        .contains("longer than"));
        assert!(open
            .verify(&claims(serde_json::json!({"nbf": now() - 1})))
            .is_ok());

        let strict = theirs(TokenConfig {
            jwt_issuer: Some("https://shop.example".into()),
            jwt_audience: Some("ferrochat".into()),
            ..TokenConfig::default()
        });
        let right = serde_json::json!({"iss": "https://shop.example", "aud": "ferrochat"});
        assert!(strict.verify(&claims(right)).is_ok());
        for (wrong, why) in [
            (serde_json::json!({"aud": "ferrochat"}), "not valid"),
            (
                serde_json::json!({"iss": "https://shop.example"}),
                "not valid",
            ),
            (
                serde_json::json!({"iss": "https://evil.example", "aud": "ferrochat"}),
                "issuer",
            ),
            (
                serde_json::json!({"iss": "https://shop.example", "aud": "another"}),
                "audience",
            ),
        ] {
            let err = refused(&strict, &claims(wrong.clone()));
            assert!(err.contains(why), "{wrong}: {err}");
        }
    }

    #[test]
    fn short_or_shared_secrets_are_refused_at_start() {
        for config in [
            TokenConfig {
                secret: Some("x".repeat(MIN_SECRET_BYTES - 1)),
                ..TokenConfig::default()
            },
            TokenConfig {
                jwt_secret: Some("their secret".into()),
                ..TokenConfig::default()
            },
            TokenConfig {
                secret: Some(THEIRS.into()),
                jwt_secret: Some(THEIRS.into()),
                ..TokenConfig::default()
            },
        ] {
            let err = Tokens::new(&config).err().expect("refused");
            assert!(!err.contains(THEIRS) && !err.contains("xxx"), "{err}");
        }
        assert!(Tokens::new(&TokenConfig {
            secret: Some("x".repeat(MIN_SECRET_BYTES)),
            ..TokenConfig::default()
        })
        .is_ok());
    }
}
