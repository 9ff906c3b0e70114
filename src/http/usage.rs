//! Usage ingestion from the gateway: one event, or a batch of up to 1,000.

use actix_web::{post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    extract::{object_from_json, GatewayKey, JsonBody},
    schemas::{
        CallErrorCode, EndpointPath, ExternalId, JsonObject, JsonValue, ModelName, Money, ProviderName, RequestId,
    },
    state::AppState,
    validate::Fields,
};
use crate::{
    domain::identity::KeyIdentity,
    domain::pricing::{Breach, Quantities},
    domain::usage::{
        agent_from_endpoint, api_base as usage_api_base, bounded_count, bounded_text, cap_body, json_has_nul,
        redact_ip, tags as usage_tags, without_nul, BillingSource, EventStatus, NewUsageEvent, MAX_DURATION_MS,
        MAX_IMAGES, MAX_METADATA_BYTES, MAX_RETRIES, MAX_TOKENS,
    },
    error::{AppError, AppResult, FieldError, Problem},
    ingest::{
        group::{Flush, Submitted},
        Outcome,
    },
};

pub const MAX_BATCH: usize = 1_000;

/// One call as the gateway reports it. Token counts follow OpenAI's convention (also
/// LiteLLM's): `promptTokens` counts every input token, including `cachedTokens`, the
/// cache writes and `audioInputTokens`; `completionTokens` counts every output token,
/// including `reasoningTokens` and `audioOutputTokens`. Those parts are priced apart
/// and together never exceed the total they belong to. (Anthropic's own `input_tokens`
/// leaves cache reads and writes out: add them in.)
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "requestId": "req_01J9Z3K4", "endpoint": "/chat/completions", "provider": "anthropic",
    "model": "claude-sonnet-4-5", "user": "customer-42", "status": "success", "promptTokens": 50000,
    "completionTokens": 1000, "cachedTokens": 30000, "cacheWrite5mTokens": 8000, "cacheWrite1hTokens": 2000,
    "reasoningTokens": 400, "latencyMs": 840, "timeToFirstTokenMs": 210, "cacheHit": false,
    "startedAt": "2026-11-23T10:00:00Z", "metadata": {"feature": "search"}
}))]
pub struct UsageEventRequest {
    /// Idempotency key, unique per organization: a retried event is recorded once.
    #[schema(value_type = RequestId)]
    request_id: String,
    /// e.g. `/chat/completions` or `/a2a/{agentId}`.
    #[schema(value_type = EndpointPath)]
    endpoint: String,
    #[schema(value_type = ProviderName)]
    provider: String,
    #[schema(value_type = ModelName)]
    model: String,
    /// The tenant's end customer; created on first sight.
    #[serde(default)]
    #[schema(value_type = Option<ExternalId>)]
    user: Option<String>,
    /// Taken from an `/a2a/{agentId}` endpoint when not given.
    #[serde(default)]
    #[schema(value_type = Option<ExternalId>)]
    agent_id: Option<String>,
    #[serde(default = "success")]
    status: EventStatus,
    #[serde(default)]
    #[schema(value_type = Option<CallErrorCode>)]
    error_code: Option<String>,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100_000_000)]
    prompt_tokens: i64,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100_000_000)]
    completion_tokens: i64,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100_000_000)]
    cached_tokens: i64,
    /// Prompt tokens written to a prompt cache that lives 5 minutes (Anthropic's
    /// `cache_creation.ephemeral_5m_input_tokens`; a provider that does not tell the
    /// duration writes for 5 minutes).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100_000_000, example = 8000)]
    cache_write_5m_tokens: i64,
    /// Prompt tokens written to a prompt cache that lives 1 hour.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100_000_000, example = 2000)]
    cache_write_1h_tokens: i64,
    /// Completion tokens spent reasoning (`completion_tokens_details.reasoning_tokens`).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100_000_000, example = 400)]
    reasoning_tokens: i64,
    /// Prompt tokens of audio (`prompt_tokens_details.audio_tokens`).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100_000_000, example = 1200)]
    audio_input_tokens: i64,
    /// Completion tokens of audio (`completion_tokens_details.audio_tokens`).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100_000_000, example = 700)]
    audio_output_tokens: i64,
    /// Images the call generated (charged at the price's `perImage`).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 10_000)]
    images: i64,
    /// Images sent with the request (charged at the price's `perInputImage`).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 10_000)]
    input_images: i64,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 86_400_000)]
    latency_ms: Option<i64>,
    /// At most `latencyMs` when both are given.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 86_400_000)]
    time_to_first_token_ms: Option<i64>,
    #[serde(default)]
    cache_hit: bool,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1_000)]
    retries: i64,
    #[serde(default)]
    started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    ended_at: Option<DateTime<Utc>>,
    /// A JSON object of at most 16 KiB.
    #[serde(default)]
    #[schema(value_type = Option<JsonObject>)]
    metadata: Option<serde_json::Value>,
    /// Stored (cut to the configured size) unless `redactBodies` is set.
    #[serde(default)]
    #[schema(value_type = JsonValue)]
    request_body: Option<serde_json::Value>,
    #[serde(default)]
    #[schema(value_type = JsonValue)]
    response_body: Option<serde_json::Value>,
    /// Record the call without its bodies.
    #[serde(default)]
    redact_bodies: bool,
    /// For `hybrid` projects: whose keys paid. Ignored otherwise unless it contradicts the mode.
    #[serde(default)]
    billing_source: Option<BillingSource>,
    /// What kind of call it was, as the gateway names it (`completion`, `embedding`,
    /// `image_generation`, …).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 100)]
    call_type: Option<String>,
    /// The gateway's id of the deployment that served the call.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 256)]
    model_id: Option<String>,
    /// The upstream API the gateway called (an http or https URL). Kept without user
    /// name, password, query or fragment.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 2048, format = "uri")]
    api_base: Option<String>,
    /// The caller's IP address. Only a redacted form is stored: an IPv4 address with
    /// its last octet zeroed, an IPv6 address cut to its /48 prefix.
    #[serde(default)]
    #[schema(min_length = 2, max_length = 64)]
    client_ip: Option<String>,
    /// Up to 20 tags of 1 to 64 characters; repeats are kept once.
    #[serde(default)]
    #[schema(max_items = 20, value_type = Vec<String>)]
    tags: Vec<String>,
    /// Time the gateway itself added to the call, in milliseconds.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 86_400_000)]
    gateway_overhead_ms: Option<i64>,
}

