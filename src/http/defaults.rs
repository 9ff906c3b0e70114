//! The organization's defaults for customers and for agents: a budget and rate limits
//! that apply to each one without its own, from its very first request.

use actix_web::{delete, get, put, web, HttpResponse};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    budgets::SetBudget,
    extract::{AuthUser, JsonBody},
    paths::DefaultsPath,
    rate_limits::SetRateLimits,
    schemas::{Money, ThresholdPercent},
    state::AppState,
    validate,
};
use crate::{
    domain::{budget::DefaultScope, period::BudgetPeriod, role::Access},
    error::{AppError, AppResult, Problem},
    store::{self, budgets::Budget, defaults::Defaults, rate_limits::RateLimitRow},
};

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DefaultBudgetView {
    #[schema(value_type = Money)]
    amount: Decimal,
    period: BudgetPeriod,
    #[schema(value_type = Vec<ThresholdPercent>)]
    thresholds: Vec<i32>,
    hard_limit: bool,
    updated_at: DateTime<Utc>,
}

impl From<Budget> for DefaultBudgetView {
    fn from(b: Budget) -> Self {
        Self {
            amount: b.amount.normalize(),
            period: b.period,
            thresholds: b.thresholds,
            hard_limit: b.hard_limit,
            updated_at: b.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DefaultRateLimitsView {
    requests_per_minute: Option<i32>,
    tokens_per_minute: Option<i64>,
    updated_at: DateTime<Utc>,
}

impl From<RateLimitRow> for DefaultRateLimitsView {
    fn from(r: RateLimitRow) -> Self {
        Self {
            requests_per_minute: r.requests_per_minute,
            tokens_per_minute: r.tokens_per_minute,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DefaultsView {
    kind: DefaultScope,
    /// Absent: customers (or agents) without their own budget have none.
    budget: Option<DefaultBudgetView>,
    /// Absent: customers (or agents) without their own limits are not limited.
    rate_limits: Option<DefaultRateLimitsView>,
}

impl DefaultsView {
    fn new(kind: DefaultScope, d: Defaults) -> Self {
        Self {
            kind,
            budget: d.budget.map(Into::into),
            rate_limits: d.rate_limits.map(Into::into),
        }
    }
}

/// Both defaults at once; one left out (or null) is removed.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "budget": {"amount": "20", "period": "monthly", "thresholds": [80, 100], "hardLimit": true},
    "rateLimits": {"requestsPerMinute": 60}
}))]
pub struct SetDefaults {
    #[serde(default)]
    budget: Option<SetBudget>,
    #[serde(default)]
    rate_limits: Option<SetRateLimits>,
}

/// The budget and rate limits of every customer (or agent) without its own.
#[utoipa::path(
    tag = "budgets",
    security(("bearer" = [])),
    params(DefaultsPath),
    responses(
        (status = 200, description = "The defaults; absent parts are not set", body = DefaultsView),
        (status = 401, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[get("/orgs/{orgId}/defaults/{kind}")]
pub async fn get_defaults(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<DefaultsPath>,
) -> AppResult<web::Json<DefaultsView>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Read).await?;
    let defaults = store::defaults::get(&mut conn, &access, path.kind).await?;
    Ok(web::Json(DefaultsView::new(path.kind, defaults)))
}

/// Replaces the defaults for customers (or agents).
///
/// They apply at once to every customer (or agent) without its own budget or limits,
/// including those not seen yet. A part left out is removed.
#[utoipa::path(
    tag = "budgets",
    security(("bearer" = [])),
    params(DefaultsPath),
    request_body = SetDefaults,
    responses(
        (status = 200, description = "The defaults as set", body = DefaultsView),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 422, body = Problem),
    )
)]
#[put("/orgs/{orgId}/defaults/{kind}")]
pub async fn set_defaults(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<DefaultsPath>,
    body: JsonBody<SetDefaults>,
) -> AppResult<web::Json<DefaultsView>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    let budget = body.budget.as_ref().map(SetBudget::parse).transpose();
    let limits = body.rate_limits.as_ref().map(SetRateLimits::parse).transpose();
    let (budget, limits) = match (budget, limits) {
        (Ok(budget), Ok(limits)) => (budget, limits),
        (budget, limits) => {
            let mut errors = validate::nested("budget", budget.err().unwrap_or_default());
            errors.extend(validate::nested("rateLimits", limits.err().unwrap_or_default()));
            return Err(AppError::validation(errors));
        }
    };
    let defaults = store::defaults::replace(&mut conn, &access, path.kind, budget.as_ref(), limits).await?;
    state.enforcer.forget_rules(path.org_id);
    Ok(web::Json(DefaultsView::new(path.kind, defaults)))
}

/// Removes both defaults for customers (or agents).
#[utoipa::path(
    tag = "budgets",
    security(("bearer" = [])),
    params(DefaultsPath),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[delete("/orgs/{orgId}/defaults/{kind}")]
pub async fn delete_defaults(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<DefaultsPath>,
) -> AppResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    store::defaults::replace(&mut conn, &access, path.kind, None, None).await?;
    state.enforcer.forget_rules(path.org_id);
    Ok(HttpResponse::NoContent().finish())
}
