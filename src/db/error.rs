//! Database errors sorted by cause, so that a client is told what it can do: a database
//! that is away or busy is 503 (try again); a row the database refuses (a value too long
//! for its column, a character the column's encoding cannot hold, a duplicate key) is a
//! 4xx that says so, since sending it again cannot succeed; anything else is our fault, a
//! logged 500.

use crate::domain::Error;
use sea_orm::sqlx;
use sea_orm::{DbErr, RuntimeErr, SqlErr};

/// How a database error should be answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Cause {
    /// Unreachable, the pool exhausted, a lost connection, a lock timeout or deadlock.
    Unavailable,
    /// The database refused the values of this request.
    Refused,
    /// A unique key is taken.
    Duplicate,
    NotFound,
    /// A query or schema of ours is wrong.
    Bug,
}

pub fn cause(err: &DbErr) -> Cause {
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return Cause::Unavailable,
        DbErr::RecordNotFound(_) => return Cause::NotFound,
        _ => {}
    }
    match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => return Cause::Duplicate,
        Some(SqlErr::ForeignKeyConstraintViolation(_)) => return Cause::Refused,
        _ => {}
    }
    let (DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))) = err
    else {
        return Cause::Bug;
    };
    match &**e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => Cause::Unavailable,
        sqlx::Error::Database(db) => by_code(code(&**db)),
        _ => Cause::Bug,
    }
}

/// Whether the statement lost to another writer (SQLite busy or locked, a MySQL deadlock
/// or lock wait, a PostgreSQL serialization failure or deadlock): its transaction was
/// rolled back whole, and running it again may well succeed.
pub fn lock_conflict(err: &DbErr) -> bool {
    let (DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))) = err
    else {
        return false;
    };
    let sqlx::Error::Database(db) = &**e else {
        return false;
    };
    code_conflicts(code(&**db))
}

fn code_conflicts(code: Code<'_>) -> bool {
    match code {
        Code::MySql(number) => matches!(number, 1205 | 1213),
        Code::Sqlite(code) => matches!(code & 0xff, 5 | 6),
        Code::Sqlstate(c) => matches!(c, "40001" | "40P01"),
    }
}

/// A database's own error code.
#[derive(Debug)]
enum Code<'a> {
    /// MySQL and MariaDB give most refusals SQLSTATE `HY000`; their error number tells.
    MySql(u16),
    /// SQLite's result code (extended codes keep the primary one in their low byte).
    Sqlite(u32),
    /// PostgreSQL's SQLSTATE.
    Sqlstate(&'a str),
}

fn code(db: &dyn sqlx::error::DatabaseError) -> Code<'_> {
    if let Some(e) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return Code::MySql(e.number());
    }
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        let code = db.code().and_then(|c| c.parse().ok()).unwrap_or(0);
        return Code::Sqlite(code);
    }
    match db.code() {
        Some(std::borrow::Cow::Borrowed(c)) => Code::Sqlstate(c),
        _ => Code::Sqlstate(""),
    }
}

fn by_code(code: Code<'_>) -> Cause {
    match code {
        Code::MySql(number) => match number {
            // Lock wait timeout, deadlock, too many connections, server shutting down.
            1205 | 1213 | 1040 | 1053 | 2006 | 2013 => Cause::Unavailable,
            // Data too long, incorrect value or string, out of range, null in a NOT NULL
            // column, truncated.
            1406 | 1366 | 1264 | 1048 | 1265 | 1292 | 3988 => Cause::Refused,
            1062 => Cause::Duplicate,
            _ => Cause::Bug,
        },
        Code::Sqlite(code) => match code & 0xff {
            // BUSY, LOCKED, FULL, IOERR, CANTOPEN
            5 | 6 | 10 | 13 | 14 => Cause::Unavailable,
            // TOOBIG, CONSTRAINT, MISMATCH, RANGE
            18 | 19 | 20 | 25 => Cause::Refused,
            _ => Cause::Bug,
        },
        // PostgreSQL: data exceptions and integrity violations are the client's values;
        // connection failures, serialization failures, lack of resources and shutdowns
        // pass.
        Code::Sqlstate(c) if c.starts_with("22") || c.starts_with("23") => Cause::Refused,
        Code::Sqlstate(c) if ["08", "40", "53", "57"].iter().any(|p| c.starts_with(p)) => {
            Cause::Unavailable
        }
        Code::Sqlstate(_) => Cause::Bug,
    }
}

