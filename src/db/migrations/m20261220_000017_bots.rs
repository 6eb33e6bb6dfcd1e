use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Bots: an account (`bot:<id>`, no password) and the rooms its token may use, as a JSON
/// list of room ids.
#[derive(DeriveIden)]
enum Bot {
    Table,
    UserId,
    Rooms,
    CreatedBy,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let mut created_at = ColumnDef::new(Bot::CreatedAt);
        match backend {
            DbBackend::MySql => created_at.custom(Alias::new("DATETIME(6)")),
            _ => created_at.date_time(),
        };
        let mut table = Table::create();
        table
            .table(Bot::Table)
            .if_not_exists()
            .col(
                ColumnDef::new(Bot::UserId)
                    .string_len(64)
                    .not_null()
                    .primary_key(),
            )
            .col(ColumnDef::new(Bot::Rooms).text().not_null())
            .col(ColumnDef::new(Bot::CreatedBy).string_len(128).null())
            .col(created_at.not_null());
        if backend == DbBackend::MySql {
            let collation =
                super::m20261216_000007_ids_compare_bytes::binary_collation(manager).await?;
            table.character_set("utf8mb4").collate(&collation);
        }
        manager.create_table(table).await
    }
}
