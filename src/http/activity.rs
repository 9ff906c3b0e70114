//! Daily activity of an organization: the fields of LLM Gateway's activity API, from
//! the daily roll-ups, one entry per day of the window (days without traffic too).

use std::collections::BTreeMap;

use actix_web::{get, web};
use chrono::{NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    extract::AuthUser,
    paging,
    paths::OrgPath,
    schemas::{FilterText, Money},
    spend_logs::TokenParts,
    state::AppState,
    validate::query_text,
};
use crate::{
    domain::{
        activity::{percent_of, window, DayWindow, WindowError},
        role::Access,
    },
    error::{AppError, AppResult, ErrorCode, Problem},
    store::{
        self,
        activity::{ActivityFilter, DayGroup, Entity, EntityGroup, EntitySort, EntitySums, Grouping, Keys},
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
#[schema(example = json!({"from": "2026-12-02", "to": "2026-12-03", "activity": [
    {"date": "2026-12-02", "requestCount": 150, "inputTokens": 300000, "outputTokens": 45000, "cachedTokens": 20000,
     "totalTokens": 345000, "cost": "0.925", "inputCost": "0.52", "outputCost": "0.4", "requestCost": "0",
     "cachedInputCost": "0.005", "imageInputCost": "0", "imageOutputCost": "0", "dataStorageCost": "0",
     "cacheWrite5mCost": "0", "cacheWrite1hCost": "0", "reasoningCost": "0", "audioInputCost": "0", "audioOutputCost": "0",
     "cacheWrite5mTokens": 0, "cacheWrite1hTokens": 0, "reasoningTokens": 0, "audioInputTokens": 0, "audioOutputTokens": 0,
     "creditsRequestCount": 150, "apiKeysRequestCount": 0, "creditsCost": "0.925", "apiKeysCost": "0",
     "creditsDataStorageCost": "0", "apiKeysDataStorageCost": "0", "discountSavings": "0", "errorCount": 3,
     "errorRate": 2.0, "cacheCount": 15, "cacheRate": 10.0, "modelBreakdown": [
        {"id": "gpt-4o", "provider": "openai", "requestCount": 100, "inputTokens": 200000, "outputTokens": 30000, "totalTokens": 230000, "cost": "0.75"},
        {"id": "claude-haiku-4-5", "provider": "anthropic", "requestCount": 50, "inputTokens": 100000, "outputTokens": 15000, "totalTokens": 115000, "cost": "0.175"}
    ]},
    {"date": "2026-12-03", "requestCount": 0, "inputTokens": 0, "outputTokens": 0, "cachedTokens": 0,
     "totalTokens": 0, "cost": "0", "inputCost": "0", "outputCost": "0", "requestCost": "0",
     "cachedInputCost": "0", "imageInputCost": "0", "imageOutputCost": "0", "dataStorageCost": "0",
     "cacheWrite5mCost": "0", "cacheWrite1hCost": "0", "reasoningCost": "0", "audioInputCost": "0", "audioOutputCost": "0",
     "cacheWrite5mTokens": 0, "cacheWrite1hTokens": 0, "reasoningTokens": 0, "audioInputTokens": 0, "audioOutputTokens": 0,
     "creditsRequestCount": 0, "apiKeysRequestCount": 0, "creditsCost": "0", "apiKeysCost": "0",
     "creditsDataStorageCost": "0", "apiKeysDataStorageCost": "0", "discountSavings": "0", "errorCount": 0,
     "errorRate": 0.0, "cacheCount": 0, "cacheRate": 0.0, "modelBreakdown": []}
]}))]
pub struct ActivityResponse {
    from: NaiveDate,
    to: NaiveDate,
    activity: Vec<DayActivity>,
}

