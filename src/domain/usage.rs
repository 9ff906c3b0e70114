//! A usage event as Meterplane records it: the rules an incoming event must meet, and
//! how it is priced.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    discount::{self, DiscountRule},
    pricing::{compute_cost, Catalog, Cost, OrgPrices, Quantities},
    project_mode::ProjectMode,
    Invalid,
};

/// Bounds that separate real calls from absurd input.
pub const MAX_TOKENS: i64 = 100_000_000;
pub const MAX_IMAGES: i32 = 10_000;
pub const MAX_DURATION_MS: i32 = 24 * 3600 * 1000;
pub const MAX_RETRIES: i32 = 1_000;
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
pub const MAX_TAGS: usize = 20;
pub const MAX_TAG_CHARS: usize = 64;
pub const MAX_API_BASE_CHARS: usize = 2048;
/// How far ahead of the server clock an event may be stamped (clock skew).
pub const FUTURE_TOLERANCE: Duration = Duration::minutes(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, strum::EnumString)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum EventStatus {
    Success,
    Error,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error => "error",
        }
    }
}

/// Whose provider keys paid for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, strum::EnumString)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum BillingSource {
    Credits,
    ApiKeys,
}

impl BillingSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Credits => "credits",
            Self::ApiKeys => "api-keys",
        }
    }

    /// A `credits` or `api-keys` project decides on its own; a `hybrid` project takes
    /// what the gateway reports, `credits` when it reports nothing.
    pub fn resolve(mode: ProjectMode, reported: Option<BillingSource>) -> Result<Self, Invalid> {
        let fixed = match mode {
            ProjectMode::Credits => Self::Credits,
            ProjectMode::ApiKeys => Self::ApiKeys,
            ProjectMode::Hybrid => return Ok(reported.unwrap_or(Self::Credits)),
        };
        match reported {
            Some(source) if source != fixed => Err(Invalid::new(format!(
                "the project is in {} mode; calls cannot be paid by {}",
                mode.as_str(),
                source.as_str()
            ))),
            _ => Ok(fixed),
        }
    }
}

/// An event that passed validation, before pricing.
#[derive(Debug, Clone, PartialEq)]
pub struct NewUsageEvent {
    pub request_id: String,
    pub endpoint: String,
    pub provider: String,
    pub model: String,
    /// The tenant's end customer (`user` on the wire).
    pub customer: Option<String>,
    pub agent: Option<String>,
    pub status: EventStatus,
    pub error_code: Option<String>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    /// The parts of `prompt_tokens` and `completion_tokens` priced apart; see
    /// `domain::pricing` for the convention.
    pub cache_write_5m_tokens: i64,
    pub cache_write_1h_tokens: i64,
    pub reasoning_tokens: i64,
    pub audio_input_tokens: i64,
    pub audio_output_tokens: i64,
    /// Images the call generated.
    pub images: i32,
    /// Images sent with the request.
    pub input_images: i32,
    pub latency_ms: Option<i32>,
    pub ttft_ms: Option<i32>,
    pub cache_hit: bool,
    pub retries: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// When the call happened: its start, else its end, else when it was received.
    pub occurred_at: DateTime<Utc>,
    pub metadata: Option<serde_json::Value>,
    pub request_body: Option<String>,
    pub response_body: Option<String>,
    pub bodies_truncated: bool,
    pub billing_source: Option<BillingSource>,
    /// What kind of call it was, as the gateway names it (`completion`, `embedding`, …).
    pub call_type: Option<String>,
    /// The gateway's id of the deployment that served the call.
    pub model_id: Option<String>,
    /// The upstream API called, without credentials, query or fragment ([`api_base`]).
    pub api_base: Option<String>,
    /// The caller's address, redacted ([`redact_ip`]); the full address is never kept.
    pub client_ip: Option<String>,
    pub tags: Vec<String>,
    /// Time the gateway itself added to the call, in milliseconds.
    pub gateway_overhead_ms: Option<i32>,
}

impl NewUsageEvent {
    pub fn stores_bodies(&self) -> bool {
        self.request_body.is_some() || self.response_body.is_some()
    }

