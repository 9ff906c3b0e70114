//! API keys of a project: create (secret shown once), list, revoke, rotate.

use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    extract::{AuthUser, JsonBody},
    paths::{KeyPath, ProjectPath},
    schemas::DisplayName,
    state::AppState,
    validate,
};
use crate::{
    domain::{api_key::KeyStatus, names::Name, role::Access, Invalid},
    error::{AppResult, Problem},
    store::{
        self,
        api_keys::{ApiKey, CreatedKey, NewKey},
    },
};

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyView {
    id: Uuid,
    org_id: Uuid,
    project_id: Uuid,
    name: String,
    /// The first characters of the secret, to recognise the key by.
    #[schema(example = "mp_3kF9xQ2a")]
    prefix: String,
    status: KeyStatus,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    /// For a rotated key, when its grace period ends (may be in the future).
    revoked_at: Option<DateTime<Utc>>,
    /// Updated at most once a minute.
    last_used_at: Option<DateTime<Utc>>,
    /// The key that replaced this one by rotation.
    replaced_by: Option<Uuid>,
}

impl From<ApiKey> for ApiKeyView {
    fn from(k: ApiKey) -> Self {
        let status = KeyStatus::at(k.revoked_at, k.expires_at, Utc::now());
        Self {
            id: k.id,
            org_id: k.org_id,
            project_id: k.project_id,
            name: k.name,
            prefix: k.prefix,
            status,
            created_at: k.created_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            last_used_at: k.last_used_at,
            replaced_by: k.replaced_by,
        }
    }
}

/// A new key. `secret` appears in this response only and cannot be retrieved later.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedApiKey {
    #[serde(flatten)]
    key: ApiKeyView,
    secret: String,
}

impl From<CreatedKey> for CreatedApiKey {
    fn from(c: CreatedKey) -> Self {
        Self {
            key: c.key.into(),
            secret: c.secret,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"name": "checkout-service", "expiresAt": "2030-01-01T00:00:00Z"}))]
pub struct CreateApiKey {
    #[schema(value_type = DisplayName)]
    name: String,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"gracePeriodSeconds": 3600}))]
pub struct RotateApiKey {
    /// How long the old key keeps working, in seconds (at most 7 days).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 604800, default = 0)]
    grace_period_seconds: i64,
}

const MAX_GRACE_SECONDS: i64 = 7 * 24 * 3600;

fn future_expiry(at: DateTime<Utc>) -> Result<DateTime<Utc>, Invalid> {
    if at <= Utc::now() {
        Err(Invalid::new("must be in the future"))
    } else {
        Ok(at)
    }
}

fn grace_period(seconds: i64) -> Result<chrono::Duration, Invalid> {
    if (0..=MAX_GRACE_SECONDS).contains(&seconds) {
        Ok(chrono::Duration::seconds(seconds))
    } else {
        Err(Invalid::new(format!("must be between 0 and {MAX_GRACE_SECONDS}")))
    }
}

/// Creates a key for the project; the response carries the secret, once.
#[utoipa::path(
    tag = "api keys",
    security(("bearer" = [])),
    params(ProjectPath),
    request_body = CreateApiKey,
    responses(
        (status = 201, description = "The key with its secret, shown this once", body = CreatedApiKey),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 422, body = Problem),
    )
)]
#[post("/orgs/{orgId}/projects/{projectId}/keys")]
pub async fn create_api_key(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<ProjectPath>,
    body: JsonBody<CreateApiKey>,
) -> AppResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    let (name, expires_at) = validate::all2(
        validate::field("name", Name::parse(&body.name)),
        validate::optional("expiresAt", body.expires_at.map(future_expiry)),
    )?;
    let created = store::api_keys::create(
        &mut conn,
        &access,
        path.project_id,
        NewKey { name, expires_at },
        state.api_key_pepper(),
    )
    .await?;
    tracing::info!(key_id = %created.key.id, prefix = %created.key.prefix, "api key created");
    Ok(HttpResponse::Created().json(CreatedApiKey::from(created)))
}

/// The project's keys, listed by their visible prefix.
#[utoipa::path(
    tag = "api keys",
    security(("bearer" = [])),
    params(ProjectPath),
    responses((status = 200, description = "The project's keys (never their secrets)", body = Vec<ApiKeyView>), (status = 401, body = Problem), (status = 404, body = Problem))
)]
#[get("/orgs/{orgId}/projects/{projectId}/keys")]
pub async fn list_api_keys(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<ProjectPath>,
) -> AppResult<web::Json<Vec<ApiKeyView>>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Read).await?;
    let keys = store::api_keys::list(&mut conn, &access, path.project_id).await?;
    Ok(web::Json(keys.into_iter().map(ApiKeyView::from).collect()))
}

/// One key (never its secret).
#[utoipa::path(
    tag = "api keys",
    security(("bearer" = [])),
    params(KeyPath),
    responses((status = 200, description = "The key", body = ApiKeyView), (status = 401, body = Problem), (status = 404, body = Problem))
)]
#[get("/orgs/{orgId}/projects/{projectId}/keys/{keyId}")]
pub async fn get_api_key(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<KeyPath>,
) -> AppResult<web::Json<ApiKeyView>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Read).await?;
    Ok(web::Json(
        store::api_keys::get(&mut conn, &access, path.project_id, path.key_id)
            .await?
            .into(),
    ))
}

/// Revokes the key at once; calls with it are refused from now on.
#[utoipa::path(
    tag = "api keys",
    security(("bearer" = [])),
    params(KeyPath),
    responses(
        (status = 200, description = "The key, now revoked", body = ApiKeyView),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[post("/orgs/{orgId}/projects/{projectId}/keys/{keyId}/revoke")]
pub async fn revoke_api_key(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<KeyPath>,
) -> AppResult<web::Json<ApiKeyView>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    let (key, hash) = store::api_keys::revoke(&mut conn, &access, path.project_id, path.key_id).await?;
    state.keys.forget(&hash).await;
    tracing::info!(key_id = %key.id, "api key revoked");
    Ok(web::Json(key.into()))
}

/// Issues a new secret for the key; the old one keeps working for the grace period.
#[utoipa::path(
    tag = "api keys",
    security(("bearer" = [])),
    params(KeyPath),
    request_body = RotateApiKey,
    responses(
        (status = 201, description = "The key's new secret, shown this once", body = CreatedApiKey),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 409, description = "The key is revoked, expired or already rotated", body = Problem),
        (status = 422, body = Problem),
    )
)]
#[post("/orgs/{orgId}/projects/{projectId}/keys/{keyId}/rotate")]
pub async fn rotate_api_key(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<KeyPath>,
    body: JsonBody<RotateApiKey>,
) -> AppResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    let grace = validate::one(validate::field(
        "gracePeriodSeconds",
        grace_period(body.grace_period_seconds),
    ))?;
    let (created, old_hash) = store::api_keys::rotate(
        &mut conn,
        &access,
        path.project_id,
        path.key_id,
        grace,
        state.api_key_pepper(),
    )
    .await?;
    state.keys.forget(&old_hash).await;
    tracing::info!(old_key_id = %path.key_id, new_key_id = %created.key.id, "api key rotated");
    Ok(HttpResponse::Created().json(CreatedApiKey::from(created)))
}
