//! A database of its own for each test: a SQLite file, or a fresh database on the real
//! MariaDB or PostgreSQL server, dropped when the test ends (also when it panics). A
//! server that cannot be reached fails the test: it is never skipped. Shared by the process
//! tests (`tests/common`) and the in-process tier (`tests/app`).
#![allow(dead_code)] // each test file uses its own part

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    MariaDb,
    Postgres,
}

fn mysql_admin_url() -> String {
    std::env::var("FERROCHAT_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

fn postgres_admin_url() -> String {
    std::env::var("FERROCHAT_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos % 100_000
    )
}

/// A database of its own for one test, dropped by [`TestDb::drop_db`], or when it goes out
/// of scope (a test that panicked before its end leaves nothing behind).
pub struct TestDb {
    pub backend: Backend,
    pub name: String,
    /// The URL the server gets.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    dropped: bool,
}

impl TestDb {
    pub async fn create(backend: Backend) -> TestDb {
        let name = unique_name("fc_test");
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}/chat.db", dir.path().display());
                TestDb {
                    backend,
                    name,
                    url,
                    _dir: Some(dir),
                    dropped: false,
                }
            }
            Backend::MariaDb => {
                let admin = admin_connection(&format!("{}/", mysql_admin_url())).await;
                admin
                    .execute_unprepared(&format!(
                        "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                    ))
                    .await
                    .expect("create MariaDB database");
                let url = format!("{}/{name}", mysql_admin_url());
                TestDb {
                    backend,
                    name,
                    url,
                    _dir: None,
                    dropped: false,
                }
            }
            Backend::Postgres => {
                let admin = admin_connection(&format!("{}/postgres", postgres_admin_url())).await;
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .expect("create PostgreSQL database");
                let url = format!("{}/{name}", postgres_admin_url());
                TestDb {
                    backend,
                    name,
                    url,
                    _dir: None,
                    dropped: false,
                }
            }
        }
    }

    /// A direct connection to this test's database, for checks behind the server's back.
    pub async fn connect(&self) -> DatabaseConnection {
        let url = if self.backend == Backend::Sqlite {
            format!("{}?mode=rwc", self.url)
        } else {
            self.url.clone()
        };
        admin_connection(&url).await
    }

    pub async fn drop_db(mut self) {
        drop_database(self.backend, &self.name).await;
        self.dropped = true;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.dropped || self.backend == Backend::Sqlite {
            return;
        }
        // Dropping needs async I/O, and this may run inside the test's own runtime (while
        // it unwinds from a panic): a thread and a runtime of its own.
        let (backend, name) = (self.backend, self.name.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(drop_database(backend, &name));
            }
        })
        .join();
    }
}

async fn drop_database(backend: Backend, name: &str) {
    match backend {
        Backend::Sqlite => {}
        Backend::MariaDb => {
            let admin = admin_connection(&format!("{}/", mysql_admin_url())).await;
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS `{name}`"))
                .await;
        }
        Backend::Postgres => {
            let admin = admin_connection(&format!("{}/postgres", postgres_admin_url())).await;
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
        }
    }
}

pub async fn admin_connection(url: &str) -> DatabaseConnection {
    let mut options = sea_orm::ConnectOptions::new(url);
    options
        .sqlx_logging(false)
        .max_connections(2)
        .connect_timeout(Duration::from_secs(5));
    Database::connect(options)
        .await
        .unwrap_or_else(|e| panic!("database server at {url} is required for this test: {e}"))
}
