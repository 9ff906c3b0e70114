//! The usage summary of an organization over a window: totals, success rate, latency
//! and time to first token, models, and a zero-filled series, from the roll-ups.

use std::collections::BTreeMap;

use actix_web::{get, web};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    activity::window_error,
    extract::AuthUser,
    paths::OrgPath,
    schemas::{FilterText, Money},
    state::AppState,
    validate::query_text,
};
use crate::{
    domain::{
        role::Access,
        rollup::BUCKET_COUNT,
        summary::{self, Distribution, Preset, Step, SummaryWindow},
    },
    error::{AppResult, Problem},
    store::{
        self,
        summary::{BucketModel, SummaryFilter},
        usage::RollupSums,
    },
};

/// A window ending now.
#[derive(Deserialize, ToSchema, Clone, Copy, Debug)]
pub enum SummaryPreset {
    /// The current UTC hour and the 23 before it, hour by hour.
    #[serde(rename = "24h")]
    Last24Hours,
    /// Today (UTC) and the 6 days before, day by day.
    #[serde(rename = "7d")]
    Last7Days,
    /// Today (UTC) and the 29 days before, day by day.
    #[serde(rename = "30d")]
    Last30Days,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct SummaryQuery {
    /// Default `24h` (cut to today on a one-day retention). Not together with
    /// `from`/`to`.
    #[param(inline)]
    window: Option<SummaryPreset>,
    /// First day as `YYYY-MM-DD` (UTC, inclusive; `to` defaults to today), or the first
    /// whole UTC hour as an RFC 3339 instant (then `to` is needed).
    #[param(value_type = Option<String>, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:00:00(\.0+)?(Z|[+-][0-9]{2}:[0-9]{2}))?$", example = "2026-12-02")]
    from: Option<String>,
    /// Last day as `YYYY-MM-DD` (inclusive), or the end as an RFC 3339 instant on a
    /// whole hour (excluded; at most 48 hours after `from`).
    #[param(value_type = Option<String>, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:00:00(\.0+)?(Z|[+-][0-9]{2}:[0-9]{2}))?$", example = "2026-12-03")]
    to: Option<String>,
    project_id: Option<Uuid>,
    api_key_id: Option<Uuid>,
    /// The catalog model id, as in `models[].id` (any case).
    #[param(inline, value_type = Option<FilterText>)]
    model: Option<String>,
    /// The customer's id as the gateway reports it (`user` on events).
    #[param(inline, value_type = Option<FilterText>)]
    customer: Option<String>,
    /// The agent's id as the gateway reports it.
    #[param(inline, value_type = Option<FilterText>)]
    agent: Option<String>,
}

/// The series' resolution.
#[derive(Serialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Resolution {
    Hour,
    Day,
}

/// The usage of the window `[from, to)`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "from": "2026-12-02T16:00:00Z", "to": "2026-12-03T16:00:00Z", "resolution": "hour",
    "totals": {"requestCount": 3, "successCount": 2, "errorCount": 1, "successRate": 66.67,
        "inputTokens": 4000, "outputTokens": 1500, "totalTokens": 5500, "cost": "0.027815"},
    "latency": {"samples": 3, "meanMs": 423.33, "p95Ms": 1000, "p95AboveMs": 750},
    "timeToFirstToken": {"samples": 2, "meanMs": 145.0, "p95Ms": 200, "p95AboveMs": 100},
    "models": [{"id": "gpt-4o", "provider": "openai", "requestCount": 3, "successCount": 2, "errorCount": 1,
        "successRate": 66.67, "inputTokens": 4000, "outputTokens": 1500, "totalTokens": 5500, "cost": "0.027815"}],
    "series": [
        {"start": "2026-12-02T16:00:00Z", "requestCount": 0, "errorCount": 0, "inputTokens": 0, "outputTokens": 0,
         "totalTokens": 0, "cost": "0"},
        {"start": "2026-12-02T17:00:00Z", "requestCount": 3, "errorCount": 1, "inputTokens": 4000, "outputTokens": 1500,
         "totalTokens": 5500, "cost": "0.027815"}
    ]
}))]
pub struct SummaryResponse {
    /// The first instant of the window (a whole UTC hour or day).
    from: DateTime<Utc>,
    /// The end of the window, excluded.
    to: DateTime<Utc>,
    /// `hour` for windows of up to 48 hours still covered by the hourly roll-ups
    /// (the last 8 days), `day` otherwise.
    resolution: Resolution,
    totals: Totals,
    /// Over the calls that reported `latencyMs`.
    latency: LatencyStats,
    /// Over the calls that reported `timeToFirstTokenMs`.
    time_to_first_token: LatencyStats,
    /// Every model with calls in the window, most spend first.
    models: Vec<ModelSummary>,
    /// Every hour (or day) of the window, oldest first, with zeros where there were no
    /// calls.
    series: Vec<SeriesPoint>,
}

