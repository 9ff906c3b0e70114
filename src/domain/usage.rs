//! A usage event as Meterplane records it: the rules an incoming event must meet, and
//! how it is priced.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    discount::{self, DiscountRule},
    pricing::{compute_cost, Catalog, Cost, Quantities},
    project_mode::ProjectMode,
    Invalid,
};

/// Bounds that separate real calls from absurd input.
pub const MAX_TOKENS: i64 = 100_000_000;
pub const MAX_IMAGES: i32 = 10_000;
pub const MAX_DURATION_MS: i32 = 24 * 3600 * 1000;
pub const MAX_RETRIES: i32 = 1_000;
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
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
    pub images: i32,
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
}

impl NewUsageEvent {
    pub fn stores_bodies(&self) -> bool {
        self.request_body.is_some() || self.response_body.is_some()
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
    pub discounts: &'a [DiscountRule],
    /// USD per million tokens of calls whose bodies are stored.
    pub storage_per_mtok: Decimal,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PricedEvent {
    pub event: NewUsageEvent,
    pub billing_source: BillingSource,
    /// `None`: the model is not in the catalog; the event costs zero.
    pub price_id: Option<Uuid>,
    /// The name roll-ups count the call under ([`Catalog::canonical_model`]): the
    /// catalog id whenever the catalog knows the model (so `gpt-4o-2024-08-06` and
    /// `GPT-4o` report as `gpt-4o`), otherwise the reported name in lower case.
    pub model_id: String,
    pub discount_id: Option<Uuid>,
    pub cost: Cost,
}

pub fn price_event(event: NewUsageEvent, ctx: &PricingContext<'_>) -> Result<PricedEvent, Invalid> {
    check_window(event.occurred_at, ctx.now, ctx.retention_days)?;
    let billing_source = BillingSource::resolve(ctx.project_mode, event.billing_source)?;
    let entry = ctx.catalog.lookup(&event.provider, &event.model, event.occurred_at);
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
        images: event.images,
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
        model_id: ctx.catalog.canonical_model(&event.provider, &event.model),
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

    #[test]
    fn counts_are_bounded() {
        assert!(bounded_count(-1i64, MAX_TOKENS).is_err());
        assert!(bounded_count(MAX_TOKENS + 1, MAX_TOKENS).is_err());
        assert_eq!(bounded_count(5i64, MAX_TOKENS), Ok(5));
    }
}
