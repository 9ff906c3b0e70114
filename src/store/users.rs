//! User accounts.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::{schema::users, DbConn};
use crate::{
    domain::{email::EmailAddress, identity::Caller},
    error::{AppError, AppResult},
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
    /// When the person proved they read this address; `None`: not yet.
    pub email_verified_at: Option<DateTime<Utc>>,
    /// Access tokens carry it; tokens with an older version are refused.
    pub token_version: i32,
}

impl User {
    pub fn email_verified(&self) -> bool {
        self.email_verified_at.is_some()
    }

    /// The account as the one making a request.
    pub fn caller(&self) -> Caller {
        Caller {
            user_id: self.id,
            is_operator: self.is_operator,
            email_verified: self.email_verified(),
        }
    }
}

pub struct NewUser {
    pub email: EmailAddress,
    pub password_hash: String,
    pub display_name: String,
    pub is_operator: bool,
}

pub async fn insert(conn: &mut DbConn, new: NewUser) -> AppResult<User> {
    insert_if_new(conn, new)
        .await?
        .ok_or_else(|| AppError::conflict("a user with this email already exists"))
}

/// Inserts the account unless one exists for the email: `None` then. Sign-up uses it
/// so that a race between two sign-ups for one address answers like any other
/// sign-up for a taken address, not with a conflict.
pub async fn insert_if_new(conn: &mut DbConn, new: NewUser) -> AppResult<Option<User>> {
    Ok(diesel::insert_into(users::table)
        .values((
            users::id.eq(Uuid::now_v7()),
            users::email.eq(new.email.as_str()),
            users::password_hash.eq(&new.password_hash),
            users::display_name.eq(&new.display_name),
            users::is_operator.eq(new.is_operator),
        ))
        .on_conflict(users::email)
        .do_nothing()
        .returning(User::as_returning())
        .get_result(conn)
        .await
        .optional()?)
}

/// Records that the person proved the address, now.
pub async fn mark_verified(conn: &mut DbConn, id: Uuid) -> AppResult<User> {
    diesel::update(users::table.find(id))
        .set((
            users::email_verified_at.eq(Some(Utc::now())),
            users::updated_at.eq(diesel::dsl::now),
        ))
        .returning(User::as_returning())
        .get_result(conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::not_found("user"))
}

/// Sets a new password hash and increments the token version, so every access token
/// issued before stops working. Returns the account as it is now.
pub async fn set_password(conn: &mut DbConn, id: Uuid, password_hash: &str) -> AppResult<User> {
    diesel::update(users::table.find(id))
        .set((
            users::password_hash.eq(password_hash),
            users::token_version.eq(users::token_version + 1),
            users::updated_at.eq(diesel::dsl::now),
        ))
        .returning(User::as_returning())
        .get_result(conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::not_found("user"))
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
            // Made by someone with the server's credentials: nothing to prove.
            users::email_verified_at.eq(Some(Utc::now())),
        ))
        .on_conflict(users::email)
        .do_update()
        .set((
            users::password_hash.eq(password_hash),
            users::is_operator.eq(true),
            users::email_verified_at.eq(Some(Utc::now())),
            users::updated_at.eq(diesel::dsl::now),
        ))
        .returning(User::as_returning())
        .get_result(conn)
        .await?)
}
