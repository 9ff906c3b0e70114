//! `POST /v1/integrations/litellm/logs`: usage as LiteLLM's built-in `generic_api`
//! logger posts it — an array of its StandardLoggingPayload (`log_format: json_array`,
//! the default) or one payload (`single`) — so a LiteLLM proxy reports to Meterplane
//! with two environment variables and no code:
//!
//! ```text
//! GENERIC_LOGGER_ENDPOINT=https://meterplane.example/v1/integrations/litellm/logs
//! GENERIC_LOGGER_HEADERS=X-Api-Key=mp_...
//! ```
//!
//! The mapping below is the one the Python callback applies
//! (`integrations/litellm/meterplane_litellm/mapping.py`); both are tested against the
//! same payloads a real proxy logged (`integrations/litellm/tests/fixtures/`). Each
//! mapped event then takes the ordinary path of `POST /v1/usage/batch`: the same
//! validation, idempotency on `requestId` (the call id), pricing and budget settling.

use std::borrow::Cow;

use actix_web::{post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::{
    openapi::{schema::ArrayBuilder, OneOfBuilder, Ref, RefOr, Schema},
    IntoParams, PartialSchema, ToSchema,
};
use uuid::Uuid;

use super::{
    extract::GatewayKey,
    schemas::{JsonObject, Money},
    state::AppState,
    usage::{parse_event, record_and_settle, UsageEventRequest, MAX_BATCH},
};
use crate::{
    error::{AppError, AppResult, FieldError, Problem},
    ingest::Outcome,
};

/// Marks a call the Meterplane callback refused: LiteLLM logs it as a failure, but no
/// provider was asked, so it is not usage.
pub const DENIAL_MARKER: &str = "meterplane_denied";
const MAX_METADATA_BYTES: usize = crate::domain::usage::MAX_METADATA_BYTES;
const MAX_TEXT: usize = 200;
const MAX_ERROR_MESSAGE: usize = 500;
const MAX_TAGS: usize = 20;

/// The route of a call type when the payload has none.
const CALL_TYPE_ENDPOINTS: &[(&str, &str)] = &[
    ("completion", "/chat/completions"),
    ("acompletion", "/chat/completions"),
    ("text_completion", "/completions"),
    ("atext_completion", "/completions"),
    ("embedding", "/embeddings"),
    ("aembedding", "/embeddings"),
    ("image_generation", "/images/generations"),
    ("aimage_generation", "/images/generations"),
    ("responses", "/responses"),
    ("aresponses", "/responses"),
    ("anthropic_messages", "/v1/messages"),
    ("rerank", "/rerank"),
    ("arerank", "/rerank"),
    ("transcription", "/audio/transcriptions"),
    ("atranscription", "/audio/transcriptions"),
    ("speech", "/audio/speech"),
    ("aspeech", "/audio/speech"),
    ("moderation", "/moderations"),
    ("amoderation", "/moderations"),
];
const A2A_CALL_TYPES: &[&str] = &["asend_message", "send_message"];
/// Keys LiteLLM adds to the request metadata it logs; the rest is the client's own.
const INTERNAL_METADATA_KEYS: &[&str] = &[
    "headers",
    "used_client_oauth_token",
    "agent_id",
    "model_group",
    "model_info",
    "tags",
];

// ---- the mapping: plain functions of the payload ------------------------------------

fn text(value: Option<&Value>) -> Option<String> {
    let trimmed = value?.as_str()?.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// The first `max` characters.
fn cut(value: &str, max: usize) -> String {
    value.chars().take(max).collect()
}

/// A non-negative whole count; anything else is 0.
fn count(value: Option<&Value>) -> i64 {
    match value {
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                i.max(0)
            } else if let Some(u) = n.as_u64() {
                i64::try_from(u).unwrap_or(i64::MAX)
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() && f >= 0.0 => f.trunc() as i64,
                    _ => 0,
                }
            }
        }
        Some(Value::String(s)) => {
            let s = s.trim();
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                s.parse().unwrap_or(i64::MAX)
            } else {
                0
            }
        }
        _ => 0,
    }
}

fn number(value: Option<&Value>) -> Option<f64> {
    value?.as_f64().filter(|f| f.is_finite())
}

fn object(value: Option<&Value>) -> Option<&Map<String, Value>> {
    value?.as_object()
}

fn field<'a>(map: Option<&'a Map<String, Value>>, key: &str) -> Option<&'a Value> {
    map?.get(key)
}

/// Whole milliseconds, half up.
fn millis(seconds: f64) -> i64 {
    (seconds * 1000.0 + 0.5).floor() as i64
}

