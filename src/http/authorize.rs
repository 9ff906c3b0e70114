//! `POST /v1/gateway/authorize`: may this call proceed? Asked by the gateway before a
//! model call, with the project's API key.

use actix_web::{http::header, post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    extract::{presented_key, JsonBody},
    schemas::{self, CostEstimate, EndpointPath, ExternalId, ModelName, Money, ProviderName, RequestId},
    state::AppState,
    validate::Fields,
};
use crate::{
    counters::keys::minute_of,
    domain::{
        api_key::KeyStatus,
        budget::BudgetScope,
        decision::DecisionReason,
        micros::from_micros,
        period::BudgetPeriod,
        usage::{agent_from_endpoint, bounded_count, bounded_text, MAX_TOKENS},
    },
    enforcement::{CallRequest, Decision, ScopeStatus},
    error::{AppError, AppResult, Problem},
    store::usage::ExternalKind,
};

/// A call about to be made. Give `estimatedCost`, or the token estimates and the
/// model (priced from the catalog at list price), or neither (counts the request
/// against rate limits and checks that no budget is used up).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "requestId": "req_01J9Z3K4", "user": "customer-42", "endpoint": "/chat/completions",
    "provider": "openai", "model": "gpt-4o", "estimatedPromptTokens": 1200, "estimatedCompletionTokens": 400
}))]
pub struct AuthorizeRequest {
    /// The id the call's usage event will carry: it settles this call's reservation.
    #[schema(value_type = RequestId)]
    request_id: String,
    /// The tenant's end customer; created on first sight.
    #[serde(default)]
    #[schema(value_type = Option<ExternalId>)]
    user: Option<String>,
    /// Taken from an `/a2a/{agentId}` endpoint when not given.
    #[serde(default)]
    #[schema(value_type = Option<ExternalId>)]
    agent_id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<EndpointPath>)]
    endpoint: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<ProviderName>)]
    provider: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<ModelName>)]
    model: Option<String>,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100_000_000)]
    estimated_prompt_tokens: i64,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100_000_000)]
    estimated_completion_tokens: i64,
    /// USD; overrides the estimate from tokens.
    #[serde(default, deserialize_with = "schemas::optional_decimal_text")]
    #[schema(value_type = Option<CostEstimate>)]
    estimated_cost: Option<Decimal>,
}

