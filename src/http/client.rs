//! Who the client is on the wire, as every guard needs it: its address (through trusted
//! proxies only), whether it came by https, the session cookie's name, and how a guard's
//! failure reaches the catcher that answers it. Lowest of `http`: the guards, the limits,
//! the origin check and the socket mount all stand on it.

use crate::domain::Error;
use ipnet::IpNet;
use rocket::http::Status;
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest, Request};
use std::net::{IpAddr, SocketAddr};

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
        let proxied = peer(req).is_some_and(|peer| {
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

/// The other end of the client's connection: the client itself, also when
/// `http::front_door` relayed it to Rocket (Rocket then sees the relay).
pub fn peer(req: &Request<'_>) -> Option<SocketAddr> {
    let remote = req.remote()?;
    Some(
        match req
            .rocket()
            .state::<std::sync::Arc<super::front_door::Peers>>()
        {
            Some(peers) => peers.client_of(remote),
            None => remote,
        },
    )
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
        let peer = peer(req)?.ip();
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