    /// A fingerprint of what the event reports, stored with its request id so that a
    /// retry carrying other content is told apart from a plain retry.
    ///
    /// It covers every field as Meterplane records it — endpoint, provider, model,
    /// customer, agent, status, error code, token and image counts, latencies, cache
    /// hit, retries, start and end times, metadata, the bodies (as stored: cut to the
    /// cap, absent when redacted), billing source, call type, model id, API base,
    /// client address (redacted), tags, gateway overhead, cache-write, reasoning and
    /// audio token counts — except the request id itself and
    /// the event time when the event gives neither `startedAt` nor `endedAt` (it is the
    /// time of receipt, which a retry cannot repeat). Names compare as names do
    /// (case-insensitively); metadata compares as JSON (key order does not matter).
    /// The first 64 bits of a SHA-256 over a length-prefixed encoding.
    pub fn fingerprint(&self) -> i64 {
        let mut f = Fingerprint::default();
        f.text(Some(&self.endpoint));
        f.text(Some(&self.provider.to_lowercase()));
        f.text(Some(&self.model.to_lowercase()));
        f.text(self.customer.as_deref());
        f.text(self.agent.as_deref());
        f.text(Some(self.status.as_str()));
        f.text(self.error_code.as_deref());
        for count in [self.prompt_tokens, self.completion_tokens, self.cached_tokens] {
            f.int(Some(count));
        }
        f.int(Some(i64::from(self.images)));
        f.int(self.latency_ms.map(i64::from));
        f.int(self.ttft_ms.map(i64::from));
        f.int(Some(i64::from(self.cache_hit)));
        f.int(Some(i64::from(self.retries)));
        for at in [self.started_at, self.ended_at] {
            f.time(at);
        }
        let mut metadata = String::new();
        if let Some(value) = &self.metadata {
            canonical_json(value, &mut metadata);
        }
        f.text(self.metadata.as_ref().map(|_| metadata.as_str()));
        f.text(self.request_body.as_deref());
        f.text(self.response_body.as_deref());
        f.int(Some(i64::from(self.bodies_truncated)));
        f.text(self.billing_source.map(BillingSource::as_str));
        f.int(Some(i64::from(self.input_images)));
        f.text(self.call_type.as_deref());
        f.text(self.model_id.as_deref());
        f.text(self.api_base.as_deref());
        f.text(self.client_ip.as_deref());
        f.int(Some(self.tags.len() as i64));
        for tag in &self.tags {
            f.text(Some(tag));
        }
        f.int(self.gateway_overhead_ms.map(i64::from));
        // Counts added later are fed only when one is set, so an event that reports none
        // keeps the fingerprint it had before they existed (a retry of it is no conflict).
        let later = [
            self.cache_write_5m_tokens,
            self.cache_write_1h_tokens,
            self.reasoning_tokens,
            self.audio_input_tokens,
            self.audio_output_tokens,
        ];
        if later.iter().any(|n| *n != 0) {
            for count in later {
                f.int(Some(count));
            }
        }
        f.finish()
    }
}

/// Feeds fields to SHA-256, each tagged (absent/present) and length-prefixed, so no two
/// different sequences of fields encode alike.
#[derive(Default)]
struct Fingerprint(Sha256);

impl Fingerprint {
    fn text(&mut self, value: Option<&str>) {
        match value {
            None => self.0.update([0]),
            Some(text) => {
                self.0.update([1]);
                self.0.update((text.len() as u64).to_le_bytes());
                self.0.update(text.as_bytes());
            }
        }
    }

    fn int(&mut self, value: Option<i64>) {
        match value {
            None => self.0.update([0]),
            Some(n) => {
                self.0.update([1]);
                self.0.update(n.to_le_bytes());
            }
        }
    }

    fn time(&mut self, value: Option<DateTime<Utc>>) {
        self.int(value.map(|t| t.timestamp()));
        self.int(value.map(|t| i64::from(t.timestamp_subsec_nanos())));
    }

    fn finish(self) -> i64 {
        let digest = self.0.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(first)
    }
}

