//! Daily activity of an organization: the fields of LLM Gateway's activity API, from
//! the daily roll-ups, one entry per day of the window (days without traffic too).

use std::collections::BTreeMap;

use actix_web::{get, web};
use chrono::{NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{extract::AuthUser, paths::OrgPath, schemas::Money, state::AppState};
use crate::{
    domain::{
        activity::{percent_of, window, DayWindow, WindowError},
        role::Access,
    },
    error::{AppError, AppResult, ErrorCode, Problem},
    store::{
        self,
        activity::{ActivityFilter, DayGroup, Grouping},
        usage::RollupSums,
    },
};

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct ActivityQuery {
    /// Days back from today (UTC), today included. Default 7, or the retention when it
    /// is shorter. `from`/`to` override it.
    #[param(minimum = 1, maximum = 366)]
    days: Option<i64>,
    /// First day, `YYYY-MM-DD` (UTC), inclusive.
    #[param(value_type = Option<String>, format = Date)]
    from: Option<String>,
    /// Last day, `YYYY-MM-DD` (UTC), inclusive. Default today.
    #[param(value_type = Option<String>, format = Date)]
    to: Option<String>,
    project_id: Option<Uuid>,
    api_key_id: Option<Uuid>,
    /// Add each day's usage per API key.
    #[serde(default)]
    api_key_breakdown: bool,
    /// Add each day's usage per customer.
    #[serde(default)]
    customer_breakdown: bool,
}

/// The window answered, and one entry per day of it, oldest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActivityResponse {
    from: NaiveDate,
    to: NaiveDate,
    activity: Vec<DayActivity>,
}

/// One UTC day. Token counts: `inputTokens` includes `cachedTokens`; `totalTokens` is
/// input plus output. Costs are what was charged (after discounts) unless named
/// otherwise; `discountSavings` is what discounts took off.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DayActivity {
    date: NaiveDate,
    request_count: i64,
    input_tokens: i64,
    output_tokens: i64,
    cached_tokens: i64,
    total_tokens: i64,
    #[schema(value_type = Money)]
    cost: Decimal,
    #[schema(value_type = Money)]
    input_cost: Decimal,
    #[schema(value_type = Money)]
    output_cost: Decimal,
    #[schema(value_type = Money)]
    request_cost: Decimal,
    #[schema(value_type = Money)]
    cached_input_cost: Decimal,
    /// Image inputs are billed as input tokens by the catalog's providers, so this is
    /// zero: per-image charges are for generated images (`imageOutputCost`).
    #[schema(value_type = Money)]
    image_input_cost: Decimal,
    #[schema(value_type = Money)]
    image_output_cost: Decimal,
    #[schema(value_type = Money)]
    data_storage_cost: Decimal,
    /// Calls paid with Meterplane credits.
    credits_request_count: i64,
    /// Calls paid with the tenant's own provider keys.
    api_keys_request_count: i64,
    #[schema(value_type = Money)]
    credits_cost: Decimal,
    #[schema(value_type = Money)]
    api_keys_cost: Decimal,
    #[schema(value_type = Money)]
    credits_data_storage_cost: Decimal,
    #[schema(value_type = Money)]
    api_keys_data_storage_cost: Decimal,
    #[schema(value_type = Money)]
    discount_savings: Decimal,
    error_count: i64,
    /// Failed calls, in percent of `requestCount` (0 to 100, two decimals).
    #[schema(minimum = 0, maximum = 100)]
    error_rate: f64,
    /// Calls answered from a cache.
    cache_count: i64,
    /// Cached calls, in percent of `requestCount` (0 to 100, two decimals).
    #[schema(minimum = 0, maximum = 100)]
    cache_rate: f64,
    model_breakdown: Vec<ModelUsage>,
    /// Present when asked for (`apiKeyBreakdown=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key_breakdown: Option<Vec<ApiKeyUsage>>,
    /// Present when asked for (`customerBreakdown=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_breakdown: Option<Vec<CustomerUsage>>,
}

/// One model's share of a day.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelUsage {
    /// The catalog id (or the reported name, lower-cased, when the catalog lacks it).
    id: String,
    provider: String,
    request_count: i64,
    input_tokens: i64,
    output_tokens: i64,
    total_tokens: i64,
    #[schema(value_type = Money)]
    cost: Decimal,
}

/// One API key's share of a day.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyUsage {
    id: Uuid,
    name: String,
    request_count: i64,
    total_tokens: i64,
    #[schema(value_type = Money)]
    cost: Decimal,
}

/// One customer's share of a day; `id` and `externalId` are absent for calls that
/// named no customer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerUsage {
    id: Option<Uuid>,
    external_id: Option<String>,
    request_count: i64,
    total_tokens: i64,
    #[schema(value_type = Money)]
    cost: Decimal,
}

