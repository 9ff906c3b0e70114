//! The request log: newest first, cursor-paginated, filterable; and one request's detail.

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
    schemas::{FilterText, JsonObject, Money, Percent},
    state::AppState,
    validate::query_text,
};
use crate::{
    domain::{
        role::Access,
        usage::{retention_start, BillingSource, EventStatus},
    },
    error::{AppError, AppResult, Problem},
    ingest::event_time,
    store::{
        self,
        spend_logs::{Cursor, DetailRow, LogFilter, LogRow},
    },
};

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct SpendLogQuery {
    project_id: Option<Uuid>,
    api_key_id: Option<Uuid>,
    /// The tenant's customer id (`user` on events).
    #[param(inline, value_type = Option<FilterText>)]
    customer: Option<String>,
    #[param(inline, value_type = Option<FilterText>)]
    agent: Option<String>,
    #[param(inline, value_type = Option<FilterText>)]
    provider: Option<String>,
    /// The model: its catalog id or the provider's name for it, in any case. Selects the
    /// calls the activity counts under that model, whichever name the gateway reported.
    #[param(inline, value_type = Option<FilterText>)]
    model: Option<String>,
    status: Option<EventStatus>,
    /// Inclusive bounds (RFC 3339). `from` before the retention start is clamped to it.
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    /// Page size.
    #[param(minimum = 1, maximum = 500, default = 50)]
    limit: Option<i64>,
    /// Opaque: `nextCursor` of the previous page. Absent or empty: the first page.
    cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
pub struct SpendLogPath {
    org_id: Uuid,
    event_id: Uuid,
}

/// The parts of the prompt and completion tokens priced apart (see the usage event).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenParts {
    /// Prompt tokens written to a 5-minute cache (part of `promptTokens`).
    #[schema(example = 8000)]
    pub(super) cache_write_5m_tokens: i64,
    /// Prompt tokens written to a 1-hour cache (part of `promptTokens`).
    #[schema(example = 2000)]
    pub(super) cache_write_1h_tokens: i64,
    /// Completion tokens spent reasoning (part of `completionTokens`).
    #[schema(example = 400)]
    pub(super) reasoning_tokens: i64,
    /// Prompt tokens of audio (part of `promptTokens`).
    #[schema(example = 0)]
    pub(super) audio_input_tokens: i64,
    /// Completion tokens of audio (part of `completionTokens`).
    #[schema(example = 0)]
    pub(super) audio_output_tokens: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpendLogEntry {
    id: Uuid,
    request_id: String,
    occurred_at: DateTime<Utc>,
    project_id: Uuid,
    api_key_id: Uuid,
    user: Option<String>,
    agent_id: Option<String>,
    endpoint: String,
    provider: String,
    model: String,
    status: EventStatus,
    error_code: Option<String>,
    prompt_tokens: i64,
    completion_tokens: i64,
    cached_tokens: i64,
    #[serde(flatten)]
    token_parts: TokenParts,
    total_tokens: i64,
    latency_ms: Option<i32>,
    cache_hit: bool,
    /// Whose provider keys paid.
    billing_source: BillingSource,
    /// The model was not in the price catalog; its cost is zero.
    unpriced: bool,
    /// USD before the discount.
    #[schema(value_type = Money)]
    cost_before_discount: Decimal,
    #[schema(value_type = Money)]
    discount_savings: Decimal,
    /// USD charged.
    #[schema(value_type = Money)]
    cost: Decimal,
}

impl From<&LogRow> for SpendLogEntry {
    fn from(row: &LogRow) -> Self {
        let (c, e) = (&row.context, &row.event);
        Self {
            id: e.id,
            request_id: e.request_id.clone(),
            occurred_at: e.occurred_at,
            project_id: c.project_id,
            api_key_id: c.api_key_id,
            user: c.customer.clone(),
            agent_id: c.agent.clone(),
            endpoint: e.endpoint.clone(),
            provider: e.provider.clone(),
            model: e.model.clone(),
            status: e.status,
            error_code: e.error_code.clone(),
            total_tokens: e.prompt_tokens + e.completion_tokens,
            prompt_tokens: e.prompt_tokens,
            completion_tokens: e.completion_tokens,
            cached_tokens: e.cached_tokens,
            token_parts: TokenParts {
                cache_write_5m_tokens: e.cache_write_5m_tokens,
                cache_write_1h_tokens: e.cache_write_1h_tokens,
                reasoning_tokens: e.reasoning_tokens,
                audio_input_tokens: e.audio_input_tokens,
                audio_output_tokens: e.audio_output_tokens,
            },
            latency_ms: e.latency_ms,
            cache_hit: e.cache_hit,
            billing_source: e.billing_source,
            unpriced: e.unpriced,
            cost_before_discount: e.cost_before_discount.normalize(),
            discount_savings: e.discount_savings.normalize(),
            cost: e.cost.normalize(),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpendLogPage {
    data: Vec<SpendLogEntry>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next_cursor: Option<String>,
    /// The oldest instant the organization's plan keeps.
    retention_start: DateTime<Utc>,
    /// `true` when `from` reached past `retentionStart` and was moved up to it.
    clamped: bool,
}

/// What each kind of token and each charge cost, before the discount. The parts add
/// up exactly to `costBeforeDiscount`. `input` is the prompt tokens that are none of
/// cached, cache writes or audio; `output` the completion tokens that are neither
/// reasoning nor audio.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostBreakdown {
    #[schema(value_type = Money)]
    input: Decimal,
    #[schema(value_type = Money)]
    output: Decimal,
    #[schema(value_type = Money)]
    cached_input: Decimal,
    /// Prompt tokens written to a 5-minute cache.
    #[schema(value_type = Money, example = "0.03")]
    cache_write_5m: Decimal,
    /// Prompt tokens written to a 1-hour cache.
    #[schema(value_type = Money, example = "0.012")]
    cache_write_1h: Decimal,
    /// Reasoning tokens.
    #[schema(value_type = Money, example = "0.006")]
    reasoning: Decimal,
    #[schema(value_type = Money, example = "0")]
    audio_input: Decimal,
    #[schema(value_type = Money, example = "0")]
    audio_output: Decimal,
    #[schema(value_type = Money)]
    request: Decimal,
    /// Every image charge: `imageInput + imageOutput`.
    #[schema(value_type = Money)]
    image: Decimal,
    /// Images sent with the request.
    #[schema(value_type = Money)]
    image_input: Decimal,
    /// Images the call generated.
    #[schema(value_type = Money)]
    image_output: Decimal,
    #[schema(value_type = Money)]
    data_storage: Decimal,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpendLogDetail {
    #[serde(flatten)]
    entry: SpendLogEntry,
    /// Images the call generated.
    images: i32,
    /// Images sent with the request.
    input_images: i32,
    time_to_first_token_ms: Option<i32>,
    retries: i32,
    started_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    recorded_at: DateTime<Utc>,
    #[schema(value_type = Option<JsonObject>)]
    metadata: Option<serde_json::Value>,
    request_body: Option<String>,
    response_body: Option<String>,
    /// A body was longer than the storage cap and was cut.
    bodies_truncated: bool,
    cost_breakdown: CostBreakdown,
    /// The price version used: the catalog's (`GET /v1/prices`) or the organization's
    /// override (`GET /v1/orgs/{orgId}/prices`), as `priceSource` says; absent when
    /// unpriced.
    price_id: Option<Uuid>,
    /// Where `priceId` comes from: `catalog` or `organization` (a price override);
    /// absent when unpriced.
    price_source: Option<PriceSource>,
    discount_id: Option<Uuid>,
    #[schema(value_type = Percent)]
    discount_percent: Decimal,
    /// What kind of call it was, as the gateway named it.
    call_type: Option<String>,
    /// The gateway's id of the deployment that served the call.
    model_id: Option<String>,
    /// The upstream API called (without credentials, query or fragment).
    api_base: Option<String>,
    /// The caller's address, redacted: IPv4 with the last octet zeroed, IPv6 cut to /48.
    client_ip: Option<String>,
    tags: Vec<String>,
    /// Time the gateway itself added to the call.
    gateway_overhead_ms: Option<i32>,
}

/// Which price list an event's price version belongs to.
#[derive(Serialize, ToSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PriceSource {
    /// The global price catalog.
    Catalog,
    /// The organization's own price override.
    Organization,
}

impl From<DetailRow> for SpendLogDetail {
    fn from(detail: DetailRow) -> Self {
        let price_source = detail.log.event.price_id.map(|_| {
            if detail.price_override {
                PriceSource::Organization
            } else {
                PriceSource::Catalog
            }
        });
        let row = detail.log;
        let entry = SpendLogEntry::from(&row);
        let (c, e) = (row.context, row.event);
        Self {
            entry,
            images: e.images,
            input_images: e.input_images,
            time_to_first_token_ms: e.ttft_ms,
            retries: e.retries,
            started_at: e.started_at,
            ended_at: e.ended_at,
            recorded_at: c.recorded_at,
            metadata: e.metadata,
            request_body: e.request_body,
            response_body: e.response_body,
            bodies_truncated: e.bodies_truncated,
            cost_breakdown: CostBreakdown {
                input: e.input_cost.normalize(),
                output: e.output_cost.normalize(),
                cached_input: e.cached_input_cost.normalize(),
                cache_write_5m: e.cache_write_5m_cost.normalize(),
                cache_write_1h: e.cache_write_1h_cost.normalize(),
                reasoning: e.reasoning_cost.normalize(),
                audio_input: e.audio_input_cost.normalize(),
                audio_output: e.audio_output_cost.normalize(),
                request: e.request_cost.normalize(),
                image: e.image_cost.normalize(),
                image_input: e.image_input_cost.normalize(),
                image_output: e.image_output_cost.normalize(),
                data_storage: e.data_storage_cost.normalize(),
            },
            price_id: e.price_id,
            price_source,
            discount_id: e.discount_id,
            discount_percent: e.discount_percent.normalize(),
            call_type: e.call_type,
            model_id: e.model_id,
            api_base: e.api_base,
            client_ip: e.client_ip,
            tags: e
                .tags
                .as_ref()
                .and_then(serde_json::Value::as_array)
                .map(|tags| tags.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
            gateway_overhead_ms: e.gateway_overhead_ms,
        }
    }
}

async fn retention_start_of(conn: &mut store::DbConn, access: &store::access::OrgAccess) -> AppResult<DateTime<Utc>> {
    let org = store::orgs::get(conn, access).await?;
    Ok(retention_start(Utc::now(), org.retention_days))
}

/// The organization's calls, newest first.
#[utoipa::path(
    tag = "spend logs",
    security(("bearer" = [])),
    params(OrgPath, SpendLogQuery),
    responses(
        (status = 200, description = "A page of calls, newest first", body = SpendLogPage),
        (status = 400, description = "A query parameter is invalid", body = Problem),
        (status = 401, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[get("/orgs/{orgId}/spend-logs")]
pub async fn list_spend_logs(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
    query: web::Query<SpendLogQuery>,
) -> AppResult<web::Json<SpendLogPage>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Read).await?;
    let q = query.into_inner();
    let limit = paging::page_size(q.limit)?;
    paging::check_range(q.from, q.to)?;
    let after = paging::cursor(q.cursor.as_deref())?.map(|(occurred_at, id)| Cursor { occurred_at, id });
    let not_before = retention_start_of(&mut conn, &access).await?;
    let filter = LogFilter {
        project_id: q.project_id,
        api_key_id: q.api_key_id,
        customer: query_text("customer", q.customer)?,
        agent: query_text("agent", q.agent)?,
        provider: query_text("provider", q.provider)?.map(|p| p.to_lowercase()),
        model: query_text("model", q.model)?,
        status: q.status,
        from: q.from,
        to: q.to,
    };
    let (rows, next) = store::spend_logs::page(&mut conn, &access, &filter, not_before, after, limit).await?;
    Ok(web::Json(SpendLogPage {
        data: rows.iter().map(SpendLogEntry::from).collect(),
        next_cursor: next.map(|c| paging::encode_cursor(c.occurred_at, c.id)),
        retention_start: not_before,
        clamped: q.from.is_some_and(|from| from < not_before),
    }))
}

/// One call with its metrics, cost breakdown, bodies and metadata.
#[utoipa::path(
    tag = "spend logs",
    security(("bearer" = [])),
    params(SpendLogPath),
    responses((status = 200, description = "The call", body = SpendLogDetail), (status = 401, body = Problem), (status = 404, body = Problem))
)]
#[get("/orgs/{orgId}/spend-logs/{eventId}")]
pub async fn get_spend_log(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<SpendLogPath>,
) -> AppResult<web::Json<SpendLogDetail>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Read).await?;
    let occurred = event_time(path.event_id).ok_or_else(|| AppError::not_found("event"))?;
    let not_before = retention_start_of(&mut conn, &access).await?;
    let detail = store::spend_logs::detail(&mut conn, &access, path.event_id, occurred, not_before).await?;
    Ok(web::Json(detail.into()))
}