/// Token counts: `inputTokens` includes cached input; `totalTokens` is input plus
/// output. `cost` is what was charged, after discounts.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    request_count: i64,
    success_count: i64,
    error_count: i64,
    /// Successful calls in percent of `requestCount` (0 to 100, two decimals; 0
    /// without calls).
    #[schema(minimum = 0, maximum = 100)]
    success_rate: f64,
    input_tokens: i64,
    output_tokens: i64,
    total_tokens: i64,
    #[schema(value_type = Money)]
    cost: Decimal,
}

/// Mean and 95th percentile of a duration. The mean is exact. The percentile comes
/// from a histogram with buckets bounded at 25, 50, 100, 200, 300, 500, 750, 1000,
/// 1500, 2000, 3000, 5000, 7500, 10000, 20000 and 60000 ms: the true 95th percentile
/// lies in (`p95AboveMs`, `p95Ms`], so `p95Ms` never understates it and overstates it
/// by less than the bucket's width (at most 2× below 200 ms and from 10 s to 20 s,
/// 3× from 20 s to 60 s, at most 1.67× elsewhere). Beyond 60000 ms the bucket is
/// open: `p95Ms` is null and `p95AboveMs` is 60000.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LatencyStats {
    /// Calls that reported the duration.
    samples: i64,
    /// Null without samples.
    mean_ms: Option<f64>,
    /// The upper bound of the bucket holding the 95th percentile; null without samples
    /// or beyond 60000 ms.
    p95_ms: Option<i64>,
    /// The lower bound of that bucket (0 for the first); null without samples.
    p95_above_ms: Option<i64>,
}

/// One model over the window.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelSummary {
    /// The catalog id (or the reported name, lower-cased, when the catalog lacks it).
    id: String,
    provider: String,
    request_count: i64,
    success_count: i64,
    error_count: i64,
    #[schema(minimum = 0, maximum = 100)]
    success_rate: f64,
    input_tokens: i64,
    output_tokens: i64,
    total_tokens: i64,
    #[schema(value_type = Money)]
    cost: Decimal,
}

/// One hour or day of the window.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeriesPoint {
    start: DateTime<Utc>,
    request_count: i64,
    error_count: i64,
    input_tokens: i64,
    output_tokens: i64,
    total_tokens: i64,
    #[schema(value_type = Money)]
    cost: Decimal,
}

