//! The database: one SeaORM connection pool, opened at start-up with the schema migrated,
//! the tables (`entities`), and each table's queries as functions of a connection. Errors
//! leave as `DbErr`; `error` sorts them by cause into the domain's error.

pub mod accounts;
pub mod bots;
pub mod changes;
pub mod entities;
pub mod error;
pub mod files;
pub mod hooks;
pub mod messages;
mod migrations;
pub mod notifications;
pub mod reactions;
pub mod read_marks;
pub mod rooms;
pub mod users;
pub mod webhooks;

/// The values of a raw statement and the placeholders that name them in the backend's
/// dialect (`$n` on PostgreSQL, `?` elsewhere): for the few statements sea-query does not
/// build, a `UNION ALL` of one part per room.
pub(crate) struct Binds {
    backend: sea_orm::DbBackend,
    pub values: Vec<sea_orm::Value>,
}

impl Binds {
    pub fn new(backend: sea_orm::DbBackend) -> Self {
        Binds {
            backend,
            values: Vec::new(),
        }
    }

    /// Binds `value`; its placeholder.
    pub fn bind(&mut self, value: impl Into<sea_orm::Value>) -> String {
        self.values.push(value.into());
        match self.backend {
            sea_orm::DbBackend::Postgres => format!("${}", self.values.len()),
            _ => "?".to_string(),
        }
    }

    /// `i` as a literal every backend reads back as a 64-bit integer.
    pub fn index(&self, i: usize) -> String {
        match self.backend {
            sea_orm::DbBackend::Postgres => format!("{i}::bigint"),
            _ => i.to_string(),
        }
    }
}

use crate::config::Settings;
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbBackend, DbErr};
use sea_orm_migration::MigratorTrait;
use std::time::{Duration, Instant};

pub use migrations::Migrator;

/// Connects, waiting up to `db_startup_wait_secs` for a database that is still starting
/// (as MySQL is when a compose file starts both at once), then brings the schema up to date.
pub async fn connect(url: &str, settings: &Settings) -> Result<DatabaseConnection, DbErr> {
    let timeout = Duration::from_secs(settings.database.timeout_secs.max(1));
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(settings.database.max_connections.max(1))
        .min_connections(1)
        .connect_timeout(timeout)
        .acquire_timeout(timeout)
        // Checking every connection before use costs a round trip per query; checking
        // the ones that sat idle still catches those a database restart broke.
        .test_before_acquire_if_idle_for(Duration::from_secs(5))
        .sqlx_logging(false);

    let deadline = Instant::now() + Duration::from_secs(settings.database.startup_wait_secs);
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
    migrate(&db).await?;
    Ok(db)
}

/// Brings the schema up to date. Replicas that start together on a fresh database would
/// each apply the migrations, and all but one fail ("table already exists"): they take
/// turns under a lock of the database server, held by a connection of its own (not the
/// pool's, which may have just one) for as long as the migrations run. SQLite is one
/// file that one process writes at a time.
async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    use sea_orm::sqlx::{self, ConnectOptions as _, Connection as _};
    const LOCK: &str = "ferrochat_migrations";
    // Any number, the same on every replica: PostgreSQL's advisory locks are numbered.
    const PG_LOCK: i64 = 0x6665_7272_6f63;
    let sqlx = |e: sqlx::Error| DbErr::Custom(format!("migration lock: {e}"));
    match db.get_database_backend() {
        DbBackend::MySql => {
            let mut lock = db
                .get_mysql_connection_pool()
                .connect_options()
                .connect()
                .await
                .map_err(sqlx)?;
            let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 120)")
                .bind(LOCK)
                .fetch_one(&mut lock)
                .await
                .map_err(sqlx)?;
            if got != Some(1) {
                return Err(DbErr::Custom(
                    "another replica held the migration lock for 120 s".into(),
                ));
            }
            let result = Migrator::up(db, None).await;
            // Closing the connection gives the lock back too; this only says so sooner.
            let _ = sqlx::query("SELECT RELEASE_LOCK(?)")
                .bind(LOCK)
                .execute(&mut lock)
                .await;
            let _ = lock.close().await;
            result
        }
        DbBackend::Postgres => {
            let mut lock = db
                .get_postgres_connection_pool()
                .connect_options()
                .connect()
                .await
                .map_err(sqlx)?;
            // As long as MySQL's GET_LOCK above waits, then an error.
            sqlx::query("SET lock_timeout = '120s'")
                .execute(&mut lock)
                .await
                .map_err(sqlx)?;
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(PG_LOCK)
                .execute(&mut lock)
                .await
                .map_err(sqlx)?;
            let result = Migrator::up(db, None).await;
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(PG_LOCK)
                .execute(&mut lock)
                .await;
            let _ = lock.close().await;
            result
        }
        _ => Migrator::up(db, None).await,
    }
}

/// A fresh database in memory with the schema, for the services' own tests. One
/// connection: each SQLite connection to `:memory:` is a database of its own.
/// `text` for a `LIKE` pattern whose escape is a backslash: `%`, `_` and `\` stand for themselves.
pub fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
pub async fn memory() -> DatabaseConnection {
    let mut settings = Settings::default();
    settings.database.max_connections = 1;
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
