use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// How far each user has read each room: one row per user and room, written when they
/// mark it read. On MySQL/MariaDB it compares ids byte for byte, as every id column.
#[derive(DeriveIden)]
enum RoomRead {
    Table,
    UserId,
    RoomId,
    LastReadId,
    UpdatedAt,
}

/// A mention notification names the message it is about, so a room's mentions after a
/// user's last read message can be counted from the user's own notifications.
#[derive(DeriveIden)]
enum Notification {
    Table,
    UserId,
    RoomId,
    MessageId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let mut updated_at = ColumnDef::new(RoomRead::UpdatedAt);
        match backend {
            DbBackend::MySql => updated_at.custom(Alias::new("DATETIME(6)")),
            _ => updated_at.date_time(),
        };
        let mut table = Table::create();
        table
            .table(RoomRead::Table)
            .if_not_exists()
            .col(ColumnDef::new(RoomRead::UserId).string_len(128).not_null())
            .col(ColumnDef::new(RoomRead::RoomId).string_len(64).not_null())
            .col(
                ColumnDef::new(RoomRead::LastReadId)
                    .big_integer()
                    .not_null(),
            )
            .col(updated_at.not_null())
            .primary_key(Index::create().col(RoomRead::UserId).col(RoomRead::RoomId));
        if backend == DbBackend::MySql {
            let collation =
                super::m20261216_000007_ids_compare_bytes::binary_collation(manager).await?;
            table.character_set("utf8mb4").collate(&collation);
        }
        manager.create_table(table).await?;
        // Deleting a room deletes its read marks. (MySQL has no CREATE INDEX IF NOT
        // EXISTS: each index is asked for first, so a migration cut short runs again.)
        if !manager.has_index("room_read", "idx_room_read_room").await? {
            manager
                .create_index(
                    Index::create()
                        .if_not_exists()
                        .name("idx_room_read_room")
                        .table(RoomRead::Table)
                        .col(RoomRead::RoomId)
                        .to_owned(),
                )
                .await?;
        }
        if !manager.has_column("notification", "message_id").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(Notification::Table)
                        .add_column(ColumnDef::new(Notification::MessageId).big_integer().null())
                        .to_owned(),
                )
                .await?;
        }
        if manager
            .has_index("notification", "idx_notification_mentions")
            .await?
        {
            return Ok(());
        }
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_notification_mentions")
                    .table(Notification::Table)
                    .col(Notification::UserId)
                    .col(Notification::RoomId)
                    .col(Notification::MessageId)
                    .to_owned(),
            )
            .await
    }
}
