//! The database: one SeaORM connection pool, opened at start-up with the schema migrated,
//! the tables (`entities`), and each table's queries as functions of a connection. Errors
//! leave as `DbErr`; `error` sorts them by cause into the domain's error.

pub mod accounts;
pub mod entities;
pub mod error;
pub mod files;
pub mod messages;
mod migrations;
pub mod notifications;
pub mod rooms;
pub mod users;

use crate::config::Settings;
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use sea_orm_migration::MigratorTrait;
use std::time::{Duration, Instant};

pub use migrations::Migrator;

/// Connects, waiting up to `db_startup_wait_secs` for a database that is still starting
/// (as MySQL is when a compose file starts both at once), then brings the schema up to date.
pub async fn connect(url: &str, settings: &Settings) -> Result<DatabaseConnection, DbErr> {
    let timeout = Duration::from_secs(settings.db_timeout_secs.max(1));
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(settings.db_max_connections.max(1))
        .min_connections(1)
        .connect_timeout(timeout)
        .acquire_timeout(timeout)
        // Checking every connection before use costs a round trip per query; checking
        // the ones that sat idle still catches those a database restart broke.
        .test_before_acquire_if_idle_for(Duration::from_secs(5))
        .sqlx_logging(false);

    let deadline = Instant::now() + Duration::from_secs(settings.db_startup_wait_secs);
    let mut delay = Duration::from_millis(250);
    let db = loop {
        match Database::connect(options.clone()).await {
            Ok(db) => break db,
            Err(err) if Instant::now() < deadline => {
                tracing::warn!(error = %err, "database not reachable yet, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(4));
            }
            Err(err) => return Err(err),
        }
    };
    Migrator::up(&db, None).await?;
    Ok(db)
}

/// A fresh database in memory with the schema, for the services' own tests. One
/// connection: each SQLite connection to `:memory:` is a database of its own.
#[cfg(test)]
pub async fn memory() -> DatabaseConnection {
    let settings = Settings {
        db_max_connections: 1,
        ..Settings::default()
    };
    connect("sqlite::memory:", &settings)
        .await
        .expect("an in-memory SQLite database")
}

/// A URL fit for logs: the password replaced.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            super::redact("mysql://chatuser:chatpass@mysql:3306/chat"),
            "mysql://chatuser:***@mysql:3306/chat"
        );
        assert_eq!(super::redact("mysql://root@h/db"), "mysql://root@h/db");
        assert_eq!(
            super::redact("sqlite://ferrochat.db?mode=rwc"),
            "sqlite://ferrochat.db?mode=rwc"
        );
    }
}
