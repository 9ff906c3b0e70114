//! The authorize decision log: why a call was denied (or, for a sample, allowed).

use actix_web::{get, web};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    extract::AuthUser,
    paging,
    paths::OrgPath,
    schemas::{FilterText, Money},
    state::AppState,
    validate::query_text,
};
use crate::{
    domain::{
        decision::{DecisionReason, LimitKind, ScopeSnapshot},
        micros::from_micros,
        role::Access,
    },
    error::{AppResult, Problem},
    store::{
        self,
        decisions::{Cursor, DecisionFilter, DecisionRow},
    },
};

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct DecisionQuery {
    /// The tenant's customer id (`user` on the call).
    #[param(inline, value_type = Option<FilterText>)]
    customer: Option<String>,
    #[param(inline, value_type = Option<FilterText>)]
    agent: Option<String>,
    /// `false` for denials only.
    allowed: Option<bool>,
    /// Inclusive bounds (RFC 3339).
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    /// Page size.
    #[param(minimum = 1, maximum = 500, default = 50)]
    limit: Option<i64>,
    /// Opaque: `nextCursor` of the previous page. Absent or empty: the first page.
    cursor: Option<String>,
}

/// The limit that decided a denial, and where its counter stood.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecidingLimitView {
    kind: LimitKind,
    /// USD for a budget; a count per minute for rate limits.
    #[schema(value_type = Money)]
    limit: Decimal,
    /// Settled spend (USD) or the minute's requests or tokens so far.
    #[schema(value_type = Money)]
    counter: Decimal,
    /// Spend reserved by calls in flight (budgets only; USD).
    #[schema(value_type = Money)]
    reserved: Decimal,
}

/// One scope checked by the decision and its counters at that moment.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckedScopeView {
    scope: String,
    scope_id: Uuid,
    /// The budget in force (USD); absent without one.
    #[schema(value_type = Option<Money>)]
    budget: Option<Decimal>,
    #[schema(value_type = Money)]
    spent: Decimal,
    #[schema(value_type = Money)]
    reserved: Decimal,
    requests_per_minute: Option<i64>,
    requests_this_minute: i64,
    tokens_per_minute: Option<i64>,
    tokens_this_minute: i64,
}

impl From<ScopeSnapshot> for CheckedScopeView {
    fn from(s: ScopeSnapshot) -> Self {
        Self {
            scope: s.scope,
            scope_id: s.scope_id,
            budget: s.budget_micros.map(from_micros),
            spent: from_micros(s.spent_micros),
            reserved: from_micros(s.reserved_micros),
            requests_per_minute: s.requests_per_minute,
            requests_this_minute: s.requests_this_minute,
            tokens_per_minute: s.tokens_per_minute,
            tokens_this_minute: s.tokens_this_minute,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionView {
    id: Uuid,
    decided_at: DateTime<Utc>,
    request_id: Option<String>,
    project_id: Uuid,
    api_key_id: Uuid,
    customer: Option<String>,
    agent: Option<String>,
    endpoint: Option<String>,
    provider: Option<String>,
    model: Option<String>,
    allowed: bool,
    reason: DecisionReason,
    /// The scope whose limit decided a denial.
    scope: Option<String>,
    scope_id: Option<Uuid>,
    deciding_limit: Option<DecidingLimitView>,
    #[schema(value_type = Option<Money>)]
    estimated_cost: Option<Decimal>,
    estimated_tokens: Option<i64>,
    checked_scopes: Vec<CheckedScopeView>,
    /// An allowed call logged as part of the sample (denials are always logged).
    sampled: bool,
}

impl From<DecisionRow> for DecisionView {
    fn from(r: DecisionRow) -> Self {
        let deciding_limit = r
            .limit_kind
            .as_deref()
            .and_then(|k| k.parse().ok())
            .map(|kind| DecidingLimitView {
                kind,
                limit: r.limit_value.unwrap_or_default().normalize(),
                counter: r.counter_value.unwrap_or_default().normalize(),
                reserved: r.reserved_value.unwrap_or_default().normalize(),
            });
        let checked: Vec<ScopeSnapshot> = serde_json::from_value(r.scopes).unwrap_or_default();
        Self {
            id: r.id,
            decided_at: r.decided_at,
            request_id: r.request_id,
            project_id: r.project_id,
            api_key_id: r.api_key_id,
            customer: r.customer,
            agent: r.agent,
            endpoint: r.endpoint,
            provider: r.provider,
            model: r.model,
            allowed: r.allowed,
            // Written from the same enum; an unknown value would be a newer writer's code.
            reason: r.reason.parse().unwrap_or(if r.allowed {
                DecisionReason::Allowed
            } else {
                DecisionReason::BudgetExceeded
            }),
            scope: r.scope,
            scope_id: r.scope_id,
            deciding_limit,
            estimated_cost: r.estimated_cost.map(|c| c.normalize()),
            estimated_tokens: r.estimated_tokens,
            checked_scopes: checked.into_iter().map(CheckedScopeView::from).collect(),
            sampled: r.sampled,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionPage {
    data: Vec<DecisionView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next_cursor: Option<String>,
}

/// The organization's authorize decisions, newest first.
///
/// Every denial is logged with the limit that decided it, the counter and the
/// reservations at that moment; allowed calls are logged as a sample.
#[utoipa::path(
    tag = "budgets",
    security(("bearer" = [])),
    params(OrgPath, DecisionQuery),
    responses(
        (status = 200, description = "A page of decisions, newest first", body = DecisionPage),
        (status = 401, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[get("/orgs/{orgId}/decisions")]
pub async fn list_decisions(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
    query: web::Query<DecisionQuery>,
) -> AppResult<web::Json<DecisionPage>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Read).await?;
    let q = query.into_inner();
    let limit = paging::page_size(q.limit)?;
    paging::check_range(q.from, q.to)?;
    let after = paging::cursor(q.cursor.as_deref())?.map(|(decided_at, id)| Cursor { decided_at, id });
    let filter = DecisionFilter {
        customer: query_text("customer", q.customer)?,
        agent: query_text("agent", q.agent)?,
        allowed: q.allowed,
        from: q.from,
        to: q.to,
    };
    let (rows, next) = store::decisions::page(&mut conn, &access, &filter, after, limit).await?;
    Ok(web::Json(DecisionPage {
        data: rows.into_iter().map(DecisionView::from).collect(),
        next_cursor: next.map(|c| paging::encode_cursor(c.decided_at, c.id)),
    }))
}
