//! JWTs: ours, and other applications'.

use crate::domain::{Error, Peer};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ISSUER: &str = "ferrochat";

/// Where the keys come from (settings `token_secret`, `token_ttl_secs`; `JWT_SECRET`,
/// `JWT_PUBLIC_KEY`).
#[derive(Clone, Debug, Default)]
pub struct TokenConfig {
    /// Signs our tokens; replicas must share it. None: a random one for this process.
    pub secret: Option<String>,
    pub ttl: Option<Duration>,
    /// Another application's HS256 secret.
    pub jwt_secret: Option<String>,
    /// Another application's RS256 or ES256 public key, PEM.
    pub jwt_public_key: Option<String>,
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
}

pub struct Tokens {
    encoding: EncodingKey,
    own: (DecodingKey, Validation),
    external: Option<(DecodingKey, Validation)>,
    ttl: Duration,
}

const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Tokens {
    pub fn new(config: &TokenConfig) -> Result<Self, String> {
        let secret = match config.secret.as_deref().filter(|s| !s.trim().is_empty()) {
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
        let external = match (&config.jwt_secret, &config.jwt_public_key) {
            (_, Some(pem)) if !pem.trim().is_empty() => Some(public_key(pem)?),
            (Some(secret), _) if !secret.trim().is_empty() => {
                let mut validation = Validation::new(Algorithm::HS256);
                validation.set_required_spec_claims(&["exp", "sub"]);
                validation.leeway = 0;
                Some((DecodingKey::from_secret(secret.as_bytes()), validation))
            }
            _ => None,
        };
        Ok(Tokens {
            encoding: EncodingKey::from_secret(&secret),
            own: (DecodingKey::from_secret(&secret), own),
            external,
            ttl: config.ttl.unwrap_or(DEFAULT_TTL),
        })
    }

    pub fn ttl_secs(&self) -> u64 {
        self.ttl.as_secs()
    }

    /// A token for the user, and how long it lasts.
    pub fn issue(&self, user: &Peer) -> (String, u64) {
        let issued = now();
        let claims = Claims {
            sub: user.user_id.clone(),
            name: Some(user.username.clone()),
            exp: issued + self.ttl.as_secs(),
            iat: Some(issued),
            iss: Some(ISSUER.into()),
        };
        // Encoding HS256 claims of strings and numbers cannot fail.
        let token =
            encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).unwrap_or_default();
        (token, self.ttl.as_secs())
    }

    /// The user a token names, if it is ours or the configured application's, and valid,
    /// with when it expires (Unix seconds).
    pub fn verify(&self, token: &str) -> Result<(Peer, u64), Error> {
        let claims = decode::<Claims>(token, &self.own.0, &self.own.1)
            .or_else(|err| match &self.external {
                Some((key, validation)) => decode::<Claims>(token, key, validation),
                None => Err(err),
            })
            .map_err(|err| {
                let why = match err.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the token has expired",
                    _ => "the token is not valid",
                };
                Error::Unauthorized(format!("{why}: sign in again"))
            })?
            .claims;
        let peer = Peer {
            username: claims.name.unwrap_or_else(|| claims.sub.clone()),
            user_id: claims.sub,
        };
        Ok((peer, claims.exp))
    }
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
    validation.set_required_spec_claims(&["exp", "sub"]);
    validation.leeway = 0;
    Ok((key, validation))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> Peer {
        Peer {
            user_id: "u1".into(),
            username: "Ann".into(),
        }
    }

    fn external(secret: &str, exp: u64, alg: Algorithm) -> String {
        let claims = Claims {
            sub: "ext-7".into(),
            name: Some("Ext".into()),
            exp,
            iat: None,
            iss: None,
        };
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn our_tokens_prove_who_and_end() {
        let tokens = Tokens::new(&TokenConfig::default()).unwrap();
        let (token, ttl) = tokens.issue(&user());
        let (who, exp) = tokens.verify(&token).unwrap();
        assert_eq!(who, user());
        assert!(ttl > 3600 && exp <= now() + ttl);
        // Another process's random secret does not take them.
        let other = Tokens::new(&TokenConfig::default()).unwrap();
        assert_eq!(other.verify(&token).unwrap_err().status_code(), 401);
        let short = Tokens::new(&TokenConfig {
            ttl: Some(Duration::ZERO),
            ..TokenConfig::default()
        })
        .unwrap();
        let (expired, _) = short.issue(&user());
        std::thread::sleep(Duration::from_millis(1100));
        let err = short.verify(&expired).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
    }

    #[test]
    fn another_applications_tokens_with_its_secret() {
        let tokens = Tokens::new(&TokenConfig {
            jwt_secret: Some("their secret".into()),
            ..TokenConfig::default()
        })
        .unwrap();
        let good = external("their secret", now() + 60, Algorithm::HS256);
        assert_eq!(
            tokens.verify(&good).unwrap().0,
            Peer {
                user_id: "ext-7".into(),
                username: "Ext".into()
            }
        );
        for bad in [
            external("a wrong key", now() + 60, Algorithm::HS256),
            external("their secret", now() - 120, Algorithm::HS256),
            external("their secret", now() + 60, Algorithm::HS512),
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
}
