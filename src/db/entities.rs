//! SeaORM entities.

pub mod message {
    use sea_orm::entity::prelude::*;

    /// One chat message, in the table the Flask original created (`message`), so a
    /// database that original already filled is read as it is.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "message")]
    pub struct Model {
        /// Ids are the order of messages within a room.
        #[sea_orm(primary_key)]
        pub id: i64,
        pub room: String,
        /// When the message was stored, in UTC.
        pub timestamp: DateTime,
        pub username: String,
        #[sea_orm(column_type = "Text")]
        pub text: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
