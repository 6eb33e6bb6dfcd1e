//! Schema migrations, run at every start-up, so a fresh database (SQLite, MariaDB/MySQL or
//! PostgreSQL) gets its tables before the first request. On MySQL/MariaDB an id column
//! needs a binary collation, as `m20261216_000007_ids_compare_bytes` gives the existing
//! ones (a MariaDB test checks every `id` and `*_id` column).

use sea_orm_migration::prelude::*;

mod m20261122_000001_create_message;
mod m20261122_000002_rooms_and_message_kinds;
mod m20261122_000003_users_notifications_files;
mod m20261122_000004_accounts;
mod m20261202_000005_private_rooms;
mod m20261202_000006_webchat_echo;
mod m20261216_000007_ids_compare_bytes;
mod m20261216_000008_token_generation;
mod m20261217_000009_message_edited_at;
mod m20261217_000010_reactions;
mod m20261217_000011_replies;
mod m20261218_000012_read_state;
mod m20261218_000013_search;
mod m20261218_000014_change_log;
mod m20261219_000015_thumbnails;
mod m20261220_000016_hooks;
mod m20261220_000017_bots;
mod m20261221_000018_webhooks;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_message::Migration),
            Box::new(m20261122_000002_rooms_and_message_kinds::Migration),
            Box::new(m20261122_000003_users_notifications_files::Migration),
            Box::new(m20261122_000004_accounts::Migration),
            Box::new(m20261202_000005_private_rooms::Migration),
            Box::new(m20261202_000006_webchat_echo::Migration),
            Box::new(m20261216_000007_ids_compare_bytes::Migration),
            Box::new(m20261216_000008_token_generation::Migration),
            Box::new(m20261217_000009_message_edited_at::Migration),
            Box::new(m20261217_000010_reactions::Migration),
            Box::new(m20261217_000011_replies::Migration),
            Box::new(m20261218_000012_read_state::Migration),
            Box::new(m20261218_000013_search::Migration),
            Box::new(m20261218_000014_change_log::Migration),
            Box::new(m20261219_000015_thumbnails::Migration),
            Box::new(m20261220_000016_hooks::Migration),
            Box::new(m20261220_000017_bots::Migration),
            Box::new(m20261221_000018_webhooks::Migration),
        ]
    }
}
