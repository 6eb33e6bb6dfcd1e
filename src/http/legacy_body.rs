//! The body of `POST /api/chat/<room>`: a form (`username=..&msg=..`, urlencoded as jQuery
//! and `curl -d` send it, or multipart as `curl -F` does) or JSON with the same keys.
//! Unlike a lenient form parser, anything unreadable is refused rather than half-read.

use super::App;
use crate::config::Settings;
use crate::domain::Error;
use rocket::data::{self, Data, FromData, ToByteUnit};
use rocket::form::{self, error::ErrorKind, Form, FromForm, Lenient};
use rocket::http::Status;
use rocket::outcome::Outcome;
use rocket::Request;
use serde::Deserialize;

/// The two fields as sent; validation happens in `domain::message::new_message`.
#[derive(Debug, Default, Deserialize)]
pub struct PostBody {
    pub username: Option<String>,
    pub msg: Option<String>,
}

const UNSUPPORTED: &str = "Content-Type must be application/x-www-form-urlencoded, \
                           multipart/form-data or application/json";

#[rocket::async_trait]
impl<'r> FromData<'r> for PostBody {
    type Error = Error;

    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> data::Outcome<'r, Self> {
        match read(req, data).await {
            Ok(body) => Outcome::Success(body),
            Err(err) => Outcome::Error((
                Status::from_code(err.status_code()).unwrap_or(Status::BadRequest),
                err,
            )),
        }
    }
}

async fn read<'r>(req: &'r Request<'_>, data: Data<'r>) -> Result<PostBody, Error> {
    let limit = req
        .rocket()
        .state::<App>()
        .map_or(Settings::default().chat.max_body_bytes, |app| {
            app.settings.chat.max_body_bytes
        });
    let content_type = req.content_type().cloned();

    if content_type.as_ref().is_some_and(|ct| ct.is_form_data()) {
        return match Form::<Lenient<MultipartBody<'r>>>::from_data(req, data).await {
            Outcome::Success(form) => {
                let form = form.into_inner().into_inner();
                Ok(PostBody {
                    username: multipart_field(form.username, limit)?,
                    msg: multipart_field(form.msg, limit)?,
                })
            }
            Outcome::Error((status, errors)) => Err(multipart_error(status, &errors, limit)),
            Outcome::Forward(_) => Err(Error::UnsupportedMediaType(UNSUPPORTED.into())),
        };
    }

    let bytes = data
        .open(limit.bytes())
        .into_bytes()
        .await
        .map_err(|e| Error::bad_request(format!("unreadable body: {e}")))?;
    if !bytes.is_complete() {
        return Err(too_large(limit));
    }
    let bytes = bytes.into_inner();

    match content_type {
        Some(ct) if ct.is_json() => serde_json::from_slice::<PostBody>(&bytes)
            .map_err(|e| Error::bad_request(format!("invalid JSON: {e}"))),
        Some(ct) if ct.is_form() => parse_urlencoded(&bytes),
        // `curl -X POST` with no data at all: the same as a form with no fields.
        None if bytes.is_empty() => Ok(<PostBody as Default>::default()),
        _ => Err(Error::UnsupportedMediaType(UNSUPPORTED.into())),
    }
}

/// `curl -F`: each field kept with its error, so that an oversized or unreadable field is
/// refused instead of being taken for a missing one.
#[derive(FromForm)]
struct MultipartBody<'r> {
    username: form::Result<'r, String>,
    msg: form::Result<'r, String>,
}

fn multipart_field(field: form::Result<'_, String>, limit: usize) -> Result<Option<String>, Error> {
    match field {
        Ok(value) => Ok(Some(value)),
        Err(errors) if errors.iter().all(|e| matches!(e.kind, ErrorKind::Missing)) => Ok(None),
        Err(errors) => Err(multipart_error(errors.status(), &errors, limit)),
    }
}

fn multipart_error(status: Status, errors: &form::Errors<'_>, limit: usize) -> Error {
    if status == Status::PayloadTooLarge {
        return too_large(limit);
    }
    let reason = errors
        .iter()
        .next()
        .map(|e| e.to_string())
        .unwrap_or_default();
    Error::bad_request(format!("unreadable multipart body: {reason}"))
}

fn too_large(limit: usize) -> Error {
    Error::PayloadTooLarge(format!("request body is larger than {limit} bytes"))
}

/// `application/x-www-form-urlencoded`, strictly: a bad `%` escape or bytes that are not
/// UTF-8 refuse the whole body. The first value of a repeated key wins, as in Flask.
fn parse_urlencoded(body: &[u8]) -> Result<PostBody, Error> {
    let mut out = <PostBody as Default>::default();
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        let key = decode_component(key)?;
        let slot = match key.as_str() {
            "username" => &mut out.username,
            "msg" => &mut out.msg,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(decode_component(value)?);
        }
    }
    Ok(out)
}

fn decode_component(raw: &[u8]) -> Result<String, Error> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = raw
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| Error::bad_request("bad percent-encoding in form body"))?;
                bytes.push(hex);
                i += 2;
            }
            b => bytes.push(b),
        }
        i += 1;
    }
    String::from_utf8(bytes).map_err(|_| Error::bad_request("form body is not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencoded_strict() {
        let b = parse_urlencoded(b"username=zo%C3%AB+x&msg=a%26b%3Dc&msg=second&x=1").unwrap();
        assert_eq!(b.username.as_deref(), Some("zoë x"));
        assert_eq!(b.msg.as_deref(), Some("a&b=c"));
        assert!(parse_urlencoded(b"msg=%zz").is_err());
        assert!(parse_urlencoded(b"msg=%4").is_err());
        assert!(parse_urlencoded(b"msg=%FF").is_err());
        assert!(parse_urlencoded(b"msg=\xff").is_err());
        let b = parse_urlencoded(b"msg").unwrap();
        assert_eq!(b.msg.as_deref(), Some(""));
    }
}
