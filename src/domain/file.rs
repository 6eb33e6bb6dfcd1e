//! An uploaded file, as the files service hands it up (where its bytes are kept stays in
//! `files` and `db`).

use chrono::NaiveDateTime;

/// An uploaded file's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    pub id: String,
    /// The name it was uploaded under.
    pub name: String,
    /// The type it was uploaded as; its download is served as that.
    pub content_type: String,
    pub size_bytes: i64,
    pub uploaded_by: Option<String>,
    pub room_id: Option<String>,
    /// When it was stored, in UTC.
    pub created_at: NaiveDateTime,
    /// The size of its thumbnail (an image upload's), when it has one.
    pub thumbnail: Option<ThumbnailSize>,
}

/// A thumbnail's size in pixels (unknown for thumbnails stored without it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThumbnailSize {
    pub width: Option<i32>,
    pub height: Option<i32>,
}