fn success() -> EventStatus {
    EventStatus::Success
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"events": [{
    "requestId": "req_01J9Z3K5", "endpoint": "/a2a/planner", "provider": "anthropic", "model": "claude-sonnet-4-5",
    "user": "customer-42", "promptTokens": 900, "completionTokens": 150, "latencyMs": 1200
}]}))]
pub struct UsageBatchRequest {
    /// 1 to 1,000 events. Each is checked on its own: one bad event does not fail the others.
    #[schema(value_type = Vec<UsageEventRequest>, min_items = 1, max_items = 1000)]
    events: Vec<Box<RawValue>>,
}

#[derive(Serialize, ToSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum EventResultStatus {
    Accepted,
    Duplicate,
    Rejected,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventResult {
    /// Position in the submitted batch.
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    status: EventResultStatus,
    /// The recorded event (for a duplicate: the one recorded first).
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<Uuid>,
    /// USD, after discount.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Money>)]
    cost: Option<rust_decimal::Decimal>,
    /// The model is not in the price catalog; the event was recorded at zero cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    unpriced: Option<bool>,
    /// On duplicates: `true` when this event's content differs from the event recorded
    /// under its `requestId` (a reused id, or a gateway bug). Nothing is changed: the
    /// event recorded first stands. See "Idempotency" in the API guide for what is
    /// compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    conflict: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldError>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    accepted: usize,
    /// Includes the conflicts.
    duplicates: usize,
    /// Duplicates whose content differs from the event recorded under their `requestId`.
    conflicts: usize,
    rejected: usize,
    results: Vec<EventResult>,
}

fn as_i32(value: i64) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// Stored form of a body: JSON strings as they are, anything else serialized.
/// (Serialized JSON escapes NUL as `\u0000`; only a raw string can hold one.)
fn body_text(body: serde_json::Value) -> String {
    let mut text = match body {
        serde_json::Value::String(s) => without_nul(s),
        other => other.to_string(),
    };
    // Kept until the event is stored: without the slack serializing left (up to half).
    text.shrink_to_fit();
    text
}

