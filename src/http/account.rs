//! The account's own security: confirming the email address, resetting a forgotten
//! password by email, and changing the password (which signs out every other token).

use actix_web::{post, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{
    auth::{hash_password, token_for, CheckEmailResponse, TokenResponse, UserView},
    extract::{client_ip, AuthUser, JsonBody},
    schemas::NewPassword,
    state::AppState,
    validate,
};
use crate::{
    auth::throttle::Attempt,
    domain::{
        account_email::AccountEmail,
        account_token::TokenPurpose,
        email::EmailAddress,
        password::{self, Password},
    },
    error::{AppError, AppResult, ErrorCode, Problem},
    store,
};

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"token": "5f0c2b7e9a1d4c3b8e6f0a2d4c6e8b0a1c3e5f7a9b2d4f6a8c0e2a4c6e8f0b2d"}))]
pub struct VerifyEmailRequest {
    /// The token from the verification email.
    token: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com"}))]
pub struct PasswordResetRequest {
    email: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"token": "5f0c2b7e9a1d4c3b8e6f0a2d4c6e8b0a1c3e5f7a9b2d4f6a8c0e2a4c6e8f0b2d", "password": "a new long passphrase"}))]
pub struct PasswordResetConfirm {
    /// The token from the reset email.
    token: String,
    #[schema(value_type = NewPassword)]
    password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"currentPassword": "correct horse battery", "newPassword": "a new long passphrase"}))]
pub struct ChangePasswordRequest {
    current_password: String,
    #[schema(value_type = NewPassword)]
    new_password: String,
}

fn invalid_token() -> AppError {
    AppError::new(ErrorCode::InvalidToken, "the token is unknown, already used or expired")
}

/// Confirms the account's email address with the token from the verification email.
///
/// A token works once.
#[utoipa::path(
    tag = "auth",
    request_body = VerifyEmailRequest,
    responses(
        (status = 200, description = "The address is confirmed", body = UserView),
        (status = 400, description = "`invalid_token`: unknown, already used or expired", body = Problem),
    )
)]
#[post("/auth/verify-email")]
pub async fn verify_email(
    state: web::Data<AppState>,
    body: JsonBody<VerifyEmailRequest>,
) -> AppResult<web::Json<UserView>> {
    let mut conn = state.conn().await?;
    let user = diesel_async::AsyncConnection::transaction(&mut *conn, async |conn| {
        let user_id = store::account_tokens::consume(conn, &body.token, TokenPurpose::EmailVerification)
            .await?
            .ok_or_else(invalid_token)?;
        store::users::mark_verified(conn, user_id).await
    })
    .await?;
    tracing::info!(user_id = %user.id, "email address verified");
    Ok(web::Json(user.into()))
}

/// Sends the signed-in account a new verification email.
///
/// For when the first one was lost or its token has expired. Earlier verification tokens keep working until they expire. Resent emails go out
/// at most once every five minutes (a clock-aligned window): a repeat within it is
/// answered the same and sends nothing.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "A verification email is on its way", body = CheckEmailResponse),
        (status = 401, body = Problem),
        (status = 409, description = "`conflict`: the address is already verified", body = Problem),
    )
)]
#[post("/auth/verify-email/resend")]
pub async fn resend_verification(state: web::Data<AppState>, caller: AuthUser) -> AppResult<HttpResponse> {
    let settings = &state.config.auth.account_mail;
    let mut conn = state.conn().await?;
    let enqueued = diesel_async::AsyncConnection::transaction(&mut *conn, async |conn| {
        let user = store::users::find(conn, caller.0.user_id)
            .await?
            .ok_or_else(|| AppError::unauthorized("the access token is invalid"))?;
        if user.email_verified() {
            return Err(AppError::new(
                ErrorCode::Conflict,
                "the email address is already verified",
            ));
        }
        store::account_tokens::send(conn, &user, AccountEmail::VerifyAgain, settings).await
    })
    .await?;
    if enqueued.needs_delivery() {
        state.outbox.notify();
    }
    Ok(HttpResponse::Accepted().json(CheckEmailResponse::new("A verification email is on its way.")))
}

