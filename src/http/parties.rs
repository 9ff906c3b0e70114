//! Customers and agents: listed with their spend, budget, rate limits and status;
//! blocked and unblocked. In paths they are named by their `id` (a UUID); the
//! `externalId` the gateway reports (`user`, `agentId`) is a filter of the listing.

use actix_web::{get, post, web};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    budgets::BudgetSource,
    extract::{AuthUser, JsonBody},
    paging,
    paths::{AgentPath, CustomerPath, OrgPath},
    schemas::{BlockReason, FilterText, Money, ThresholdPercent},
    state::AppState,
    validate::{self, query_text},
};
use crate::{
    domain::{
        budget::{self, DefaultScope},
        period::BudgetPeriod,
        role::Access,
        usage::bounded_text,
    },
    error::{AppError, AppResult, ErrorCode, Problem},
    store::{
        self,
        parties::{self, PartyRow, PartySort},
    },
};

const MAX_PAGE: i64 = paging::MAX_PAGE;

#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum PartyStatus {
    Active,
    /// Calls for it are denied until it is unblocked.
    Blocked,
}

/// The budget in force: the party's own, or the organization's default.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartyBudgetView {
    source: BudgetSource,
    #[schema(value_type = Money)]
    amount: Decimal,
    period: BudgetPeriod,
    #[schema(value_type = Vec<ThresholdPercent>)]
    thresholds: Vec<i32>,
    hard_limit: bool,
    /// `amount − spent`, never below 0.
    #[schema(value_type = Money)]
    remaining: Decimal,
}

/// The rate limits in force: the party's own (which replace the default as a whole),
/// or the organization's default.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartyRateLimitsView {
    source: BudgetSource,
    requests_per_minute: Option<i32>,
    tokens_per_minute: Option<i64>,
}

/// A customer or an agent of the organization.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartyView {
    id: Uuid,
    /// What the gateway reports: `user` for a customer, `agentId` for an agent.
    external_id: String,
    /// First seen.
    created_at: DateTime<Utc>,
    status: PartyStatus,
    blocked_at: Option<DateTime<Utc>>,
    /// The member who blocked it.
    blocked_by: Option<Uuid>,
    block_reason: Option<String>,
    /// USD spent in the current period of the budget in force (the calendar month when
    /// none applies), from the later of `periodStart` and `resetAt`.
    #[schema(value_type = Money)]
    spent: Decimal,
    period: BudgetPeriod,
    period_start: DateTime<Utc>,
    /// Absent for `total`.
    period_end: Option<DateTime<Utc>>,
    /// The last spend reset, when it falls in the current period.
    reset_at: Option<DateTime<Utc>>,
    budget: Option<PartyBudgetView>,
    rate_limits: Option<PartyRateLimitsView>,
}

fn source(own: bool) -> BudgetSource {
    if own {
        BudgetSource::Own
    } else {
        BudgetSource::Default
    }
}

impl PartyView {
    fn build(row: PartyRow, now: DateTime<Utc>) -> AppResult<Self> {
        let period = row.period()?;
        let window = period.window(now);
        let budget = match (row.budget_id, row.amount, row.hard_limit) {
            (Some(_), Some(amount), Some(hard_limit)) => Some(PartyBudgetView {
                source: source(row.own_budget),
                amount: amount.normalize(),
                period,
                thresholds: row.thresholds.clone().unwrap_or_default(),
                hard_limit,
                remaining: budget::remaining(amount, row.spent).normalize(),
            }),
            _ => None,
        };
        Ok(Self {
            id: row.id,
            external_id: row.external_id,
            created_at: row.created_at,
            status: if row.blocked_at.is_some() {
                PartyStatus::Blocked
            } else {
                PartyStatus::Active
            },
            blocked_at: row.blocked_at,
            blocked_by: row.blocked_by,
            block_reason: row.block_reason,
            spent: row.spent.normalize(),
            period,
            period_start: window.start,
            period_end: window.end,
            reset_at: row.reset_at,
            budget,
            rate_limits: row.has_limits.then_some(PartyRateLimitsView {
                source: source(row.own_limits),
                requests_per_minute: row.requests_per_minute,
                tokens_per_minute: row.tokens_per_minute,
            }),
        })
    }
}

#[derive(Deserialize, ToSchema, Clone, Copy, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub enum PartySortParam {
    /// Highest current-period spend first (the default).
    #[default]
    SpendDesc,
    SpendAsc,
    /// Most recently seen for the first time first.
    Newest,
    ExternalId,
}

