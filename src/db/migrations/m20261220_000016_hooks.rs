use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Incoming webhooks: a room, the name its posts go under, and the SHA-256 of its secret
/// (the secret itself is shown once, at creation, and kept nowhere).
#[derive(DeriveIden)]
enum Hook {
    Table,
    Id,
    RoomId,
    Name,
    SecretHash,
    CreatedBy,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let mut created_at = ColumnDef::new(Hook::CreatedAt);
        match backend {
            DbBackend::MySql => created_at.custom(Alias::new("DATETIME(6)")),
            _ => created_at.date_time(),
        };
        let mut table = Table::create();
        table
            .table(Hook::Table)
            .if_not_exists()
            .col(
                ColumnDef::new(Hook::Id)
                    .string_len(36)
                    .not_null()
                    .primary_key(),
            )
            .col(ColumnDef::new(Hook::RoomId).string_len(64).not_null())
            .col(ColumnDef::new(Hook::Name).string_len(64).not_null())
            .col(ColumnDef::new(Hook::SecretHash).string_len(64).not_null())
            .col(ColumnDef::new(Hook::CreatedBy).string_len(128).null())
            .col(created_at.not_null());
        if backend == DbBackend::MySql {
            let collation =
                super::m20261216_000007_ids_compare_bytes::binary_collation(manager).await?;
            table.character_set("utf8mb4").collate(&collation);
        }
        manager.create_table(table).await?;
        // A room's hooks are listed, and deleted with it. (MySQL has no CREATE INDEX IF
        // NOT EXISTS: the index is asked for first, so a migration cut short runs again.)
        if !manager.has_index("hook", "idx_hook_room").await? {
            manager
                .create_index(
                    Index::create()
                        .if_not_exists()
                        .name("idx_hook_room")
                        .table(Hook::Table)
                        .col(Hook::RoomId)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Hook::Table).if_exists().to_owned())
            .await
    }
}
