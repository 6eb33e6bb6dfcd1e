use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Reactions: one row per message, user and emoji. On MySQL/MariaDB the whole table
/// compares byte for byte: user ids as everywhere, and emoji, which a case-insensitive
/// Unicode collation holds equal to one another.
#[derive(DeriveIden)]
enum Reaction {
    Table,
    MessageId,
    UserId,
    Emoji,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let mut created_at = ColumnDef::new(Reaction::CreatedAt);
        match backend {
            DbBackend::MySql => created_at.custom(Alias::new("DATETIME(6)")),
            _ => created_at.date_time(),
        };
        let mut table = Table::create();
        table
            .table(Reaction::Table)
            .if_not_exists()
            .col(ColumnDef::new(Reaction::MessageId).big_integer().not_null())
            .col(ColumnDef::new(Reaction::UserId).string_len(128).not_null())
            .col(ColumnDef::new(Reaction::Emoji).string_len(64).not_null())
            .col(created_at.not_null())
            .primary_key(
                Index::create()
                    .col(Reaction::MessageId)
                    .col(Reaction::Emoji)
                    .col(Reaction::UserId),
            );
        if backend == DbBackend::MySql {
            let collation =
                super::m20261216_000007_ids_compare_bytes::binary_collation(manager).await?;
            table.character_set("utf8mb4").collate(&collation);
        }
        manager.create_table(table).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Reaction::Table).if_exists().to_owned())
            .await
    }
}
