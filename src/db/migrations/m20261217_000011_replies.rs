use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// A message may answer another of its room: its id, null for a message that answers none
/// (every message before this column). Not a foreign key: the answered message may be
/// deleted, and the reply keeps the id it answered.
#[derive(DeriveIden)]
enum Message {
    Table,
    ReplyTo,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.has_column("message", "reply_to").await? {
            return Ok(());
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Message::Table)
                    .add_column(ColumnDef::new(Message::ReplyTo).big_integer().null())
                    .to_owned(),
            )
            .await
    }
}
