//! Rate limits of a scope: requests and tokens per minute.

use actix_web::{delete, get, put, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    extract::{AuthUser, JsonBody},
    paging,
    paths::{OrgPath, ScopePath},
    state::AppState,
};
use crate::{
    domain::{
        budget::{BudgetScope, RateLimits},
        role::Access,
    },
    error::{AppError, AppResult, FieldError, Problem},
    store::{self, rate_limits::RateLimitRow, scopes::Subject},
};

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitView {
    scope: BudgetScope,
    /// The customer, agent, API key or project; the organization's own id for
    /// `organization`.
    scope_id: Uuid,
    /// Absent: requests are not limited.
    requests_per_minute: Option<i32>,
    /// Prompt + completion tokens; absent: not limited.
    tokens_per_minute: Option<i64>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<RateLimitRow> for RateLimitView {
    type Error = AppError;
    fn try_from(r: RateLimitRow) -> AppResult<Self> {
        Ok(Self {
            scope: r.scope,
            scope_id: r
                .scope_id
                .ok_or_else(|| AppError::internal(anyhow::anyhow!("a default rate limit shown as a scope's own")))?,
            requests_per_minute: r.requests_per_minute,
            tokens_per_minute: r.tokens_per_minute,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// Both limits; leave one out to not limit it. At least one is needed.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(min_properties = 1, example = json!({"requestsPerMinute": 600, "tokensPerMinute": 200000}))]
pub struct SetRateLimits {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, minimum = 1, maximum = 10_000_000)]
    requests_per_minute: Option<i64>,
    /// Prompt + completion tokens.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, minimum = 1, maximum = 10_000_000_000_i64)]
    tokens_per_minute: Option<i64>,
}

/// A limit given is a number: `null` is not "no limit" (leaving the field out is),
/// so the document can say that the object names at least one limit.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    i64::deserialize(deserializer).map(Some)
}

impl SetRateLimits {
    /// The limits, or the field that breaks a rule.
    pub fn parse(&self) -> Result<RateLimits, Vec<FieldError>> {
        RateLimits::parse(self.requests_per_minute, self.tokens_per_minute).map_err(|(field, e)| {
            vec![FieldError {
                field: field.to_owned(),
                message: e.0,
            }]
        })
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct ListQuery {
    /// Only limits of this scope.
    scope: Option<BudgetScope>,
    /// Page size.
    #[param(minimum = 1, maximum = 500, default = 50)]
    limit: Option<i64>,
    /// Opaque: `nextCursor` of the previous page. Absent or empty: the first page.
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitPage {
    data: Vec<RateLimitView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next_cursor: Option<Uuid>,
}

/// The organization's rate limits, oldest first.
///
/// Only limits of a scope of their own; the defaults for customers and agents are at
/// `/defaults/{kind}`.
#[utoipa::path(
    tag = "budgets",
    security(("bearer" = [])),
    params(OrgPath, ListQuery),
    responses(
        (status = 200, description = "A page of rate limits", body = RateLimitPage),
        (status = 401, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[get("/orgs/{orgId}/rate-limits")]
pub async fn list_rate_limits(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
    query: web::Query<ListQuery>,
) -> AppResult<web::Json<RateLimitPage>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Read).await?;
    let limit = paging::page_size(query.limit)?;
    let mut rows = store::rate_limits::list(
        &mut conn,
        &access,
        query.scope,
        paging::id_cursor(query.cursor.as_deref())?,
        limit + 1,
    )
    .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let next_cursor = more.then(|| rows.last().map(|r| r.id)).flatten();
    Ok(web::Json(RateLimitPage {
        data: rows
            .into_iter()
            .map(RateLimitView::try_from)
            .collect::<AppResult<_>>()?,
        next_cursor,
    }))
}

/// Sets a scope's rate limits, creating or replacing them.
///
/// 201 when the scope had none of its own, 200 when they replace its own.
#[utoipa::path(
    tag = "budgets",
    security(("bearer" = [])),
    params(ScopePath),
    request_body = SetRateLimits,
    responses(
        (status = 200, description = "Replaced", body = RateLimitView),
        (status = 201, description = "Created", body = RateLimitView),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, description = "No such organization or scope target", body = Problem),
        (status = 422, body = Problem),
    )
)]
#[put("/orgs/{orgId}/rate-limits/{scope}/{scopeId}")]
pub async fn set_rate_limits(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<ScopePath>,
    body: JsonBody<SetRateLimits>,
) -> AppResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    let limits = body.parse().map_err(AppError::validation)?;
    let (row, created) = store::rate_limits::put(&mut conn, &access, Subject::Target(path.target()), limits).await?;
    state.enforcer.forget_rules(path.org_id);
    let view = RateLimitView::try_from(row)?;
    Ok(if created {
        HttpResponse::Created().json(view)
    } else {
        HttpResponse::Ok().json(view)
    })
}

/// A scope's own rate limits.
#[utoipa::path(
    tag = "budgets",
    security(("bearer" = [])),
    params(ScopePath),
    responses(
        (status = 200, description = "The rate limits", body = RateLimitView),
        (status = 401, body = Problem),
        (status = 404, description = "No such scope, or it has no limits of its own", body = Problem),
    )
)]
#[get("/orgs/{orgId}/rate-limits/{scope}/{scopeId}")]
pub async fn get_rate_limits(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<ScopePath>,
) -> AppResult<web::Json<RateLimitView>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Read).await?;
    let row = store::rate_limits::get(&mut conn, &access, path.target()).await?;
    Ok(web::Json(row.try_into()?))
}

/// Removes a scope's own rate limits.
///
/// A customer or agent falls back to the organization's default, if any.
#[utoipa::path(
    tag = "budgets",
    security(("bearer" = [])),
    params(ScopePath),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[delete("/orgs/{orgId}/rate-limits/{scope}/{scopeId}")]
pub async fn delete_rate_limits(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<ScopePath>,
) -> AppResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    if store::rate_limits::delete(&mut conn, &access, Subject::Target(path.target())).await? {
        state.enforcer.forget_rules(path.org_id);
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(AppError::not_found("rate limit"))
    }
}
