//! Budgets of a scope: set (create or replace), list, read, change, reset, remove.

use actix_web::{delete, get, patch, post, put, web, HttpResponse};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    extract::{AuthUser, JsonBody},
    paging,
    paths::{OrgPath, ScopePath},
    schemas::{self, Money, ThresholdPercent},
    state::AppState,
    validate::Fields,
};
use crate::{
    domain::{
        budget::{self, BudgetAmount, BudgetChanges, BudgetScope, BudgetSettings, Thresholds},
        period::BudgetPeriod,
        role::Access,
    },
    error::{AppError, AppResult, FieldError, Problem},
    store::{
        self,
        access::OrgAccess,
        budgets::{Budget, BudgetWithSpend},
        scopes::Subject,
        DbConn,
    },
};

/// Whose budget applies to a scope.
#[derive(Serialize, ToSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "camelCase")]
pub enum BudgetSource {
    /// The scope's own.
    Own,
    /// The organization's default for customers (or agents).
    Default,
}

/// A budget with what counts towards it in its current period. Amounts in USD.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetView {
    /// The budget row: for `source: default`, the organization's default.
    id: Uuid,
    source: BudgetSource,
    scope: BudgetScope,
    /// The customer, agent, API key or project; the organization's own id for
    /// `organization`.
    scope_id: Uuid,
    #[schema(value_type = Money)]
    amount: Decimal,
    period: BudgetPeriod,
    /// Alert thresholds in percent of `amount`, ascending.
    #[schema(value_type = Vec<ThresholdPercent>, example = json!([50, 80, 100]))]
    thresholds: Vec<i32>,
    /// Deny calls once spend reaches `amount`; otherwise alerts only.
    hard_limit: bool,
    /// Spend counted in the current period: from the later of `periodStart` and
    /// `resetAt`, from the durable spend ledger.
    #[schema(value_type = Money)]
    spent: Decimal,
    /// `amount − spent`, never below 0.
    #[schema(value_type = Money)]
    remaining: Decimal,
    period_start: DateTime<Utc>,
    /// When the period ends and spend starts over; absent for `total`.
    period_end: Option<DateTime<Utc>>,
    /// The last reset, when it falls in the current period.
    reset_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl BudgetView {
    /// The view of `w` for the scope `scope_id` (a default budget has none of its own).
    fn build(w: BudgetWithSpend, scope_id: Uuid) -> Self {
        let b = w.budget;
        Self {
            id: b.id,
            source: if b.scope_id.is_some() {
                BudgetSource::Own
            } else {
                BudgetSource::Default
            },
            scope: b.scope,
            scope_id,
            amount: b.amount.normalize(),
            period: b.period,
            thresholds: b.thresholds,
            hard_limit: b.hard_limit,
            spent: w.spend.cost.normalize(),
            remaining: budget::remaining(b.amount, w.spend.cost).normalize(),
            period_start: w.spend.window.start,
            period_end: w.spend.window.end,
            reset_at: w.spend.reset_at,
            created_at: b.created_at,
            updated_at: b.updated_at,
        }
    }

    fn own(w: BudgetWithSpend) -> AppResult<Self> {
        let scope_id = w
            .budget
            .scope_id
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("a default budget shown as a scope's own")))?;
        Ok(Self::build(w, scope_id))
    }
}

/// A whole budget. `period` is one of `daily`, `weekly` (ISO weeks from Monday 00:00
/// UTC), `monthly`, `total`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"amount": "100", "period": "monthly", "thresholds": [50, 80, 100], "hardLimit": true}))]
pub struct SetBudget {
    /// USD, more than 0, at most 1,000,000,000, at most 10 decimal places.
    #[serde(deserialize_with = "schemas::decimal_text")]
    #[schema(value_type = schemas::BudgetAmount)]
    amount: Decimal,
    #[schema(value_type = BudgetPeriod)]
    period: String,
    /// Percentages 1–100, at most 10, any order; default `[50, 80, 100]`. `[]`: no alerts.
    #[serde(default)]
    #[schema(value_type = Option<Vec<ThresholdPercent>>, max_items = 10)]
    thresholds: Option<Vec<i64>>,
    /// Default `true`: calls are denied at 100 %. `false`: alerts only.
    #[serde(default)]
    hard_limit: Option<bool>,
}

