use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Who may read a room: `public` (anyone, as every room before), `private` (its owner and
/// members) or `direct` (the two people of a direct conversation).
#[derive(DeriveIden)]
enum Room {
    Table,
    Visibility,
}

/// The members of private and direct rooms.
#[derive(DeriveIden)]
enum RoomMember {
    Table,
    RoomId,
    UserId,
    AddedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        if !manager.has_column("room", "visibility").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(Room::Table)
                        .add_column(
                            ColumnDef::new(Room::Visibility)
                                .string_len(16)
                                .not_null()
                                .default("public"),
                        )
                        .to_owned(),
                )
                .await?;
        }
        let mut added_at = ColumnDef::new(RoomMember::AddedAt);
        match backend {
            DbBackend::MySql => added_at.custom(Alias::new("DATETIME(6)")),
            _ => added_at.date_time(),
        };
        let mut members = Table::create();
        members
            .table(RoomMember::Table)
            .if_not_exists()
            .col(ColumnDef::new(RoomMember::RoomId).string_len(64).not_null())
            .col(ColumnDef::new(RoomMember::UserId).string_len(64).not_null())
            .col(added_at.not_null())
            .primary_key(
                Index::create()
                    .col(RoomMember::RoomId)
                    .col(RoomMember::UserId),
            );
        if backend == DbBackend::MySql {
            members
                .character_set("utf8mb4")
                .collate("utf8mb4_unicode_ci");
        }
        manager.create_table(members).await?;
        // A user's rooms, for the room list.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_room_member_user")
                    .table(RoomMember::Table)
                    .col(RoomMember::UserId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RoomMember::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Room::Table)
                    .drop_column(Room::Visibility)
                    .to_owned(),
            )
            .await
    }
}