/// Epoch seconds → RFC 3339 UTC with microseconds.
pub fn timestamp(seconds: Option<f64>) -> Option<String> {
    let value = seconds.filter(|s| *s > 0.0)?;
    let micros = (value * 1_000_000.0 + 0.5).floor();
    if micros >= 9.0e18 {
        return None;
    }
    let moment = DateTime::<Utc>::from_timestamp_micros(micros as i64)?;
    Some(moment.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
}

fn provider_of(p: &Value) -> String {
    if let Some(provider) = text(p.get("custom_llm_provider")) {
        return provider.to_lowercase();
    }
    let hidden = object(p.get("hidden_params"));
    for name in [p.get("model"), field(hidden, "litellm_model_name")] {
        if let Some((prefix, _)) = text(name).as_deref().and_then(|n| n.split_once('/')) {
            return prefix.to_lowercase();
        }
    }
    "unknown".to_owned()
}

fn model_of(p: &Value, provider: &str) -> String {
    let hidden = object(p.get("hidden_params"));
    let model = text(p.get("model"))
        .or_else(|| text(field(hidden, "litellm_model_name")))
        .or_else(|| text(p.get("model_group")))
        .unwrap_or_else(|| "unknown".to_owned());
    let prefix = format!("{provider}/");
    match model.get(..prefix.len()) {
        Some(head) if model.len() > prefix.len() && head.to_lowercase() == prefix => model[prefix.len()..].to_owned(),
        _ => model,
    }
}

fn usage_object(p: &Value) -> Option<&Map<String, Value>> {
    let metadata = object(p.get("metadata"));
    let hidden = object(p.get("hidden_params"));
    for candidate in [field(metadata, "usage_object"), field(hidden, "usage_object")] {
        if let Some(usage) = object(candidate).filter(|u| !u.is_empty()) {
            return Some(usage);
        }
    }
    object(field(object(p.get("response")), "usage"))
}

fn details<'a>(usage: Option<&'a Map<String, Value>>, key: &str) -> Option<&'a Map<String, Value>> {
    object(field(usage, key))
}

fn first_count(a: Option<&Value>, b: Option<&Value>) -> i64 {
    match count(a) {
        0 => count(b),
        n => n,
    }
}

fn cached_tokens_of(usage: Option<&Map<String, Value>>) -> i64 {
    first_count(
        field(details(usage, "prompt_tokens_details"), "cached_tokens"),
        field(usage, "cache_read_input_tokens"),
    )
}

fn cache_write_tokens_of(usage: Option<&Map<String, Value>>) -> i64 {
    first_count(
        field(details(usage, "prompt_tokens_details"), "cache_write_tokens"),
        field(usage, "cache_creation_input_tokens"),
    )
}

fn reasoning_tokens_of(usage: Option<&Map<String, Value>>) -> i64 {
    count(field(details(usage, "completion_tokens_details"), "reasoning_tokens"))
}