/// Applies the rules of an event, collecting every broken one.
pub fn parse_event(
    req: UsageEventRequest,
    body_cap: usize,
    received_at: DateTime<Utc>,
) -> Result<NewUsageEvent, Vec<FieldError>> {
    let mut f = Fields::default();
    let optional_text = |f: &mut Fields, name: &str, value: Option<&str>, max: usize| match value {
        Some(v) => f.take(name, bounded_text(v, max).map(Some)).flatten(),
        None => None,
    };
    let request_id = f.take("requestId", bounded_text(&req.request_id, 255));
    let endpoint = f.take("endpoint", bounded_text(&req.endpoint, 512));
    let provider = f.take("provider", bounded_text(&req.provider.to_lowercase(), 100));
    let model = f.take("model", bounded_text(&req.model, 200));
    let customer = optional_text(&mut f, "user", req.user.as_deref(), 256);
    let agent_name = req
        .agent_id
        .as_deref()
        .or_else(|| endpoint.as_deref().and_then(agent_from_endpoint));
    let agent = optional_text(&mut f, "agentId", agent_name, 256);
    let error_code = optional_text(&mut f, "errorCode", req.error_code.as_deref(), 200);
    let prompt_tokens = f.take("promptTokens", bounded_count(req.prompt_tokens, MAX_TOKENS));
    let completion_tokens = f.take("completionTokens", bounded_count(req.completion_tokens, MAX_TOKENS));
    let cached_tokens = f.take("cachedTokens", bounded_count(req.cached_tokens, MAX_TOKENS));
    let mut count = |name: &str, value: i64| f.take(name, bounded_count(value, MAX_TOKENS));
    let cache_write_5m_tokens = count("cacheWrite5mTokens", req.cache_write_5m_tokens);
    let cache_write_1h_tokens = count("cacheWrite1hTokens", req.cache_write_1h_tokens);
    let reasoning_tokens = count("reasoningTokens", req.reasoning_tokens);
    let audio_input_tokens = count("audioInputTokens", req.audio_input_tokens);
    let audio_output_tokens = count("audioOutputTokens", req.audio_output_tokens);
    // The parts must fit in the totals they belong to (checked once every count is valid).
    let quantities = (|| {
        Some(Quantities {
            prompt_tokens: prompt_tokens?,
            completion_tokens: completion_tokens?,
            cached_tokens: cached_tokens?,
            cache_write_5m_tokens: cache_write_5m_tokens?,
            cache_write_1h_tokens: cache_write_1h_tokens?,
            reasoning_tokens: reasoning_tokens?,
            audio_input_tokens: audio_input_tokens?,
            audio_output_tokens: audio_output_tokens?,
            ..Quantities::default()
        })
    })();
    if let Some(quantities) = quantities {
        if let Err(breach) = quantities.check() {
            let field = match breach {
                Breach::Cached => "cachedTokens",
                Breach::Prompt => "promptTokens",
                Breach::Completion => "completionTokens",
            };
            f.push(field, breach.message());
        }
    }
    let images = f.take("images", bounded_count(req.images, i64::from(MAX_IMAGES)));
    let input_images = f.take("inputImages", bounded_count(req.input_images, i64::from(MAX_IMAGES)));
    let call_type = optional_text(&mut f, "callType", req.call_type.as_deref(), 100);
    let model_id = optional_text(&mut f, "modelId", req.model_id.as_deref(), 256);
    let api_base = req
        .api_base
        .as_deref()
        .and_then(|v| f.take("apiBase", usage_api_base(v)));
    let client_ip = req.client_ip.as_deref().and_then(|v| f.take("clientIp", redact_ip(v)));
    let tags = f.take("tags", usage_tags(&req.tags)).unwrap_or_default();
    let gateway_overhead_ms = req
        .gateway_overhead_ms
        .and_then(|v| f.take("gatewayOverheadMs", bounded_count(v, i64::from(MAX_DURATION_MS))));
    let max_ms = i64::from(MAX_DURATION_MS);
    let latency_ms = req
        .latency_ms
        .and_then(|v| f.take("latencyMs", bounded_count(v, max_ms)));
    let ttft_ms = req
        .time_to_first_token_ms
        .and_then(|v| f.take("timeToFirstTokenMs", bounded_count(v, max_ms)));
    if let (Some(latency), Some(ttft)) = (latency_ms, ttft_ms) {
        // The first token arrives within the call: a larger value is a gateway's
        // mistake, and a dashboard would show a first token after the call ended.
        if ttft > latency {
            f.push("timeToFirstTokenMs", "cannot be larger than latencyMs");
        }
    }
    let retries = f.take("retries", bounded_count(req.retries, i64::from(MAX_RETRIES)));
    if let (Some(start), Some(end)) = (req.started_at, req.ended_at) {
        if end < start {
            f.push("endedAt", "cannot be before startedAt");
        }
    }
    match &req.metadata {
        Some(serde_json::Value::Object(_)) | None => {}
        Some(_) => f.push("metadata", "must be a JSON object"),
    }
    if req.metadata.as_ref().is_some_and(json_has_nul) {
        f.push("metadata", "must not contain NUL characters");
    }
    if req
        .metadata
        .as_ref()
        .is_some_and(|m| m.to_string().len() > MAX_METADATA_BYTES)
    {
        f.push("metadata", format!("must be at most {MAX_METADATA_BYTES} bytes"));
    }
    let (
        Some(request_id),
        Some(endpoint),
        Some(provider),
        Some(model),
        Some(prompt_tokens),
        Some(completion_tokens),
        Some(cached_tokens),
        Some(cache_write_5m_tokens),
        Some(cache_write_1h_tokens),
        Some(reasoning_tokens),
        Some(audio_input_tokens),
        Some(audio_output_tokens),
        Some(images),
        Some(input_images),
        Some(retries),
        true,
    ) = (
        request_id,
        endpoint,
        provider,
        model,
        prompt_tokens,
        completion_tokens,
        cached_tokens,
        cache_write_5m_tokens,
        cache_write_1h_tokens,
        reasoning_tokens,
        audio_input_tokens,
        audio_output_tokens,
        images,
        input_images,
        retries,
        f.is_empty(),
    )
    else {
        return Err(f.into_errors());
    };
    let (request_body, response_body, bodies_truncated) = if req.redact_bodies {
        (None, None, false)
    } else {
        let request = req.request_body.map(|b| cap_body(body_text(b), body_cap));
        let response = req.response_body.map(|b| cap_body(body_text(b), body_cap));
        let truncated = request.as_ref().is_some_and(|b| b.1) || response.as_ref().is_some_and(|b| b.1);
        (request.map(|b| b.0), response.map(|b| b.0), truncated)
    };
    Ok(NewUsageEvent {
        request_id,
        endpoint,
        provider,
        model,
        customer,
        agent,
        status: req.status,
        error_code,
        prompt_tokens,
        completion_tokens,
        cached_tokens,
        cache_write_5m_tokens,
        cache_write_1h_tokens,
        reasoning_tokens,
        audio_input_tokens,
        audio_output_tokens,
        images: as_i32(images),
        latency_ms: latency_ms.map(as_i32),
        ttft_ms: ttft_ms.map(as_i32),
        cache_hit: req.cache_hit,
        retries: as_i32(retries),
        occurred_at: req.started_at.or(req.ended_at).unwrap_or(received_at),
        started_at: req.started_at,
        ended_at: req.ended_at,
        metadata: req.metadata,
        request_body,
        response_body,
        bodies_truncated,
        billing_source: req.billing_source,
        input_images: as_i32(input_images),
        call_type,
        model_id,
        api_base,
        client_ip,
        tags,
        gateway_overhead_ms: gateway_overhead_ms.map(as_i32),
    })
}

