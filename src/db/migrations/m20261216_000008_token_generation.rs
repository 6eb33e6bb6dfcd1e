use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Signing out and changing a password revoke an account's tokens, on every replica: a
/// token carries the generation it was issued under, and one older than its account's is
/// refused. Existing accounts start at 0, as do tokens issued before this column.
#[derive(DeriveIden)]
enum Account {
    Table,
    TokenGeneration,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if !manager.has_column("account", "token_generation").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(Account::Table)
                        .add_column(
                            ColumnDef::new(Account::TokenGeneration)
                                .big_integer()
                                .not_null()
                                .default(0),
                        )
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
