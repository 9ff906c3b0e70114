//! Customers and agents — the parties a tenant's calls are made for — with what their
//! listing shows: current-period spend from the ledger, the budget and rate limits in
//! force (their own, else the organization's default) and whether they are blocked.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::{
    pg::Pg,
    sql_types::{Array, BigInt, Bool, Date, Int4, Int8, Nullable, Numeric, Text, Timestamptz, Uuid as SqlUuid},
    QueryableByName,
};
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{access::OrgAccess, DbConn};
use crate::{
    domain::{
        budget::{BudgetScope, DefaultScope},
        period::BudgetPeriod,
        role::Access,
    },
    error::{AppError, AppResult},
};

/// The period whose spend a party without any budget is listed with.
pub const UNBUDGETED_PERIOD: BudgetPeriod = BudgetPeriod::Monthly;

#[derive(Debug, Clone, QueryableByName)]
pub struct PartyRow {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Text)]
    pub external_id: String,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub blocked_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub blocked_by: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    pub block_reason: Option<String>,
    /// The budget in force; `None` when neither an own nor a default budget exists.
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub budget_id: Option<Uuid>,
    #[diesel(sql_type = Bool)]
    pub own_budget: bool,
    #[diesel(sql_type = Nullable<Numeric>)]
    pub amount: Option<Decimal>,
    #[diesel(sql_type = Nullable<Text>)]
    pub period: Option<String>,
    #[diesel(sql_type = Nullable<Array<Int4>>)]
    pub thresholds: Option<Vec<i32>>,
    #[diesel(sql_type = Nullable<Bool>)]
    pub hard_limit: Option<bool>,
    /// Rate limits in force: present when an own or a default row exists.
    #[diesel(sql_type = Bool)]
    pub has_limits: bool,
    #[diesel(sql_type = Bool)]
    pub own_limits: bool,
    #[diesel(sql_type = Nullable<Int4>)]
    pub requests_per_minute: Option<i32>,
    #[diesel(sql_type = Nullable<Int8>)]
    pub tokens_per_minute: Option<i64>,
    /// The last reset, when it falls in the current window.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub reset_at: Option<DateTime<Utc>>,
    /// Spend counted in the current period of the budget in force (else the month).
    #[diesel(sql_type = Numeric)]
    pub spent: Decimal,
}

