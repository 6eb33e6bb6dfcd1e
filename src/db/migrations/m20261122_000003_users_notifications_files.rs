use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Every user id seen (heartbeat or WebSocket) under its latest name, so `@name` finds
/// whom to notify even when they are offline.
#[derive(DeriveIden)]
enum ChatUser {
    Table,
    UserId,
    Username,
    NameKey,
    LastSeen,
}

#[derive(DeriveIden)]
enum Notification {
    Table,
    Id,
    UserId,
    Title,
    Body,
    NotifType,
    RoomId,
    FromUser,
    IsRead,
    CreatedAt,
}

#[derive(DeriveIden)]
enum StoredFile {
    Table,
    Id,
    OriginalName,
    ContentType,
    SizeBytes,
    UploadedBy,
    RoomId,
    ObjectKey,
    CreatedAt,
}

/// Microseconds and no 2038 limit on MySQL, as for messages.
fn datetime(backend: DbBackend, name: impl IntoIden) -> ColumnDef {
    let mut col = ColumnDef::new(name);
    match backend {
        DbBackend::MySql => col.custom(Alias::new("DATETIME(6)")),
        _ => col.date_time(),
    };
    col.not_null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let utf8 = |table: &mut TableCreateStatement| {
            if backend == DbBackend::MySql {
                table.character_set("utf8mb4").collate("utf8mb4_unicode_ci");
            }
        };

        let mut users = Table::create();
        users
            .table(ChatUser::Table)
            .if_not_exists()
            .col(
                ColumnDef::new(ChatUser::UserId)
                    .string_len(64)
                    .not_null()
                    .primary_key(),
            )
            .col(ColumnDef::new(ChatUser::Username).string_len(64).not_null())
            .col(ColumnDef::new(ChatUser::NameKey).string_len(64).not_null())
            .col(datetime(backend, ChatUser::LastSeen));
        utf8(&mut users);
        manager.create_table(users).await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_chat_user_name_key")
                    .table(ChatUser::Table)
                    .col(ChatUser::NameKey)
                    .to_owned(),
            )
            .await?;

        let mut notifications = Table::create();
        notifications
            .table(Notification::Table)
            .if_not_exists()
            .col(
                ColumnDef::new(Notification::Id)
                    .string_len(36)
                    .not_null()
                    .primary_key(),
            )
            .col(
                ColumnDef::new(Notification::UserId)
                    .string_len(64)
                    .not_null(),
            )
            .col(
                ColumnDef::new(Notification::Title)
                    .string_len(200)
                    .not_null(),
            )
            .col(ColumnDef::new(Notification::Body).text().not_null())
            .col(
                ColumnDef::new(Notification::NotifType)
                    .string_len(32)
                    .not_null(),
            )
            .col(ColumnDef::new(Notification::RoomId).string_len(64).null())
            .col(ColumnDef::new(Notification::FromUser).string_len(64).null())
            .col(
                ColumnDef::new(Notification::IsRead)
                    .boolean()
                    .not_null()
                    .default(false),
            )
            .col(datetime(backend, Notification::CreatedAt));
        utf8(&mut notifications);
        manager.create_table(notifications).await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_notification_user")
                    .table(Notification::Table)
                    .col(Notification::UserId)
                    .col(Notification::CreatedAt)
                    .to_owned(),
            )
            .await?;

        let mut files = Table::create();
        files
            .table(StoredFile::Table)
            .if_not_exists()
            .col(
                ColumnDef::new(StoredFile::Id)
                    .string_len(36)
                    .not_null()
                    .primary_key(),
            )
            .col(
                ColumnDef::new(StoredFile::OriginalName)
                    .string_len(255)
                    .not_null(),
            )
            .col(
                ColumnDef::new(StoredFile::ContentType)
                    .string_len(128)
                    .not_null(),
            )
            .col(
                ColumnDef::new(StoredFile::SizeBytes)
                    .big_integer()
                    .not_null(),
            )
            .col(ColumnDef::new(StoredFile::UploadedBy).string_len(64).null())
            .col(ColumnDef::new(StoredFile::RoomId).string_len(64).null())
            .col(
                ColumnDef::new(StoredFile::ObjectKey)
                    .string_len(255)
                    .not_null(),
            )
            .col(datetime(backend, StoredFile::CreatedAt));
        utf8(&mut files);
        manager.create_table(files).await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_stored_file_room")
                    .table(StoredFile::Table)
                    .col(StoredFile::RoomId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            StoredFile::Table.into_iden(),
            Notification::Table.into_iden(),
            ChatUser::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
