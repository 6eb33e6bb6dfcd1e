//! Where uploaded bytes live: a local folder by default, S3 or MinIO when configured, both
//! behind `object_store`. Objects are named by UUID only, never by what the uploader
//! called the file.

use crate::config::FileSettings;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::ObjectStore;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct FileStore {
    pub objects: Arc<dyn ObjectStore>,
    /// `local` or `s3`, and where, for `/api/files/health` and the log.
    pub kind: &'static str,
    pub location: String,
}

/// How the store is chosen (`config::FileSettings`): `minio_endpoint` (`MINIO_ENDPOINT`,
/// with its keys, bucket and `minio_secure`, as ChatFlow's file service reads them), else
/// `s3_bucket` (`S3_BUCKET`, with the AWS SDK's own credentials and `s3_endpoint` for other
/// S3-compatible servers); otherwise the local folder `files_dir`.
impl FileStore {
    pub fn new(settings: &FileSettings) -> Result<FileStore, Box<dyn std::error::Error>> {
        let set = |value: &Option<String>| value.clone().filter(|v| !v.trim().is_empty());
        if let Some(endpoint) = set(&settings.minio_endpoint) {
            let secure = settings.minio_secure;
            let endpoint = if endpoint.contains("://") {
                endpoint
            } else if secure {
                format!("https://{endpoint}")
            } else {
                format!("http://{endpoint}")
            };
            let bucket = &settings.minio_bucket;
            // Client options first: setting them replaces `allow_http` too.
            let builder = AmazonS3Builder::new()
                .with_client_options(client_options())
                .with_endpoint(&endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_bucket_name(bucket)
                .with_access_key_id(&settings.minio_access_key)
                .with_secret_access_key(&settings.minio_secret_key)
                .with_region(&settings.minio_region)
                // MinIO and most S3-compatible servers want the bucket in the path.
                .with_virtual_hosted_style_request(false)
                .with_retry(retry());
            return Ok(FileStore {
                objects: Arc::new(builder.build()?),
                kind: "s3",
                location: format!("{endpoint}/{bucket}"),
            });
        }
        if let Some(bucket) = set(&settings.s3_bucket) {
            let mut builder = AmazonS3Builder::from_env()
                .with_client_options(client_options())
                .with_retry(retry())
                .with_bucket_name(&bucket);
            if let Some(endpoint) = set(&settings.s3_endpoint) {
                builder = builder
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_endpoint(endpoint);
            }
            return Ok(FileStore {
                objects: Arc::new(builder.build()?),
                kind: "s3",
                location: format!("s3://{bucket}"),
            });
        }
        std::fs::create_dir_all(&settings.files_dir)?;
        let dir = std::fs::canonicalize(&settings.files_dir)?;
        Ok(FileStore {
            objects: Arc::new(LocalFileSystem::new_with_prefix(&dir)?),
            kind: "local",
            location: dir.display().to_string(),
        })
    }
}

/// An S3 server that stops answering must not hold an upload or a health check for long.
fn client_options() -> object_store::ClientOptions {
    object_store::ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(Duration::from_secs(60))
}

/// A few quick retries: a user waiting on an upload is better told "503, try again" in
/// seconds than kept for the client's default three minutes.
fn retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 2,
        retry_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

impl FileStore {
    /// Whether the store answers: listing an empty prefix succeeds only when the bucket
    /// (or folder) is there and readable.
    pub async fn check(&self) -> Result<(), String> {
        let probe = Path::from("ferrochat-health-probe");
        let list = self.objects.list_with_delimiter(Some(&probe));
        match tokio::time::timeout(Duration::from_secs(5), list).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(one_line(&err.to_string())),
            Err(_) => Err("no answer within 5 s".into()),
        }
    }
}

pub fn one_line(text: &str) -> String {
    text.split(['\n', '\r'])
        .next()
        .unwrap_or("")
        .chars()
        .take(300)
        .collect()
}
