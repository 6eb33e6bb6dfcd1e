//! What a request carries that handlers take as arguments: the caller (admin or not), the
//! client's address (through trusted proxies only), and a JSON body that must say it is
//! JSON.

use crate::domain::{Caller, Error};
use ipnet::IpNet;
use rocket::data::{self, Data, FromData, ToByteUnit};
use rocket::http::Status;
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest, Request};
use serde::de::DeserializeOwned;
use std::net::IpAddr;
use subtle::ConstantTimeEq;

/// The admin token, if the server has one (managed state).
pub struct AdminToken(pub Option<String>);

fn bearer<'r>(req: &'r Request<'_>) -> Option<&'r str> {
    let value = req.headers().get_one("Authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Caller {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        let admin_token = req
            .rocket()
            .state::<AdminToken>()
            .and_then(|t| t.0.as_deref());
        let presented = bearer(req);
        // Compared in constant time: how long a wrong guess took says nothing of the token.
        let admin = match (admin_token, presented) {
            (Some(token), Some(sent)) => token.as_bytes().ct_eq(sent.as_bytes()).into(),
            _ => false,
        };
        Outcome::Success(Caller {
            admin,
            presented_token: presented.is_some(),
            admin_configured: admin_token.is_some(),
        })
    }
}

/// Proxies whose forwarding headers are believed (managed state).
#[derive(Default)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl TrustedProxies {
    /// Addresses (`10.0.0.5`) and blocks (`10.0.0.0/8`), as the setting lists them.
    pub fn parse(list: &[String]) -> Result<Self, String> {
        list.iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("trusted_proxies: '{entry}' is not an address or a CIDR block")
                    })
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the last
/// address in `X-Forwarded-For` that is not itself a trusted proxy (else `X-Real-IP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    pub fn of(req: &Request<'_>) -> Option<ClientAddr> {
        let peer = req.remote()?.ip();
        let trusted = req.rocket().state::<TrustedProxies>();
        let Some(trusted) = trusted.filter(|t| t.trusts(peer)) else {
            return Some(ClientAddr(peer));
        };
        let forwarded = req
            .headers()
            .get("X-Forwarded-For")
            .flat_map(|h| h.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .collect::<Vec<_>>();
        let client = forwarded
            .iter()
            .rev()
            .find(|ip| !trusted.trusts(**ip))
            .copied()
            .or_else(|| {
                req.headers()
                    .get_one("X-Real-IP")
                    .and_then(|a| a.trim().parse().ok())
            })
            .unwrap_or(peer);
        Some(ClientAddr(client))
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for ClientAddr {
    type Error = Error;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Error> {
        match ClientAddr::of(req) {
            Some(addr) => Outcome::Success(addr),
            None => Outcome::Error((
                Status::BadRequest,
                Error::bad_request("the client's address is unknown"),
            )),
        }
    }
}

/// A JSON body. Anything not sent as `application/json` is 415, so a cross-site form or a
/// `no-cors` fetch (which can only send `text/plain`, forms and multipart) cannot reach a
/// JSON route; a body over the `json` limit is 413 and broken JSON 400, each with a reason.
pub struct JsonBody<T>(pub T);

#[rocket::async_trait]
impl<'r, T: DeserializeOwned> FromData<'r> for JsonBody<T> {
    type Error = Error;

    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> data::Outcome<'r, Self> {
        let fail = |err: Error| {
            let status = Status::from_code(err.status_code()).unwrap_or(Status::BadRequest);
            Outcome::Error((status, err))
        };
        if !req.content_type().is_some_and(|ct| ct.is_json()) {
            return fail(Error::UnsupportedMediaType(
                "send the body as JSON, with Content-Type: application/json".into(),
            ));
        }
        let limit = req.limits().get("json").unwrap_or(1.mebibytes());
        let bytes = match data.open(limit).into_bytes().await {
            Ok(bytes) => bytes,
            Err(err) => {
                return fail(Error::bad_request(format!(
                    "could not read the body: {err}"
                )))
            }
        };
        if !bytes.is_complete() {
            return fail(Error::PayloadTooLarge(format!(
                "the body is larger than {limit}"
            )));
        }
        match serde_json::from_slice(&bytes) {
            Ok(value) => Outcome::Success(JsonBody(value)),
            Err(err) => fail(Error::bad_request(format!("invalid JSON: {err}"))),
        }
    }
}