/// Usage summary of the organization over a window.
///
/// Requests with success rate, tokens, spend, mean and p95 latency and time to first
/// token, the models used, and a series: hour by hour for windows of up to 48 hours
/// (from the hourly roll-ups, kept 8 days), day by day otherwise (from the daily
/// roll-ups). The p95 values come from fixed histogram buckets: see `LatencyStats` for
/// their accuracy. Same retention rules as the daily activity: a window reaching
/// before the organization's retention is refused (400 `retention_exceeded`, with
/// `earliestAllowedDate`).
#[utoipa::path(
    tag = "activity",
    security(("bearer" = [])),
    params(OrgPath, SummaryQuery),
    responses(
        (status = 200, description = "The window's totals, latency, models and series", body = SummaryResponse),
        (status = 400, description = "A malformed window or filter, `window` together with `from`/`to`, or a window reaching before the retention (`retention_exceeded`)", body = Problem),
        (status = 401, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[get("/orgs/{orgId}/activity/summary")]
pub async fn get_summary(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
    query: web::Query<SummaryQuery>,
) -> AppResult<web::Json<SummaryResponse>> {
    let mut conn = state.conn().await?;
    let q = query.into_inner();
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Read).await?;
    let filter = SummaryFilter {
        project_id: q.project_id,
        api_key_id: q.api_key_id,
        model: query_text("model", q.model)?,
        customer: query_text("customer", q.customer)?,
        agent: query_text("agent", q.agent)?,
    };
    let org = store::orgs::get(&mut conn, &access).await?;
    let preset = q.window.map(|w| match w {
        SummaryPreset::Last24Hours => Preset::Last24Hours,
        SummaryPreset::Last7Days => Preset::Last7Days,
        SummaryPreset::Last30Days => Preset::Last30Days,
    });
    let window = summary::window(
        preset,
        q.from.as_deref(),
        q.to.as_deref(),
        Utc::now(),
        org.retention_days,
    )
    .map_err(window_error)?;
    let rows = store::summary::by_bucket_and_model(&mut conn, &access, &window, &filter).await?;
    Ok(web::Json(summarize(window, rows)))
}

/// Folds the rows (one per bucket and model) into the totals, the models and the
/// zero-filled series.
fn summarize(window: SummaryWindow, rows: Vec<BucketModel>) -> SummaryResponse {
    let mut total = RollupSums::default();
    let mut latency = [0i64; BUCKET_COUNT];
    let mut ttft = [0i64; BUCKET_COUNT];
    let mut models: BTreeMap<(String, String), RollupSums> = BTreeMap::new();
    let mut buckets: BTreeMap<DateTime<Utc>, RollupSums> = BTreeMap::new();
    for row in rows {
        total.add(&row.sums);
        for (sum, count) in latency.iter_mut().zip(&row.latency_buckets) {
            *sum += count;
        }
        for (sum, count) in ttft.iter_mut().zip(&row.ttft_buckets) {
            *sum += count;
        }
        models.entry((row.model, row.provider)).or_default().add(&row.sums);
        buckets.entry(row.starts_at).or_default().add(&row.sums);
    }
    let mut models: Vec<ModelSummary> = models
        .into_iter()
        .map(|((id, provider), s)| ModelSummary {
            id,
            provider,
            request_count: s.requests,
            success_count: s.requests - s.errors,
            error_count: s.errors,
            success_rate: summary::success_rate(s.requests, s.errors),
            input_tokens: s.prompt_tokens,
            output_tokens: s.completion_tokens,
            total_tokens: s.prompt_tokens + s.completion_tokens,
            cost: s.cost.normalize(),
        })
        .collect();
    // Most spend first, then most calls; the id keeps ties stable.
    models.sort_by(|a, b| {
        (b.cost, b.request_count)
            .cmp(&(a.cost, a.request_count))
            .then_with(|| (&a.id, &a.provider).cmp(&(&b.id, &b.provider)))
    });
    let series = window
        .buckets()
        .map(|start| {
            let s = buckets.remove(&start).unwrap_or_default();
            SeriesPoint {
                start,
                request_count: s.requests,
                error_count: s.errors,
                input_tokens: s.prompt_tokens,
                output_tokens: s.completion_tokens,
                total_tokens: s.prompt_tokens + s.completion_tokens,
                cost: s.cost.normalize(),
            }
        })
        .collect();
    SummaryResponse {
        from: window.from,
        to: window.to,
        resolution: match window.step {
            Step::Hour => Resolution::Hour,
            Step::Day => Resolution::Day,
        },
        totals: Totals {
            request_count: total.requests,
            success_count: total.requests - total.errors,
            error_count: total.errors,
            success_rate: summary::success_rate(total.requests, total.errors),
            input_tokens: total.prompt_tokens,
            output_tokens: total.completion_tokens,
            total_tokens: total.prompt_tokens + total.completion_tokens,
            cost: total.cost.normalize(),
        },
        latency: stats(summary::distribution(
            total.latency_ms_sum,
            total.latency_count,
            &latency,
        )),
        time_to_first_token: stats(summary::distribution(total.ttft_ms_sum, total.ttft_count, &ttft)),
        models,
        series,
    }
}

fn stats(d: Distribution) -> LatencyStats {
    LatencyStats {
        samples: d.samples,
        mean_ms: d.mean_ms,
        p95_ms: d.p95_ms,
        p95_above_ms: d.p95_above_ms,
    }
}