fn result(index: usize, request_id: Option<String>, outcome: Outcome) -> EventResult {
    let mut result = EventResult {
        index,
        request_id,
        status: EventResultStatus::Rejected,
        event_id: None,
        cost: None,
        unpriced: None,
        conflict: None,
        errors: vec![],
    };
    match outcome {
        Outcome::Accepted {
            event_id,
            cost,
            unpriced,
        } => {
            result.status = EventResultStatus::Accepted;
            result.event_id = Some(event_id);
            result.cost = Some(cost.normalize());
            result.unpriced = Some(unpriced);
        }
        Outcome::Duplicate { event_id, conflict } => {
            result.status = EventResultStatus::Duplicate;
            result.event_id = Some(event_id);
            result.conflict = Some(conflict);
        }
        Outcome::Rejected { errors } => result.errors = errors,
    }
    result
}

/// Records events, then settles what the transaction committed into the budget
/// counters (and releases the reservations of the calls that reported). A small
/// request shares its transaction with the concurrent ones of the same key
/// (`crate::ingest::group`).
pub(crate) async fn record_and_settle(
    state: &AppState,
    key: &KeyIdentity,
    events: Vec<Result<NewUsageEvent, Vec<FieldError>>>,
) -> AppResult<Vec<Outcome>> {
    if state.ingest_groups.coalesces(events.len()) {
        state.ingest_groups.submit(state, key, events).await
    } else {
        record_now(state, key, events).await
    }
}

impl Flush for AppState {
    async fn flush(&self, key: KeyIdentity, events: Vec<Submitted>) -> AppResult<Vec<Outcome>> {
        record_now(self, &key, events).await
    }
}

