//! What a request carries that handlers take as arguments: the caller (who they proved to
//! be, admin or not), the client's address (through trusted proxies only), and a JSON body
//! that must say it is JSON. A guard that fails leaves its error where the catchers find
//! it, so its reason reaches the client.

use crate::accounts::Accounts;
use crate::domain::{AuthMode, Caller, Error};
use ipnet::IpNet;
use rocket::data::{self, Data, FromData, ToByteUnit};
use rocket::http::Status;
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest, Request};
use serde::de::DeserializeOwned;
use std::net::IpAddr;
use std::sync::LazyLock;
use subtle::ConstantTimeEq;

/// The admin token, if the server has one (managed state).
pub struct AdminToken(pub Option<String>);

/// The name of the session cookie: a token, as `/api/auth/login` hands out.
pub const SESSION_COOKIE: &str = "ferrochat_session";

/// The error of a guard that failed, for the catcher that answers it.
#[derive(Default)]
pub struct GuardFailure(std::sync::Mutex<Option<Error>>);

impl GuardFailure {
    pub fn take(req: &Request<'_>) -> Option<Error> {
        crate::domain::sync::lock(&req.local_cache(GuardFailure::default).0).take()
    }
}

/// Fails a guard with `err`, kept for the catcher.
pub fn fail<T>(req: &Request<'_>, err: Error) -> request::Outcome<T, Error> {
    let status = Status::from_code(err.status_code()).unwrap_or(Status::BadRequest);
    *crate::domain::sync::lock(&req.local_cache(GuardFailure::default).0) = Some(err.clone());
    Outcome::Error((status, err))
}

fn bearer<'r>(req: &'r Request<'_>) -> Option<&'r str> {
    let value = req.headers().get_one("Authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The caller: the admin token, or a user's token from `Authorization: Bearer`, the
/// session cookie, or (on a socket) `?token=`. A token that is not valid is 401, in both
/// modes: the client believes it is signed in, and should hear that it is not.
#[rocket::async_trait]
impl<'r> FromRequest<'r> for Caller {
    type Error = Error;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
        // Worked out once per request: the limit guards ask for it too.
        let outcome = req
            .local_cache_async(async { CallerOf(identify(req).await) })
            .await;
        match &outcome.0 {
            Ok(caller) => Outcome::Success(caller.clone()),
            Err(err) => fail(req, err.clone()),
        }
    }
}

/// The caller of this request, as worked out once.
struct CallerOf(Result<Caller, Error>);

async fn identify(req: &Request<'_>) -> Result<Caller, Error> {
    let mode = req
        .rocket()
        .state::<AuthMode>()
        .copied()
        .unwrap_or_default();
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
    let mut caller = Caller {
        mode,
        user: None,
        admin,
        presented_token: presented.is_some(),
        admin_configured: admin_token.is_some(),
        expires_at: None,
    };
    let token = match presented {
        Some(_) if admin => None,
        Some(token) => Some(token.to_string()),
        None => match req.cookies().get(SESSION_COOKIE) {
            Some(cookie) => {
                super::origin::check_cookie_request(req)?;
                Some(cookie.value().to_string())
            }
            None => socket_token(req),
        },
    };
    if let (Some(token), Some(accounts)) = (token, req.rocket().state::<Accounts>()) {
        let (user, expires_at) = accounts.identify(&token).await?;
        caller.admin |= accounts.is_admin(&user);
        caller.user = Some(user);
        caller.expires_at = Some(expires_at);
    }
    Ok(caller)
}

/// `?token=` counts on the socket routes only (a browser's socket cannot send headers):
/// elsewhere a token in a URL ends up in browser history and in other sites' `Referer`.
/// Known by the route the request matched, not by its path: `/wsroom` is a room's page.
fn socket_token(req: &Request<'_>) -> Option<String> {
    static SOCKET_ROUTES: LazyLock<Vec<rocket::Route>> = LazyLock::new(super::ws::routes);
    let route = req.route()?;
    let socket = SOCKET_ROUTES
        .iter()
        .any(|r| r.method == route.method && r.uri.as_str() == route.uri.as_str());
    if !socket {
        return None;
    }
    req.query_value::<&str>("token")
        .and_then(Result::ok)
        .map(str::to_string)
}

/// Whether the client reached us over https (directly, or through a trusted proxy that
/// says so in `X-Forwarded-Proto`): the session cookie is then `Secure`.
pub mod https {
    use super::*;

    pub struct Https(pub bool);

    #[rocket::async_trait]
    impl<'r> FromRequest<'r> for Https {
        type Error = std::convert::Infallible;

        async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Self::Error> {
            Outcome::Success(Https(of(req)))
        }
    }

    pub fn of(req: &Request<'_>) -> bool {
        let direct = req.rocket().config().tls_enabled();
        let proxied = req.remote().is_some_and(|peer| {
            req.rocket()
                .state::<TrustedProxies>()
                .is_some_and(|t| t.trusts(peer.ip()))
        }) && req
            .headers()
            .get_one("X-Forwarded-Proto")
            .is_some_and(|p| p.eq_ignore_ascii_case("https"));
        direct || proxied
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
        // A server listening on `::` sees IPv4 peers as `::ffff:a.b.c.d`.
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the right-most
/// address in `X-Forwarded-For` that is not itself a trusted proxy (`X-Real-IP` only when
/// there is no `X-Forwarded-For`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    pub fn of(req: &Request<'_>) -> Option<ClientAddr> {
        let peer = req.remote()?.ip();
        let Some(trusted) = req.rocket().state::<TrustedProxies>() else {
            return Some(ClientAddr(peer.to_canonical()));
        };
        let forwarded = req.headers().get("X-Forwarded-For").collect::<Vec<_>>();
        let real_ip = req.headers().get_one("X-Real-IP");
        let client = client_address(peer, &forwarded, real_ip, trusted);
        Some(ClientAddr(client))
    }
}

/// Walks `X-Forwarded-For` from the right, the end our peer wrote: each hop was written by
/// the proxy named to its right, so it is believed only while that proxy is trusted.
/// Anything left of the first untrusted hop is whatever the client chose to write.
fn client_address(
    peer: IpAddr,
    forwarded: &[&str],
    real_ip: Option<&str>,
    trusted: &TrustedProxies,
) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.trusts(peer) {
        return peer;
    }
    if forwarded.is_empty() {
        return real_ip.and_then(hop_address).unwrap_or(peer);
    }
    let mut nearest = peer;
    for hop in forwarded.iter().rev().flat_map(|h| h.rsplit(',')) {
        // A trusted proxy that wrote no address (`unknown`) did not name its client, and
        // what lies further left is unvouched for: the client is that proxy.
        let Some(ip) = hop_address(hop) else {
            return nearest;
        };
        if !trusted.trusts(ip) {
            return ip;
        }
        nearest = ip;
    }
    nearest
}

