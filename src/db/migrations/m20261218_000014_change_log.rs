use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Every change of a room that is not a new message (an edit, a reaction, a deletion),
/// under its `seq` (`domain::seq`), as the event readers were told, so a reader that
/// comes back with the last `seq` it saw gets what it missed. Messages are their own
/// record: a message's `seq` is its id's. `message_id`: the message a change is about, so
/// that deleting it takes its edits (their text) out of the log too. Rows older than `change_log_days` are pruned;
/// `change_log_pruned` keeps, per room, the highest `seq` pruned, so a reader asking from
/// before it is told to reload.
#[derive(DeriveIden)]
enum RoomChange {
    Table,
    RoomId,
    Seq,
    MessageId,
    Event,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ChangeLogPruned {
    Table,
    RoomId,
    Through,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let mut created_at = ColumnDef::new(RoomChange::CreatedAt);
        match backend {
            DbBackend::MySql => created_at.custom(Alias::new("DATETIME(6)")),
            _ => created_at.date_time(),
        };
        let mut table = Table::create();
        table
            .table(RoomChange::Table)
            .if_not_exists()
            .col(ColumnDef::new(RoomChange::RoomId).string_len(64).not_null())
            .col(ColumnDef::new(RoomChange::Seq).big_integer().not_null())
            .col(ColumnDef::new(RoomChange::MessageId).big_integer().null())
            .col(ColumnDef::new(RoomChange::Event).text().not_null())
            .col(created_at.not_null())
            .primary_key(Index::create().col(RoomChange::RoomId).col(RoomChange::Seq));
        if backend == DbBackend::MySql {
            let collation =
                super::m20261216_000007_ids_compare_bytes::binary_collation(manager).await?;
            table.character_set("utf8mb4").collate(&collation);
        }
        manager.create_table(table).await?;
        // Pruning reads by age; catching up after a Redis outage by time too. (Asked for
        // first: MySQL has no CREATE INDEX IF NOT EXISTS.)
        if !manager
            .has_index("room_change", "idx_room_change_created")
            .await?
        {
            manager
                .create_index(
                    Index::create()
                        .if_not_exists()
                        .name("idx_room_change_created")
                        .table(RoomChange::Table)
                        .col(RoomChange::CreatedAt)
                        .to_owned(),
                )
                .await?;
        }
        let mut pruned = Table::create();
        pruned
            .table(ChangeLogPruned::Table)
            .if_not_exists()
            .col(
                ColumnDef::new(ChangeLogPruned::RoomId)
                    .string_len(64)
                    .not_null()
                    .primary_key(),
            )
            .col(
                ColumnDef::new(ChangeLogPruned::Through)
                    .big_integer()
                    .not_null(),
            );
        if backend == DbBackend::MySql {
            let collation =
                super::m20261216_000007_ids_compare_bytes::binary_collation(manager).await?;
            pruned.character_set("utf8mb4").collate(&collation);
        }
        manager.create_table(pruned).await
    }
}
