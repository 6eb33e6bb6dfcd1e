//! What a request carries that handlers take as arguments: the caller (who they proved to
//! be, admin or not) and a JSON body that must say it is JSON; with the client's address,
//! re-exported from `client`, where it is worked out. A guard that fails leaves its error
//! where the catchers find it, so its reason reaches the client.

pub use super::client::{fail, https, ClientAddr, GuardFailure, TrustedProxies, SESSION_COOKIE};
use super::App;
use crate::domain::{AuthMode, Caller, Error};
use rocket::data::{self, Data, FromData, ToByteUnit};
use rocket::http::Status;
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest, Request};
use serde::de::DeserializeOwned;
use std::sync::{Arc, LazyLock};
use subtle::ConstantTimeEq;

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
/// modes: the client believes it is signed in, and should hear that it is not; but for a
/// stale session cookie in open mode, which is dropped and the caller taken as a guest.
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
    let app = req.rocket().state::<App>();
    let mode = app.map(|app| app.auth_mode).unwrap_or_default();
    let admin_token = app.and_then(|app| app.admin_token.as_deref());
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
        token_generation: None,
        rooms: None,
    };
    let mut from_cookie = false;
    let token = match presented {
        Some(_) if admin => None,
        Some(token) => Some(token.to_string()),
        None => match req.cookies().get(SESSION_COOKIE) {
            Some(cookie) => {
                super::origin::check_cookie_request(req)?;
                from_cookie = true;
                Some(cookie.value().to_string())
            }
            None => socket_token(req),
        },
    };
    if let (Some(token), Some(accounts)) = (token, app.map(|app| &app.accounts)) {
        let (user, expires_at, generation) = match accounts.identify(&token).await {
            Ok(identified) => identified,
            // A session cookie that no longer holds (signed out on another device, the
            // password changed, expired) is no claim the page makes: in open mode the
            // page goes on as a guest, and the cookie goes. A 401 there would stop the
            // original page's polling for good.
            Err(Error::Unauthorized(_)) if from_cookie && mode == AuthMode::Open => {
                req.cookies()
                    .remove(rocket::http::Cookie::build(SESSION_COOKIE).path("/"));
                return Ok(caller);
            }
            Err(err) => return Err(err),
        };
        caller.admin |= accounts.is_admin(&user);
        caller.rooms = accounts.bot_rooms(&user.user_id).await?.map(Arc::from);
        caller.user = Some(user);
        caller.expires_at = Some(expires_at);
        caller.token_generation = generation;
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
