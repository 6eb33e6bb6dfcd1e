use sea_orm::{DbBackend, Statement};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

// Iden variants name the columns: `message_type` is ChatFlow's name for it.
#[allow(clippy::enum_variant_names)]
#[derive(DeriveIden)]
enum Message {
    Table,
    UserId,
    MessageType,
    FileUrl,
}

#[derive(DeriveIden)]
enum Room {
    Table,
    Id,
    Name,
    Description,
    CreatedAt,
}

/// The rooms every ChatFlow deployment starts with.
const DEFAULT_ROOMS: [(&str, &str, &str); 3] = [
    ("general", "General", "General discussion"),
    (
        "devops",
        "DevOps",
        "Deployments, pipelines and infrastructure",
    ),
    ("random", "Random", "Anything else"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        // One column per statement: SQLite adds no more at once.
        let columns = [
            ColumnDef::new(Message::UserId)
                .string_len(64)
                .null()
                .to_owned(),
            ColumnDef::new(Message::MessageType)
                .string_len(16)
                .not_null()
                .default("text")
                .to_owned(),
            ColumnDef::new(Message::FileUrl)
                .string_len(2048)
                .null()
                .to_owned(),
        ];
        for mut column in columns {
            let name = column.get_column_name();
            if !manager.has_column("message", &name).await? {
                manager
                    .alter_table(
                        Table::alter()
                            .table(Message::Table)
                            .add_column(&mut column)
                            .to_owned(),
                    )
                    .await?;
            }
        }

        let mut created_at = ColumnDef::new(Room::CreatedAt);
        match backend {
            DbBackend::MySql => created_at.custom(Alias::new("DATETIME(6)")),
            _ => created_at.date_time(),
        };
        let mut table = Table::create();
        table
            .table(Room::Table)
            .if_not_exists()
            .col(
                ColumnDef::new(Room::Id)
                    .string_len(64)
                    .not_null()
                    .primary_key(),
            )
            .col(ColumnDef::new(Room::Name).string_len(128).not_null())
            .col(ColumnDef::new(Room::Description).text().null())
            .col(created_at.not_null());
        if backend == DbBackend::MySql {
            table.character_set("utf8mb4").collate("utf8mb4_unicode_ci");
        }
        manager.create_table(table).await?;

        let db = manager.get_connection();
        let now = chrono::Utc::now().naive_utc();
        for (id, name, description) in DEFAULT_ROOMS {
            let exists = Query::select()
                .column(Room::Id)
                .from(Room::Table)
                .and_where(Expr::col(Room::Id).eq(id))
                .to_owned();
            if db.query_one(&exists).await?.is_some() {
                continue;
            }
            let insert = Query::insert()
                .into_table(Room::Table)
                .columns([Room::Id, Room::Name, Room::Description, Room::CreatedAt])
                .values_panic([id.into(), name.into(), description.into(), now.into()])
                .to_owned();
            db.execute(&insert).await?;
        }
        // Rooms that already hold messages exist too.
        let from_messages = match backend {
            DbBackend::MySql => "INSERT IGNORE INTO room (id, name, created_at) \
                 SELECT room, room, MIN(timestamp) FROM message WHERE room IS NOT NULL GROUP BY room",
            _ => "INSERT INTO room (id, name, created_at) \
                 SELECT room, room, MIN(timestamp) FROM message WHERE room IS NOT NULL GROUP BY room \
                 ON CONFLICT (id) DO NOTHING",
        };
        db.execute_raw(Statement::from_string(backend, from_messages))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Room::Table).to_owned())
            .await?;
        for column in [Message::FileUrl, Message::MessageType, Message::UserId] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Message::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