/// One UTC day. Token counts: `inputTokens` includes `cachedTokens`, the cache writes
/// and `audioInputTokens`; `outputTokens` includes `reasoningTokens` and
/// `audioOutputTokens`; `totalTokens` is input plus output. Costs are what was charged (after discounts) unless named
/// otherwise; `discountSavings` is what discounts took off.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DayActivity {
    date: NaiveDate,
    request_count: i64,
    input_tokens: i64,
    output_tokens: i64,
    cached_tokens: i64,
    #[serde(flatten)]
    token_parts: TokenParts,
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
    /// Prompt tokens written to 5-minute caches.
    #[schema(value_type = Money, example = "0.03")]
    cache_write_5m_cost: Decimal,
    /// Prompt tokens written to 1-hour caches.
    #[schema(value_type = Money, example = "0.012")]
    cache_write_1h_cost: Decimal,
    /// Reasoning tokens.
    #[schema(value_type = Money, example = "0.006")]
    reasoning_cost: Decimal,
    #[schema(value_type = Money, example = "0")]
    audio_input_cost: Decimal,
    #[schema(value_type = Money, example = "0")]
    audio_output_cost: Decimal,
    /// Images sent with the requests (`inputImages` × the price's `perInputImage`).
    #[schema(value_type = Money)]
    image_input_cost: Decimal,
    /// Images the calls generated (`images` × `perImage`).
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
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
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
    let q = query.into_inner();
    let (access, window) = org_window(
        &mut conn,
        &caller,
        path.org_id,
        q.days,
        q.from.as_deref(),
        q.to.as_deref(),
    )
    .await?;
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
        true => Some(
            store::activity::entity_details(&mut conn, &access, &filter, Entity::Customer, Keys::All, false).await?,
        ),
        false => None,
    };
    Ok(web::Json(ActivityResponse {
        from: window.from,
        to: window.to,
        activity: days(window, models, keys, customers),
    }))
}

/// The caller's read access to the organization, and the window asked for, checked
/// against the organization's retention.
async fn org_window(
    conn: &mut store::DbConn,
    caller: &AuthUser,
    org_id: Uuid,
    days: Option<i64>,
    from: Option<&str>,
    to: Option<&str>,
) -> AppResult<(store::access::OrgAccess, DayWindow)> {
    let access = store::access::authorize(conn, &caller.0, org_id, Access::Read).await?;
    let org = store::orgs::get(conn, &access).await?;
    let window = window(days, from, to, Utc::now(), org.retention_days).map_err(window_error)?;
    Ok((access, window))
}

