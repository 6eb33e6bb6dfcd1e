//! Which site's page a browser request comes from. A browser attaches the session cookie
//! to requests that pages of other sites make (forms and sockets of any site, and every
//! request of the other ports and subdomains of this host, which count as the same site to
//! SameSite), and says which page made them in `Origin` (else, more rarely, `Referer`).
//! So a socket, and a change signed in by the cookie, is taken from this server's own
//! origin and the configured ones only, compared whole: scheme, host and port.

use super::client::{fail, https, SESSION_COOKIE};
use crate::domain::Error;
use rocket::http::{Method, Status};
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest, Request};

/// `scheme://host:port`, as browsers write an `Origin`: host in lower case, the port
/// filled in when it is the scheme's default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    https: bool,
    host: String,
    port: u16,
}

impl Origin {
    /// An `Origin` header's value, or the start of a URL (`Referer`); `null`, another
    /// scheme or credentials in it are no origin.
    pub fn of_url(url: &str) -> Option<Origin> {
        let (scheme, rest) = url.trim().split_once("://")?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        Origin::of_authority(https, authority)
    }

    /// The origin of `host[:port]` reached by that scheme.
    fn of_authority(https: bool, authority: &str) -> Option<Origin> {
        if authority.contains('@') {
            return None;
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']')?;
                (format!("[{host}]"), after.strip_prefix(':'))
            }
            None => match authority.split_once(':') {
                Some((host, port)) => (host.to_string(), Some(port)),
                None => (authority.to_string(), None),
            },
        };
        if host.is_empty() {
            return None;
        }
        let default = if https { 443 } else { 80 };
        let port = match port {
            None | Some("") => default,
            Some(port) => port.parse().ok()?,
        };
        Some(Origin {
            https,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether this is the origin of the request's own site: its `Host` (host and port,
    /// compared whole), reached by the scheme it came by. The scheme is held to only when
    /// the request is known to have come by https (directly, or as a trusted proxy says):
    /// a plain-http request may be an https page's own, through a proxy that took the
    /// TLS off without being trusted to say so (a Codespace's port forwarding, a tunnel),
    /// and another port of the host, which is what other sites on it are, is refused
    /// either way.
    fn is_own(&self, host: &str, port: Option<u16>, came_by_https: bool) -> bool {
        if came_by_https && !self.https {
            return false;
        }
        // No port in `Host`: the default one of the scheme the page used to reach it.
        let port = port.unwrap_or(if self.https { 443 } else { 80 });
        self.host == host.to_ascii_lowercase() && self.port == port
    }

    fn is_requests_own(&self, req: &Request<'_>) -> bool {
        req.host()
            .is_some_and(|host| self.is_own(host.domain().as_str(), host.port(), https::of(req)))
    }
}

/// The origins whose pages are this site's (managed state): `public_origin`, else the
/// origin each request was sent to; and `allowed_origins` (`*`: every one).
pub struct Origins {
    public: Option<Origin>,
    allowed: Vec<Origin>,
    any: bool,
}

impl Origins {
    /// The settings, checked: an entry that is no origin stops the start with a reason.
    pub fn parse(public: Option<&str>, allowed: &[String]) -> Result<Origins, String> {
        let origin = |setting: &str, text: &str| {
            let bare = text.trim().trim_end_matches('/');
            Origin::of_url(bare)
                .filter(|_| !bare.split_once("://").is_some_and(|(_, r)| r.contains('/')))
                .ok_or_else(|| {
                    format!("{setting}: '{text}' is not an origin (scheme://host[:port])")
                })
        };
        let public = public
            .filter(|p| !p.trim().is_empty())
            .map(|p| origin("public_origin", p))
            .transpose()?;
        let any = allowed.iter().any(|a| a.trim() == "*");
        let allowed = allowed
            .iter()
            .filter(|a| a.trim() != "*")
            .map(|a| origin("allowed_origins", a))
            .collect::<Result<_, _>>()?;
        Ok(Origins {
            public,
            allowed,
            any,
        })
    }

    /// Whether a page of `origin` (the header's text) is this site's or an allowed one.
    fn admit(&self, req: &Request<'_>, origin: &str) -> bool {
        if self.any {
            return true;
        }
        let Some(origin) = Origin::of_url(origin) else {
            return false;
        };
        let own = match &self.public {
            Some(public) => *public == origin,
            None => origin.is_requests_own(req),
        };
        own || self.allowed.contains(&origin)
    }
}

fn origins<'r>(req: &'r Request<'_>) -> Option<&'r Origins> {
    req.rocket().state::<Origins>()
}

/// A socket opened by a page of this site, of an allowed one, or by a client that is no
/// page (it sends no `Origin`). A page of any other site is refused: a browser would
/// otherwise let it chat in its visitor's name. Signed in by the session cookie, the
/// page's origin must be this site's whole (another port of the host is another site,
/// and would be using the visitor's cookie); without the cookie the socket is nobody's
/// but what it claims, so a page of the same host on another port (the ChatFlow app on
/// :3000 beside the API, a page of the author-per-frame socket's client) is taken, as it always was.
pub struct SiteOrigin;

/// Whether `origin` names the host this request was sent to, whatever its scheme and
/// port.
fn same_host(req: &Request<'_>, origin: &str) -> bool {
    match (Origin::of_url(origin), req.host()) {
        (Some(origin), Some(host)) => origin.host == host.domain().as_str().to_ascii_lowercase(),
        _ => false,
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for SiteOrigin {
    type Error = Error;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Error> {
        let Some(origin) = req.headers().get_one("Origin") else {
            return Outcome::Success(SiteOrigin);
        };
        let cookie = req.cookies().get(SESSION_COOKIE).is_some();
        if origins(req).is_some_and(|o| o.admit(req, origin)) || (!cookie && same_host(req, origin))
        {
            return Outcome::Success(SiteOrigin);
        }
        Outcome::Error((
            Status::Forbidden,
            Error::Forbidden(format!(
                "a socket from {} is refused: not this site, and not in allowed_origins",
                one_line(origin)
            )),
        ))
    }
}

/// A request that changes something on the strength of the session cookie must come from
/// this site's pages: its `Origin`, else its `Referer`, must be admitted. One with neither
/// is no page's (browsers send `Origin` with every POST, PUT, PATCH and DELETE, and the
/// cross-site ones of a page whose referrer policy hides it say `null`): a script with a
/// cookie jar, taken as before.
pub fn check_cookie_request(req: &Request<'_>) -> Result<(), Error> {
    let unsafe_method = matches!(
        req.method(),
        Method::Post | Method::Put | Method::Patch | Method::Delete
    );
    if !unsafe_method || req.cookies().get(SESSION_COOKIE).is_none() {
        return Ok(());
    }
    let headers = req.headers();
    let Some((header, from)) = headers
        .get_one("Origin")
        .map(|o| ("Origin", o))
        .or_else(|| headers.get_one("Referer").map(|r| ("Referer", r)))
    else {
        return Ok(());
    };
    if origins(req).is_some_and(|o| o.admit(req, from)) {
        return Ok(());
    }
    let page = if from.contains("://") {
        site_of(from)
    } else {
        one_line(from)
    };
    Err(Error::Forbidden(format!(
        "refused: a change signed in by the session cookie, from a page of {page} (its \
         {header}), which is neither this site nor in allowed_origins"
    )))
}

/// For routes that act on the session cookie without asking who it is (signing out):
/// [`check_cookie_request`] as a guard.
pub struct CookieOrigin;

#[rocket::async_trait]
impl<'r> FromRequest<'r> for CookieOrigin {
    type Error = Error;

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, Error> {
        match check_cookie_request(req) {
            Ok(()) => Outcome::Success(CookieOrigin),
            Err(err) => fail(req, err),
        }
    }
}

/// `scheme://authority` of a URL: a `Referer`'s path and query are the visitor's, not for
/// an answer (nor a log).
fn site_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    one_line(&format!("{scheme}://{authority}"))
}

fn one_line(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::{Origin, Origins};

    fn o(text: &str) -> Option<Origin> {
        Origin::of_url(text)
    }

    #[test]
    fn a_requests_own_origin_is_its_host_and_port() {
        let page = |text: &str| o(text).unwrap();
        // Plain http from an untrusted peer: an https page may be behind a proxy that took
        // TLS off, so either scheme, with the host and port.
        assert!(page("http://chat.test:5000").is_own("chat.test", Some(5000), false));
        assert!(page("https://chat.test:5000").is_own("Chat.Test", Some(5000), false));
        assert!(page("https://x-5000.app.github.dev").is_own("x-5000.app.github.dev", None, false));
        assert!(page("http://x.test").is_own("x.test", None, false));
        assert!(!page("http://chat.test:6666").is_own("chat.test", Some(5000), false));
        assert!(!page("https://chat.test:8443").is_own("chat.test", None, false));
        assert!(!page("http://other.test:5000").is_own("chat.test", Some(5000), false));
        // Known to be https: an http page is another site.
        assert!(page("https://chat.test").is_own("chat.test", None, true));
        assert!(!page("http://chat.test:443").is_own("chat.test", None, true));
    }

    #[test]
    fn origins_compare_whole() {
        assert_eq!(o("http://Example.COM"), o("http://example.com:80"));
        assert_eq!(
            o("https://example.com"),
            o("https://example.com:443/page?q=1")
        );
        assert_ne!(o("http://example.com"), o("https://example.com"));
        assert_ne!(o("http://127.0.0.1:5000"), o("http://127.0.0.1:6666"));
        assert_ne!(o("http://127.0.0.1:5000"), o("http://127.0.0.1"));
        assert_eq!(o("http://[::1]:5000"), o("http://[::1]:5000/x"));
        assert_ne!(o("http://[::1]:5000"), o("http://[::1]"));
        for none in [
            "null",
            "",
            "file:///etc",
            "ws://example.com",
            "http://",
            "http://user:pw@example.com",
            "http://example.com:99999",
            "http://example.com:x",
            "http://::1",
        ] {
            assert_eq!(o(none), None, "{none}");
        }
    }

    #[test]
    fn the_settings_name_origins() {
        let list = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(Origins::parse(Some("https://chat.example.com/"), &list(&["*"])).is_ok());
        assert!(Origins::parse(None, &list(&["https://app.example.com"])).is_ok());
        assert!(Origins::parse(Some(""), &[]).is_ok());
        for bad in ["chat.example.com", "https://chat.example.com/path", "null"] {
            let err = Origins::parse(None, &list(&[bad])).err().unwrap();
            assert!(
                err.contains("allowed_origins") && err.contains(bad),
                "{err}"
            );
        }
        assert!(Origins::parse(Some("ftp://x"), &[]).is_err());
    }
}
