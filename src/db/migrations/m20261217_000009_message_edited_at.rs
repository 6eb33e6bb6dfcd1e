use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// A message may be edited by its author: when it last was (UTC), null until then. The
/// Flask original's rows, and every row before this column, read as never edited.
#[derive(DeriveIden)]
enum Message {
    Table,
    EditedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.has_column("message", "edited_at").await? {
            return Ok(());
        }
        let mut edited_at = ColumnDef::new(Message::EditedAt);
        match manager.get_database_backend() {
            // Whole seconds and an end in 2038 otherwise, as for `timestamp`.
            DbBackend::MySql => edited_at.custom(Alias::new("DATETIME(6)")),
            _ => edited_at.date_time(),
        };
        manager
            .alter_table(
                Table::alter()
                    .table(Message::Table)
                    .add_column(edited_at.null())
                    .to_owned(),
            )
            .await
    }
}