/// Records events in one transaction of their own, then settles them.
async fn record_now(
    state: &AppState,
    key: &KeyIdentity,
    events: Vec<Result<NewUsageEvent, Vec<FieldError>>>,
) -> AppResult<Vec<Outcome>> {
    let recorded = state.ingest.record(key, events).await?;
    let now = Utc::now();
    state.enforcer.settle(key, &recorded.spend, now).await;
    state.enforcer.alert_after_usage(key, &recorded.spend, now).await;
    state.live.publish(key.org_id, &recorded.outcomes).await;
    Ok(recorded.outcomes)
}

/// Records one call. 201 when recorded, 200 when its `requestId` was recorded before.
///
/// A duplicate whose content differs from the recorded event answers `conflict: true`;
/// the event recorded first stands.
#[utoipa::path(
    tag = "usage",
    security(("api_key" = [])),
    request_body = UsageEventRequest,
    responses(
        (status = 201, description = "Recorded", body = EventResult),
        (status = 200, description = "Already recorded under this requestId; `conflict` says whether this event's content differs from the recorded one", body = EventResult),
        (status = 401, body = Problem),
        (status = 422, description = "The event breaks a rule; nothing was stored", body = Problem),
    )
)]
#[post("/usage")]
pub async fn record_usage(
    state: web::Data<AppState>,
    key: GatewayKey,
    body: JsonBody<UsageEventRequest>,
) -> AppResult<HttpResponse> {
    let request_id = body.request_id.clone();
    let parsed = parse_event(body.into_inner(), state.ingest.settings().body_cap_bytes, Utc::now());
    let outcome = record_and_settle(&state, &key.0, vec![parsed]).await?.pop();
    match outcome {
        Some(Outcome::Rejected { errors }) => Err(AppError::validation(errors)),
        Some(outcome @ Outcome::Accepted { .. }) => {
            Ok(HttpResponse::Created().json(result(0, Some(request_id), outcome)))
        }
        Some(outcome) => Ok(HttpResponse::Ok().json(result(0, Some(request_id), outcome))),
        None => Err(AppError::internal(anyhow::anyhow!("ingest returned no outcome"))),
    }
}

/// Records up to 1,000 calls in one request.
///
/// Each event is accepted, reported as a duplicate (with `conflict: true` when its content differs from the event recorded under its `requestId`), or rejected with its reasons. A 200 means every accepted event is durably stored.
#[utoipa::path(
    tag = "usage",
    security(("api_key" = [])),
    request_body = UsageBatchRequest,
    responses(
        (status = 200, description = "Each event's result, in submission order", body = BatchResponse),
        (status = 400, description = "The body is not a batch", body = Problem),
        (status = 401, body = Problem),
        (status = 413, body = Problem),
        (status = 422, description = "Empty, or more than 1,000 events", body = Problem),
    )
)]
#[post("")] // mounted at /v1/usage/batch, in a scope with its own body limit
pub async fn record_usage_batch(
    state: web::Data<AppState>,
    key: GatewayKey,
    body: JsonBody<UsageBatchRequest>,
) -> AppResult<web::Json<BatchResponse>> {
    let raw = body.into_inner().events;
    if raw.is_empty() || raw.len() > MAX_BATCH {
        return Err(AppError::invalid_field(
            "events",
            format!("must hold 1 to {MAX_BATCH} events, got {}", raw.len()),
        ));
    }
    let received_at = Utc::now();
    let body_cap = state.ingest.settings().body_cap_bytes;
    let mut request_ids = Vec::with_capacity(raw.len());
    let parsed: Vec<_> = raw
        .iter()
        .map(|event| match object_from_json::<UsageEventRequest>(event.get()) {
            Ok(req) => {
                request_ids.push(Some(req.request_id.clone()));
                parse_event(req, body_cap, received_at)
            }
            Err(e) => {
                request_ids.push(None);
                Err(vec![FieldError {
                    field: "event".into(),
                    message: e.to_string(),
                }])
            }
        })
        .collect();
    // Each event's raw JSON is parsed: free it before the transaction (a large batch
    // holds megabytes of request and response bodies).
    drop(raw);
    let outcomes = record_and_settle(&state, &key.0, parsed).await?;
    let results: Vec<EventResult> = outcomes
        .into_iter()
        .zip(request_ids)
        .enumerate()
        .map(|(index, (outcome, request_id))| result(index, request_id, outcome))
        .collect();
    let count = |status| results.iter().filter(|r| r.status == status).count();
    Ok(web::Json(BatchResponse {
        accepted: count(EventResultStatus::Accepted),
        duplicates: count(EventResultStatus::Duplicate),
        conflicts: results.iter().filter(|r| r.conflict == Some(true)).count(),
        rejected: count(EventResultStatus::Rejected),
        results,
    }))
}