/// JSON with object keys sorted, whatever order they arrived in.
fn canonical_json(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(item) = map.get(key) {
                    canonical_json(item, out);
                }
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// `/a2a/{agentId}` (and anything below it) names the agent that was called.
pub fn agent_from_endpoint(endpoint: &str) -> Option<&str> {
    let rest = endpoint.strip_prefix("/a2a/")?;
    let agent = rest.split(['/', '?']).next()?;
    (!agent.is_empty()).then_some(agent)
}

/// Cuts a body to at most `cap` bytes on a character boundary; `true` if it was cut.
pub fn cap_body(body: String, cap: usize) -> (String, bool) {
    if body.len() <= cap {
        return (body, false);
    }
    let mut end = cap;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    (body[..end].to_owned(), true)
}

/// The caller's address as kept: an IPv4 address with its last octet zeroed
/// (`203.0.113.77` → `203.0.113.0`), an IPv6 address cut to its /48 prefix
/// (`2001:db8:abcd:12::1` → `2001:db8:abcd::`). IPv4-mapped IPv6 addresses count as
/// IPv4. The full address is never stored.
pub fn redact_ip(raw: &str) -> Result<String, Invalid> {
    let ip: std::net::IpAddr = raw
        .trim()
        .parse()
        .map_err(|_| Invalid::new("must be an IPv4 or IPv6 address"))?;
    Ok(match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            std::net::Ipv4Addr::new(a, b, c, 0).to_string()
        }
        std::net::IpAddr::V6(v6) => std::net::Ipv6Addr::from(u128::from(v6) & (!0u128 << 80)).to_string(),
    })
}

/// The upstream API base as kept: an absolute `http(s)` URL without user name,
/// password, query or fragment (where credentials end up), at most 2,048 characters.
pub fn api_base(raw: &str) -> Result<String, Invalid> {
    let mut url = url::Url::parse(raw.trim()).map_err(|_| Invalid::new("must be an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Invalid::new("must be an http or https URL"));
    }
    // Neither can fail on an http(s) URL.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    let kept = url.to_string();
    if kept.chars().count() > MAX_API_BASE_CHARS {
        return Err(Invalid::new(format!("must be at most {MAX_API_BASE_CHARS} characters")));
    }
    Ok(kept)
}

/// Tags: at most 20, each 1 to 64 characters without control characters; repeats are
/// kept once, in first-seen order.
pub fn tags(raw: &[String]) -> Result<Vec<String>, Invalid> {
    if raw.len() > MAX_TAGS {
        return Err(Invalid::new(format!("must hold at most {MAX_TAGS} tags")));
    }
    let mut kept: Vec<String> = Vec::with_capacity(raw.len());
    for tag in raw {
        let tag = bounded_text(tag, MAX_TAG_CHARS)?;
        if !kept.contains(&tag) {
            kept.push(tag);
        }
    }
    Ok(kept)
}

/// PostgreSQL `text` and `jsonb` cannot hold NUL; stored bodies get U+FFFD instead.
pub fn without_nul(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

/// Whether a JSON value holds a NUL anywhere (keys included), which `jsonb` refuses.
pub fn json_has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(json_has_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v)),
        _ => false,
    }
}

