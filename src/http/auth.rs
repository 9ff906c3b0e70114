//! Sign-up, login and the signed-in user's profile.

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    extract::{client_ip, AuthUser, JsonBody},
    orgs::OrganizationView,
    schemas::{DisplayName, Email, NewPassword},
    state::AppState,
    validate,
};
use crate::{
    auth::throttle::Attempt,
    domain::{
        account_email::AccountEmail,
        email::EmailAddress,
        names::Name,
        password::{self, Password},
        role::Role,
    },
    error::{AppError, AppResult, ErrorCode},
    store::{self, orgs::NewOrganization, users::NewUser},
};

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "password": "correct horse battery", "name": "Ada Lovelace", "organizationName": "Acme AI"}))]
pub struct SignupRequest {
    #[schema(value_type = Email)]
    email: String,
    #[schema(value_type = NewPassword)]
    password: String,
    #[serde(default)]
    #[schema(value_type = Option<DisplayName>)]
    name: Option<String>,
    /// When given, an organization is created with the new user as its owner.
    #[serde(default)]
    #[schema(value_type = Option<DisplayName>)]
    organization_name: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "password": "correct horse battery"}))]
pub struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    access_token: String,
    #[schema(example = "Bearer")]
    token_type: &'static str,
    /// Seconds until the token expires.
    expires_in: u64,
}

/// The answer to a sign-up or a password-reset request: the same whether or not the
/// address has an account, so neither reveals which addresses do.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"status": "check_email", "message": "Check your email to continue."}))]
pub struct CheckEmailResponse {
    #[schema(example = "check_email")]
    status: &'static str,
    message: &'static str,
}