pub(super) fn window_error(e: WindowError) -> AppError {
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
    customers: Option<Vec<EntityGroup>>,
) -> Vec<DayActivity> {
    let mut models = per_day(models);
    let mut keys = keys.map(per_day);
    let mut customers = customers.map(|rows| {
        let mut days: BTreeMap<NaiveDate, Vec<EntityGroup>> = BTreeMap::new();
        for row in rows {
            if let Some(day) = row.day {
                days.entry(day).or_default().push(row);
            }
        }
        days
    });
    window
        .each_day()
        .map(|day| {
            let day_models = models.remove(&day).unwrap_or_default();
            let mut total = RollupSums::default();
            for m in &day_models {
                total.add(&m.sums);
            }
            let mut entry = day_activity(day, &total);
            entry.model_breakdown = day_models
                .into_iter()
                .map(|m| model_usage(m.group_id, m.label, &EntitySums::from(&m.sums)))
                .collect();
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
        token_parts: TokenParts {
            cache_write_5m_tokens: s.cache_write_5m_tokens,
            cache_write_1h_tokens: s.cache_write_1h_tokens,
            reasoning_tokens: s.reasoning_tokens,
            audio_input_tokens: s.audio_input_tokens,
            audio_output_tokens: s.audio_output_tokens,
        },
        total_tokens: s.prompt_tokens + s.completion_tokens,
        cost: s.cost.normalize(),
        input_cost: s.input_cost.normalize(),
        output_cost: s.output_cost.normalize(),
        request_cost: s.request_cost.normalize(),
        cached_input_cost: s.cached_input_cost.normalize(),
        cache_write_5m_cost: s.cache_write_5m_cost.normalize(),
        cache_write_1h_cost: s.cache_write_1h_cost.normalize(),
        reasoning_cost: s.reasoning_cost.normalize(),
        audio_input_cost: s.audio_input_cost.normalize(),
        audio_output_cost: s.audio_output_cost.normalize(),
        image_input_cost: s.image_input_cost.normalize(),
        image_output_cost: s.image_output_cost.normalize(),
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

fn model_usage(model: Option<String>, provider: Option<String>, s: &EntitySums) -> ModelUsage {
    ModelUsage {
        id: model.unwrap_or_default(),
        provider: provider.unwrap_or_default(),
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

fn customer_usage(row: EntityGroup) -> CustomerUsage {
    let s = &row.sums;
    CustomerUsage {
        id: row.key.as_deref().and_then(|id| id.parse().ok()),
        external_id: row.label,
        request_count: s.requests,
        total_tokens: s.prompt_tokens + s.completion_tokens,
        cost: s.cost.normalize(),
    }
}

/// Whose activity a listing groups by.
#[derive(Deserialize, ToSchema, Clone, Copy, Debug)]
#[serde(rename_all = "camelCase")]
pub enum EntityKind {
    Customers,
    Agents,
    /// By path; all `/a2a/{agentId}` paths form one entry (see `agents` for each agent).
    Endpoints,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
pub struct EntityPath {
    org_id: Uuid,
    #[param(inline)]
    entity: EntityKind,
}

/// The order of a listing: largest first.
#[derive(Deserialize, ToSchema, Clone, Copy, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub enum EntitySortParam {
    #[default]
    Spend,
    Requests,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct EntityQuery {
    /// As for the daily activity: default 7 days (or the retention when shorter).
    #[param(minimum = 1, maximum = 366)]
    days: Option<i64>,
    #[param(value_type = Option<String>, format = Date)]
    from: Option<String>,
    #[param(value_type = Option<String>, format = Date)]
    to: Option<String>,
    project_id: Option<Uuid>,
    api_key_id: Option<Uuid>,
    /// Only these entities: customer or agent ids as the gateway reports them, or
    /// endpoint paths; comma-separated, at most 100.
    #[param(inline, value_type = Option<FilterText>)]
    ids: Option<String>,
    #[param(inline)]
    sort: Option<EntitySortParam>,
    /// Page size.
    #[param(minimum = 1, maximum = 500, default = 50)]
    limit: Option<i64>,
    /// Entries to skip (`nextOffset` of the previous page).
    #[param(minimum = 0, maximum = 1_000_000, default = 0)]
    offset: Option<i64>,
}

/// A page of entities, largest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"from": "2026-12-02", "to": "2026-12-03", "data": [
    {"id": "0193a0b4-7c2e-7d41-9a53-0f6c2b1e8d10", "name": "customer-42", "requestCount": 150, "successCount": 147,
     "errorCount": 3, "successRate": 98.0, "inputTokens": 300000, "outputTokens": 45000, "totalTokens": 345000,
     "cost": "0.925", "modelBreakdown": [
        {"id": "gpt-4o", "provider": "openai", "requestCount": 100, "inputTokens": 200000, "outputTokens": 30000, "totalTokens": 230000, "cost": "0.75"},
        {"id": "claude-haiku-4-5", "provider": "anthropic", "requestCount": 50, "inputTokens": 100000, "outputTokens": 15000, "totalTokens": 115000, "cost": "0.175"}
    ],
     "daily": [
        {"date": "2026-12-02", "requestCount": 150, "errorCount": 3, "totalTokens": 345000, "cost": "0.925"},
        {"date": "2026-12-03", "requestCount": 0, "errorCount": 0, "totalTokens": 0, "cost": "0"}
     ]}
], "nextOffset": null}))]
pub struct EntityPage {
    from: NaiveDate,
    to: NaiveDate,
    data: Vec<EntityActivity>,
    /// Pass as `offset` for the next page; absent on the last page.
    next_offset: Option<i64>,
}

/// One customer, agent or endpoint over the window.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntityActivity {
    /// The customer's or agent's id; absent for endpoints and for calls that named no
    /// customer (or agent).
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<Uuid>,
    /// The customer's or agent's id as the gateway reports it, or the endpoint's path;
    /// absent for calls that named no customer (or agent).
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    request_count: i64,
    success_count: i64,
    error_count: i64,
    /// Successful calls in percent of `requestCount` (0 to 100, two decimals).
    #[schema(minimum = 0, maximum = 100)]
    success_rate: f64,
    input_tokens: i64,
    output_tokens: i64,
    total_tokens: i64,
    #[schema(value_type = Money)]
    cost: Decimal,
    model_breakdown: Vec<ModelUsage>,
    /// Every day of the window, oldest first.
    daily: Vec<DailyPoint>,
}

/// One day of an entity's trend.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DailyPoint {
    date: NaiveDate,
    request_count: i64,
    error_count: i64,
    total_tokens: i64,
    #[schema(value_type = Money)]
    cost: Decimal,
}

const MAX_IDS: usize = 100;