/// Daily usage, cost and reliability of the organization.
///
/// One entry per UTC day of the window, days without calls included (with zeros), each
/// with its models. Read from the daily roll-ups, so it costs the same whatever the
/// traffic. A window reaching before the organization's retention is refused (400
/// `retention_exceeded`, with `earliestAllowedDate`) rather than answered in part.
#[utoipa::path(
    tag = "activity",
    security(("bearer" = [])),
    params(OrgPath, ActivityQuery),
    responses(
        (status = 200, description = "One entry per day of the window", body = ActivityResponse),
        (status = 400, description = "A malformed window, or one reaching before the retention (`retention_exceeded`)", body = Problem),
        (status = 401, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[get("/orgs/{orgId}/activity")]
pub async fn get_activity(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
    query: web::Query<ActivityQuery>,
) -> AppResult<web::Json<ActivityResponse>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Read).await?;
    let org = store::orgs::get(&mut conn, &access).await?;
    let q = query.into_inner();
    let window = window(
        q.days,
        q.from.as_deref(),
        q.to.as_deref(),
        Utc::now(),
        org.retention_days,
    )
    .map_err(window_error)?;
    let filter = ActivityFilter {
        window,
        project_id: q.project_id,
        api_key_id: q.api_key_id,
    };
    let models = store::activity::by_day(&mut conn, &access, &filter, Grouping::Model).await?;
    let keys = match q.api_key_breakdown {
        true => Some(store::activity::by_day(&mut conn, &access, &filter, Grouping::ApiKey).await?),
        false => None,
    };
    let customers = match q.customer_breakdown {
        true => Some(store::activity::by_day(&mut conn, &access, &filter, Grouping::Customer).await?),
        false => None,
    };
    Ok(web::Json(ActivityResponse {
        from: window.from,
        to: window.to,
        activity: days(window, models, keys, customers),
    }))
}

pub fn window_error(e: WindowError) -> AppError {
    match e {
        WindowError::Invalid(name, message) => {
            AppError::new(ErrorCode::InvalidQueryParameter, format!("{name}: {message}"))
        }
        WindowError::RetentionExceeded { earliest } => AppError::retention_exceeded(earliest),
    }
}

/// Rows per day, keyed by day.
fn per_day(rows: Vec<DayGroup>) -> BTreeMap<NaiveDate, Vec<DayGroup>> {
    let mut days: BTreeMap<NaiveDate, Vec<DayGroup>> = BTreeMap::new();
    for row in rows {
        days.entry(row.day).or_default().push(row);
    }
    days
}

fn days(
    window: DayWindow,
    models: Vec<DayGroup>,
    keys: Option<Vec<DayGroup>>,
    customers: Option<Vec<DayGroup>>,
) -> Vec<DayActivity> {
    let mut models = per_day(models);
    let mut keys = keys.map(per_day);
    let mut customers = customers.map(per_day);
    window
        .each_day()
        .map(|day| {
            let day_models = models.remove(&day).unwrap_or_default();
            let mut total = RollupSums::default();
            for m in &day_models {
                total.add(&m.sums);
            }
            let mut entry = day_activity(day, &total);
            entry.model_breakdown = day_models.into_iter().map(model_usage).collect();
            entry.api_key_breakdown = keys.as_mut().map(|k| {
                k.remove(&day)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(key_usage)
                    .collect()
            });
            entry.customer_breakdown = customers.as_mut().map(|c| {
                c.remove(&day)
                    .unwrap_or_default()
                    .into_iter()
                    .map(customer_usage)
                    .collect()
            });
            entry
        })
        .collect()
}

fn day_activity(date: NaiveDate, s: &RollupSums) -> DayActivity {
    DayActivity {
        date,
        request_count: s.requests,
        input_tokens: s.prompt_tokens,
        output_tokens: s.completion_tokens,
        cached_tokens: s.cached_tokens,
        total_tokens: s.prompt_tokens + s.completion_tokens,
        cost: s.cost.normalize(),
        input_cost: s.input_cost.normalize(),
        output_cost: s.output_cost.normalize(),
        request_cost: s.request_cost.normalize(),
        cached_input_cost: s.cached_input_cost.normalize(),
        image_input_cost: Decimal::ZERO,
        image_output_cost: s.image_cost.normalize(),
        data_storage_cost: s.data_storage_cost.normalize(),
        credits_request_count: s.credits_requests,
        api_keys_request_count: s.api_keys_requests,
        credits_cost: s.credits_cost.normalize(),
        api_keys_cost: s.api_keys_cost.normalize(),
        credits_data_storage_cost: s.credits_data_storage_cost.normalize(),
        api_keys_data_storage_cost: s.api_keys_data_storage_cost.normalize(),
        discount_savings: s.discount_savings.normalize(),
        error_count: s.errors,
        error_rate: percent_of(s.errors, s.requests),
        cache_count: s.cache_hits,
        cache_rate: percent_of(s.cache_hits, s.requests),
        model_breakdown: Vec::new(),
        api_key_breakdown: None,
        customer_breakdown: None,
    }
}

fn model_usage(row: DayGroup) -> ModelUsage {
    let s = &row.sums;
    ModelUsage {
        id: row.group_id.unwrap_or_default(),
        provider: row.label.unwrap_or_default(),
        request_count: s.requests,
        input_tokens: s.prompt_tokens,
        output_tokens: s.completion_tokens,
        total_tokens: s.prompt_tokens + s.completion_tokens,
        cost: s.cost.normalize(),
    }
}

fn key_usage(row: DayGroup) -> Option<ApiKeyUsage> {
    let s = &row.sums;
    Some(ApiKeyUsage {
        id: row.group_id.as_deref()?.parse().ok()?,
        name: row.label.unwrap_or_default(),
        request_count: s.requests,
        total_tokens: s.prompt_tokens + s.completion_tokens,
        cost: s.cost.normalize(),
    })
}

fn customer_usage(row: DayGroup) -> CustomerUsage {
    let s = &row.sums;
    CustomerUsage {
        id: row.group_id.as_deref().and_then(|id| id.parse().ok()),
        external_id: row.label,
        request_count: s.requests,
        total_tokens: s.prompt_tokens + s.completion_tokens,
        cost: s.cost.normalize(),
    }
}