impl SetBudget {
    /// The settings, or every field that breaks a rule.
    pub fn parse(&self) -> Result<BudgetSettings, Vec<FieldError>> {
        let mut f = Fields::default();
        let amount = f.take("amount", BudgetAmount::parse(self.amount));
        let period = f.take("period", BudgetPeriod::parse(&self.period));
        let thresholds = match &self.thresholds {
            Some(raw) => f.take("thresholds", Thresholds::parse(raw)),
            None => Some(Thresholds::default()),
        };
        match (amount, period, thresholds) {
            (Some(amount), Some(period), Some(thresholds)) => Ok(BudgetSettings {
                amount,
                period,
                thresholds,
                hard_limit: self.hard_limit.unwrap_or(true),
            }),
            _ => Err(f.into_errors()),
        }
    }
}

/// Any of a budget's values; the rest stay. Spend already made in the period keeps
/// counting, also when the period changes (spend is kept per day).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"amount": "250", "period": "weekly"}))]
pub struct ChangeBudget {
    #[serde(default, deserialize_with = "schemas::optional_decimal_text")]
    #[schema(value_type = Option<schemas::BudgetAmount>)]
    amount: Option<Decimal>,
    #[serde(default)]
    #[schema(value_type = Option<BudgetPeriod>)]
    period: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<ThresholdPercent>>, max_items = 10)]
    thresholds: Option<Vec<i64>>,
    #[serde(default)]
    hard_limit: Option<bool>,
}

impl ChangeBudget {
    fn parse(&self) -> AppResult<BudgetChanges> {
        let mut f = Fields::default();
        let changes = BudgetChanges {
            amount: self.amount.and_then(|a| f.take("amount", BudgetAmount::parse(a))),
            period: self
                .period
                .as_deref()
                .and_then(|p| f.take("period", BudgetPeriod::parse(p))),
            thresholds: self
                .thresholds
                .as_deref()
                .and_then(|t| f.take("thresholds", Thresholds::parse(t))),
            hard_limit: self.hard_limit,
        };
        if f.is_empty() {
            Ok(changes)
        } else {
            Err(AppError::validation(f.into_errors()))
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct ListQuery {
    /// Only budgets of this scope.
    scope: Option<BudgetScope>,
    /// Page size.
    #[param(minimum = 1, maximum = 500, default = 50)]
    limit: Option<i64>,
    /// Opaque: `nextCursor` of the previous page. Absent or empty: the first page.
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetPage {
    data: Vec<BudgetView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next_cursor: Option<Uuid>,
}

async fn view(conn: &mut DbConn, access: &OrgAccess, budget: Budget) -> AppResult<BudgetView> {
    let mut views = store::budgets::with_spend(conn, access, vec![budget], Utc::now()).await?;
    BudgetView::own(
        views
            .pop()
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("no spend for a budget")))?,
    )
}

/// The organization's budgets with their current spend, oldest first.
///
/// Only budgets of a scope of their own; the defaults for customers and agents are at
/// `/defaults/{kind}`.
#[utoipa::path(
    tag = "budgets",
    security(("bearer" = [])),
    params(OrgPath, ListQuery),
    responses(
        (status = 200, description = "A page of budgets", body = BudgetPage),
        (status = 401, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[get("/orgs/{orgId}/budgets")]
pub async fn list_budgets(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
    query: web::Query<ListQuery>,
) -> AppResult<web::Json<BudgetPage>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Read).await?;
    let limit = paging::page_size(query.limit)?;
    let mut rows = store::budgets::list(
        &mut conn,
        &access,
        query.scope,
        paging::id_cursor(query.cursor.as_deref())?,
        limit + 1,
    )
    .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let next_cursor = more.then(|| rows.last().map(|b| b.id)).flatten();
    let with_spend = store::budgets::with_spend(&mut conn, &access, rows, Utc::now()).await?;
    Ok(web::Json(BudgetPage {
        data: with_spend.into_iter().map(BudgetView::own).collect::<AppResult<_>>()?,
        next_cursor,
    }))
}

/// Sets a scope's budget, creating or replacing it.
///
/// 201 when the scope had none, 200 when it replaces the one it had. Spend already
/// made in the current period counts towards the new budget.
#[utoipa::path(
    tag = "budgets",
    security(("bearer" = [])),
    params(ScopePath),
    request_body = SetBudget,
    responses(
        (status = 200, description = "Replaced", body = BudgetView),
        (status = 201, description = "Created", body = BudgetView),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, description = "No such organization or scope target", body = Problem),
        (status = 422, body = Problem),
    )
)]
#[put("/orgs/{orgId}/budgets/{scope}/{scopeId}")]
pub async fn set_budget(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<ScopePath>,
    body: JsonBody<SetBudget>,
) -> AppResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    let settings = body.parse().map_err(AppError::validation)?;
    let (budget, created) = store::budgets::put(&mut conn, &access, Subject::Target(path.target()), &settings).await?;
    state.enforcer.forget_rules(path.org_id);
    let view = view(&mut conn, &access, budget).await?;
    Ok(if created {
        HttpResponse::Created().json(view)
    } else {
        HttpResponse::Ok().json(view)
    })
}