impl From<DbErr> for Error {
    fn from(err: DbErr) -> Self {
        match cause(&err) {
            Cause::Unavailable => {
                tracing::warn!(error = %err, "database unavailable");
                Error::Unavailable("database unavailable, try again".into())
            }
            Cause::Refused => {
                tracing::info!(error = %err, "the database refused a value");
                Error::BadRequest(format!(
                    "the database refused a value: {}",
                    first_line(&err)
                ))
            }
            Cause::Duplicate => Error::Conflict("that already exists".into()),
            Cause::NotFound => Error::NotFound(first_line(&err)),
            Cause::Bug => {
                tracing::error!(error = %err, "database error");
                Error::Internal(err.to_string())
            }
        }
    }
}

/// The database's own words, on one line and without the driver's prefixes.
fn first_line(err: &DbErr) -> String {
    let text = err.to_string();
    let text = text.rsplit(": ").next().unwrap_or(&text);
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_sorted_by_cause() {
        assert_eq!(by_code(Code::Sqlstate("22001")), Cause::Refused); // value too long
        assert_eq!(by_code(Code::Sqlstate("08006")), Cause::Unavailable);
        assert_eq!(by_code(Code::Sqlstate("40001")), Cause::Unavailable);
        assert_eq!(by_code(Code::Sqlstate("42P01")), Cause::Bug); // no such table: ours
        assert_eq!(by_code(Code::MySql(1406)), Cause::Refused);
        assert_eq!(by_code(Code::MySql(1366)), Cause::Refused);
        assert_eq!(by_code(Code::MySql(1213)), Cause::Unavailable);
        assert_eq!(by_code(Code::MySql(1146)), Cause::Bug);
        assert_eq!(by_code(Code::Sqlite(5)), Cause::Unavailable); // SQLITE_BUSY
                                                                  // Lost to another writer: worth running again; a lost connection is not that.
        assert!(code_conflicts(Code::Sqlite(517))); // SQLITE_BUSY_SNAPSHOT
        assert!(code_conflicts(Code::MySql(1213)));
        assert!(code_conflicts(Code::Sqlstate("40P01")));
        assert!(!code_conflicts(Code::MySql(2013)));
        assert!(!code_conflicts(Code::Sqlite(14)));
        assert!(!code_conflicts(Code::Sqlstate("08006")));
        assert_eq!(by_code(Code::Sqlite(517)), Cause::Unavailable); // BUSY_SNAPSHOT
        assert_eq!(by_code(Code::Sqlite(1)), Cause::Bug); // SQLITE_ERROR
        assert_eq!(by_code(Code::Sqlite(275)), Cause::Refused); // CONSTRAINT_CHECK
    }

    #[test]
    fn a_lost_connection_is_unavailable_and_a_missing_row_not_found() {
        let lost = DbErr::Query(RuntimeErr::SqlxError(std::sync::Arc::new(
            sqlx::Error::PoolTimedOut,
        )));
        assert_eq!(cause(&lost), Cause::Unavailable);
        assert_eq!(
            Error::from(lost).status_code(),
            503,
            "a pool timeout is worth retrying"
        );
        assert_eq!(cause(&DbErr::RecordNotFound("x".into())), Cause::NotFound);
        assert_eq!(Error::from(DbErr::Custom("x".into())).status_code(), 500);
    }
}
