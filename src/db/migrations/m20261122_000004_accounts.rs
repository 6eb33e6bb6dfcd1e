use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Registered users: a name (unique, ignoring case) and an argon2 password hash.
#[derive(DeriveIden)]
enum Account {
    Table,
    UserId,
    Username,
    NameKey,
    PasswordHash,
    CreatedAt,
}

/// Who created a room (its owner), when it was created by a signed-in user.
#[derive(DeriveIden)]
enum Room {
    Table,
    OwnerId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let mut created_at = ColumnDef::new(Account::CreatedAt);
        match backend {
            DbBackend::MySql => created_at.custom(Alias::new("DATETIME(6)")),
            _ => created_at.date_time(),
        };
        let mut accounts = Table::create();
        accounts
            .table(Account::Table)
            .if_not_exists()
            .col(
                ColumnDef::new(Account::UserId)
                    .string_len(64)
                    .not_null()
                    .primary_key(),
            )
            .col(ColumnDef::new(Account::Username).string_len(64).not_null())
            .col(ColumnDef::new(Account::NameKey).string_len(64).not_null())
            .col(
                ColumnDef::new(Account::PasswordHash)
                    .string_len(255)
                    .not_null(),
            )
            .col(created_at.not_null());
        if backend == DbBackend::MySql {
            accounts
                .character_set("utf8mb4")
                .collate("utf8mb4_unicode_ci");
        }
        manager.create_table(accounts).await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .unique()
                    .name("idx_account_name_key")
                    .table(Account::Table)
                    .col(Account::NameKey)
                    .to_owned(),
            )
            .await?;
        if !manager.has_column("room", "owner_id").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(Room::Table)
                        .add_column(ColumnDef::new(Room::OwnerId).string_len(64).null())
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Room::Table)
                    .drop_column(Room::OwnerId)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(Account::Table).to_owned())
            .await
    }
}
