//! Files for the chat, as ChatFlow's file service keeps them. An upload is streamed into
//! the store part by part, never held whole; a file over the limit is cut off at the limit
//! (413), a type off the allow-list is refused before any byte is stored (415), and a
//! store that does not answer gives 503. An image (PNG, JPEG, GIF, WebP) gets a thumbnail
//! made by the server (`thumbnail`); one that cannot be read, or is over the pixel limit,
//! is refused, and nothing of it is kept.

mod store;
mod thumbnail;

pub use store::FileStore;

use crate::access::RoomAccess;
use crate::db::files::{self as table, StoredFile};
use crate::db::rooms;
use crate::domain::names::{self, RoomName};
use crate::domain::{now_utc, Caller, Error, File, Result};
use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use sea_orm::DatabaseConnection;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// What the multipart envelope around a file may add to its size.
pub const ENVELOPE: u64 = 64 * 1024;
/// Parts sent to S3 (its smallest allowed part), and how many may be in flight: an
/// upload holds at most this much in memory.
const PART: usize = 5 * 1024 * 1024;
const PARTS_IN_FLIGHT: usize = 2;
/// Thumbnails made at once, on the blocking pool: each may take a core and up to the
/// decoder's allocation limit, so a burst of image uploads waits its turn instead of
/// taking every core and gigabytes together.
const THUMBNAILS_AT_ONCE: usize = 2;

pub struct Files {
    pub store: FileStore,
    db: DatabaseConnection,
    access: Arc<RoomAccess>,
    pub max_bytes: u64,
    allowed: Vec<String>,
    thumbnailing: Arc<Semaphore>,
}

impl Files {
    pub fn new(
        store: FileStore,
        db: DatabaseConnection,
        access: Arc<RoomAccess>,
        max_bytes: u64,
        allowed: Vec<String>,
    ) -> Self {
        Files {
            store,
            db,
            access,
            max_bytes,
            allowed,
            thumbnailing: Arc::new(Semaphore::new(THUMBNAILS_AT_ONCE)),
        }
    }
}

/// A file's bytes, as they stream from the store.
pub type Body = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

