//! `/api/files`: uploads for the chat, as ChatFlow's file service answers. The body is
//! streamed into the store part by part, never held whole; a file over the limit is cut
//! off at the limit (413), a type off the allow-list is refused before any byte is stored
//! (415), and a store that does not answer gives 503. Downloads stream back as
//! attachments with `nosniff`, so an upload can never run as a page of this site.

mod store;

pub use store::FileStore;

use crate::chat::validate::{self, RoomName};
use crate::db::entities::stored_file;
use crate::http::{Error, Result};
use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, WriteMultipart};
use rocket::data::{Data, ToByteUnit};
use rocket::http::{ContentType, Header, Status};
use rocket::request::{self, FromRequest, Request};
use rocket::response::{self, Responder, Response};
use rocket::serde::json::Json;
use rocket::{delete, get, post, routes, Route, State};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

/// What the multipart envelope around a file may add to its size.
const ENVELOPE: u64 = 64 * 1024;
/// Parts sent to S3 (its smallest allowed part), and how many may be in flight: an
/// upload holds at most this much in memory.
const PART: usize = 5 * 1024 * 1024;
const PARTS_IN_FLIGHT: usize = 2;

pub struct Files {
    pub store: FileStore,
    db: DatabaseConnection,
    max_bytes: u64,
    allowed: Vec<String>,
}

impl Files {
    pub fn new(
        store: FileStore,
        db: DatabaseConnection,
        max_bytes: u64,
        allowed: Vec<String>,
    ) -> Self {
        Files {
            store,
            db,
            max_bytes,
            allowed,
        }
    }
}

pub fn routes() -> Vec<Route> {
    routes![
        upload,
        list,
        list_chatflow,
        metadata,
        download,
        remove,
        files_health
    ]
}

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
}

impl From<stored_file::Model> for FileOut {
    fn from(f: stored_file::Model) -> Self {
        FileOut {
            download_url: format!("/api/files/{}/download", f.id),
            id: f.id,
            original_name: f.original_name,
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
    responses((status = 201, body = FileOut), (status = 400), (status = 413), (status = 415), (status = 503)))]
#[post("/upload?<uploaded_by>&<room_id>", data = "<data>")]
async fn upload(
    uploaded_by: Option<&str>,
    room_id: Option<&str>,
    content_type: Option<&ContentType>,
    length: BodyLength,
    data: Data<'_>,
    files: &State<Files>,
) -> Result<(Status, Json<FileOut>)> {
    let uploaded_by = uploaded_by.map(validate::user_id).transpose()?;
    let room_id = room_id
        .map(|r| RoomName::parse(r).map(|r| r.as_str().to_string()))
        .transpose()?;
    let too_large =
        || Error::PayloadTooLarge(format!("file is larger than {} bytes", files.max_bytes));
    if length.0.is_some_and(|n| n > files.max_bytes + ENVELOPE) {
        return Err(too_large());
    }
    let boundary = content_type
        .filter(|t| t.is_form_data())
        .and_then(|t| t.params().find(|(k, _)| *k == "boundary"))
        .map(|(_, v)| v.to_string())
        .ok_or_else(|| {
            Error::UnsupportedMediaType("send multipart/form-data with a field named file".into())
        })?;
    let body = tokio_util::io::ReaderStream::new(data.open((files.max_bytes + ENVELOPE).bytes()));
    let mut multipart = multer::Multipart::new(body, boundary);
    while let Some(mut field) = multipart.next_field().await.map_err(broken)? {
        if field.name() != Some("file") {
            continue;
        }
        let original_name = file_name(field.file_name());
        let content_type = resolve_type(field.content_type(), &original_name);
        if !files.allowed.contains(&content_type) {
            return Err(Error::UnsupportedMediaType(format!(
                "files of type {content_type} are not accepted"
            )));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let path = Path::from(id.as_str());
        let upload = files
            .store
            .objects
            .put_multipart(&path)
            .await
            .map_err(store_down)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut size: u64 = 0;
        let outcome = loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    size += chunk.len() as u64;
                    if size > files.max_bytes {
                        break Err(too_large());
                    }
                    if let Err(err) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                        break Err(store_down(err));
                    }
                    writer.write(&chunk);
                }
                Ok(None) => break Ok(()),
                Err(err) => break Err(broken(err)),
            }
        };
        if let Err(err) = outcome {
            let _ = writer.abort().await;
            return Err(err);
        }
        if size == 0 {
            let _ = writer.abort().await;
            return Err(Error::bad_request("file is empty"));
        }
        writer.finish().await.map_err(store_down)?;
        let row = stored_file::Model {
            id,
            original_name,
            content_type,
            size_bytes: size as i64,
            uploaded_by,
            room_id,
            object_key: path.to_string(),
            created_at: validate::now_utc(),
        };
        let active = stored_file::ActiveModel {
            id: Set(row.id.clone()),
            original_name: Set(row.original_name.clone()),
            content_type: Set(row.content_type.clone()),
            size_bytes: Set(row.size_bytes),
            uploaded_by: Set(row.uploaded_by.clone()),
            room_id: Set(row.room_id.clone()),
            object_key: Set(row.object_key.clone()),
            created_at: Set(row.created_at),
        };
        if let Err(err) = stored_file::Entity::insert(active).exec(&files.db).await {
            // No row, no object: nothing is left behind that nobody can reach.
            let _ = files.store.objects.delete(&path).await;
            return Err(err.into());
        }
        tracing::info!(id = %row.id, size, "file stored");
        return Ok((Status::Created, Json(row.into())));
    }
    Err(Error::bad_request(
        "a multipart field named file is required",
    ))
}

