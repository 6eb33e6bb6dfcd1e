use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Message {
    Table,
    Id,
    Room,
    Timestamp,
    Username,
    Text,
}

const ROOM_INDEX: &str = "idx_message_room_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        // A database the Flask original already used has this table (id, room, timestamp,
        // username, text): it is adopted as it is, and its messages stay readable.
        if !manager.has_table("message").await? {
            let mut timestamp = ColumnDef::new(Message::Timestamp);
            match backend {
                // MySQL's DATETIME keeps whole seconds unless asked; TIMESTAMP ends in 2038.
                DbBackend::MySql => timestamp.custom(Alias::new("DATETIME(6)")),
                _ => timestamp.date_time(),
            };
            let mut table = Table::create();
            table
                .table(Message::Table)
                .col(
                    ColumnDef::new(Message::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(ColumnDef::new(Message::Room).string_len(64).not_null())
                .col(timestamp.not_null())
                .col(ColumnDef::new(Message::Username).string_len(64).not_null())
                .col(ColumnDef::new(Message::Text).text().not_null());
            if backend == DbBackend::MySql {
                // Whatever the server's default, names and messages hold any Unicode.
                table.character_set("utf8mb4").collate("utf8mb4_unicode_ci");
            }
            manager.create_table(table).await?;
        }
        if !manager.has_index("message", ROOM_INDEX).await? {
            manager
                .create_index(
                    Index::create()
                        .name(ROOM_INDEX)
                        .table(Message::Table)
                        .col(Message::Room)
                        .col(Message::Id)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Message::Table).to_owned())
            .await
    }
}
