use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Search across rooms reads each database's own full-text index of message texts, which
/// the database keeps in step with every insert, edit and delete: MySQL/MariaDB a
/// `FULLTEXT` index, PostgreSQL a GIN index of the `simple` configuration's vector (no
/// stemming: a chat mixes languages), SQLite an FTS5 table over `message` that triggers
/// keep whole, with prefix indexes of 2 and 3 characters for the short words a search
/// begins with (`db::messages::search` reads each).
const MYSQL: &[&str] = &["ALTER TABLE message ADD FULLTEXT INDEX ft_message_text (text)"];

const POSTGRES: &[&str] = &["CREATE INDEX IF NOT EXISTS ft_message_text ON message \
     USING GIN (to_tsvector('simple', text))"];

const SQLITE: &[&str] = &[
    "CREATE VIRTUAL TABLE IF NOT EXISTS message_fts \
     USING fts5(text, content='message', content_rowid='id', prefix='2 3')",
    "CREATE TRIGGER IF NOT EXISTS message_fts_insert AFTER INSERT ON message BEGIN \
     INSERT INTO message_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER IF NOT EXISTS message_fts_delete AFTER DELETE ON message BEGIN \
     INSERT INTO message_fts(message_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER IF NOT EXISTS message_fts_update AFTER UPDATE OF text ON message BEGIN \
     INSERT INTO message_fts(message_fts, rowid, text) VALUES ('delete', old.id, old.text); \
     INSERT INTO message_fts(rowid, text) VALUES (new.id, new.text); END",
    // The messages stored before the index: all of them, once.
    "INSERT INTO message_fts(message_fts) VALUES ('rebuild')",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let statements = match manager.get_database_backend() {
            DbBackend::MySql if manager.has_index("message", "ft_message_text").await? => &[][..],
            DbBackend::MySql => MYSQL,
            DbBackend::Postgres => POSTGRES,
            _ => SQLITE,
        };
        let db = manager.get_connection();
        for sql in statements {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