/// Largest estimate accepted (USD), as for one event's cost.
const MAX_ESTIMATE: Decimal = crate::domain::money::MAX_EVENT_AMOUNT;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetStatusView {
    #[schema(value_type = Money)]
    amount: Decimal,
    period: BudgetPeriod,
    hard_limit: bool,
    /// The organization's default for customers or agents rather than the scope's own.
    is_default: bool,
    /// Settled spend in the current period (USD).
    #[schema(value_type = Money)]
    spent: Decimal,
    /// Held for calls in flight (USD).
    #[schema(value_type = Money)]
    reserved: Decimal,
    /// What is left after spend and reservations (USD, never negative).
    #[schema(value_type = Money)]
    remaining: Decimal,
    /// When the period starts over; absent for a `total` budget.
    resets_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WindowStatusView {
    limit: i64,
    /// Used in the current minute, before this call.
    used: i64,
    remaining: i64,
    resets_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScopeStatusView {
    scope: BudgetScope,
    scope_id: Uuid,
    blocked: bool,
    budget: Option<BudgetStatusView>,
    requests_per_minute: Option<WindowStatusView>,
    tokens_per_minute: Option<WindowStatusView>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizeView {
    allowed: bool,
    reason: DecisionReason,
    request_id: String,
    /// The scope whose limit denied the call.
    deciding_scope: Option<BudgetScope>,
    deciding_scope_id: Option<Uuid>,
    /// For rate limits: when to try again (also sent as `Retry-After`).
    retry_after_seconds: Option<i64>,
    /// What was reserved against each budget (USD).
    #[schema(value_type = Money)]
    estimated_cost: Decimal,
    /// Redis was unreachable: budgets and rate limits were not checked, and the call
    /// was allowed by the configured policy.
    degraded: bool,
    /// Every scope checked, in the order organization, project, API key, customer, agent.
    scopes: Vec<ScopeStatusView>,
}

fn window(limit: Option<i64>, used: i64, resets_at: DateTime<Utc>) -> Option<WindowStatusView> {
    limit.map(|limit| WindowStatusView {
        limit,
        used,
        remaining: (limit - used).max(0),
        resets_at,
    })
}

fn scope_view(status: &ScopeStatus, now: DateTime<Utc>, minute_end: DateTime<Utc>) -> ScopeStatusView {
    let reading = &status.reading;
    ScopeStatusView {
        scope: status.scope,
        scope_id: status.scope_id,
        blocked: status.rules.blocked,
        budget: status.rules.budget.as_ref().map(|b| {
            let spent = from_micros(reading.spent_micros);
            let reserved = from_micros(reading.reserved_micros);
            BudgetStatusView {
                amount: b.amount.normalize(),
                period: b.period,
                hard_limit: b.hard_limit,
                is_default: b.is_default,
                remaining: (b.amount - spent - reserved).max(Decimal::ZERO).normalize(),
                spent,
                reserved,
                resets_at: b.period.window(now).end,
            }
        }),
        requests_per_minute: window(
            status.rules.requests_per_minute,
            reading.requests_this_minute,
            minute_end,
        ),
        tokens_per_minute: window(status.rules.tokens_per_minute, reading.tokens_this_minute, minute_end),
    }
}

fn parse(req: &AuthorizeRequest) -> AppResult<()> {
    let mut f = Fields::default();
    f.take("requestId", bounded_text(&req.request_id, 255));
    let texts = [
        ("user", req.user.as_deref(), 256),
        ("agentId", req.agent_id.as_deref(), 256),
        ("endpoint", req.endpoint.as_deref(), 512),
        ("provider", req.provider.as_deref(), 100),
        ("model", req.model.as_deref(), 200),
    ];
    for (name, value, max) in texts {
        if let Some(value) = value {
            f.take(name, bounded_text(value, max));
        }
    }
    f.take(
        "estimatedPromptTokens",
        bounded_count(req.estimated_prompt_tokens, MAX_TOKENS),
    );
    f.take(
        "estimatedCompletionTokens",
        bounded_count(req.estimated_completion_tokens, MAX_TOKENS),
    );
    if let Some(cost) = req.estimated_cost {
        if cost.is_sign_negative() || cost >= MAX_ESTIMATE {
            f.push("estimatedCost", format!("must be between 0 and {MAX_ESTIMATE}"));
        } else if cost.scale() > crate::domain::money::MONEY_SCALE {
            f.push("estimatedCost", "has more than 10 decimal places");
        }
    }
    if f.is_empty() {
        Ok(())
    } else {
        Err(AppError::validation(f.into_errors()))
    }
}

/// Decides whether a call may proceed, and reserves its estimated cost.
///
/// Checks, in one atomic step across any number of instances, every budget and rate
/// limit of the key, project, organization, customer and agent. An allowed call's
/// estimate is reserved until its usage event (same `requestId`) settles it, or until
/// the reservation lapses. Every decision answers 200 with `allowed` and a stable
/// `reason`; a rate-limited call also gets `Retry-After`. A revoked or expired key is
/// a denial too (`key_revoked`, `key_expired`); an unknown key is 401. A call naming
/// a model without a price is denied (`unpriced_model`) when the organization's
/// `unpricedModels` is `deny`.
#[utoipa::path(
    tag = "gateway",
    security(("api_key" = [])),
    request_body = AuthorizeRequest,
    responses(
        (status = 200, description = "The decision, with every scope's limits and counters", body = AuthorizeView,
         headers(
            ("RateLimit-Limit" = i64, description = "Requests per minute of the tightest request limit"),
            ("RateLimit-Remaining" = i64, description = "Requests left in the current minute"),
            ("RateLimit-Reset" = i64, description = "Seconds until the minute window starts over"),
            ("Retry-After" = i64, description = "Seconds to wait, on a rate-limit denial"),
         )),
        (status = 401, description = "Missing or unknown API key", body = Problem),
        (status = 422, body = Problem),
    )
)]
#[post("/gateway/authorize")]
pub async fn authorize(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: JsonBody<AuthorizeRequest>,
) -> AppResult<HttpResponse> {
    let secret = presented_key(&req).ok_or_else(|| AppError::unauthorized("an API key is required"))?;
    let record = state.keys.resolve_record(&secret).await?;
    let body = body.into_inner();
    parse(&body)?;
    let now = Utc::now();
    let key = record.identity;
    let key_denial = match KeyStatus::at(record.revoked_at, record.expires_at, now) {
        KeyStatus::Active => None,
        KeyStatus::Revoked => Some(DecisionReason::KeyRevoked),
        KeyStatus::Expired => Some(DecisionReason::KeyExpired),
    };
    if let Some(reason) = key_denial {
        return Ok(HttpResponse::Ok().json(AuthorizeView {
            allowed: false,
            reason,
            request_id: body.request_id,
            deciding_scope: Some(BudgetScope::ApiKey),
            deciding_scope_id: Some(key.key_id),
            retry_after_seconds: None,
            estimated_cost: Decimal::ZERO,
            degraded: false,
            scopes: vec![],
        }));
    }
    state.keys.touch(key.key_id).await;
    let trimmed = |v: &Option<String>| v.as_deref().map(str::trim).map(str::to_owned);
    let endpoint = trimmed(&body.endpoint);
    let customer_name = trimmed(&body.user);
    let agent_name =
        trimmed(&body.agent_id).or_else(|| endpoint.as_deref().and_then(agent_from_endpoint).map(str::to_owned));
    let customer = match customer_name {
        Some(name) => Some((
            name.clone(),
            state.ingest.party_id(key.org_id, ExternalKind::Customer, &name).await?,
        )),
        None => None,
    };
    let agent = match agent_name {
        Some(name) => Some((
            name.clone(),
            state.ingest.party_id(key.org_id, ExternalKind::Agent, &name).await?,
        )),
        None => None,
    };
    let provider = trimmed(&body.provider).map(|p| p.to_lowercase());
    let model = trimmed(&body.model);
    // The estimate at the organization's price (its override, else the list price),
    // `None` for a model without a price in force; checked
    // even when the gateway gives its own estimate, for the unpriced-model policy.
    let listed = match (provider.as_deref(), model.as_deref()) {
        (Some(provider), Some(model)) => Some(
            state
                .enforcer
                .estimate_cost(
                    key.org_id,
                    provider,
                    model,
                    body.estimated_prompt_tokens,
                    body.estimated_completion_tokens,
                    now,
                )
                .await?,
        ),
        _ => None,
    };
    let model_priced = listed.map(|estimate| estimate.is_some());
    let estimated_cost = body.estimated_cost.or(listed.flatten()).unwrap_or_default();
    let call = CallRequest {
        key,
        request_id: body.request_id.trim().to_owned(),
        customer,
        agent,
        endpoint,
        provider,
        model,
        estimated_cost,
        estimated_tokens: body.estimated_prompt_tokens + body.estimated_completion_tokens,
        model_priced,
    };
    let decision = state.enforcer.authorize(&call, now).await?;
    Ok(respond(&call, &decision, now))
}

fn respond(call: &CallRequest, decision: &Decision, now: DateTime<Utc>) -> HttpResponse {
    let minute_end = DateTime::from_timestamp((minute_of(now) + 1) * 60, 0).unwrap_or(now);
    let seconds_left = (minute_end - now).num_seconds().max(1);
    let deciding = decision.deciding.and_then(|i| decision.scopes.get(i));
    let rate_limited = matches!(
        decision.reason,
        DecisionReason::RateLimitedRequests | DecisionReason::RateLimitedTokens
    );
    let mut response = HttpResponse::Ok();
    // The tightest requests-per-minute window, as the RateLimit headers describe one.
    let tightest = decision
        .scopes
        .iter()
        .filter_map(|s| {
            s.rules
                .requests_per_minute
                .map(|limit| (limit, (limit - s.reading.requests_this_minute).max(0)))
        })
        .min_by_key(|(_, remaining)| *remaining);
    if let Some((limit, remaining)) = tightest {
        response
            .insert_header(("RateLimit-Limit", limit.to_string()))
            .insert_header(("RateLimit-Remaining", remaining.to_string()))
            .insert_header(("RateLimit-Reset", seconds_left.to_string()));
    }
    if rate_limited {
        response.insert_header((header::RETRY_AFTER, seconds_left.to_string()));
    }
    response.json(AuthorizeView {
        allowed: decision.allowed(),
        reason: decision.reason,
        request_id: call.request_id.clone(),
        deciding_scope: deciding.map(|s| s.scope),
        deciding_scope_id: deciding.map(|s| s.scope_id),
        retry_after_seconds: rate_limited.then_some(seconds_left),
        estimated_cost: call.estimated_cost.normalize(),
        degraded: decision.degraded,
        scopes: decision.scopes.iter().map(|s| scope_view(s, now, minute_end)).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_never_reports_negative_room() {
        let at = Utc::now() + chrono::Duration::seconds(30);
        let w = window(Some(10), 12, at).map(|w| (w.limit, w.used, w.remaining));
        assert_eq!(w, Some((10, 12, 0)));
        assert!(window(None, 3, at).is_none());
    }
}
