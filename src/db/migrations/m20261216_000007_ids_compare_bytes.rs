use sea_orm::{DbBackend, Statement};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The columns that hold ids (of rooms, users, owners, members, files, notifications) and
/// the lower-cased name keys sign-in and mentions look up. The tables were made
/// `utf8mb4_unicode_ci`, which compares `BOB`, `bob ` and `bób` equal to `bob`: a
/// membership, notification or file check in SQL then admitted ids that Rust, comparing
/// bytes, holds apart. Names shown to people (`username`, `name`) keep their collation;
/// what makes sign-in ignore case is the lower-cased key, not the collation.
const ID_COLUMNS: [(&str, &[&str]); 7] = [
    ("message", &["room", "user_id"]),
    ("room", &["id", "owner_id"]),
    ("room_member", &["room_id", "user_id"]),
    ("chat_user", &["user_id", "name_key"]),
    ("notification", &["id", "user_id", "room_id"]),
    (
        "stored_file",
        &["id", "uploaded_by", "room_id", "object_key"],
    ),
    ("account", &["user_id", "name_key"]),
];

/// Binary collations without trailing-space padding, the first the server has: MariaDB's,
/// then MySQL 8's. `utf8mb4_bin` pads (`'bob' = 'bob '`), so it is only the last resort,
/// for MySQL 5.7.
const BINARY: [&str; 3] = ["utf8mb4_nopad_bin", "utf8mb4_0900_bin", "utf8mb4_bin"];

/// What `down` goes back to.
const CASE_INSENSITIVE: &str = "utf8mb4_unicode_ci";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // PostgreSQL and SQLite compare text byte for byte already.
        if manager.get_database_backend() != DbBackend::MySql {
            return Ok(());
        }
        let collation = binary_collation(manager).await?;
        collate(manager, &collation).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::MySql {
            return Ok(());
        }
        collate(manager, CASE_INSENSITIVE).await
    }
}

pub(super) async fn binary_collation(manager: &SchemaManager<'_>) -> Result<String, DbErr> {
    let db = manager.get_connection();
    for name in BINARY {
        let found = db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::MySql,
                "SELECT 1 FROM information_schema.COLLATIONS WHERE COLLATION_NAME = ?",
                [name.into()],
            ))
            .await?;
        if found.is_some() {
            return Ok(name.to_string());
        }
    }
    Err(DbErr::Migration(
        "the server has no binary utf8mb4 collation for id columns".into(),
    ))
}

/// Each id column keeps its type and nullability (a table the Flask original made may
/// differ from ours) and gets `collation`, one `ALTER TABLE` per table.
async fn collate(manager: &SchemaManager<'_>, collation: &str) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for (table, columns) in ID_COLUMNS {
        let mut changes = Vec::new();
        for column in columns {
            let found = db
                .query_one_raw(Statement::from_sql_and_values(
                    DbBackend::MySql,
                    "SELECT CAST(COLUMN_TYPE AS CHAR), CAST(IS_NULLABLE AS CHAR) FROM information_schema.COLUMNS \
                     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = ? \
                     AND COLLATION_NAME IS NOT NULL",
                    [(*table).into(), (*column).into()],
                ))
                .await?;
            let Some(found) = found else { continue };
            let column_type: String = found.try_get_by_index(0)?;
            let nullable: String = found.try_get_by_index(1)?;
            let null = if nullable == "YES" {
                "NULL"
            } else {
                "NOT NULL"
            };
            changes.push(format!(
                "MODIFY `{column}` {column_type} CHARACTER SET utf8mb4 COLLATE {collation} {null}"
            ));
        }
        if !changes.is_empty() {
            db.execute_unprepared(&format!("ALTER TABLE `{table}` {}", changes.join(", ")))
                .await?;
        }
    }
    Ok(())
}