/// Files, newest first; `room_id` keeps one room's.
#[utoipa::path(tag = "files",
    params(("room_id" = Option<String>, Query), ("limit" = Option<u64>, Query, description = "1 to 200, default 50")),
    responses((status = 200, body = Vec<FileOut>)))]
#[get("/?<room_id>&<limit>")]
async fn list(
    room_id: Option<&str>,
    limit: Option<&str>,
    files: &State<Files>,
) -> Result<Json<Vec<FileOut>>> {
    let limit = validate::limit(limit)?;
    let mut query = stored_file::Entity::find();
    if let Some(room) = room_id {
        query = query.filter(stored_file::Column::RoomId.eq(room));
    }
    let rows = query
        .order_by_desc(stored_file::Column::CreatedAt)
        .order_by_desc(stored_file::Column::Id)
        .limit(limit)
        .all(&files.db)
        .await?;
    Ok(Json(rows.into_iter().map(FileOut::from).collect()))
}

/// The same list at ChatFlow's path (`GET /files` of its file service).
#[utoipa::path(tag = "files",
    params(("room_id" = Option<String>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = Vec<FileOut>)))]
#[get("/files?<room_id>&<limit>")]
async fn list_chatflow(
    room_id: Option<&str>,
    limit: Option<&str>,
    files: &State<Files>,
) -> Result<Json<Vec<FileOut>>> {
    list(room_id, limit, files).await
}

#[utoipa::path(tag = "files", responses((status = 200, body = FileOut), (status = 404)))]
#[get("/<id>", rank = 2)]
async fn metadata(id: &str, files: &State<Files>) -> Result<Json<FileOut>> {
    Ok(Json(existing(files, id).await?.into()))
}

/// The file's bytes, streamed from the store, as an attachment.
#[utoipa::path(tag = "files", responses((status = 200), (status = 404), (status = 503)))]
#[get("/<id>/download")]
async fn download(id: &str, files: &State<Files>) -> Result<Download> {
    let row = existing(files, id).await?;
    let got = files
        .store
        .objects
        .get(&Path::from(row.object_key.as_str()))
        .await;
    let got = match got {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(Error::not_found(
                "the file's content is missing from the store",
            ))
        }
        Err(err) => return Err(store_down(err)),
    };
    let stream = got.into_stream().map_err(std::io::Error::other);
    Ok(Download {
        row,
        body: Box::new(tokio_util::io::StreamReader::new(stream)),
    })
}

pub struct Download {
    row: stored_file::Model,
    body: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
}

impl<'r> Responder<'r, 'static> for Download {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let content_type =
            ContentType::parse_flexible(&self.row.content_type).unwrap_or(ContentType::Binary);
        Response::build()
            .header(content_type)
            .header(Header::new(
                "Content-Disposition",
                attachment(&self.row.original_name),
            ))
            .header(Header::new("X-Content-Type-Options", "nosniff"))
            .header(Header::new("Content-Security-Policy", "sandbox"))
            .streamed_body(self.body)
            .ok()
    }
}

