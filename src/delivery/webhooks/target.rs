//! Where a webhook may send: an `http` or `https` URL whose host resolves to public
//! addresses only. A receiver inside the server's own network (loopback, private,
//! link-local, unique-local: the cloud's metadata service at 169.254.169.254 among them)
//! is refused when the webhook is made and again at every delivery, through the resolver
//! the sender connects with, so a name that later resolves elsewhere (DNS rebinding) is
//! caught where it matters. `webhook_allow_private` lifts this, for private networks.

use crate::domain::Error;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Longest URL accepted.
pub const MAX_URL_CHARS: usize = 2048;

/// Parses a receiver's URL: `http(s)://host[:port]/...`, with no user name or password.
pub fn parse(url: &str) -> Result<reqwest::Url, Error> {
    let url = url.trim();
    if url.is_empty() || url.chars().count() > MAX_URL_CHARS {
        return Err(Error::bad_request(format!(
            "url must be 1 to {MAX_URL_CHARS} characters"
        )));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|err| Error::bad_request(format!("url is not a URL: {err}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::bad_request("url must be http:// or https://"));
    }
    if parsed.host().is_none() {
        return Err(Error::bad_request("url has no host"));
    }
    // As kept: percent-encoding may have made it longer.
    if parsed.as_str().len() > MAX_URL_CHARS {
        return Err(Error::bad_request(format!(
            "url must be 1 to {MAX_URL_CHARS} characters"
        )));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Error::bad_request(
            "url must not hold a user name or password: the signature proves who sends",
        ));
    }
    Ok(parsed)
}

/// Whether an address is one a webhook must not reach unless private receivers are
/// allowed: this machine, its networks, and what is not an address of a host at all.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_internal_v4(v4),
            None => is_internal_v6(v6),
        },
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        // Carrier-grade NAT (100.64.0.0/10), IETF protocol assignments (192.0.0.0/24: a
        // cloud's metadata service among them), benchmarking (198.18.0.0/15), reserved (240/4).
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // Unique-local fc00::/7, link-local fe80::/10, site-local fec0::/10.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        // Teredo 2001::/32 and local-use NAT64 64:ff9b:1::/48 reach what they wrap.
        || (first == 0x2001 && ip.segments()[1] == 0)
        || (first == 0x64 && ip.segments()[1] == 0xff9b && ip.segments()[2] == 1)
        // IPv4-compatible ::a.b.c.d and NAT64 64:ff9b::/96 end with an IPv4 address, and
        // 6to4 2002::/16 holds one after its prefix.
        || ip.to_ipv4().is_some_and(is_internal_v4)
        || (ip.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
            && is_internal_v4(v4_of(ip.segments()[6], ip.segments()[7])))
        || (first == 0x2002 && is_internal_v4(v4_of(ip.segments()[1], ip.segments()[2])))
}

fn v4_of(high: u16, low: u16) -> Ipv4Addr {
    Ipv4Addr::from(((high as u32) << 16) | low as u32)
}

/// The addresses a URL's host resolves to that a webhook may reach; an error naming why
/// when there are none.
pub async fn resolve(url: &reqwest::Url, allow_private: bool) -> Result<Vec<SocketAddr>, Error> {
    let port = url.port_or_known_default().unwrap_or(80);
    let found: Vec<SocketAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(ip.into(), port)],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(ip.into(), port)],
        Some(url::Host::Domain(name)) => tokio::net::lookup_host((name, port))
            .await
            .map_err(|err| {
                Error::bad_request(format!("url's host {name} does not resolve: {err}"))
            })?
            .collect(),
        None => return Err(Error::bad_request("url has no host")),
    };
    allowed(found, allow_private)
}

fn allowed(found: Vec<SocketAddr>, allow_private: bool) -> Result<Vec<SocketAddr>, Error> {
    let public: Vec<SocketAddr> = found
        .into_iter()
        .filter(|a| allow_private || !is_internal(a.ip()))
        .collect();
    if public.is_empty() {
        return Err(Error::bad_request(
            "url's host does not resolve to a public address (a private network's are refused unless webhook_allow_private is set)",
        ));
    }
    Ok(public)
}

/// The sender's resolver: the same rule at every connection it makes.
pub struct Guarded {
    pub allow_private: bool,
}

impl Resolve for Guarded {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let addrs: Addrs = Box::new(
                allowed(found, allow_private)
                    .map_err(|err| err.to_string())?
                    .into_iter(),
            );
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_known() {
        for internal in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "192.0.0.192",
            "2002:7f00:1::1",
            "2001:0:4136:e378::1",
        ] {
            let ip: IpAddr = internal.parse().unwrap();
            assert!(is_internal(ip), "{internal} is internal");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "2002:808:808::1",
        ] {
            let ip: IpAddr = public.parse().unwrap();
            assert!(!is_internal(ip), "{public} is public");
        }
    }

    #[test]
    fn urls_are_checked() {
        assert!(parse("https://hooks.example.com/x").is_ok());
        assert!(parse("ftp://example.com/").is_err());
        assert!(parse("https://user:pw@example.com/").is_err());
        assert!(parse("not a url").is_err());
        assert!(parse("").is_err());
        assert!(parse(&format!("https://e.com/{}", "a".repeat(3000))).is_err());
    }

    #[tokio::test]
    async fn private_receivers_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:9/",
            "http://10.0.0.1/",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://localhost:8080/",
        ] {
            let parsed = parse(url).unwrap();
            assert!(resolve(&parsed, false).await.is_err(), "{url} refused");
            assert!(resolve(&parsed, true).await.is_ok(), "{url} allowed");
        }
        let public = parse("http://8.8.8.8/").unwrap();
        assert!(resolve(&public, false).await.is_ok());
    }
}
