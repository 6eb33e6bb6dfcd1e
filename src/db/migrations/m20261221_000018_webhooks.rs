use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Outgoing webhooks: where a room's (or every room's) events are `POST`ed, signed with
/// `secret` (kept as it is: the server signs with it), and which replica sends them now
/// (`lease_holder` until `lease_until`).
#[derive(DeriveIden)]
enum Webhook {
    Table,
    Id,
    RoomId,
    Url,
    Events,
    Name,
    Secret,
    CreatedBy,
    CreatedAt,
    LeaseHolder,
    LeaseUntil,
}

/// The outbox: one row per event per webhook, written in the transaction of the change
/// it tells of, kept after it is sent as the webhook's record of deliveries.
#[derive(DeriveIden)]
enum WebhookDelivery {
    Table,
    Id,
    WebhookId,
    DeliveryId,
    Event,
    RoomId,
    Body,
    State,
    Attempts,
    NextAt,
    AttemptedAt,
    Status,
    Error,
    CreatedAt,
}

fn time(backend: DbBackend, column: impl IntoIden) -> ColumnDef {
    let mut def = ColumnDef::new(column);
    match backend {
        DbBackend::MySql => def.custom(Alias::new("DATETIME(6)")),
        _ => def.date_time(),
    };
    def
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let mut webhook = Table::create();
        webhook
            .table(Webhook::Table)
            .if_not_exists()
            .col(
                ColumnDef::new(Webhook::Id)
                    .string_len(36)
                    .not_null()
                    .primary_key(),
            )
            .col(ColumnDef::new(Webhook::RoomId).string_len(64).null())
            .col(ColumnDef::new(Webhook::Url).string_len(2048).not_null())
            .col(ColumnDef::new(Webhook::Events).string_len(128).not_null())
            .col(ColumnDef::new(Webhook::Name).string_len(64).not_null())
            .col(ColumnDef::new(Webhook::Secret).string_len(64).not_null())
            .col(ColumnDef::new(Webhook::CreatedBy).string_len(128).null())
            .col(time(backend, Webhook::CreatedAt).not_null())
            .col(ColumnDef::new(Webhook::LeaseHolder).string_len(64).null())
            .col(time(backend, Webhook::LeaseUntil).null());
        let mut body = ColumnDef::new(WebhookDelivery::Body);
        match backend {
            // TEXT holds 64 KiB; a message of 4,096 characters in JSON can pass it.
            DbBackend::MySql => body.custom(Alias::new("MEDIUMTEXT")),
            _ => body.text(),
        };
        let mut delivery = Table::create();
        delivery
            .table(WebhookDelivery::Table)
            .if_not_exists()
            .col(
                ColumnDef::new(WebhookDelivery::Id)
                    .big_integer()
                    .not_null()
                    .auto_increment()
                    .primary_key(),
            )
            .col(
                ColumnDef::new(WebhookDelivery::WebhookId)
                    .string_len(36)
                    .not_null(),
            )
            .col(
                ColumnDef::new(WebhookDelivery::DeliveryId)
                    .string_len(36)
                    .not_null(),
            )
            .col(
                ColumnDef::new(WebhookDelivery::Event)
                    .string_len(32)
                    .not_null(),
            )
            .col(
                ColumnDef::new(WebhookDelivery::RoomId)
                    .string_len(64)
                    .not_null(),
            )
            .col(body.not_null())
            .col(
                ColumnDef::new(WebhookDelivery::State)
                    .string_len(16)
                    .not_null(),
            )
            .col(
                ColumnDef::new(WebhookDelivery::Attempts)
                    .integer()
                    .not_null()
                    .default(0),
            )
            .col(time(backend, WebhookDelivery::NextAt).not_null())
            .col(time(backend, WebhookDelivery::AttemptedAt).null())
            .col(ColumnDef::new(WebhookDelivery::Status).integer().null())
            .col(
                ColumnDef::new(WebhookDelivery::Error)
                    .string_len(255)
                    .null(),
            )
            .col(time(backend, WebhookDelivery::CreatedAt).not_null());
        if backend == DbBackend::MySql {
            let collation =
                super::m20261216_000007_ids_compare_bytes::binary_collation(manager).await?;
            webhook.character_set("utf8mb4").collate(&collation);
            delivery.character_set("utf8mb4").collate(&collation);
        }
        manager.create_table(webhook).await?;
        manager.create_table(delivery).await?;
        // Each webhook's next event (its oldest pending row) and record (newest first), the
        // finished records pruned by age, and the rooms' webhooks, deleted with them. (MySQL has no CREATE INDEX IF NOT
        // EXISTS: each index is asked for first, so a migration cut short runs again.)
        let indexes = [
            (
                "webhook_delivery",
                "idx_webhook_delivery_queue",
                Index::create()
                    .name("idx_webhook_delivery_queue")
                    .table(WebhookDelivery::Table)
                    .col(WebhookDelivery::WebhookId)
                    .col(WebhookDelivery::State)
                    .col(WebhookDelivery::Id)
                    .to_owned(),
            ),
            (
                "webhook_delivery",
                "idx_webhook_delivery_finished",
                Index::create()
                    .name("idx_webhook_delivery_finished")
                    .table(WebhookDelivery::Table)
                    .col(WebhookDelivery::State)
                    .col(WebhookDelivery::CreatedAt)
                    .to_owned(),
            ),
            (
                "webhook",
                "idx_webhook_room",
                Index::create()
                    .name("idx_webhook_room")
                    .table(Webhook::Table)
                    .col(Webhook::RoomId)
                    .to_owned(),
            ),
        ];
        for (table, name, index) in indexes {
            if !manager.has_index(table, name).await? {
                manager.create_index(index).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(WebhookDelivery::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(Webhook::Table).if_exists().to_owned())
            .await
    }
}