impl CheckEmailResponse {
    pub fn new(message: &'static str) -> Self {
        Self {
            status: "check_email",
            message,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    id: Uuid,
    email: String,
    name: String,
    is_operator: bool,
    /// Whether the address is confirmed. Until it is, the account cannot accept
    /// invitations or act on organizations it did not create.
    email_verified: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MembershipView {
    organization: OrganizationView,
    role: Role,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingInvitation {
    /// Accept with `POST /v1/invitations/{id}/accept`.
    id: Uuid,
    org_id: Uuid,
    organization_name: String,
    role: Role,
    invited_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeResponse {
    user: UserView,
    memberships: Vec<MembershipView>,
    /// Organizations that invited this account's email address.
    invitations: Vec<PendingInvitation>,
}

impl From<store::users::User> for UserView {
    fn from(user: store::users::User) -> Self {
        Self {
            email_verified: user.email_verified(),
            id: user.id,
            email: user.email,
            name: user.display_name,
            is_operator: user.is_operator,
        }
    }
}

/// An access token for `user` at its current token version.
pub fn token_for(state: &AppState, user: &store::users::User) -> AppResult<TokenResponse> {
    let issued = state
        .jwt
        .issue(user.id, user.token_version)
        .map_err(AppError::internal)?;
    Ok(TokenResponse {
        access_token: issued.token,
        token_type: "Bearer",
        expires_in: issued.expires_in.as_secs(),
    })
}

/// Argon2 is deliberately slow: keep it off the async workers.
pub async fn hash_password(password: Password) -> AppResult<String> {
    web::block(move || password.hash())
        .await
        .map_err(AppError::internal)?
        .map_err(AppError::internal)
}

/// Creates an account (and optionally its first organization) and sends a verification email.
///
/// The answer is the same for an address that already has an
/// account; that address gets an email saying so instead (with a password-reset
/// token), so sign-up reveals nothing about who has an account.
#[utoipa::path(
    tag = "auth",
    request_body = SignupRequest,
    responses(
        (status = 202, description = "Check your email: a new account was created and its verification email queued, or the address already has an account and its owner was told", body = CheckEmailResponse),
        (status = 403, description = "Sign-up is disabled on this deployment", body = crate::error::Problem),
        (status = 422, body = crate::error::Problem),
    )
)]
#[post("/auth/signup")]
pub async fn signup(state: web::Data<AppState>, body: JsonBody<SignupRequest>) -> AppResult<HttpResponse> {
    if !state.config.auth.signup_enabled {
        return Err(AppError::new(
            ErrorCode::Disabled,
            "self-service sign-up is disabled on this deployment",
        ));
    }
    let body = body.into_inner();
    let (email, password, name, org_name) = validate::all4(
        validate::field("email", EmailAddress::parse(&body.email)),
        validate::field("password", Password::parse(&body.password)),
        validate::optional("name", body.name.as_deref().map(Name::parse)),
        validate::optional("organizationName", body.organization_name.as_deref().map(Name::parse)),
    )?;
    // Hashed for taken addresses too, so both answers take as long.
    let password_hash = hash_password(password).await?;
    let settings = &state.config.auth.account_mail;
    let mut conn = state.conn().await?;
    let display_name = name.map(Name::into_string).unwrap_or_default();
    let enqueued = diesel_async::AsyncConnection::transaction(&mut *conn, async |conn| {
        let new = NewUser {
            email: email.clone(),
            password_hash,
            display_name,
            is_operator: false,
        };
        let Some(user) = store::users::insert_if_new(conn, new).await? else {
            let existing = store::users::find_by_email(conn, &email)
                .await?
                .ok_or_else(|| AppError::internal(anyhow::anyhow!("a user vanished during sign-up")))?;
            // Also when the existing account is unverified: a verification email
            // would let whoever created it (maybe not the address's owner) keep its
            // password; a reset proves the address and replaces the password.
            return store::account_tokens::send(conn, &existing, AccountEmail::AlreadyRegistered, settings).await;
        };
        if let Some(name) = org_name {
            let new = NewOrganization {
                name,
                slug: None,
                alert_emails: vec![],
            };
            store::orgs::create(conn, user.id, new).await?;
        }
        store::account_tokens::send(conn, &user, AccountEmail::Verify, settings).await
    })
    .await?;
    if enqueued.needs_delivery() {
        state.outbox.notify();
    }
    Ok(HttpResponse::Accepted().json(CheckEmailResponse::new(
        "Check your email to confirm your address. You can sign in now; until the address is confirmed \
         you can act only on organizations you created.",
    )))
}

/// Exchanges email and password for a short-lived access token.
#[utoipa::path(
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in: a short-lived access token", body = TokenResponse),
        (status = 401, description = "Email and password do not match", body = crate::error::Problem),
        (status = 429, description = "Too many failed attempts for this account or from this address; `Retry-After` says when to try again", body = crate::error::Problem,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
#[post("/auth/login")]
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: JsonBody<LoginRequest>,
) -> AppResult<web::Json<TokenResponse>> {
    let body = body.into_inner();
    let attempt = Attempt::new(
        &body.email,
        client_ip(&req, state.config.auth.client_ip_header.as_deref()),
    );
    // Checked before the password is: a locked-out guesser learns nothing more.
    state.login_throttle.check(&attempt).await?;
    let wrong = || AppError::new(ErrorCode::InvalidCredentials, "email or password is incorrect");
    let user = match EmailAddress::parse(&body.email) {
        Ok(email) => store::users::find_by_email(&mut *state.conn().await?, &email).await?,
        Err(_) => None,
    };
    // Verify against a decoy hash for unknown emails, so timing does not reveal them.
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let candidate = body.password;
    let matches =
        web::block(move || password::verify(&candidate, stored.as_deref().unwrap_or(password::timing_decoy_hash())))
            .await
            .map_err(AppError::internal)?;
    match user {
        Some(user) if matches => {
            state.login_throttle.succeeded(&attempt).await;
            Ok(web::Json(token_for(&state, &user)?))
        }
        _ => {
            state.login_throttle.failed(&attempt).await;
            Err(wrong())
        }
    }
}

/// The signed-in user and the organizations they belong to.
#[utoipa::path(tag = "auth", security(("bearer" = [])), responses((status = 200, description = "The signed-in user, their organizations and open invitations", body = MeResponse), (status = 401, body = crate::error::Problem)))]
#[get("/me")]
pub async fn me(state: web::Data<AppState>, caller: AuthUser) -> AppResult<web::Json<MeResponse>> {
    let mut conn = state.conn().await?;
    let user = store::users::find(&mut conn, caller.0.user_id)
        .await?
        .ok_or_else(|| AppError::not_found("user"))?;
    let memberships = store::orgs::list_for_user(&mut conn, user.id)
        .await?
        .into_iter()
        .map(|(org, role)| MembershipView {
            organization: org.into(),
            role,
        })
        .collect();
    let invitations = store::invitations::open_for(&mut conn, &user.email)
        .await?
        .into_iter()
        .map(|(i, organization_name)| PendingInvitation {
            id: i.id,
            org_id: i.org_id,
            organization_name,
            role: i.role,
            invited_at: i.created_at,
        })
        .collect();
    Ok(web::Json(MeResponse {
        user: user.into(),
        memberships,
        invitations,
    }))
}