impl PartyRow {
    /// The period the row's spend covers.
    pub fn period(&self) -> AppResult<BudgetPeriod> {
        match self.period.as_deref() {
            Some(raw) => raw
                .parse()
                .map_err(|_| AppError::internal(anyhow::anyhow!("unknown stored period `{raw}`"))),
            None => Ok(UNBUDGETED_PERIOD),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PartySort {
    /// Highest current-period spend first.
    #[default]
    SpendDesc,
    SpendAsc,
    /// Most recently seen for the first time first.
    Newest,
    ExternalId,
}

impl PartySort {
    fn order_by(self) -> &'static str {
        match self {
            Self::SpendDesc => "spent DESC, id",
            Self::SpendAsc => "spent ASC, id",
            Self::Newest => "created_at DESC, id DESC",
            Self::ExternalId => "external_id, id",
        }
    }
}

/// Which parties, in which order, which page.
#[derive(Debug, Clone)]
pub struct PartyQuery {
    pub id: Option<Uuid>,
    pub external_id: Option<String>,
    pub blocked: Option<bool>,
    pub sort: PartySort,
    pub limit: i64,
    pub offset: i64,
}

fn table(kind: DefaultScope) -> &'static str {
    match kind {
        DefaultScope::Customer => "customers",
        DefaultScope::Agent => "agents",
    }
}

fn scope(kind: DefaultScope) -> BudgetScope {
    kind.scope()
}

/// One page of customers (or agents), ordered by `sort`, with their spend, budget and
/// limits as of `now`. Spend comes from the ledger over the current window of the
/// budget in force (the month when none applies), from its last reset when that falls
/// inside it: the SQL form of `domain::budget::counted`, so a party's spend here is
/// the spend its budget reports.
pub async fn page(
    conn: &mut DbConn,
    access: &OrgAccess,
    kind: DefaultScope,
    query: &PartyQuery,
    now: DateTime<Utc>,
) -> AppResult<Vec<PartyRow>> {
    let first_day = |p: BudgetPeriod| -> NaiveDate { p.window(now).first_day() };
    let sql = format!(
        "WITH p AS ( \
           SELECT x.id, x.external_id, x.created_at, x.blocked_at, x.blocked_by, x.block_reason, \
             coalesce(ob.id, db.id) AS budget_id, ob.id IS NOT NULL AS own_budget, \
             coalesce(ob.amount, db.amount) AS amount, coalesce(ob.period, db.period) AS period, \
             coalesce(ob.thresholds, db.thresholds) AS thresholds, coalesce(ob.hard_limit, db.hard_limit) AS hard_limit, \
             coalesce(ol.id, dl.id) IS NOT NULL AS has_limits, ol.id IS NOT NULL AS own_limits, \
             CASE WHEN ol.id IS NOT NULL THEN ol.requests_per_minute ELSE dl.requests_per_minute END AS requests_per_minute, \
             CASE WHEN ol.id IS NOT NULL THEN ol.tokens_per_minute ELSE dl.tokens_per_minute END AS tokens_per_minute, \
             r.reset_at, r.day AS reset_day, r.day_cost, \
             CASE coalesce(ob.period, db.period) WHEN 'daily' THEN $3::date WHEN 'weekly' THEN $4::date \
               WHEN 'total' THEN $6::date ELSE $5::date END AS window_day \
           FROM {table} x \
           LEFT JOIN budgets ob ON ob.org_id = x.org_id AND ob.scope = $2 AND ob.scope_id = x.id \
           LEFT JOIN budgets db ON db.org_id = x.org_id AND db.scope = $2 AND db.scope_id IS NULL \
           LEFT JOIN rate_limits ol ON ol.org_id = x.org_id AND ol.scope = $2 AND ol.scope_id = x.id \
           LEFT JOIN rate_limits dl ON dl.org_id = x.org_id AND dl.scope = $2 AND dl.scope_id IS NULL \
           LEFT JOIN spend_resets r ON r.org_id = x.org_id AND r.scope = $2 AND r.scope_id = x.id \
           WHERE x.org_id = $1 AND ($7::uuid IS NULL OR x.id = $7) AND ($8::text IS NULL OR x.external_id = $8) \
             AND ($9::bool IS NULL OR (x.blocked_at IS NOT NULL) = $9) \
         ), s AS ( \
           SELECT p.*, CASE WHEN p.reset_day >= p.window_day THEN p.reset_day ELSE p.window_day END AS counted_day, \
             CASE WHEN p.reset_day >= p.window_day THEN p.day_cost ELSE 0 END AS minus \
           FROM p \
         ) \
         SELECT s.id, s.external_id, s.created_at, s.blocked_at, s.blocked_by, s.block_reason, s.budget_id, \
           s.own_budget, s.amount, s.period, s.thresholds, s.hard_limit, s.has_limits, s.own_limits, \
           s.requests_per_minute, s.tokens_per_minute, \
           CASE WHEN s.reset_day >= s.window_day THEN s.reset_at END AS reset_at, \
           greatest(coalesce(l.cost, 0) - s.minus, 0) AS spent \
         FROM s LEFT JOIN LATERAL ( \
           SELECT sum(cost) AS cost FROM spend_ledger \
           WHERE org_id = $1 AND scope = $2 AND scope_id = s.id AND day >= s.counted_day \
         ) l ON true \
         ORDER BY {order} LIMIT $10 OFFSET $11",
        table = table(kind),
        order = query.sort.order_by(),
    );
    let rows = diesel::sql_query(sql)
        .into_boxed::<Pg>()
        .bind::<SqlUuid, _>(access.org_id())
        .bind::<Text, _>(scope(kind).as_str())
        .bind::<Date, _>(first_day(BudgetPeriod::Daily))
        .bind::<Date, _>(first_day(BudgetPeriod::Weekly))
        .bind::<Date, _>(first_day(BudgetPeriod::Monthly))
        .bind::<Date, _>(first_day(BudgetPeriod::Total))
        .bind::<Nullable<SqlUuid>, _>(query.id)
        .bind::<Nullable<Text>, _>(query.external_id.clone())
        .bind::<Nullable<Bool>, _>(query.blocked)
        .bind::<BigInt, _>(query.limit)
        .bind::<BigInt, _>(query.offset)
        .load(conn)
        .await?;
    Ok(rows)
}

/// One customer (or agent) of the caller's organization.
pub async fn get(
    conn: &mut DbConn,
    access: &OrgAccess,
    kind: DefaultScope,
    id: Uuid,
    now: DateTime<Utc>,
) -> AppResult<PartyRow> {
    let query = PartyQuery {
        id: Some(id),
        external_id: None,
        blocked: None,
        sort: PartySort::default(),
        limit: 1,
        offset: 0,
    };
    page(conn, access, kind, &query, now)
        .await?
        .pop()
        .ok_or_else(|| AppError::not_found(noun(kind)))
}

fn noun(kind: DefaultScope) -> &'static str {
    match kind {
        DefaultScope::Customer => "customer",
        DefaultScope::Agent => "agent",
    }
}

/// Blocks (with an optional reason) or, with `block: None`, unblocks a customer or
/// agent. Blocking one that is blocked keeps the first time and who did it, and
/// updates the reason.
pub async fn set_blocked(
    conn: &mut DbConn,
    access: &OrgAccess,
    kind: DefaultScope,
    id: Uuid,
    block: Option<Option<String>>,
) -> AppResult<()> {
    access.require(Access::Manage)?;
    let table = table(kind);
    let query = match block {
        Some(reason) => diesel::sql_query(format!(
            "UPDATE {table} SET blocked_at = coalesce(blocked_at, now()), \
             blocked_by = CASE WHEN blocked_at IS NULL THEN $3 ELSE blocked_by END, block_reason = $4 \
             WHERE org_id = $1 AND id = $2"
        ))
        .into_boxed::<Pg>()
        .bind::<SqlUuid, _>(access.org_id())
        .bind::<SqlUuid, _>(id)
        .bind::<SqlUuid, _>(access.user_id())
        .bind::<Nullable<Text>, _>(reason),
        None => diesel::sql_query(format!(
            "UPDATE {table} SET blocked_at = NULL, blocked_by = NULL, block_reason = NULL WHERE org_id = $1 AND id = $2"
        ))
        .into_boxed::<Pg>()
        .bind::<SqlUuid, _>(access.org_id())
        .bind::<SqlUuid, _>(id),
    };
    let updated = query.execute(conn).await?;
    if updated == 0 {
        return Err(AppError::not_found(noun(kind)));
    }
    Ok(())
}