impl From<PartySortParam> for PartySort {
    fn from(s: PartySortParam) -> Self {
        match s {
            PartySortParam::SpendDesc => Self::SpendDesc,
            PartySortParam::SpendAsc => Self::SpendAsc,
            PartySortParam::Newest => Self::Newest,
            PartySortParam::ExternalId => Self::ExternalId,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct PartyListQuery {
    // Inline: a query parameter's enum is not collected into the components.
    #[param(inline)]
    sort: Option<PartySortParam>,
    status: Option<PartyStatus>,
    /// Exactly this `user` (or `agentId`) as the gateway reports it.
    #[param(inline, value_type = Option<FilterText>)]
    external_id: Option<String>,
    /// Page size.
    #[param(minimum = 1, maximum = 500, default = 50)]
    limit: Option<i64>,
    /// Entries to skip. Spend moves while calls are recorded, so an entry can move
    /// between pages fetched at different times.
    #[param(minimum = 0, default = 0)]
    offset: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartyPage {
    data: Vec<PartyView>,
    /// Pass as `offset` for the next page; absent on the last page.
    next_offset: Option<i64>,
}

/// Why the customer (or agent) is blocked; optional.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"reason": "invoice overdue"}))]
pub struct BlockRequest {
    #[serde(default)]
    #[schema(value_type = Option<BlockReason>)]
    reason: Option<String>,
}

async fn list(
    state: &AppState,
    caller: &AuthUser,
    org_id: Uuid,
    kind: DefaultScope,
    q: PartyListQuery,
) -> AppResult<PartyPage> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, org_id, Access::Read).await?;
    let limit = q.limit.unwrap_or(paging::DEFAULT_PAGE);
    let offset = q.offset.unwrap_or(0);
    if !(1..=MAX_PAGE).contains(&limit) || offset < 0 {
        return Err(AppError::new(
            ErrorCode::InvalidQueryParameter,
            format!("limit must be between 1 and {MAX_PAGE}, offset at least 0"),
        ));
    }
    let query = parties::PartyQuery {
        id: None,
        external_id: query_text("externalId", q.external_id)?,
        blocked: q.status.map(|s| s == PartyStatus::Blocked),
        sort: q.sort.unwrap_or_default().into(),
        // One more than asked: whether another page follows.
        limit: limit + 1,
        offset,
    };
    let now = Utc::now();
    let mut rows = store::parties::page(&mut conn, &access, kind, &query, now).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    Ok(PartyPage {
        data: rows
            .into_iter()
            .map(|r| PartyView::build(r, now))
            .collect::<AppResult<_>>()?,
        next_offset: more.then(|| offset.saturating_add(limit)),
    })
}

async fn one(state: &AppState, caller: &AuthUser, org_id: Uuid, kind: DefaultScope, id: Uuid) -> AppResult<PartyView> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, org_id, Access::Read).await?;
    let now = Utc::now();
    PartyView::build(store::parties::get(&mut conn, &access, kind, id, now).await?, now)
}

async fn set_blocked(
    state: &AppState,
    caller: &AuthUser,
    org_id: Uuid,
    kind: DefaultScope,
    id: Uuid,
    block: Option<&BlockRequest>,
) -> AppResult<PartyView> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, org_id, Access::Manage).await?;
    let block = block
        .map(|b| {
            validate::one(validate::optional(
                "reason",
                b.reason.as_deref().map(|r| bounded_text(r, 500)),
            ))
        })
        .transpose()?;
    store::parties::set_blocked(&mut conn, &access, kind, id, block).await?;
    state.enforcer.forget_rules(org_id);
    let now = Utc::now();
    PartyView::build(store::parties::get(&mut conn, &access, kind, id, now).await?, now)
}