/// A scope's own budget and its current spend.
#[utoipa::path(
    tag = "budgets",
    security(("bearer" = [])),
    params(ScopePath),
    responses(
        (status = 200, description = "The budget", body = BudgetView),
        (status = 401, body = Problem),
        (status = 404, description = "No such scope, or it has no budget of its own", body = Problem),
    )
)]
#[get("/orgs/{orgId}/budgets/{scope}/{scopeId}")]
pub async fn get_budget(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<ScopePath>,
) -> AppResult<web::Json<BudgetView>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Read).await?;
    let budget = store::budgets::get(&mut conn, &access, path.target()).await?;
    Ok(web::Json(view(&mut conn, &access, budget).await?))
}

/// Changes some of a budget's values; spend already made keeps counting.
#[utoipa::path(
    tag = "budgets",
    security(("bearer" = [])),
    params(ScopePath),
    request_body = ChangeBudget,
    responses(
        (status = 200, description = "The changed budget", body = BudgetView),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 422, body = Problem),
    )
)]
#[patch("/orgs/{orgId}/budgets/{scope}/{scopeId}")]
pub async fn change_budget(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<ScopePath>,
    body: JsonBody<ChangeBudget>,
) -> AppResult<web::Json<BudgetView>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    let changes = body.parse()?;
    let budget = store::budgets::change(&mut conn, &access, path.target(), &changes).await?;
    state.enforcer.forget_rules(path.org_id);
    Ok(web::Json(view(&mut conn, &access, budget).await?))
}

/// Removes a scope's own budget and its spend reset.
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
#[delete("/orgs/{orgId}/budgets/{scope}/{scopeId}")]
pub async fn delete_budget(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<ScopePath>,
) -> AppResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    if store::budgets::delete(&mut conn, &access, Subject::Target(path.target())).await? {
        state.enforcer.forget_rules(path.org_id);
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(AppError::not_found("budget"))
    }
}

/// Starts a scope's spend over now.
///
/// What the scope spent before this instant no longer counts towards its budget (its
/// own or, for a customer or agent, the default), in this period or any later one.
/// Events recorded afterwards that are stamped on an earlier day of the period do not
/// count either; those stamped earlier today do. Answers the budget in force with its
/// spend after the reset.
#[utoipa::path(
    tag = "budgets",
    security(("bearer" = [])),
    params(ScopePath),
    responses(
        (status = 200, description = "The budget in force, spend started over", body = BudgetView),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, description = "No budget applies to the scope", body = Problem),
    )
)]
#[post("/orgs/{orgId}/budgets/{scope}/{scopeId}/reset")]
pub async fn reset_budget(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<ScopePath>,
) -> AppResult<web::Json<BudgetView>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    let now = Utc::now();
    let reset = store::budgets::reset(&mut conn, &access, path.target(), now).await?;
    drop(conn);
    // The Redis spend counters hold what was spent before the reset: set them from
    // the ledger again. The reset is committed either way; if Redis cannot be reached
    // now, the counters keep the old spend until they are next rebuilt.
    if let Err(e) = state.enforcer.rebuild(path.org_id, now).await {
        tracing::warn!(error = %e, org_id = %path.org_id, "spend reset; counters not rebuilt yet");
    }
    Ok(web::Json(BudgetView::build(reset, path.scope_id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_broken_budget_field_is_named() {
        let body = SetBudget {
            amount: Decimal::NEGATIVE_ONE,
            period: "montly".into(),
            thresholds: Some(vec![50, 120]),
            hard_limit: None,
        };
        let errors = body.parse().unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["amount", "period", "thresholds"]);
    }
}
