//! User accounts.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::{schema::users, DbConn};
use crate::{
    domain::email::EmailAddress,
    error::{AppResult, OrConflict},
};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub display_name: String,
    pub is_operator: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub struct NewUser {
    pub email: EmailAddress,
    pub password_hash: String,
    pub display_name: String,
    pub is_operator: bool,
}

pub async fn insert(conn: &mut DbConn, new: NewUser) -> AppResult<User> {
    diesel::insert_into(users::table)
        .values((
            users::id.eq(Uuid::now_v7()),
            users::email.eq(new.email.as_str()),
            users::password_hash.eq(&new.password_hash),
            users::display_name.eq(&new.display_name),
            users::is_operator.eq(new.is_operator),
        ))
        .returning(User::as_returning())
        .get_result(conn)
        .await
        .or_conflict("a user with this email already exists")
}

pub async fn find_by_email(conn: &mut DbConn, email: &EmailAddress) -> AppResult<Option<User>> {
    Ok(users::table
        .filter(users::email.eq(email.as_str()))
        .select(User::as_select())
        .first(conn)
        .await
        .optional()?)
}

pub async fn find(conn: &mut DbConn, id: Uuid) -> AppResult<Option<User>> {
    Ok(users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Creates the operator, or promotes an existing account and resets its password.
pub async fn upsert_operator(conn: &mut DbConn, email: &EmailAddress, password_hash: &str) -> AppResult<User> {
    Ok(diesel::insert_into(users::table)
        .values((
            users::id.eq(Uuid::now_v7()),
            users::email.eq(email.as_str()),
            users::password_hash.eq(password_hash),
            users::display_name.eq("Operator"),
            users::is_operator.eq(true),
        ))
        .on_conflict(users::email)
        .do_update()
        .set((
            users::password_hash.eq(password_hash),
            users::is_operator.eq(true),
            users::updated_at.eq(diesel::dsl::now),
        ))
        .returning(User::as_returning())
        .get_result(conn)
        .await?)
}