/// The organization's customers with spend, budget, rate limits and status.
///
/// Spend is the current period's of the budget in force (the calendar month without
/// one); the highest spend comes first unless `sort` says otherwise.
#[utoipa::path(
    tag = "customers and agents",
    security(("bearer" = [])),
    params(OrgPath, PartyListQuery),
    responses(
        (status = 200, description = "A page of customers", body = PartyPage),
        (status = 401, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[get("/orgs/{orgId}/customers")]
pub async fn list_customers(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
    query: web::Query<PartyListQuery>,
) -> AppResult<web::Json<PartyPage>> {
    Ok(web::Json(
        list(&state, &caller, path.org_id, DefaultScope::Customer, query.into_inner()).await?,
    ))
}

/// One customer with its spend, budget, rate limits and status.
#[utoipa::path(
    tag = "customers and agents",
    security(("bearer" = [])),
    params(CustomerPath),
    responses(
        (status = 200, description = "The customer", body = PartyView),
        (status = 401, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[get("/orgs/{orgId}/customers/{customerId}")]
pub async fn get_customer(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<CustomerPath>,
) -> AppResult<web::Json<PartyView>> {
    Ok(web::Json(
        one(&state, &caller, path.org_id, DefaultScope::Customer, path.customer_id).await?,
    ))
}

/// Blocks a customer: calls for it are denied until it is unblocked.
#[utoipa::path(
    tag = "customers and agents",
    security(("bearer" = [])),
    params(CustomerPath),
    request_body = BlockRequest,
    responses(
        (status = 200, description = "It, as it now stands", body = PartyView),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 422, body = Problem),
    )
)]
#[post("/orgs/{orgId}/customers/{customerId}/block")]
pub async fn block_customer(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<CustomerPath>,
    body: JsonBody<BlockRequest>,
) -> AppResult<web::Json<PartyView>> {
    let (org_id, id) = (path.org_id, path.customer_id);
    Ok(web::Json(
        set_blocked(&state, &caller, org_id, DefaultScope::Customer, id, Some(&body)).await?,
    ))
}

/// Unblocks a customer.
#[utoipa::path(
    tag = "customers and agents",
    security(("bearer" = [])),
    params(CustomerPath),
    responses(
        (status = 200, description = "It, as it now stands", body = PartyView),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[post("/orgs/{orgId}/customers/{customerId}/unblock")]
pub async fn unblock_customer(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<CustomerPath>,
) -> AppResult<web::Json<PartyView>> {
    let (org_id, id) = (path.org_id, path.customer_id);
    Ok(web::Json(
        set_blocked(&state, &caller, org_id, DefaultScope::Customer, id, None).await?,
    ))
}

/// The organization's agents with spend, budget, rate limits and status.
///
/// Spend is the current period's of the budget in force (the calendar month without
/// one); the highest spend comes first unless `sort` says otherwise.
#[utoipa::path(
    tag = "customers and agents",
    security(("bearer" = [])),
    params(OrgPath, PartyListQuery),
    responses(
        (status = 200, description = "A page of agents", body = PartyPage),
        (status = 401, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[get("/orgs/{orgId}/agents")]
pub async fn list_agents(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
    query: web::Query<PartyListQuery>,
) -> AppResult<web::Json<PartyPage>> {
    Ok(web::Json(
        list(&state, &caller, path.org_id, DefaultScope::Agent, query.into_inner()).await?,
    ))
}

/// One agent with its spend, budget, rate limits and status.
#[utoipa::path(
    tag = "customers and agents",
    security(("bearer" = [])),
    params(AgentPath),
    responses(
        (status = 200, description = "The agent", body = PartyView),
        (status = 401, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[get("/orgs/{orgId}/agents/{agentId}")]
pub async fn get_agent(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<AgentPath>,
) -> AppResult<web::Json<PartyView>> {
    Ok(web::Json(
        one(&state, &caller, path.org_id, DefaultScope::Agent, path.agent_id).await?,
    ))
}

/// Blocks an agent: calls to it are denied until it is unblocked.
#[utoipa::path(
    tag = "customers and agents",
    security(("bearer" = [])),
    params(AgentPath),
    request_body = BlockRequest,
    responses(
        (status = 200, description = "It, as it now stands", body = PartyView),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 422, body = Problem),
    )
)]
#[post("/orgs/{orgId}/agents/{agentId}/block")]
pub async fn block_agent(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<AgentPath>,
    body: JsonBody<BlockRequest>,
) -> AppResult<web::Json<PartyView>> {
    let (org_id, id) = (path.org_id, path.agent_id);
    Ok(web::Json(
        set_blocked(&state, &caller, org_id, DefaultScope::Agent, id, Some(&body)).await?,
    ))
}

/// Unblocks an agent.
#[utoipa::path(
    tag = "customers and agents",
    security(("bearer" = [])),
    params(AgentPath),
    responses(
        (status = 200, description = "It, as it now stands", body = PartyView),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[post("/orgs/{orgId}/agents/{agentId}/unblock")]
pub async fn unblock_agent(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<AgentPath>,
) -> AppResult<web::Json<PartyView>> {
    let (org_id, id) = (path.org_id, path.agent_id);
    Ok(web::Json(
        set_blocked(&state, &caller, org_id, DefaultScope::Agent, id, None).await?,
    ))
}
