//! `/api/auth`: register, sign in and out (which revokes the account's tokens), change the
//! password, and who am I. A token is returned to use as
//! `Authorization: Bearer`, and set as the session cookie (HttpOnly, SameSite=Lax, Secure
//! behind https) for the page; a socket takes it as `?token=` or the cookie.

use super::guards::{https, ClientAddr, SESSION_COOKIE};
use super::limits::{Searching, Signing};
use super::origin::CookieOrigin;
use super::App;
use super::JsonBody;
use crate::accounts::Session;
use crate::domain::{Caller, Error, Result};
use rocket::http::{Cookie, CookieJar, SameSite, Status};
use rocket::serde::json::Json;
use rocket::{get, post, State};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

super::mount![register, login, logout, password, me, users];

#[derive(Deserialize, ToSchema)]
pub struct Credentials {
    username: String,
    /// At least 8 characters.
    password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct NewPassword {
    current_password: String,
    /// At least 8 characters.
    new_password: String,
}

#[derive(Serialize, ToSchema)]
pub struct SignedIn {
    user_id: String,
    username: String,
    /// Send as `Authorization: Bearer <token>`, or `?token=` on a socket.
    token: String,
    expires_in: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    user_id: String,
    username: String,
    /// `admin` for admins.
    roles: Vec<&'static str>,
}

fn signed_in(session: Session, cookies: &CookieJar<'_>, secure: bool) -> Json<SignedIn> {
    let cookie = Cookie::build((SESSION_COOKIE, session.token.clone()))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .path("/")
        .max_age(rocket::time::Duration::seconds(
            i64::try_from(session.expires_in_secs).unwrap_or(i64::MAX),
        ));
    cookies.add(cookie);
    Json(SignedIn {
        user_id: session.user.user_id,
        username: session.user.username,
        token: session.token,
        expires_in: session.expires_in_secs,
    })
}

/// A new account, signed in at once; 409 when the name is taken.
#[utoipa::path(tag = "auth", request_body = Credentials,
    responses((status = 201, body = SignedIn), (status = 400), (status = 409), (status = 415),
        (status = 429)))]
#[post("/register", data = "<body>")]
async fn register(
    body: Result<JsonBody<Credentials>>,
    flood: Result<Signing>,
    https: https::Https,
    app: &State<App>,
    cookies: &CookieJar<'_>,
) -> Result<(Status, Json<SignedIn>)> {
    flood?;
    let JsonBody(body) = body?;
    let session = app
        .accounts
        .register(&body.username, &body.password)
        .await?;
    Ok((Status::Created, signed_in(session, cookies, https.0)))
}

/// Signs in: the token, and the session cookie.
#[utoipa::path(tag = "auth", request_body = Credentials,
    responses((status = 200, body = SignedIn), (status = 400), (status = 401), (status = 415), (status = 429)))]
#[post("/login", data = "<body>")]
async fn login(
    body: Result<JsonBody<Credentials>>,
    flood: Result<Signing>,
    client: Result<ClientAddr>,
    https: https::Https,
    app: &State<App>,
    cookies: &CookieJar<'_>,
) -> Result<Json<SignedIn>> {
    flood?;
    let client = client?;
    let JsonBody(body) = body?;
    app.limiter.check_sign_in(&body.username, client)?;
    let session = app.accounts.login(&body.username, &body.password).await;
    app.limiter.count_sign_in(&body.username, client, &session);
    Ok(signed_in(session?, cookies, https.0))
}

/// Signs out everywhere: forgets the session cookie, and every token of the account
/// stops working, on every replica. Without a valid token, only the cookie goes. Another
/// site's page may not sign its visitor out (403).
#[utoipa::path(tag = "auth", responses((status = 200), (status = 403)))]
#[post("/logout")]
async fn logout(
    _page: CookieOrigin,
    caller: Result<Caller>,
    app: &State<App>,
    cookies: &CookieJar<'_>,
) -> Result<Json<Value>> {
    cookies.remove(Cookie::build(SESSION_COOKIE).path("/"));
    if let Some(user) = caller.ok().and_then(|c| c.user) {
        app.accounts.sign_out(&user).await?;
    }
    Ok(Json(json!({ "status": "signed out" })))
}

/// A new password, given the current one: every other token of the account stops
/// working, and the one returned (and set as the cookie) is the session from now on. A
/// wrong current password is 403, and counts as a wrong password at sign-in does.
#[utoipa::path(tag = "auth", request_body = NewPassword,
    responses((status = 200, body = SignedIn), (status = 400), (status = 401), (status = 403),
        (status = 415), (status = 429)))]
#[post("/password", data = "<body>")]
#[allow(clippy::too_many_arguments)] // each is a part of the request Rocket hands in
async fn password(
    caller: Result<Caller>,
    body: Result<JsonBody<NewPassword>>,
    flood: Result<Signing>,
    client: Result<ClientAddr>,
    https: https::Https,
    app: &State<App>,
    cookies: &CookieJar<'_>,
) -> Result<Json<SignedIn>> {
    let Some(user) = caller?.user else {
        return Err(Error::Unauthorized("sign in first".into()));
    };
    flood?;
    let client = client?;
    let JsonBody(body) = body?;
    app.limiter.check_sign_in(&user.username, client)?;
    let session = app
        .accounts
        .change_password(&user, &body.current_password, &body.new_password)
        .await;
    app.limiter.count_sign_in(&user.username, client, &session);
    Ok(signed_in(session?, cookies, https.0))
}

/// Who the caller is signed in as.
#[utoipa::path(tag = "auth", responses((status = 200, body = Me), (status = 401)))]
#[get("/me")]
async fn me(caller: Caller, app: &State<App>) -> Result<Json<Me>> {
    let Some(user) = caller.user else {
        return Err(Error::Unauthorized("not signed in".into()));
    };
    // The account's name now, if it is one of ours; an external token's as it says.
    let username = match app.accounts.get(&user.user_id).await? {
        Some(account) => account.username,
        None => user.username,
    };
    Ok(Json(Me {
        user_id: user.user_id,
        username,
        roles: if caller.admin { vec!["admin"] } else { vec![] },
    }))
}

/// One account, as the directory shows it.
#[derive(Serialize, ToSchema)]
pub struct UserOut {
    user_id: String,
    username: String,
}

/// Accounts whose name starts with `q`, up to 10, by name: how the page finds someone to
/// start a direct conversation with. Only the signed in (and admins) may look, since only
/// they can start one; lookups draw on the search bucket.
#[utoipa::path(tag = "auth",
    params(("q" = String, Query, description = "the start of a name, 1 to 64 characters")),
    responses((status = 200, body = Vec<UserOut>), (status = 400), (status = 401), (status = 429)))]
#[get("/users?<q>")]
async fn users(
    q: Option<&str>,
    flood: Result<Searching>,
    caller: Caller,
    app: &State<App>,
) -> Result<Json<Vec<UserOut>>> {
    flood?;
    if caller.user.is_none() && !caller.admin {
        return Err(Error::Unauthorized("sign in to look people up".into()));
    }
    let found = app.accounts.starting_with(q.unwrap_or("")).await?;
    Ok(Json(
        found
            .into_iter()
            .map(|a| UserOut {
                user_id: a.user_id,
                username: a.username,
            })
            .collect(),
    ))
}