impl Files {
    /// Stores the field `file` of a multipart body (`boundary` from its content type).
    pub async fn upload<S>(
        &self,
        caller: &Caller,
        body: S,
        boundary: String,
        uploaded_by: Option<&str>,
        room_id: Option<&str>,
    ) -> Result<File>
    where
        S: Stream<Item = std::result::Result<Bytes, std::io::Error>> + Send,
    {
        let uploaded_by = uploaded_by.map(names::user_id).transpose()?;
        // Signed in, the uploader is the caller, whatever `uploaded_by` says (if it names
        // someone else: 403).
        if let Some(claimed) = &uploaded_by {
            self.access.may_act_as(caller, claimed).await?;
        }
        let uploaded_by = match caller.require_identity()? {
            Some(user) => Some(user.user_id.clone()),
            None => uploaded_by,
        };
        let room_id = room_id
            .map(|r| RoomName::parse(r).map(|r| r.as_str().to_string()))
            .transpose()?;
        // A file for a room is the room's: only who may read it may add to it.
        if let Some(room) = &room_id {
            self.access.may_read(caller, room).await?;
        }
        let too_large =
            || Error::PayloadTooLarge(format!("file is larger than {} bytes", self.max_bytes));
        let mut multipart = multer::Multipart::new(body, boundary);
        while let Some(mut field) = multipart.next_field().await.map_err(broken)? {
            if field.name() != Some("file") {
                continue;
            }
            let original_name = file_name(field.file_name());
            let content_type = resolve_type(field.content_type(), &original_name);
            if !self.allowed.contains(&content_type) {
                return Err(Error::UnsupportedMediaType(format!(
                    "files of type {content_type} are not accepted"
                )));
            }
            let id = uuid::Uuid::new_v4().to_string();
            let path = Path::from(id.as_str());
            let upload = self
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
                        if size > self.max_bytes {
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
            let thumb = match thumbnail::format_of(&content_type) {
                Some(format) => match self.thumbnail(&path, format).await {
                    Ok(thumb) => Some(thumb),
                    Err(err) => {
                        // Refused: nothing of it is kept.
                        let _ = self.store.objects.delete(&path).await;
                        return Err(err);
                    }
                },
                None => None,
            };
            let row = StoredFile {
                id,
                original_name,
                content_type,
                size_bytes: size as i64,
                uploaded_by,
                room_id,
                object_key: path.to_string(),
                created_at: now_utc(),
                thumbnail_key: thumb.as_ref().map(|t| t.key.to_string()),
                thumbnail_type: thumb.as_ref().map(|t| t.content_type.to_string()),
                thumbnail_width: thumb.as_ref().map(|t| t.width),
                thumbnail_height: thumb.as_ref().map(|t| t.height),
            };
            // A room nobody has posted to yet comes into being with its first file, as
            // with its first message (a file's room must have a row: one without shows
            // nothing).
            let mut stored = match &row.room_id {
                Some(room) => rooms::ensure_public(&self.db, room, now_utc()).await,
                None => Ok(()),
            };
            if stored.is_ok() {
                stored = table::insert(&self.db, &row).await;
            }
            if let Err(err) = stored {
                // No row, no object: nothing is left behind that nobody can reach.
                let _ = self.store.objects.delete(&path).await;
                if let Some(thumb) = &thumb {
                    let _ = self.store.objects.delete(&thumb.key).await;
                }
                return Err(err.into());
            }
            tracing::info!(id = %row.id, size, "file stored");
            return Ok(row.into());
        }
        Err(Error::bad_request(
            "a multipart field named file is required",
        ))
    }

    /// Makes and stores the thumbnail of the image just stored at `path`.
    ///
    /// Who can make the server do this, and what stops a flood: only an upload, which has
    /// already passed the `Uploading` rate bucket and the day's bytes, and is at most
    /// `max_bytes`; at most `THUMBNAILS_AT_ONCE` run at a time, the rest wait. Reading a
    /// thumbnail back (`open_thumbnail`) is a plain read of a small stored object.
    async fn thumbnail(
        &self,
        path: &Path,
        (format, name): (image::ImageFormat, &'static str),
    ) -> Result<StoredThumbnail> {
        // Owned, so the permit goes with the blocking task: a caller who hangs up does not
        // free it while the decode still runs. Taken before the read, so uploads waiting
        // their turn do not each hold a file in memory.
        let permit = self
            .thumbnailing
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Unavailable("the server is stopping, try again".into()))?;
        // Read back rather than kept while streaming: the upload never held the file
        // whole, and only images pay for this.
        let bytes = self
            .store
            .objects
            .get(path)
            .await
            .map_err(store_down)?
            .bytes()
            .await
            .map_err(store_down)?;
        let made = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            thumbnail::make(&bytes, format, name)
        })
        .await;
        let thumb = match made {
            Ok(thumb) => thumb?,
            // A decoder that panics on these bytes: they are not an image we can read.
            Err(err) => {
                tracing::warn!(error = %err, "making a thumbnail failed");
                return Err(Error::UnsupportedMediaType(format!(
                    "not a readable {name} image"
                )));
            }
        };
        let key = Path::from(format!("{path}.thumb"));
        let size = thumb.bytes.len();
        self.store
            .objects
            .put(&key, PutPayload::from(thumb.bytes))
            .await
            .map_err(store_down)?;
        tracing::debug!(%key, size, width = thumb.width, height = thumb.height, "thumbnail stored");
        Ok(StoredThumbnail {
            key,
            content_type: thumb.content_type,
            // Within the box, so far within i32.
            width: thumb.width as i32,
            height: thumb.height as i32,
        })
    }

    /// Files, newest first; `room_id` keeps one room's. Files of private rooms the caller
    /// is not in are not listed.
    pub async fn list(
        &self,
        caller: &Caller,
        room_id: Option<&str>,
        limit: u64,
    ) -> Result<Vec<File>> {
        let user = caller.require_identity()?.map(|u| u.user_id.as_str());
        if let Some(room) = room_id {
            self.access.may_read(caller, room).await?;
        }
        // A bot's: its rooms' only, chosen by the query so a page is still whole.
        let only = caller.rooms.as_deref();
        let rows = table::list(&self.db, room_id, limit, user, caller.admin, only).await?;
        Ok(rows.into_iter().map(File::from).collect())
    }

    /// The file's metadata, or 404 (also for a file of a private room the caller is not
    /// in).
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<File> {
        Ok(self.row(caller, id).await?.into())
    }

    /// The file's row, if the caller may read it (`get`).
    async fn row(&self, caller: &Caller, id: &str) -> Result<StoredFile> {
        caller.require_identity()?;
        let missing = || Error::not_found(format!("file {id} does not exist"));
        let row = table::get(&self.db, id).await?.ok_or_else(missing)?;
        match &row.room_id {
            Some(room) if !self.access.sees(caller, room).await? => Err(missing()),
            // Left of a room that went: hidden, not open, whatever the room was.
            Some(room) if !caller.admin && rooms::get(&self.db, room).await?.is_none() => {
                Err(missing())
            }
            _ => Ok(row),
        }
    }

    /// The file's metadata and bytes.
    pub async fn open(&self, caller: &Caller, id: &str) -> Result<(File, Body)> {
        let row = self.row(caller, id).await?;
        let got = self
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
        Ok((
            row.into(),
            Box::new(tokio_util::io::StreamReader::new(stream)),
        ))
    }

    /// The file's thumbnail and its type, as readable as the file (`get`); 404 when it has
    /// none.
    pub async fn open_thumbnail(&self, caller: &Caller, id: &str) -> Result<(String, Bytes)> {
        let row = self.row(caller, id).await?;
        let (Some(key), Some(content_type)) = (row.thumbnail_key, row.thumbnail_type) else {
            return Err(Error::not_found("this file has no thumbnail"));
        };
        let got = match self.store.objects.get(&Path::from(key.as_str())).await {
            Ok(got) => got.bytes().await.map_err(store_down)?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::not_found("the thumbnail is missing from the store"))
            }
            Err(err) => return Err(store_down(err)),
        };
        Ok((content_type, got))
    }

    /// Deletes the bytes of files whose rows went (with their room). A store that is away
    /// leaves bytes nobody can reach any more: said in the log, never to the caller, whose
    /// room is gone all the same.
    pub async fn delete_objects(&self, keys: &[String]) {
        for key in keys {
            match self.store.objects.delete(&Path::from(key.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => {
                    tracing::warn!(key, error = ?err, "a deleted room's file stays in the store")
                }
            }
        }
    }

    /// Deletes the file's bytes and its row (its uploader's or an admin's call).
    pub async fn delete(&self, caller: &Caller, id: &str) -> Result<String> {
        let row = self.row(caller, id).await?;
        caller.require_one_of(
            "delete a file",
            "its uploader or an admin",
            &[row.uploaded_by.as_deref()],
        )?;
        for key in std::iter::once(&row.object_key).chain(&row.thumbnail_key) {
            match self.store.objects.delete(&Path::from(key.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(store_down(err)),
            }
        }
        table::delete(&self.db, &row.id).await?;
        Ok(row.id)
    }
}

/// A thumbnail as stored, for the file's row.
struct StoredThumbnail {
    key: Path,
    content_type: &'static str,
    width: i32,
    height: i32,
}

fn store_down(err: object_store::Error) -> Error {
    // The store's own words name its folder, or its endpoint and bucket: the log's, not
    // the caller's.
    tracing::warn!(error = ?err, "file store unavailable");
    Error::Unavailable("file store unavailable, try again".into())
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
}
