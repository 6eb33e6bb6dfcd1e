//! `POST /hooks/<id>/<secret>`: what Grafana, Alertmanager, CI or `curl` post into a
//! room, in Slack's incoming-webhook format. The URL is the credential (the request log
//! writes `<redacted>` for the secret); a wrong id or secret is 404 either way. Each hook
//! has its own bucket (`hook_posts_per_minute`), whoever calls it, and each client address
//! one for the hooks read from the database (`hook_lookups_per_minute`: a flood of made-up
//! URLs is 429 before it costs a read); answers are one plain line, `ok` as Slack's.

use super::guards::ClientAddr;
use super::limits::Bucket;
use super::App;
use super::Plain;
use crate::chat::hooks::{self, Payload};
use crate::domain::{Error, RoomName};
use rocket::data::{self, Data, FromData, ToByteUnit};
use rocket::http::Status;
use rocket::request::Request;
use rocket::{post, State};
use utoipa::ToSchema;

super::mount![post_through_hook];

/// Slack's payload, as JSON or as the form field `payload` holding that JSON.
#[derive(ToSchema)]
#[allow(dead_code)] // the document's description of what `Payload` reads
pub struct SlackPayload {
    /// The message. Without it, the text of `attachments` (`pretext`, `title`, `text`,
    /// else `fallback`) and `blocks` is posted; with none of them: 400.
    text: Option<String>,
    /// The name the message goes under instead of the hook's.
    username: Option<String>,
}

/// The body, read once: JSON, or `application/x-www-form-urlencoded` `payload=<JSON>`.
pub struct Body(Payload);

#[rocket::async_trait]
impl<'r> FromData<'r> for Body {
    type Error = Error;

    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> data::Outcome<'r, Self> {
        let fail = |err: Error| {
            let status = Status::from_code(err.status_code()).unwrap_or(Status::BadRequest);
            data::Outcome::Error((status, err))
        };
        let form = req.content_type().is_some_and(|ct| ct.is_form());
        if !form && !req.content_type().is_some_and(|ct| ct.is_json()) {
            return fail(Error::UnsupportedMediaType(
                "send Slack's JSON payload (application/json), or payload=<JSON> as a form".into(),
            ));
        }
        let limit = req.limits().get("json").unwrap_or(64.kibibytes());
        let bytes = match data.open(limit).into_bytes().await {
            Ok(bytes) if bytes.is_complete() => bytes.into_inner(),
            Ok(_) => {
                return fail(Error::PayloadTooLarge(format!(
                    "the body is larger than {limit}"
                )))
            }
            Err(err) => {
                return fail(Error::bad_request(format!(
                    "could not read the body: {err}"
                )))
            }
        };
        let json = if form {
            match form_field(&bytes, "payload") {
                Some(json) => json.into_bytes(),
                None => return fail(Error::bad_request("the form has no payload field")),
            }
        } else {
            bytes
        };
        match serde_json::from_slice(&json) {
            Ok(payload) => data::Outcome::Success(Body(payload)),
            Err(err) => fail(Error::bad_request(format!("invalid JSON payload: {err}"))),
        }
    }
}

/// One field of a urlencoded form, decoded.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        let decode = |s: &str| {
            let spaced = s.replace('+', " ");
            rocket::http::RawStr::new(&spaced)
                .url_decode()
                .ok()
                .map(|v| v.into_owned())
        };
        (decode(key)? == name).then(|| decode(value)).flatten()
    })
}

/// Posts into the hook's room, as the hook (a bot), on the one pipeline: every door and
/// replica sees it.
#[utoipa::path(tag = "hooks",
    params(("id" = String, Path), ("secret" = String, Path, description = "the secret shown when the hook was made")),
    request_body(content = SlackPayload, content_type = "application/json"),
    responses((status = 200, description = "posted", content_type = "text/plain", body = String),
        (status = 400), (status = 404, description = "no such hook, or a wrong secret"), (status = 413), (status = 415),
        (status = 429)))]
#[post("/<id>/<secret>", data = "<body>")]
#[allow(clippy::too_many_arguments)] // each is a part of the request Rocket hands in
async fn post_through_hook(
    id: &str,
    secret: &str,
    body: Result<Body, Error>,
    client: ClientAddr,
    app: &State<App>,
) -> Result<&'static str, Plain> {
    let hook = app
        .hooks
        .open(id, secret, || {
            app.limiter.check(Bucket::HookLookup, client, None)
        })
        .await?;
    let (caller, message) = {
        let Body(payload) = body?;
        hooks::message(&hook, &payload, &app.limits, app.auth_mode)?
    };
    let bot = caller.user.as_ref().map(|u| u.user_id.as_str());
    app.limiter.check(Bucket::HookPost, client, bot)?;
    let room = RoomName::parse(&hook.room_id)?;
    app.delivery.post(&caller, &room, message).await?;
    Ok("ok")
}

#[cfg(test)]
mod tests {
    use super::form_field;

    #[test]
    fn slack_legacy_forms_are_read() {
        let body = b"channel=x&payload=%7B%22text%22%3A+%22a+b%2Bc%22%7D";
        assert_eq!(
            form_field(body, "payload").as_deref(),
            Some("{\"text\": \"a b+c\"}")
        );
        assert_eq!(form_field(body, "missing"), None);
    }
}