/// One hop of a forwarding header: an address, with or without a port.
fn hop_address(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<std::net::SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for ClientAddr {
    type Error = Error;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Error> {
        match ClientAddr::of(req) {
            Some(addr) => Outcome::Success(addr),
            None => fail(req, Error::bad_request("the client's address is unknown")),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(a: &str) -> IpAddr {
        a.parse().unwrap()
    }

    /// The compose file's setting: nginx and the replicas share Docker's network.
    fn docker() -> TrustedProxies {
        TrustedProxies::parse(&["172.16.0.0/12".into(), "::1".into()]).unwrap()
    }

    #[test]
    fn the_client_is_the_right_most_hop_no_trusted_proxy_vouches_for() {
        let nginx = ip("172.18.0.5");
        let trusted = docker();
        let walk =
            |xff: &[&str], real_ip: Option<&str>| client_address(nginx, xff, real_ip, &trusted);
        // nginx appended the address it saw: what the client wrote before it is not read.
        assert_eq!(walk(&["1.2.3.4, 203.0.113.9"], None), ip("203.0.113.9"));
        assert_eq!(walk(&["1.2.3.4", "203.0.113.9"], None), ip("203.0.113.9"));
        // Through a second trusted proxy: its own hop is passed over, from the right.
        assert_eq!(
            walk(&["1.2.3.4, 203.0.113.9, 172.18.0.9"], None),
            ip("203.0.113.9")
        );
        // An address with its port, as some proxies write it.
        assert_eq!(
            walk(&["1.2.3.4, 203.0.113.9:4711"], None),
            ip("203.0.113.9")
        );
        assert_eq!(
            walk(&["1.2.3.4, [2001:db8::7]:443"], None),
            ip("2001:db8::7")
        );
        // A hop that is no address ends the walk: what lies left of it is the client's
        // own writing, so the client is the proxy that wrote it.
        assert_eq!(walk(&["1.2.3.4, unknown"], None), nginx);
        assert_eq!(walk(&["1.2.3.4, , 172.18.0.9"], None), ip("172.18.0.9"));
        assert_eq!(walk(&[""], Some("1.2.3.4")), nginx);
        // Trusted all the way: the farthest hop, never an X-Real-IP beside the chain.
        assert_eq!(walk(&["172.18.0.7"], Some("1.2.3.4")), ip("172.18.0.7"));
        // X-Real-IP only from a proxy that sent no X-Forwarded-For.
        assert_eq!(walk(&[], Some("203.0.113.9")), ip("203.0.113.9"));
        assert_eq!(walk(&[], Some("nonsense")), nginx);
        assert_eq!(walk(&[], None), nginx);
    }

    #[test]
    fn only_a_trusted_peer_is_believed() {
        let trusted = docker();
        let stranger = ip("198.51.100.1");
        assert_eq!(
            client_address(stranger, &["203.0.113.9"], Some("203.0.113.9"), &trusted),
            stranger
        );
        assert_eq!(
            client_address(stranger, &["203.0.113.9"], None, &TrustedProxies::default()),
            stranger
        );
        // A server listening on `::` sees IPv4 peers as mapped addresses.
        let mapped = ip("::ffff:172.18.0.5");
        assert_eq!(
            client_address(mapped, &["1.2.3.4, 203.0.113.9"], None, &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_address(ip("::ffff:198.51.100.1"), &["203.0.113.9"], None, &trusted),
            ip("198.51.100.1")
        );
    }
}