/// Usage per customer, agent or endpoint.
///
/// Requests and success rate, tokens, spend, models and a daily trend of each. Sorted
/// by spend (default) or requests, largest first, paginated by offset. Same window and
/// retention rules as the daily activity.
#[utoipa::path(
    tag = "activity",
    security(("bearer" = [])),
    params(EntityPath, EntityQuery),
    responses(
        (status = 200, description = "A page of entities, largest first", body = EntityPage),
        (status = 400, description = "A malformed window or parameter, or one reaching before the retention (`retention_exceeded`)", body = Problem),
        (status = 401, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[get("/orgs/{orgId}/activity/{entity}")]
pub async fn list_entity_activity(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<EntityPath>,
    query: web::Query<EntityQuery>,
) -> AppResult<web::Json<EntityPage>> {
    let mut conn = state.conn().await?;
    let q = query.into_inner();
    let (access, window) = org_window(
        &mut conn,
        &caller,
        path.org_id,
        q.days,
        q.from.as_deref(),
        q.to.as_deref(),
    )
    .await?;
    let limit = paging::page_size(q.limit)?;
    let offset = q.offset.unwrap_or(0);
    if !(0..=1_000_000).contains(&offset) {
        return Err(AppError::new(
            ErrorCode::InvalidQueryParameter,
            "offset must be between 0 and 1000000",
        ));
    }
    let ids: Vec<String> = query_text("ids", q.ids)?
        .map(|list| {
            list.split(',')
                .map(|id| id.trim().to_owned())
                .filter(|id| !id.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if ids.len() > MAX_IDS {
        return Err(AppError::new(
            ErrorCode::InvalidQueryParameter,
            format!("ids: at most {MAX_IDS}"),
        ));
    }
    let entity = match path.entity {
        EntityKind::Customers => Entity::Customer,
        EntityKind::Agents => Entity::Agent,
        EntityKind::Endpoints => Entity::Endpoint,
    };
    let sort = match q.sort.unwrap_or_default() {
        EntitySortParam::Spend => EntitySort::Spend,
        EntitySortParam::Requests => EntitySort::Requests,
    };
    let filter = ActivityFilter {
        window,
        project_id: q.project_id,
        api_key_id: q.api_key_id,
    };
    let (page, more) =
        store::activity::entities(&mut conn, &access, &filter, entity, &ids, sort, limit, offset).await?;
    let keys: Vec<Option<String>> = page.iter().map(|e| e.key.clone()).collect();
    let keys = Keys::These(&keys);
    let mut daily = by_key(store::activity::entity_details(&mut conn, &access, &filter, entity, keys, false).await?);
    let mut models = by_key(store::activity::entity_details(&mut conn, &access, &filter, entity, keys, true).await?);
    let data = page
        .into_iter()
        .map(|e| {
            let days = daily.remove(&e.key).unwrap_or_default();
            let model_rows = models.remove(&e.key).unwrap_or_default();
            entity_activity(entity, e, window, days, model_rows)
        })
        .collect();
    Ok(web::Json(EntityPage {
        from: window.from,
        to: window.to,
        data,
        next_offset: more.then(|| offset.saturating_add(limit)),
    }))
}

fn by_key(rows: Vec<EntityGroup>) -> BTreeMap<Option<String>, Vec<EntityGroup>> {
    let mut grouped: BTreeMap<Option<String>, Vec<EntityGroup>> = BTreeMap::new();
    for row in rows {
        grouped.entry(row.key.clone()).or_default().push(row);
    }
    grouped
}

fn entity_activity(
    entity: Entity,
    row: EntityGroup,
    window: DayWindow,
    days: Vec<EntityGroup>,
    models: Vec<EntityGroup>,
) -> EntityActivity {
    let s = &row.sums;
    let mut per_day: BTreeMap<NaiveDate, EntitySums> =
        days.into_iter().filter_map(|d| Some((d.day?, d.sums))).collect();
    EntityActivity {
        id: match entity {
            Entity::Endpoint => None,
            Entity::Customer | Entity::Agent => row.key.as_deref().and_then(|k| k.parse().ok()),
        },
        name: row.label.clone(),
        request_count: s.requests,
        success_count: s.requests - s.errors,
        error_count: s.errors,
        success_rate: percent_of(s.requests - s.errors, s.requests),
        input_tokens: s.prompt_tokens,
        output_tokens: s.completion_tokens,
        total_tokens: s.prompt_tokens + s.completion_tokens,
        cost: s.cost.normalize(),
        model_breakdown: models
            .into_iter()
            .map(|m| model_usage(m.model, m.provider, &m.sums))
            .collect(),
        daily: window
            .each_day()
            .map(|date| {
                let d = per_day.remove(&date).unwrap_or_default();
                DailyPoint {
                    date,
                    request_count: d.requests,
                    error_count: d.errors,
                    total_tokens: d.prompt_tokens + d.completion_tokens,
                    cost: d.cost.normalize(),
                }
            })
            .collect(),
    }
}
