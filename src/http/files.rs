//! `/api/files`, as ChatFlow's file service answers: multipart uploads streamed into the
//! store, lists, metadata, downloads, thumbnails and deletion. Downloads stream back as
//! attachments with `nosniff`, so an upload can never run as a page of this site; the only
//! bytes shown inline are the thumbnails the server made itself.

use super::guards::ClientAddr;
use super::limits::Uploading;
use super::params::{refused, PageLimit};
use super::App;
use crate::domain::{Caller, Error, File, Result};
use crate::files::{Body, ENVELOPE};
use rocket::data::{Data, ToByteUnit};
use rocket::http::{ContentType, Header, Status};
use rocket::request::{self, FromRequest, Request};
use rocket::response::{self, Responder, Response};
use rocket::serde::json::Json;
use rocket::{delete, form, get, post, FromForm, State};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

super::mount![
    upload,
    list_files,
    list_at_root,
    metadata,
    download,
    thumbnail,
    remove_file,
    files_health
];

/// A stored file, as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct FileOut {
    id: String,
    original_name: String,
    content_type: String,
    size_bytes: i64,
    uploaded_by: Option<String>,
    room_id: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    created_at: chrono::DateTime<chrono::Utc>,
    download_url: String,
    /// `/api/files/<id>/thumbnail` for an image upload, null for other files.
    thumbnail_url: Option<String>,
    thumbnail_width: Option<i32>,
    thumbnail_height: Option<i32>,
}

impl From<File> for FileOut {
    fn from(f: File) -> Self {
        FileOut {
            download_url: format!("/api/files/{}/download", f.id),
            thumbnail_url: f
                .thumbnail
                .map(|_| format!("/api/files/{}/thumbnail", f.id)),
            thumbnail_width: f.thumbnail.and_then(|t| t.width),
            thumbnail_height: f.thumbnail.and_then(|t| t.height),
            id: f.id,
            original_name: f.name,
            content_type: f.content_type,
            size_bytes: f.size_bytes,
            uploaded_by: f.uploaded_by,
            room_id: f.room_id,
            created_at: f.created_at.and_utc(),
        }
    }
}

/// The upload's form, for the OpenAPI document.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// The request's `Content-Length`, when it gave one.
pub struct BodyLength(Option<u64>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for BodyLength {
    type Error = ();

    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ()> {
        let length = req
            .headers()
            .get_one("Content-Length")
            .and_then(|v| v.parse().ok());
        request::Outcome::Success(BodyLength(length))
    }
}

/// Uploads one file: multipart/form-data with the field `file`.
#[utoipa::path(tag = "files",
    params(("uploaded_by" = Option<String>, Query), ("room_id" = Option<String>, Query)),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = FileOut), (status = 400), (status = 401), (status = 403),
        (status = 404, description = "a private room the caller is not in"), (status = 413), (status = 415),
        (status = 429), (status = 503)))]
#[post("/upload?<uploaded_by>&<room_id>", data = "<data>")]
#[allow(clippy::too_many_arguments)] // each is a part of the request Rocket hands in
async fn upload(
    uploaded_by: Option<&str>,
    room_id: Option<&str>,
    content_type: Option<&ContentType>,
    length: BodyLength,
    data: Data<'_>,
    flood: Result<Uploading>,
    caller: Caller,
    client: ClientAddr,
    app: &State<App>,
) -> Result<(Status, Json<FileOut>)> {
    flood?;
    // Refused before a byte is read: a body larger than any file we take.
    if length.0.is_some_and(|n| n > app.files.max_bytes + ENVELOPE) {
        return Err(Error::PayloadTooLarge(format!(
            "file is larger than {} bytes",
            app.files.max_bytes
        )));
    }
    // The day's bytes are charged before reading, as much as the body may hold.
    let user = caller.user.as_ref().map(|u| u.user_id.as_str());
    app.limiter
        .check_upload_bytes(client, user, length.0.unwrap_or(app.files.max_bytes))?;
    let boundary = content_type
        .filter(|t| t.is_form_data())
        .and_then(|t| t.params().find(|(k, _)| *k == "boundary"))
        .map(|(_, v)| v.to_string())
        .ok_or_else(|| {
            Error::UnsupportedMediaType("send multipart/form-data with a field named file".into())
        })?;
    let body =
        tokio_util::io::ReaderStream::new(data.open((app.files.max_bytes + ENVELOPE).bytes()));
    let row = app
        .files
        .upload(&caller, body, boundary, uploaded_by, room_id)
        .await?;
    Ok((Status::Created, Json(row.into())))
}

/// What a list of files is asked for with.
#[derive(FromForm, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams<'r> {
    /// Only this room's.
    room_id: Option<&'r str>,
    /// How many, the newest first.
    #[param(inline, required = false)]
    limit: PageLimit,
}

/// Files, newest first; `room_id` keeps one room's.
#[utoipa::path(tag = "files", params(ListParams),
    responses((status = 200, body = Vec<FileOut>), (status = 400), (status = 401), (status = 404)))]
#[get("/?<query..>")]
async fn list_files(
    query: form::Result<'_, ListParams<'_>>,
    caller: Caller,
    app: &State<App>,
) -> Result<Json<Vec<FileOut>>> {
    let ListParams { room_id, limit } = query.map_err(refused)?;
    let rows = app.files.list(&caller, room_id, limit.0).await?;
    Ok(Json(rows.into_iter().map(FileOut::from).collect()))
}

