use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The relay's client gets back the very object it sent (`text`, `type`, `ts`), on every
/// replica and in its history: its `type` and `ts` are kept with the row. Both null for a
/// message of any other door.
#[derive(DeriveIden)]
enum Message {
    Table,
    ClientType,
    ClientTs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds no more at once.
        let columns = [
            ColumnDef::new(Message::ClientType)
                .string_len(32)
                .null()
                .to_owned(),
            ColumnDef::new(Message::ClientTs)
                .big_integer()
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
        Ok(())
    }
}