/// Checks a text field's length in characters.
pub fn bounded_text(value: &str, max: usize) -> Result<String, Invalid> {
    // Before trimming: some characters (U+0085) are both whitespace and control.
    if value.chars().any(char::is_control) {
        return Err(Invalid::new("must not contain control characters"));
    }
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(Invalid::new("must not be empty"));
    }
    if trimmed.chars().count() > max {
        return Err(Invalid::new(format!("must be at most {max} characters")));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(Invalid::new("must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}

pub fn bounded_count<T: PartialOrd + Default + std::fmt::Display + Copy>(value: T, max: T) -> Result<T, Invalid> {
    if value < T::default() {
        return Err(Invalid::new("must not be negative"));
    }
    if value > max {
        return Err(Invalid::new(format!("must be at most {max}")));
    }
    Ok(value)
}

/// The event must fall inside the organization's retention window: older data is not
/// kept, and an event stamped in the future is a clock error.
pub fn check_window(occurred_at: DateTime<Utc>, now: DateTime<Utc>, retention_days: i32) -> Result<(), Invalid> {
    if occurred_at > now + FUTURE_TOLERANCE {
        return Err(Invalid::new("the event time is in the future"));
    }
    if occurred_at < retention_start(now, retention_days) {
        return Err(Invalid::new(format!(
            "the event is older than the organization's {retention_days}-day retention"
        )));
    }
    Ok(())
}

/// The oldest instant an organization keeps: midnight UTC, `retention_days - 1` days
/// before today (a 3-day retention keeps today and the two days before).
pub fn retention_start(now: DateTime<Utc>, retention_days: i32) -> DateTime<Utc> {
    let today = now.date_naive();
    let first_day = today - Duration::days(i64::from(retention_days.max(1)) - 1);
    first_day.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or(now)
}

/// Everything pricing needs besides the event itself.
pub struct PricingContext<'a> {
    pub org_id: Uuid,
    pub project_mode: ProjectMode,
    pub retention_days: i32,
    pub now: DateTime<Utc>,
    pub catalog: &'a Catalog,
    /// The organization's negotiated prices, which win over the catalog's.
    pub overrides: &'a OrgPrices,
    pub discounts: &'a [DiscountRule],
    /// USD per million tokens of calls whose bodies are stored.
    pub storage_per_mtok: Decimal,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PricedEvent {
    pub event: NewUsageEvent,
    pub billing_source: BillingSource,
    /// The price version applied: the organization's override or the catalog's.
    /// `None`: neither prices the model; the event costs zero.
    pub price_id: Option<Uuid>,
    /// The name roll-ups count the call under ([`Catalog::canonical_model`]): the
    /// catalog id whenever the catalog knows the model (so `gpt-4o-2024-08-06` and
    /// `GPT-4o` report as `gpt-4o`), otherwise the reported name in lower case.
    pub canonical_model: String,
    pub discount_id: Option<Uuid>,
    pub cost: Cost,
}

pub fn price_event(event: NewUsageEvent, ctx: &PricingContext<'_>) -> Result<PricedEvent, Invalid> {
    check_window(event.occurred_at, ctx.now, ctx.retention_days)?;
    let billing_source = BillingSource::resolve(ctx.project_mode, event.billing_source)?;
    let entry = ctx
        .catalog
        .lookup_for(ctx.overrides, &event.provider, &event.model, event.occurred_at);
    let names: Vec<&str> = match entry {
        Some(e) => vec![e.model.as_str(), e.provider_model_name.as_str()],
        None => vec![event.model.as_str()],
    };
    let subject = discount::Subject {
        org_id: ctx.org_id,
        provider: &event.provider,
        model_names: &names,
        at: event.occurred_at,
    };
    // A discount of nothing is no discount: unpriced calls record none.
    let discount = entry.and_then(|_| discount::applicable(ctx.discounts, &subject));
    let quantities = Quantities {
        prompt_tokens: event.prompt_tokens,
        completion_tokens: event.completion_tokens,
        cached_tokens: event.cached_tokens,
        cache_write_5m_tokens: event.cache_write_5m_tokens,
        cache_write_1h_tokens: event.cache_write_1h_tokens,
        reasoning_tokens: event.reasoning_tokens,
        audio_input_tokens: event.audio_input_tokens,
        audio_output_tokens: event.audio_output_tokens,
        images: event.images,
        input_images: event.input_images,
        stored_tokens: if event.stores_bodies() {
            event.prompt_tokens + event.completion_tokens
        } else {
            0
        },
    };
    let cost = compute_cost(
        &quantities,
        entry.map(|e| &e.price),
        ctx.storage_per_mtok,
        discount.map_or(Decimal::ZERO, |d| d.percent),
    )?;
    Ok(PricedEvent {
        billing_source,
        price_id: entry.map(|e| e.price.id),
        canonical_model: ctx.catalog.canonical_model(&event.provider, &event.model),
        discount_id: discount.map(|d| d.id),
        cost,
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn agent_ids_come_from_a2a_paths() {
        assert_eq!(agent_from_endpoint("/a2a/planner"), Some("planner"));
        assert_eq!(agent_from_endpoint("/a2a/planner/tasks?x=1"), Some("planner"));
        assert_eq!(agent_from_endpoint("/a2a/"), None);
        assert_eq!(agent_from_endpoint("/chat/completions"), None);
    }

    #[test]
    fn bodies_are_cut_on_character_boundaries() {
        assert_eq!(cap_body("héllo".into(), 2), ("h".into(), true));
        assert_eq!(cap_body("hello".into(), 5), ("hello".into(), false));
    }

    #[test]
    fn retention_window_is_whole_utc_days() {
        let now = Utc.with_ymd_and_hms(2026, 5, 10, 15, 0, 0).unwrap();
        assert_eq!(
            retention_start(now, 3),
            Utc.with_ymd_and_hms(2026, 5, 8, 0, 0, 0).unwrap()
        );
        assert!(check_window(Utc.with_ymd_and_hms(2026, 5, 8, 0, 0, 0).unwrap(), now, 3).is_ok());
        assert!(check_window(Utc.with_ymd_and_hms(2026, 5, 7, 23, 59, 59).unwrap(), now, 3).is_err());
        assert!(check_window(now + Duration::minutes(4), now, 3).is_ok());
        assert!(check_window(now + Duration::minutes(6), now, 3).is_err());
    }

    #[test]
    fn billing_source_follows_the_project_mode() {
        use BillingSource::*;
        assert_eq!(BillingSource::resolve(ProjectMode::Credits, None), Ok(Credits));
        assert_eq!(BillingSource::resolve(ProjectMode::ApiKeys, Some(ApiKeys)), Ok(ApiKeys));
        assert!(BillingSource::resolve(ProjectMode::Credits, Some(ApiKeys)).is_err());
        assert_eq!(BillingSource::resolve(ProjectMode::Hybrid, Some(ApiKeys)), Ok(ApiKeys));
        assert_eq!(BillingSource::resolve(ProjectMode::Hybrid, None), Ok(Credits));
    }

    #[test]
    fn nul_characters_are_found_and_replaced() {
        assert_eq!(without_nul("a\0b".into()), "a\u{FFFD}b");
        assert!(json_has_nul(&serde_json::json!({"k": ["x", "a\u{0}b"]})));
        assert!(json_has_nul(&serde_json::json!({"a\u{0}": 1})));
        assert!(!json_has_nul(&serde_json::json!({"k": "fine\n"})));
    }

    fn sample() -> NewUsageEvent {
        NewUsageEvent {
            request_id: "req-1".into(),
            endpoint: "/chat/completions".into(),
            provider: "openai".into(),
            model: "gpt-4o".into(),
            customer: Some("c".into()),
            agent: None,
            status: EventStatus::Success,
            error_code: None,
            prompt_tokens: 10,
            completion_tokens: 5,
            cached_tokens: 0,
            cache_write_5m_tokens: 0,
            cache_write_1h_tokens: 0,
            reasoning_tokens: 0,
            audio_input_tokens: 0,
            audio_output_tokens: 0,
            images: 0,
            latency_ms: Some(100),
            ttft_ms: None,
            cache_hit: false,
            retries: 0,
            started_at: None,
            ended_at: None,
            occurred_at: Utc.with_ymd_and_hms(2026, 5, 10, 15, 0, 0).unwrap(),
            metadata: Some(serde_json::json!({"a": 1, "b": {"y": [1, 2], "x": null}})),
            request_body: None,
            response_body: None,
            bodies_truncated: false,
            billing_source: None,
            input_images: 0,
            call_type: Some("completion".into()),
            model_id: None,
            api_base: None,
            client_ip: Some("203.0.113.0".into()),
            tags: vec!["a".into(), "b".into()],
            gateway_overhead_ms: Some(3),
        }
    }

    #[test]
    fn fingerprints_tell_other_content_from_a_plain_retry() {
        let original = sample();
        let same = NewUsageEvent {
            // Received later, with keys in another order and the model in another case.
            occurred_at: original.occurred_at + Duration::seconds(30),
            metadata: Some(serde_json::json!({"b": {"x": null, "y": [1, 2]}, "a": 1})),
            model: "GPT-4o".into(),
            ..original.clone()
        };
        assert_eq!(original.fingerprint(), same.fingerprint());
        let others = [
            NewUsageEvent {
                completion_tokens: 6,
                ..original.clone()
            },
            NewUsageEvent {
                customer: None,
                ..original.clone()
            },
            NewUsageEvent {
                agent: Some("c".into()),
                customer: None,
                ..original.clone()
            },
            NewUsageEvent {
                metadata: Some(serde_json::json!({"a": 1, "b": {"y": [2, 1], "x": null}})),
                ..original.clone()
            },
            NewUsageEvent {
                started_at: Some(original.occurred_at),
                ..original.clone()
            },
            NewUsageEvent {
                request_body: Some(String::new()),
                ..original.clone()
            },
            NewUsageEvent {
                status: EventStatus::Error,
                ..original.clone()
            },
            NewUsageEvent {
                tags: vec!["b".into(), "a".into()],
                ..original.clone()
            },
            NewUsageEvent {
                tags: vec!["ab".into()],
                ..original.clone()
            },
            NewUsageEvent {
                input_images: 1,
                ..original.clone()
            },
            NewUsageEvent {
                gateway_overhead_ms: None,
                ..original.clone()
            },
            NewUsageEvent {
                reasoning_tokens: 1,
                ..original.clone()
            },
            NewUsageEvent {
                audio_output_tokens: 1,
                ..original.clone()
            },
        ];
        for other in others {
            assert_ne!(original.fingerprint(), other.fingerprint(), "{other:?}");
        }
    }

    #[test]
    fn an_event_without_the_later_counts_keeps_the_fingerprint_it_had_before_them() {
        // The value the encoding gave `sample()` before cache writes, reasoning and
        // audio were counted: a retry of an event recorded then is no conflict.
        assert_eq!(sample().fingerprint(), 2_912_422_923_620_735_229);
    }

    #[test]
    fn client_addresses_are_kept_only_redacted() {
        assert_eq!(redact_ip("203.0.113.77").unwrap(), "203.0.113.0");
        assert_eq!(redact_ip(" 10.1.2.3 ").unwrap(), "10.1.2.0");
        assert_eq!(redact_ip("2001:db8:abcd:12:3456::1").unwrap(), "2001:db8:abcd::");
        assert_eq!(redact_ip("::ffff:198.51.100.9").unwrap(), "198.51.100.0");
        assert_eq!(redact_ip("::1").unwrap(), "::");
        assert!(redact_ip("203.0.113").is_err());
        assert!(redact_ip("example.com").is_err());
    }

    #[test]
    fn api_bases_lose_credentials_query_and_fragment() {
        assert_eq!(
            api_base("https://user:secret@example.openai.azure.com/openai/v1?api-key=sk-1#x").unwrap(),
            "https://example.openai.azure.com/openai/v1"
        );
        assert_eq!(api_base("http://10.0.0.5:8000").unwrap(), "http://10.0.0.5:8000/");
        assert!(api_base("ftp://example.com").is_err());
        assert!(api_base("/relative").is_err());
    }

    #[test]
    fn tags_are_bounded_and_kept_once() {
        let t = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(tags(&t(&["prod", " beta ", "prod"])).unwrap(), t(&["prod", "beta"]));
        assert!(tags(&t(&[""])).is_err());
        assert!(tags(&t(&[&"x".repeat(65)])).is_err());
        assert!(tags(&vec!["x".to_owned(); 21]).is_err());
    }

    #[test]
    fn counts_are_bounded() {
        assert!(bounded_count(-1i64, MAX_TOKENS).is_err());
        assert!(bounded_count(MAX_TOKENS + 1, MAX_TOKENS).is_err());
        assert_eq!(bounded_count(5i64, MAX_TOKENS), Ok(5));
    }
}