/// The same list at ChatFlow's path (`GET /files` of its file service).
#[utoipa::path(tag = "files", params(ListParams),
    responses((status = 200, body = Vec<FileOut>), (status = 400), (status = 401), (status = 404)))]
#[get("/files?<query..>")]
async fn list_at_root(
    query: form::Result<'_, ListParams<'_>>,
    caller: Caller,
    app: &State<App>,
) -> Result<Json<Vec<FileOut>>> {
    list_files(query, caller, app).await
}

#[utoipa::path(tag = "files", responses((status = 200, body = FileOut), (status = 401), (status = 404)))]
#[get("/<id>", rank = 2)]
async fn metadata(id: &str, caller: Caller, app: &State<App>) -> Result<Json<FileOut>> {
    Ok(Json(app.files.get(&caller, id).await?.into()))
}

/// The file's bytes, streamed from the store, as an attachment.
#[utoipa::path(tag = "files", responses(
        (status = 200, description = "the file's bytes, with the type it was uploaded as", content_type = "*/*", body = Vec<u8>),
        (status = 401), (status = 404), (status = 503)))]
#[get("/<id>/download")]
async fn download(id: &str, caller: Caller, app: &State<App>) -> Result<Download> {
    let (row, body) = app.files.open(&caller, id).await?;
    Ok(Download { row, body })
}

pub struct Download {
    row: File,
    body: Body,
}

impl<'r> Responder<'r, 'static> for Download {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let content_type =
            ContentType::parse_flexible(&self.row.content_type).unwrap_or(ContentType::Binary);
        Response::build()
            .header(content_type)
            .header(Header::new(
                "Content-Disposition",
                attachment(&self.row.name),
            ))
            // `nosniff` is on every response already (Rocket's Shield, which warns when a
            // route sets it again).
            .header(Header::new("Content-Security-Policy", "sandbox"))
            .streamed_body(self.body)
            .ok()
    }
}

/// The thumbnail the server made of an image upload (JPEG, or PNG when it has
/// see-through pixels, within 360x360), shown inline; as readable as the file's download.
/// Made only at upload, under the upload's limits; this is a plain read of a small stored
/// object. An id never changes its content, so it is cached for a year.
#[utoipa::path(tag = "files", responses(
        (status = 200, description = "the thumbnail's bytes",
            content((Vec<u8> = "image/jpeg"), (Vec<u8> = "image/png"))),
        (status = 401), (status = 404, description = "no such file, or it has no thumbnail"), (status = 503)))]
#[get("/<id>/thumbnail")]
async fn thumbnail(id: &str, caller: Caller, app: &State<App>) -> Result<Thumbnail> {
    let (content_type, bytes) = app.files.open_thumbnail(&caller, id).await?;
    Ok(Thumbnail {
        content_type,
        bytes,
    })
}

pub struct Thumbnail {
    content_type: String,
    bytes: bytes::Bytes,
}

impl<'r> Responder<'r, 'static> for Thumbnail {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let content_type =
            ContentType::parse_flexible(&self.content_type).unwrap_or(ContentType::Binary);
        Response::build()
            .header(content_type)
            .header(Header::new("Content-Security-Policy", "sandbox"))
            .header(Header::new(
                "Cache-Control",
                "private, max-age=31536000, immutable",
            ))
            .sized_body(self.bytes.len(), std::io::Cursor::new(self.bytes))
            .ok()
    }
}

/// Deletes a file: its uploader's or an admin's call.
#[utoipa::path(tag = "files", security(("admin" = [])),
    responses((status = 200), (status = 401), (status = 403), (status = 404), (status = 503)))]
#[delete("/<id>")]
async fn remove_file(id: &str, caller: Caller, app: &State<App>) -> Result<Json<Value>> {
    let id = app.files.delete(&caller, id).await?;
    Ok(Json(json!({ "status": "deleted", "id": id })))
}

/// 503 while the store (S3, MinIO or the folder) does not answer. Anyone may ask, so the
/// answer says whether, not where: the folder, endpoint and bucket (and the store's own
/// error, which names them) go to the log.
#[utoipa::path(tag = "files", responses((status = 200), (status = 503)))]
#[get("/health")]
async fn files_health(app: &State<App>) -> (Status, Json<Value>) {
    let store = &app.files.store;
    let checked = store.check().await;
    if let Err(err) = &checked {
        tracing::warn!(kind = store.kind, location = %store.location, error = %err, "file store down");
    }
    let body = json!({
        "status": if checked.is_ok() { "healthy" } else { "unavailable" },
        "service": "app.files",
        "store": {
            "kind": store.kind,
            "state": if checked.is_ok() { "up" } else { "down" },
            "error": checked.as_ref().err().map(|_| "the store did not answer the check (the server's log says why)"),
        },
        "max_bytes": app.files.max_bytes,
    });
    let status = if checked.is_ok() {
        Status::Ok
    } else {
        Status::ServiceUnavailable
    };
    (status, Json(body))
}

/// `attachment` with the name twice: plain ASCII for old clients, UTF-8 (RFC 6266) for
/// the rest.
fn attachment(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::attachment;

    #[test]
    fn attachment_names_are_quoted_safely() {
        assert_eq!(
            attachment("résumé \"final\".pdf"),
            "attachment; filename=\"r_sum_ _final_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22%2Epdf"
        );
    }
}
