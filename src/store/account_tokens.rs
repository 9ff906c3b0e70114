//! Single-use account tokens and the emails that carry them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::{outbox, schema::account_tokens, users::User, DbConn};
use crate::{
    domain::{
        account_email::{AccountEmail, AccountMailSettings},
        account_token::{self, TokenPurpose},
        email::EmailAddress,
        outbox::{EmailKind, OutgoingEmail},
    },
    error::{AppError, AppResult},
};

/// Account emails to one person are queued at most once per this many seconds and
/// kind: repeated sign-ups or reset requests for someone else's address cannot flood
/// their inbox. The token of a suppressed email is stored but never sent.
const EMAIL_BUCKET_SECS: i64 = 300;

/// Stores a new token for `user_id` and returns it with its expiry.
async fn issue(
    conn: &mut DbConn,
    user_id: Uuid,
    purpose: TokenPurpose,
    settings: &AccountMailSettings,
) -> AppResult<(String, DateTime<Utc>)> {
    let (secret, hash) = account_token::generate();
    let lifetime = chrono::Duration::from_std(settings.lifetimes.of(purpose)).map_err(AppError::internal)?;
    let expires_at = Utc::now() + lifetime;
    diesel::insert_into(account_tokens::table)
        .values((
            account_tokens::id.eq(Uuid::now_v7()),
            account_tokens::user_id.eq(user_id),
            account_tokens::purpose.eq(purpose.as_str()),
            account_tokens::token_hash.eq(hash.as_slice()),
            account_tokens::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .await?;
    Ok((secret, expires_at))
}

/// Issues a token and queues `email` with it to `user`, in the caller's transaction.
/// Wake the outbox worker after the commit.
pub async fn send(
    conn: &mut DbConn,
    user: &User,
    email: AccountEmail,
    settings: &AccountMailSettings,
) -> AppResult<outbox::Enqueued> {
    let purpose = email.purpose();
    let (secret, expires_at) = issue(conn, user.id, purpose, settings).await?;
    let rendered = email.render(&settings.api_base, &secret, expires_at);
    let kind = match purpose {
        TokenPurpose::EmailVerification => EmailKind::EmailVerification,
        TokenPurpose::PasswordReset => EmailKind::PasswordReset,
    };
    let bucket = Utc::now().timestamp().div_euclid(EMAIL_BUCKET_SECS);
    let recipient = EmailAddress::parse(&user.email).map_err(|e| AppError::internal(anyhow::anyhow!("{e}")))?;
    let outgoing = OutgoingEmail::new(
        kind,
        None,
        format!("{}:{}:{bucket}", email.throttle_name(), user.id),
        vec![recipient],
        rendered.subject,
        rendered.text,
        rendered.html,
    )
    .map_err(|e| AppError::internal(anyhow::anyhow!("account email: {e}")))?;
    outbox::enqueue(conn, &outgoing).await
}

/// Uses up a token of `purpose`: the user it was issued to, or `None` when it is
/// unknown, of another purpose, used or expired. Concurrent uses of one token: the
/// row update lets exactly one through.
pub async fn consume(conn: &mut DbConn, secret: &str, purpose: TokenPurpose) -> AppResult<Option<Uuid>> {
    if !account_token::looks_valid(secret) {
        return Ok(None);
    }
    let hash = account_token::hash(secret);
    Ok(diesel::update(
        account_tokens::table
            .filter(account_tokens::token_hash.eq(hash.as_slice()))
            .filter(account_tokens::purpose.eq(purpose.as_str()))
            .filter(account_tokens::used_at.is_null())
            .filter(account_tokens::expires_at.gt(diesel::dsl::now)),
    )
    .set(account_tokens::used_at.eq(diesel::dsl::now))
    .returning(account_tokens::user_id)
    .get_result(conn)
    .await
    .optional()?)
}

/// Uses up every open token of `purpose` of a user (after a password reset, the other
/// reset emails in their inbox stop working).
pub async fn revoke_all(conn: &mut DbConn, user_id: Uuid, purpose: TokenPurpose) -> AppResult<()> {
    diesel::update(
        account_tokens::table
            .filter(account_tokens::user_id.eq(user_id))
            .filter(account_tokens::purpose.eq(purpose.as_str()))
            .filter(account_tokens::used_at.is_null()),
    )
    .set(account_tokens::used_at.eq(diesel::dsl::now))
    .execute(conn)
    .await?;
    Ok(())
}