/// Sends a password-reset email with a single-use, expiring token.
///
/// The answer is the same whether or not the address has an account.
#[utoipa::path(
    tag = "auth",
    request_body = PasswordResetRequest,
    responses(
        (status = 202, description = "If the address has an account, a reset email is on its way", body = CheckEmailResponse),
    )
)]
#[post("/auth/password-reset")]
pub async fn request_password_reset(
    state: web::Data<AppState>,
    body: JsonBody<PasswordResetRequest>,
) -> AppResult<HttpResponse> {
    // A malformed address has no account either: the same answer.
    if let Ok(email) = EmailAddress::parse(&body.email) {
        let settings = &state.config.auth.account_mail;
        let mut conn = state.conn().await?;
        let enqueued = diesel_async::AsyncConnection::transaction(&mut *conn, async |conn| {
            match store::users::find_by_email(conn, &email).await? {
                Some(user) => Ok(Some(
                    store::account_tokens::send(conn, &user, AccountEmail::Reset, settings).await?,
                )),
                None => Ok::<_, AppError>(None),
            }
        })
        .await?;
        if enqueued.is_some_and(|e| e.needs_delivery()) {
            state.outbox.notify();
        }
    }
    Ok(HttpResponse::Accepted().json(CheckEmailResponse::new(
        "If this address has an account, an email with a reset token is on its way.",
    )))
}

/// Sets a new password with the token from a reset email.
///
/// The token works once; the account's other reset tokens and every access token
/// issued before stop working.
/// Receiving the email proves the address, so the account counts as verified.
#[utoipa::path(
    tag = "auth",
    request_body = PasswordResetConfirm,
    responses(
        (status = 204, description = "The password is changed; sign in with it"),
        (status = 400, description = "`invalid_token`: unknown, already used or expired", body = Problem),
        (status = 422, body = Problem),
    )
)]
#[post("/auth/password-reset/confirm")]
pub async fn confirm_password_reset(
    state: web::Data<AppState>,
    body: JsonBody<PasswordResetConfirm>,
) -> AppResult<HttpResponse> {
    let body = body.into_inner();
    // Checked before the token is used up, so a too-short password costs no token.
    let password = validate::one(validate::field("password", Password::parse(&body.password)))?;
    let password_hash = hash_password(password).await?;
    let mut conn = state.conn().await?;
    let user = diesel_async::AsyncConnection::transaction(&mut *conn, async |conn| {
        let user_id = store::account_tokens::consume(conn, &body.token, TokenPurpose::PasswordReset)
            .await?
            .ok_or_else(invalid_token)?;
        store::account_tokens::revoke_all(conn, user_id, TokenPurpose::PasswordReset).await?;
        store::users::set_password(conn, user_id, &password_hash).await?;
        store::users::mark_verified(conn, user_id).await
    })
    .await?;
    tracing::info!(user_id = %user.id, "password reset by email");
    Ok(HttpResponse::NoContent().finish())
}

/// Changes the signed-in account's password and signs out every other session.
///
/// Every access token issued before stops working; the answer carries a fresh one.
/// Wrong current passwords count towards login throttling.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses(
        (status = 200, description = "Changed: a new access token (the old ones no longer work)", body = TokenResponse),
        (status = 401, body = Problem),
        (status = 422, description = "The current password is wrong, or the new one breaks the rules", body = Problem),
        (status = 429, description = "Too many wrong current passwords", body = Problem,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
#[post("/auth/password")]
pub async fn change_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: AuthUser,
    body: JsonBody<ChangePasswordRequest>,
) -> AppResult<web::Json<TokenResponse>> {
    let body = body.into_inner();
    let new_password = validate::one(validate::field("newPassword", Password::parse(&body.new_password)))?;
    let mut conn = state.conn().await?;
    let user = store::users::find(&mut conn, caller.0.user_id)
        .await?
        .ok_or_else(|| AppError::unauthorized("the access token is invalid"))?;
    let attempt = Attempt::new(
        &user.email,
        client_ip(&req, state.config.auth.client_ip_header.as_deref()),
    );
    state.login_throttle.check(&attempt).await?;
    let stored = user.password_hash.clone();
    let current = body.current_password;
    let matches = web::block(move || password::verify(&current, &stored))
        .await
        .map_err(AppError::internal)?;
    if !matches {
        state.login_throttle.failed(&attempt).await;
        return Err(AppError::invalid_field(
            "currentPassword",
            "is not the account's password",
        ));
    }
    let password_hash = hash_password(new_password).await?;
    let user = store::users::set_password(&mut conn, user.id, &password_hash).await?;
    tracing::info!(user_id = %user.id, "password changed");
    Ok(web::Json(token_for(&state, &user)?))
}