/// The parts of a call's prompt and completion that are priced apart, as event fields.
/// LiteLLM counts as Meterplane does (`promptTokens` includes cache reads and writes
/// and audio, `completionTokens` reasoning and audio). Each part is fitted into what its
/// total has left, in this order, so a payload that counts otherwise cannot make the
/// event invalid. Cache writes are split by duration when the usage says
/// (`cache_creation_token_details` or Anthropic's `cache_creation`); a write of unknown
/// duration is a 5-minute write, the providers' default.
fn token_parts(usage: Option<&Map<String, Value>>, prompt: i64, completion: i64) -> [(&'static str, i64); 6] {
    let prompt_details = details(usage, "prompt_tokens_details");
    let durations = object(field(prompt_details, "cache_creation_token_details")).or(details(usage, "cache_creation"));
    let (mut write_5m, write_1h) = (
        count(field(durations, "ephemeral_5m_input_tokens")),
        count(field(durations, "ephemeral_1h_input_tokens")),
    );
    if write_5m == 0 && write_1h == 0 {
        write_5m = cache_write_tokens_of(usage);
    }
    let fit = |left: &mut i64, wanted: i64| {
        let part = wanted.min(*left);
        *left -= part;
        part
    };
    let (mut prompt_left, mut completion_left) = (prompt, completion);
    [
        ("cachedTokens", fit(&mut prompt_left, cached_tokens_of(usage))),
        ("cacheWrite5mTokens", fit(&mut prompt_left, write_5m)),
        ("cacheWrite1hTokens", fit(&mut prompt_left, write_1h)),
        (
            "audioInputTokens",
            fit(&mut prompt_left, count(field(prompt_details, "audio_tokens"))),
        ),
        ("reasoningTokens", fit(&mut completion_left, reasoning_tokens_of(usage))),
        (
            "audioOutputTokens",
            fit(
                &mut completion_left,
                count(field(details(usage, "completion_tokens_details"), "audio_tokens")),
            ),
        ),
    ]
}

fn route_of(p: &Value) -> Option<String> {
    text(field(object(p.get("metadata")), "user_api_key_request_route"))
}

fn endpoint_of(p: &Value) -> String {
    if let Some(route) = route_of(p) {
        return cut(&route, 512);
    }
    let call_type = text(p.get("call_type")).unwrap_or_else(|| "unknown".to_owned());
    let endpoint = CALL_TYPE_ENDPOINTS
        .iter()
        .find(|(t, _)| *t == call_type)
        .map(|(_, e)| (*e).to_owned())
        .unwrap_or_else(|| format!("/{call_type}"));
    cut(&endpoint, 512)
}

fn is_success(p: &Value) -> bool {
    p.get("status").and_then(Value::as_str) == Some("success")
}

/// The outer event of an A2A call (`/a2a/{agent}`): route, user and agent, no tokens.
pub fn is_a2a_call(p: &Value) -> bool {
    text(p.get("call_type")).is_some_and(|t| A2A_CALL_TYPES.contains(&t.as_str()))
        || route_of(p).is_some_and(|r| r.starts_with("/a2a/"))
}

/// A model call the proxy made itself (an A2A agent's completion bridge): no route, no
/// virtual key, not an A2A call.
pub fn is_internal_call(p: &Value) -> bool {
    !is_a2a_call(p) && route_of(p).is_none() && text(field(object(p.get("metadata")), "user_api_key_hash")).is_none()
}

/// A failure LiteLLM logged for a call the Meterplane callback refused.
pub fn is_denial(p: &Value) -> bool {
    let info = object(p.get("error_information"));
    !is_success(p)
        && [text(p.get("error_str")), text(field(info, "error_message"))]
            .iter()
            .flatten()
            .any(|t| t.contains(DENIAL_MARKER))
}

fn client_metadata(metadata: Option<&Map<String, Value>>) -> Map<String, Value> {
    let mut own: Map<String, Value> = object(field(metadata, "requester_metadata"))
        .map(|requester| {
            requester
                .iter()
                .filter(|(k, _)| !INTERNAL_METADATA_KEYS.contains(&k.as_str()) && !k.starts_with("user_api_key"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    if let Some(spend_logs) = object(field(metadata, "spend_logs_metadata")).filter(|m| !m.is_empty()) {
        own.insert("spendLogsMetadata".into(), Value::Object(spend_logs.clone()));
    }
    own
}

fn compact_size(value: &Value) -> usize {
    serde_json::to_string(value).map(|s| s.len()).unwrap_or(usize::MAX)
}

fn litellm_metadata(p: &Value, request_id: &str) -> Map<String, Value> {
    let metadata = object(p.get("metadata"));
    let hidden = object(p.get("hidden_params"));
    let headers = object(field(hidden, "additional_headers"));
    let info = object(p.get("error_information"));
    let mut out = Map::new();
    let put_text = |out: &mut Map<String, Value>, key: &str, value: Option<String>| {
        if let Some(v) = value {
            out.insert(key.into(), Value::String(cut(&v, MAX_TEXT)));
        }
    };
    put_text(&mut out, "modelGroup", text(p.get("model_group")));
    put_text(&mut out, "deploymentId", text(p.get("model_id")));
    put_text(&mut out, "callType", text(p.get("call_type")));
    let response_id = text(p.get("id"));
    if response_id.as_deref() != Some(request_id) {
        put_text(&mut out, "responseId", response_id);
    }
    put_text(&mut out, "traceId", text(p.get("trace_id")));
    put_text(&mut out, "sessionId", text(p.get("session_id")));
    put_text(&mut out, "keyAlias", text(field(metadata, "user_api_key_alias")));
    put_text(&mut out, "keyUserId", text(field(metadata, "user_api_key_user_id")));
    put_text(&mut out, "teamId", text(field(metadata, "user_api_key_team_id")));
    put_text(&mut out, "teamAlias", text(field(metadata, "user_api_key_team_alias")));
    put_text(&mut out, "orgId", text(field(metadata, "user_api_key_org_id")));
    if let Some(tags) = p.get("request_tags").and_then(Value::as_array) {
        let tags: Vec<Value> = tags
            .iter()
            .filter_map(Value::as_str)
            .map(|t| Value::String(cut(t, MAX_TEXT)))
            .take(MAX_TAGS)
            .collect();
        if !tags.is_empty() {
            out.insert("tags".into(), Value::Array(tags));
        }
    }
    if let Some(cost) = number(p.get("response_cost")).filter(|c| *c > 0.0) {
        out.insert("cost".into(), json!(cost));
    }
    let fallbacks = count(field(headers, "x-litellm-attempted-fallbacks"));
    if fallbacks != 0 {
        out.insert("attemptedFallbacks".into(), json!(fallbacks));
    }
    let requester = object(field(metadata, "requester_metadata"));
    put_text(&mut out, "agentId", text(field(requester, "agent_id")));
    if !is_success(p) {
        put_text(&mut out, "errorStatus", text(field(info, "error_code")));
        if let Some(message) = text(field(info, "error_message")).or_else(|| text(p.get("error_str"))) {
            out.insert("errorMessage".into(), Value::String(cut(&message, MAX_ERROR_MESSAGE)));
        }
    }
    out
}

/// The client's metadata plus ours under "litellm", within the 16 KiB events allow.
fn event_metadata(p: &Value, request_id: &str) -> Value {
    let ours = litellm_metadata(p, request_id);
    let mut merged = client_metadata(object(p.get("metadata")));
    merged.insert("litellm".into(), Value::Object(ours.clone()));
    let merged = Value::Object(merged);
    if compact_size(&merged) <= MAX_METADATA_BYTES {
        return merged;
    }
    // Too large: the client's own metadata goes first, then the longest texts.
    let mut ours = ours;
    for key in ["tags", "errorMessage"] {
        if compact_size(&json!({ "litellm": ours })) <= MAX_METADATA_BYTES {
            break;
        }
        ours.remove(key);
    }
    json!({ "litellm": ours })
}

/// One StandardLoggingPayload as a usage event: the JSON object `POST /v1/usage/batch`
/// takes. The call id is the request id; the model loses its provider prefix; cached
/// tokens, cache writes, reasoning and audio tokens come from the usage object
/// ([`token_parts`]); time to first token only for streaming calls.
pub fn map_payload(p: &Value, store_bodies: bool) -> Value {
    let metadata = object(p.get("metadata"));
    let hidden = object(p.get("hidden_params"));
    let request_id = cut(
        &text(p.get("litellm_call_id"))
            .or_else(|| text(p.get("id")))
            .unwrap_or_default(),
        255,
    );
    let provider = provider_of(p);
    let model = model_of(p, &provider);
    let usage = usage_object(p);
    let prompt = count(p.get("prompt_tokens"));
    let completion = count(p.get("completion_tokens"));
    let mut event = Map::new();
    event.insert("requestId".into(), json!(request_id));
    event.insert("endpoint".into(), json!(endpoint_of(p)));
    // LiteLLM's provider names, in the catalog's words (`gemini` → `google`), after the
    // model lost LiteLLM's prefix.
    let provider = crate::domain::litellm_prices::catalog_provider(&provider);
    event.insert("provider".into(), json!(cut(&provider, 100)));
    event.insert("model".into(), json!(cut(&model, 200)));
    if let Some(user) = text(p.get("end_user")).or_else(|| text(field(metadata, "user_api_key_end_user_id"))) {
        event.insert("user".into(), json!(cut(&user, 256)));
    }
    let success = is_success(p);
    event.insert("status".into(), json!(if success { "success" } else { "error" }));
    if !success {
        let info = object(p.get("error_information"));
        let code = text(field(info, "error_class"))
            .or_else(|| text(field(info, "error_code")))
            .unwrap_or_else(|| "error".to_owned());
        event.insert("errorCode".into(), json!(cut(&code, 200)));
    }
    event.insert("promptTokens".into(), json!(prompt));
    event.insert("completionTokens".into(), json!(completion));
    for (key, value) in token_parts(usage, prompt, completion) {
        // Cached tokens always; the other parts only when the call had them.
        if key == "cachedTokens" || value != 0 {
            event.insert(key.into(), json!(value));
        }
    }
    let (start, end) = (number(p.get("startTime")), number(p.get("endTime")));
    if let (Some(start), Some(end)) = (start, end) {
        if end >= start {
            event.insert("latencyMs".into(), json!(millis(end - start)));
            let first = number(p.get("completionStartTime"));
            if let (Some(true), Some(first)) = (p.get("stream").and_then(Value::as_bool), first) {
                if start <= first && first <= end {
                    event.insert("timeToFirstTokenMs".into(), json!(millis(first - start)));
                }
            }
        }
    }
    event.insert("cacheHit".into(), json!(p.get("cache_hit") == Some(&Value::Bool(true))));
    let retries = count(field(
        object(field(hidden, "additional_headers")),
        "x-litellm-attempted-retries",
    ));
    event.insert("retries".into(), json!(retries.min(1000)));
    if let Some(started) = timestamp(start) {
        event.insert("startedAt".into(), json!(started));
    }
    let ordered = match (start, end) {
        (Some(s), Some(e)) => e >= s,
        _ => true,
    };
    if let (Some(ended), true) = (timestamp(end), ordered) {
        event.insert("endedAt".into(), json!(ended));
    }
    event.insert("metadata".into(), event_metadata(p, &request_id));
    if store_bodies {
        if let Some(messages) = p.get("messages").filter(|m| !m.is_null()) {
            event.insert("requestBody".into(), messages.clone());
        }
        let empty = |v: &Value| v.is_null() || v.as_object().is_some_and(Map::is_empty) || v.as_str() == Some("");
        if let Some(response) = p.get("response").filter(|r| !empty(r)) {
            event.insert("responseBody".into(), response.clone());
        }
    }
    Value::Object(event)
}

/// What the model calls of an A2A call inherit from it.
struct A2aCall {
    request_id: String,
    endpoint: String,
    user: Option<String>,
    agent_hash: Option<String>,
}

fn a2a_call_of(outer: &Value) -> A2aCall {
    let mapped = map_payload(outer, false);
    let get = |key: &str| mapped.get(key).and_then(Value::as_str).map(str::to_owned);
    A2aCall {
        request_id: get("requestId").unwrap_or_default(),
        endpoint: get("endpoint").unwrap_or_default(),
        user: get("user"),
        agent_hash: mapped
            .pointer("/metadata/litellm/agentId")
            .and_then(Value::as_str)
            .map(str::to_owned),
    }
}

/// Makes a model call an A2A agent made count as that A2A call: its request id (the
/// first model call; a later one gets `<id>:<n>`), route, user and agent.
fn attribute_to_a2a_call(mut event: Value, call: &A2aCall, position: usize) -> Value {
    let Some(e) = event.as_object_mut() else {
        return event;
    };
    let inner_id = e.get("requestId").cloned().unwrap_or(Value::Null);
    let request_id = if position == 0 {
        call.request_id.clone()
    } else {
        format!("{}:{position}", call.request_id)
    };
    e.insert("requestId".into(), json!(request_id));
    e.insert("endpoint".into(), json!(call.endpoint));
    if let Some(user) = &call.user {
        e.insert("user".into(), json!(user));
    }
    if let Some(Value::Object(litellm)) = e
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .map(|m| m.entry("litellm").or_insert_with(|| json!({})))
    {
        litellm.insert("a2aCallId".into(), json!(call.request_id));
        litellm.insert("modelCallId".into(), inner_id);
        if let Some(agent) = &call.agent_hash {
            litellm.insert("agentId".into(), json!(agent));
        }
    }
    event
}

/// What becomes of one payload of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Linked {
    /// Record this event.
    Event(Value),
    /// Not usage, or counted under another entry: why.
    Ignored(&'static str),
    /// Not a JSON object.
    Invalid(&'static str),
}

const IGNORED_DENIAL: &str = "refused by the Meterplane callback; no provider was called";
const IGNORED_ATTEMPT: &str = "a failed attempt of a call that succeeded later in this batch";
const IGNORED_A2A: &str = "an A2A call counted with its agent's model calls";

fn spans(outer: &Value, start: f64, end: f64) -> bool {
    match (number(outer.get("startTime")), number(outer.get("endTime"))) {
        (Some(s), Some(e)) => s <= start && end <= e,
        _ => false,
    }
}

/// The payloads of one batch, in order:
/// - a failure the Meterplane callback caused (a denial) is ignored;
/// - a failure followed in the batch by a success with the same call id (a router retry
///   or fallback) is ignored: the success carries the call;
/// - an A2A call and the model calls its agent made inside it (internal calls whose time
///   span lies inside the A2A call's, when exactly one A2A call spans them) are one
///   request: the model calls take the A2A call's request id, route, user and agent,
///   and the A2A call itself is ignored. An A2A call without such model calls is
///   recorded as it is.
pub fn link_batch(payloads: &[Value], store_bodies: bool) -> Vec<Linked> {
    let succeeded: std::collections::HashSet<String> = payloads
        .iter()
        .filter(|p| p.is_object() && is_success(p))
        .filter_map(|p| text(p.get("litellm_call_id")))
        .collect();
    let outers: Vec<usize> = (0..payloads.len())
        .filter(|&i| payloads[i].is_object() && is_a2a_call(&payloads[i]))
        .collect();
    let mut linked: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    let mut inner_of = std::collections::HashMap::new();
    for (i, p) in payloads.iter().enumerate() {
        if !p.is_object() || !is_internal_call(p) {
            continue;
        }
        let (Some(start), Some(end)) = (number(p.get("startTime")), number(p.get("endTime"))) else {
            continue;
        };
        let spanning: Vec<usize> = outers
            .iter()
            .copied()
            .filter(|&o| spans(&payloads[o], start, end))
            .collect();
        if let [outer] = spanning[..] {
            linked.entry(outer).or_default().push(i);
            inner_of.insert(i, outer);
        }
    }
    payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if !p.is_object() {
                Linked::Invalid("not a JSON object")
            } else if is_denial(p) {
                Linked::Ignored(IGNORED_DENIAL)
            } else if !is_success(p) && text(p.get("litellm_call_id")).is_some_and(|id| succeeded.contains(&id)) {
                Linked::Ignored(IGNORED_ATTEMPT)
            } else if linked.contains_key(&i) {
                Linked::Ignored(IGNORED_A2A)
            } else if let Some(&outer) = inner_of.get(&i) {
                let mut order = linked.get(&outer).cloned().unwrap_or_default();
                order.sort_by(|&a, &b| {
                    let start = |j: usize| number(payloads[j].get("startTime")).unwrap_or(0.0);
                    start(a).total_cmp(&start(b)).then(a.cmp(&b))
                });
                let position = order.iter().position(|&j| j == i).unwrap_or(0);
                Linked::Event(attribute_to_a2a_call(
                    map_payload(p, store_bodies),
                    &a2a_call_of(&payloads[outer]),
                    position,
                ))
            } else {
                Linked::Event(map_payload(p, store_bodies))
            }
        })
        .collect()
}

// ---- the endpoint ---------------------------------------------------------------------

fn payload_example() -> Value {
    json!({
        "litellm_call_id": "0f8c2e1a-5b7d-4c1e-9a3f-2d6b8e4c1a7f", "id": "chatcmpl-123", "call_type": "acompletion",
        "status": "success", "custom_llm_provider": "openai", "model": "openai/gpt-4o", "model_group": "gpt-4o",
        "end_user": "customer-42", "prompt_tokens": 2000, "completion_tokens": 100, "stream": false,
        "startTime": 1796222732.081, "endTime": 1796222732.9, "completionStartTime": 1796222732.9,
        "metadata": {"user_api_key_request_route": "/chat/completions",
                     "usage_object": {"prompt_tokens_details": {"cached_tokens": 1500}}},
        "hidden_params": {"additional_headers": {"x-litellm-attempted-retries": 0}}
    })
}

/// One StandardLoggingPayload as LiteLLM's `generic_api` logger posts it. Only the
/// fields below are read; every other member is accepted and ignored.
#[derive(ToSchema)]
#[schema(as = LitellmLoggingPayload, example = payload_example)]
#[allow(dead_code)] // documents the shape; the handler reads the payload as JSON
pub struct LitellmLoggingPayload {
    /// The request id Meterplane records (the idempotency key).
    litellm_call_id: Option<String>,
    /// The provider's response id on success, the call id on failure.
    id: Option<String>,
    /// `acompletion`, `aembedding`, `asend_message` (an A2A call), ...
    call_type: Option<String>,
    /// `success` or `failure`.
    status: Option<String>,
    custom_llm_provider: Option<String>,
    /// The model as sent to the provider, with its provider prefix (`openai/gpt-4o`).
    model: Option<String>,
    /// The alias the client asked for; kept in metadata.
    model_group: Option<String>,
    end_user: Option<String>,
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    stream: Option<bool>,
    cache_hit: Option<bool>,
    /// Epoch seconds.
    #[schema(rename = "startTime")]
    start_time: Option<f64>,
    #[schema(rename = "endTime")]
    end_time: Option<f64>,
    /// Epoch seconds of the first token (streaming calls).
    #[schema(rename = "completionStartTime")]
    completion_start_time: Option<f64>,
    /// `user_api_key_request_route`, `user_api_key_end_user_id`, `usage_object`,
    /// `requester_metadata` (the client's own metadata), ...
    #[schema(value_type = Option<JsonObject>)]
    metadata: Option<Value>,
    /// `additional_headers` (`x-litellm-attempted-retries`), `litellm_model_name`.
    #[schema(value_type = Option<JsonObject>)]
    hidden_params: Option<Value>,
    #[schema(value_type = Option<JsonObject>)]
    error_information: Option<Value>,
}

/// A batch as the `generic_api` logger posts it (`json_array`, 1 to 1,000 payloads),
/// or one payload (`single`).
pub struct LitellmLogs;

impl PartialSchema for LitellmLogs {
    fn schema() -> RefOr<Schema> {
        let payload = || Ref::from_schema_name("LitellmLoggingPayload");
        let schema = OneOfBuilder::new()
            .item(
                ArrayBuilder::new()
                    .items(payload())
                    .min_items(Some(1))
                    .max_items(Some(MAX_BATCH)),
            )
            .item(payload())
            .description(Some(
                "An array of 1 to 1,000 LiteLLM logging payloads (`log_format: json_array`), or one payload (`single`).",
            ));
        // `example`, as the derived schemas have it (deprecated in utoipa for `examples`).
        #[allow(deprecated)]
        let schema = schema.example(Some(json!([payload_example()])));
        schema.into()
    }
}

impl ToSchema for LitellmLogs {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("LitellmLogs")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((
            LitellmLoggingPayload::name().into_owned(),
            LitellmLoggingPayload::schema(),
        ));
        <LitellmLoggingPayload as ToSchema>::schemas(schemas);
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct LitellmLogsQuery {
    /// Store the call's messages and response as its request and response bodies
    /// (charged as data storage). Off by default.
    #[serde(default)]
    store_bodies: bool,
}

#[derive(Serialize, ToSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum LitellmResultStatus {
    Accepted,
    Duplicate,
    Rejected,
    /// Not usage (a call the Meterplane callback refused), or counted under another
    /// payload of the batch (a failed attempt of a call that then succeeded; an A2A
    /// call whose agent's model calls carry it).
    Ignored,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LitellmEventResult {
    /// Position in the submitted batch.
    index: usize,
    /// The request id recorded (or, for an ignored payload, its call id).
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    status: LitellmResultStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<Uuid>,
    /// USD, after discount.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Money>)]
    cost: Option<rust_decimal::Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unpriced: Option<bool>,
    /// On duplicates: `true` when this payload's content differs from the event
    /// recorded under its call id (nothing is changed; the first one stands).
    #[serde(skip_serializing_if = "Option::is_none")]
    conflict: Option<bool>,
    /// Why it was ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldError>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LitellmLogsResponse {
    accepted: usize,
    duplicates: usize,
    rejected: usize,
    ignored: usize,
    results: Vec<LitellmEventResult>,
}

enum Slot {
    Recorded(Option<String>),
    Ignored(Option<String>, &'static str),
    Invalid(&'static str),
}

fn result(index: usize, request_id: Option<String>, outcome: Outcome) -> LitellmEventResult {
    let mut result = LitellmEventResult {
        index,
        request_id,
        status: LitellmResultStatus::Rejected,
        event_id: None,
        cost: None,
        unpriced: None,
        conflict: None,
        reason: None,
        errors: vec![],
    };
    match outcome {
        Outcome::Accepted {
            event_id,
            cost,
            unpriced,
        } => {
            result.status = LitellmResultStatus::Accepted;
            result.event_id = Some(event_id);
            result.cost = Some(cost.normalize());
            result.unpriced = Some(unpriced);
        }
        Outcome::Duplicate { event_id, conflict } => {
            result.status = LitellmResultStatus::Duplicate;
            result.event_id = Some(event_id);
            result.conflict = Some(conflict);
        }
        Outcome::Rejected { errors } => result.errors = errors,
    }
    result
}

/// Records usage from LiteLLM's `generic_api` logger, as it posts it.
///
/// Set `GENERIC_LOGGER_ENDPOINT` to this URL and `GENERIC_LOGGER_HEADERS` to
/// `X-Api-Key=mp_…`, and add `generic_api` to the proxy's callbacks. Each payload is
/// mapped to a usage event (the call id is the idempotency key, so a batch LiteLLM
/// sends again is stored once) and answered on its own: accepted, duplicate, rejected
/// with reasons, or ignored with why. A 200 means every accepted event is stored.
#[utoipa::path(
    tag = "integrations",
    security(("api_key" = [])),
    params(LitellmLogsQuery),
    request_body = LitellmLogs,
    responses(
        (status = 200, description = "Each payload's result, in submission order", body = LitellmLogsResponse),
        (status = 400, description = "The body is not JSON, or a bad parameter", body = Problem),
        (status = 401, description = "Missing or unknown API key", body = Problem),
        (status = 413, description = "The body is larger than the batch limit", body = Problem),
        (status = 422, description = "Not an array of payloads or one payload; empty, or more than 1,000", body = Problem),
    )
)]
#[post("")] // mounted at /v1/integrations/litellm/logs, in a scope with the batch body limit
pub async fn record_litellm_logs(
    state: web::Data<AppState>,
    key: GatewayKey,
    query: web::Query<LitellmLogsQuery>,
    body: web::Json<Value>,
) -> AppResult<web::Json<LitellmLogsResponse>> {
    let payloads = match body.into_inner() {
        Value::Array(items) => items,
        single @ Value::Object(_) => vec![single],
        _ => {
            return Err(AppError::invalid_field(
                "body",
                "must be an array of LiteLLM logging payloads, or one payload",
            ))
        }
    };
    if payloads.is_empty() || payloads.len() > MAX_BATCH {
        return Err(AppError::invalid_field(
            "body",
            format!("must hold 1 to {MAX_BATCH} payloads, got {}", payloads.len()),
        ));
    }
    let received_at = Utc::now();
    let body_cap = state.ingest.settings().body_cap_bytes;
    let call_id = |p: &Value| text(p.get("litellm_call_id")).or_else(|| text(p.get("id")));
    let mut events = Vec::new();
    let mut slots = Vec::with_capacity(payloads.len());
    for (payload, linked) in payloads.iter().zip(link_batch(&payloads, query.store_bodies)) {
        match linked {
            Linked::Event(event) => {
                let request_id = event.get("requestId").and_then(Value::as_str).map(str::to_owned);
                events.push(match serde_json::from_value::<UsageEventRequest>(event) {
                    Ok(req) => parse_event(req, body_cap, received_at),
                    Err(e) => Err(vec![FieldError {
                        field: "event".into(),
                        message: e.to_string(),
                    }]),
                });
                slots.push(Slot::Recorded(request_id));
            }
            Linked::Ignored(reason) => slots.push(Slot::Ignored(call_id(payload), reason)),
            Linked::Invalid(reason) => slots.push(Slot::Invalid(reason)),
        }
    }
    let mut outcomes = if events.is_empty() {
        Vec::new()
    } else {
        record_and_settle(&state, &key.0, events).await?
    }
    .into_iter();
    let mut results = Vec::with_capacity(slots.len());
    for (index, slot) in slots.into_iter().enumerate() {
        results.push(match slot {
            Slot::Recorded(request_id) => {
                let outcome = outcomes
                    .next()
                    .ok_or_else(|| AppError::internal(anyhow::anyhow!("ingest returned too few outcomes")))?;
                result(index, request_id, outcome)
            }
            Slot::Ignored(request_id, reason) => LitellmEventResult {
                index,
                request_id,
                status: LitellmResultStatus::Ignored,
                event_id: None,
                cost: None,
                unpriced: None,
                conflict: None,
                reason: Some(reason.to_owned()),
                errors: vec![],
            },
            Slot::Invalid(reason) => result(
                index,
                None,
                Outcome::Rejected {
                    errors: vec![FieldError {
                        field: "payload".into(),
                        message: reason.to_owned(),
                    }],
                },
            ),
        });
    }
    let count = |status| results.iter().filter(|r| r.status == status).count();
    Ok(web::Json(LitellmLogsResponse {
        accepted: count(LitellmResultStatus::Accepted),
        duplicates: count(LitellmResultStatus::Duplicate),
        rejected: count(LitellmResultStatus::Rejected),
        ignored: count(LitellmResultStatus::Ignored),
        results,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const PAYLOADS: &str = include_str!("../../integrations/litellm/tests/fixtures/payloads.json");
    const EXPECTED: &str = include_str!("../../integrations/litellm/tests/fixtures/expected.json");

    fn fixtures() -> (Vec<(String, Value)>, Value) {
        let payloads: Vec<Value> = serde_json::from_str(PAYLOADS).unwrap();
        let named = payloads
            .into_iter()
            .map(|x| (x["name"].as_str().unwrap().to_owned(), x["payload"].clone()))
            .collect();
        (named, serde_json::from_str(EXPECTED).unwrap())
    }

    fn payload(name: &str) -> Value {
        fixtures().0.into_iter().find(|(n, _)| n == name).unwrap().1
    }

    #[test]
    fn every_fixture_maps_as_the_python_callback_maps_it() {
        let (payloads, expected) = fixtures();
        for (name, p) in &payloads {
            assert_eq!(map_payload(p, false), expected["events"][name], "fixture {name}");
        }
    }

    #[test]
    fn the_fixture_batch_links_as_the_python_callback_links_it() {
        let (payloads, expected) = fixtures();
        let payloads: Vec<Value> = payloads.into_iter().map(|(_, p)| p).collect();
        let linked: Vec<Value> = link_batch(&payloads, false)
            .into_iter()
            .map(|l| match l {
                Linked::Event(e) => json!({"outcome": "event", "value": e}),
                Linked::Ignored(r) => json!({"outcome": "ignored", "value": r}),
                Linked::Invalid(r) => json!({"outcome": "invalid", "value": r}),
            })
            .collect();
        assert_eq!(Value::Array(linked), expected["batch"]);
    }

    #[test]
    fn the_request_id_is_the_call_id_and_the_model_loses_its_prefix() {
        let p = payload("cached");
        let e = map_payload(&p, false);
        assert_eq!(e["requestId"], p["litellm_call_id"]);
        assert_eq!(
            (e["provider"].as_str(), e["model"].as_str()),
            (Some("openai"), Some("gpt-4o"))
        );
        assert_eq!(
            (e["promptTokens"].as_i64(), e["cachedTokens"].as_i64()),
            (Some(2000), Some(1500))
        );
        assert_eq!(e["metadata"]["litellm"]["modelGroup"], "cached");
    }

    #[test]
    fn gemini_calls_count_under_the_catalogs_google() {
        let mut gemini = payload("chat");
        gemini["custom_llm_provider"] = json!("gemini");
        gemini["model"] = json!("gemini/gemini-2.5-pro");
        let e = map_payload(&gemini, false);
        assert_eq!(
            (e["provider"].as_str(), e["model"].as_str()),
            (Some("google"), Some("gemini-2.5-pro"))
        );
        let mut other = payload("chat");
        other["custom_llm_provider"] = json!("Bedrock");
        other["model"] = json!("bedrock/amazon.nova-pro-v1:0");
        let e = map_payload(&other, false);
        assert_eq!(
            (e["provider"].as_str(), e["model"].as_str()),
            (Some("bedrock"), Some("amazon.nova-pro-v1:0"))
        );
    }

    #[test]
    fn cache_writes_reasoning_and_audio_tokens_come_from_the_usage_object() {
        let with_usage = |prompt: i64, completion: i64, usage: Value| {
            let mut p = payload("cached");
            p["prompt_tokens"] = json!(prompt);
            p["completion_tokens"] = json!(completion);
            p["metadata"]["usage_object"] = usage;
            map_payload(&p, false)
        };
        let claude = with_usage(
            50_000,
            1_000,
            json!({
                "prompt_tokens_details": {
                    "cached_tokens": 30000, "cache_creation_tokens": 10000,
                    "cache_creation_token_details": {"ephemeral_5m_input_tokens": 8000, "ephemeral_1h_input_tokens": 2000},
                },
                "completion_tokens_details": {"reasoning_tokens": 400},
            }),
        );
        let parts = |e: &Value, keys: &[&str]| {
            keys.iter()
                .map(|k| e.get(*k).and_then(Value::as_i64))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            parts(
                &claude,
                &[
                    "cachedTokens",
                    "cacheWrite5mTokens",
                    "cacheWrite1hTokens",
                    "reasoningTokens",
                    "audioInputTokens"
                ]
            ),
            [Some(30_000), Some(8_000), Some(2_000), Some(400), None]
        );
        // Without durations, a cache write is a 5-minute write; parts never exceed their total.
        let audio = with_usage(
            1_500,
            900,
            json!({
                "cache_creation_input_tokens": 100,
                "prompt_tokens_details": {"audio_tokens": 1600},
                "completion_tokens_details": {"audio_tokens": 700, "reasoning_tokens": 300},
            }),
        );
        assert_eq!(
            parts(
                &audio,
                &[
                    "cachedTokens",
                    "cacheWrite5mTokens",
                    "audioInputTokens",
                    "reasoningTokens",
                    "audioOutputTokens"
                ]
            ),
            [Some(0), Some(100), Some(1_400), Some(300), Some(600)]
        );
    }

    #[test]
    fn time_to_first_token_only_when_streaming() {
        assert!(
            map_payload(&payload("stream"), false)["timeToFirstTokenMs"]
                .as_i64()
                .unwrap()
                > 0
        );
        assert!(map_payload(&payload("chat"), false).get("timeToFirstTokenMs").is_none());
    }

    #[test]
    fn retries_come_from_the_attempted_retries_header() {
        let mut p = payload("fallback_success");
        p["hidden_params"]["additional_headers"]["x-litellm-attempted-retries"] = json!(3);
        assert_eq!(map_payload(&p, false)["retries"], 3);
        p["hidden_params"]["additional_headers"]["x-litellm-attempted-retries"] = json!("2");
        assert_eq!(map_payload(&p, false)["retries"], 2);
    }

    #[test]
    fn an_a2a_call_and_its_model_call_are_one_request() {
        let batch = [payload("a2a_model_call"), payload("a2a_call")];
        let linked = link_batch(&batch, false);
        let Linked::Event(e) = &linked[0] else {
            panic!("{linked:?}")
        };
        assert_eq!(e["requestId"], batch[1]["litellm_call_id"]);
        assert_eq!(
            (e["endpoint"].as_str(), e["user"].as_str()),
            (Some("/a2a/planner"), Some("cust-a2a"))
        );
        assert_eq!(e["promptTokens"], 10);
        assert_eq!(linked[1], Linked::Ignored(IGNORED_A2A));
    }

    #[test]
    fn denials_and_superseded_attempts_are_ignored() {
        assert_eq!(
            link_batch(&[payload("denied")], false),
            vec![Linked::Ignored(IGNORED_DENIAL)]
        );
        let linked = link_batch(
            &[payload("fallback_failed_attempt"), payload("fallback_success")],
            false,
        );
        assert_eq!(linked[0], Linked::Ignored(IGNORED_ATTEMPT));
        assert!(matches!(&linked[1], Linked::Event(e) if e["status"] == "success"));
        // Alone, the failed attempt is an error event.
        assert!(matches!(&link_batch(&[payload("error")], false)[0], Linked::Event(e) if e["status"] == "error"));
    }

    #[test]
    fn metadata_stays_within_the_limit() {
        let mut p = payload("chat");
        p["metadata"]["requester_metadata"]["blob"] = json!("x".repeat(MAX_METADATA_BYTES + 10));
        let e = map_payload(&p, false);
        assert!(compact_size(&e["metadata"]) <= MAX_METADATA_BYTES);
        assert!(e["metadata"].get("blob").is_none());
        assert_eq!(e["metadata"]["litellm"]["modelGroup"], "chat");
    }

    #[test]
    fn garbage_maps_without_panicking() {
        for junk in [
            json!({}),
            json!({"status": "failure", "prompt_tokens": -3, "startTime": "x", "metadata": []}),
            json!({"prompt_tokens": 1e300, "startTime": 1e300, "endTime": f64::MAX, "model": "é/ü", "custom_llm_provider": "é"}),
            json!({"model": "openai/", "custom_llm_provider": "openai", "request_tags": [1, null, "a"]}),
        ] {
            let e = map_payload(&junk, true);
            assert!(e["requestId"].is_string() && e["model"].is_string(), "{e}");
        }
        assert_eq!(
            link_batch(&[json!(42)], false),
            vec![Linked::Invalid("not a JSON object")]
        );
        assert_eq!(
            timestamp(Some(1796222732.081241)).as_deref(),
            Some("2026-12-02T14:45:32.081241Z")
        );
        assert_eq!(timestamp(Some(f64::MAX)), None);
    }
}