#[utoipa::path(tag = "files", responses((status = 200), (status = 404), (status = 503)))]
#[delete("/<id>")]
async fn remove(id: &str, files: &State<Files>) -> Result<Json<Value>> {
    let row = existing(files, id).await?;
    match files
        .store
        .objects
        .delete(&Path::from(row.object_key.as_str()))
        .await
    {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(err) => return Err(store_down(err)),
    }
    stored_file::Entity::delete_by_id(row.id.clone())
        .exec(&files.db)
        .await?;
    Ok(Json(json!({ "status": "deleted", "id": row.id })))
}

/// 503 while the store (S3, MinIO or the folder) does not answer.
#[utoipa::path(tag = "files", responses((status = 200), (status = 503)))]
#[get("/health")]
async fn files_health(files: &State<Files>) -> (Status, Json<Value>) {
    let store = &files.store;
    let checked = store.check().await;
    let body = json!({
        "status": if checked.is_ok() { "healthy" } else { "unavailable" },
        "service": "files",
        "store": {
            "kind": store.kind,
            "location": store.location,
            "state": if checked.is_ok() { "up" } else { "down" },
            "error": checked.as_ref().err(),
        },
        "max_bytes": files.max_bytes,
    });
    let status = if checked.is_ok() {
        Status::Ok
    } else {
        Status::ServiceUnavailable
    };
    (status, Json(body))
}

async fn existing(files: &Files, id: &str) -> Result<stored_file::Model> {
    stored_file::Entity::find_by_id(id.to_string())
        .one(&files.db)
        .await?
        .ok_or_else(|| Error::not_found(format!("file {id} does not exist")))
}

fn store_down(err: object_store::Error) -> Error {
    tracing::warn!(error = ?err, "file store unavailable");
    Error::Unavailable(format!(
        "file store unavailable: {}",
        store::one_line(&err.to_string())
    ))
}

fn broken(err: multer::Error) -> Error {
    Error::bad_request(format!("broken multipart body: {err}"))
}

/// The name as the uploader's machine had it, without any folder, control characters or
/// more than 255 characters.
fn file_name(raw: Option<&str>) -> String {
    let base = raw
        .unwrap_or("")
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("")
        .trim();
    let clean: String = base.chars().filter(|c| !c.is_control()).take(255).collect();
    if clean.is_empty() || clean == "." || clean == ".." {
        "file".into()
    } else {
        clean
    }
}

/// The part's declared type; when it says nothing useful (`application/octet-stream`, as
/// curl sends for names it does not know), the one its name suggests.
fn resolve_type(declared: Option<&mime_guess::mime::Mime>, name: &str) -> String {
    match declared.map(|m| m.essence_str().to_ascii_lowercase()) {
        Some(t) if t != "application/octet-stream" => t,
        other => mime_guess::from_path(name)
            .first()
            .map(|m| m.essence_str().to_string())
            .or(other)
            .unwrap_or_else(|| "application/octet-stream".into()),
    }
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

#[derive(utoipa::OpenApi)]
#[openapi(paths(upload, list, list_chatflow, metadata, download, remove, files_health))]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_folders_and_control_characters() {
        assert_eq!(file_name(Some("C:\\Users\\x\\plan.pdf")), "plan.pdf");
        assert_eq!(file_name(Some("../../etc/passwd")), "passwd");
        assert_eq!(file_name(Some("a\u{0}b\n.png")), "ab.png");
        assert_eq!(file_name(Some("..")), "file");
        assert_eq!(file_name(None), "file");
    }

    #[test]
    fn a_vague_type_is_taken_from_the_name() {
        let octet: mime_guess::mime::Mime = "application/octet-stream".parse().unwrap();
        assert_eq!(resolve_type(Some(&octet), "a.png"), "image/png");
        assert_eq!(resolve_type(None, "notes.txt"), "text/plain");
        assert_eq!(
            resolve_type(Some(&octet), "blob"),
            "application/octet-stream"
        );
        let png: mime_guess::mime::Mime = "image/PNG".parse().unwrap();
        assert_eq!(resolve_type(Some(&png), "x.exe"), "image/png");
    }

    #[test]
    fn attachment_names_are_quoted_safely() {
        assert_eq!(
            attachment("résumé \"final\".pdf"),
            "attachment; filename=\"r_sum_ _final_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22%2Epdf"
        );
    }
}
