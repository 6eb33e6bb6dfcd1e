use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// An image upload's thumbnail (`files::thumbnail`): its object key, type and size, all
/// null for other files and for every file stored before this column. One column per
/// statement: SQLite adds one at a time, and MySQL, which cannot roll DDL back, may have
/// stopped halfway, so each is added only when missing.
#[derive(DeriveIden)]
enum StoredFile {
    Table,
    ThumbnailKey,
    ThumbnailType,
    ThumbnailWidth,
    ThumbnailHeight,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let columns = [
            (
                "thumbnail_key",
                ColumnDef::new(StoredFile::ThumbnailKey)
                    .string_len(255)
                    .null()
                    .to_owned(),
            ),
            (
                "thumbnail_type",
                ColumnDef::new(StoredFile::ThumbnailType)
                    .string_len(128)
                    .null()
                    .to_owned(),
            ),
            (
                "thumbnail_width",
                ColumnDef::new(StoredFile::ThumbnailWidth)
                    .integer()
                    .null()
                    .to_owned(),
            ),
            (
                "thumbnail_height",
                ColumnDef::new(StoredFile::ThumbnailHeight)
                    .integer()
                    .null()
                    .to_owned(),
            ),
        ];
        for (name, mut column) in columns {
            if manager.has_column("stored_file", name).await? {
                continue;
            }
            manager
                .alter_table(
                    Table::alter()
                        .table(StoredFile::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
