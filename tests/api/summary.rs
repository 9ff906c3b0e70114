//! The usage summary against hand-computed expectations: every field of the totals,
//! latency and time to first token (mean and p95, including the open top bucket),
//! models, zero-filled hourly and daily series, each filter, bad windows, retention on
//! both sides of its boundary for each plan, and another tenant.

use chrono::{DateTime, Duration, DurationRound, NaiveDate, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{expect_problem, Tenant, TestApp};

struct Fixture {
    app: TestApp,
    tenant: Tenant,
    /// The second project and its key (event 4).
    other_project_id: String,
    other_key_id: String,
    /// The start of the current UTC hour when the events were sent.
    hour: DateTime<Utc>,
    /// When each event happened.
    at: [DateTime<Utc>; 4],
}

/// Four calls in the two hours before the current one:
///
/// | # | hour   | model          | customer | agent | in     | out   | status  | latency | TTFT | cost  |
/// |---|--------|----------------|----------|-------|--------|-------|---------|---------|------|-------|
/// | 1 | h − 2  | sum-a (openai) | alice    | bot-1 | 1,000  | 500   | success | 40      | 20   | 0.006 |
/// | 2 | h − 2  | sum-a          | bob      |       | 2,000  | 0     | error   | 900     | 300  | 0.004 |
/// | 3 | h − 1  | sum-b (anth.)  | alice    |       | 1,000  | 1,000 | success | 70,000  |      | 0.018 |
/// | 4 | h − 1  | sum-b, other project and key | | bot-2 | 10,000 | 2,000 | success | 120 | 110 | 0.06 |
///
/// Prices per million tokens: sum-a 2 in / 8 out, sum-b 3 in / 15 out.
async fn fixture() -> Fixture {
    let app = TestApp::spawn().await;
    app.add_price("openai", "sum-a", "sum-a", "2", "8", "1").await;
    app.add_price("anthropic", "sum-b", "sum-b", "3", "15", "0.3").await;
    let tenant = app.tenant().await;
    let (other_project_id, key) = app
        .project_with_key(&tenant.owner, tenant.org_id, "Staging", "credits")
        .await;
    let other_project_id = other_project_id.to_string();
    let hour = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    let at = [
        hour - Duration::hours(2) + Duration::minutes(10),
        hour - Duration::hours(2) + Duration::minutes(20),
        hour - Duration::hours(1) + Duration::minutes(5),
        hour - Duration::hours(1) + Duration::minutes(30),
    ];
    let event = |i: usize, model: &str, provider: &str, fields: Value| {
        let mut e = json!({"requestId": format!("s-{i}"), "endpoint": "/chat/completions",
            "provider": provider, "model": model, "startedAt": at[i]});
        for (k, v) in fields.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    };
    let (status, body) = app
        .send_batch(
            &tenant.key_secret,
            json!([
                event(
                    0,
                    "sum-a",
                    "openai",
                    json!({"user": "alice", "agentId": "bot-1", "promptTokens": 1000,
                        "completionTokens": 500, "latencyMs": 40, "timeToFirstTokenMs": 20})
                ),
                event(
                    1,
                    "SUM-A",
                    "openai",
                    json!({"user": "bob", "promptTokens": 2000, "status": "error",
                        "errorCode": "upstream_timeout", "latencyMs": 900, "timeToFirstTokenMs": 300})
                ),
                event(
                    2,
                    "sum-b",
                    "anthropic",
                    json!({"user": "alice", "promptTokens": 1000, "completionTokens": 1000,
                        "latencyMs": 70000})
                ),
            ]),
        )
        .await;
    assert_eq!((status, body["accepted"].as_i64()), (StatusCode::OK, Some(3)), "{body}");
    let (status, body) = app
        .send_batch(
            key["secret"].as_str().unwrap(),
            json!([event(
                3,
                "sum-b",
                "anthropic",
                json!({"agentId": "bot-2", "promptTokens": 10000, "completionTokens": 2000,
                    "latencyMs": 120, "timeToFirstTokenMs": 110})
            )]),
        )
        .await;
    assert_eq!((status, body["accepted"].as_i64()), (StatusCode::OK, Some(1)), "{body}");
    Fixture {
        app,
        tenant,
        other_project_id,
        other_key_id: key["id"].as_str().unwrap().to_owned(),
        hour,
        at,
    }
}

/// What each event adds to a series point (and to the totals): requests, errors,
/// input and output tokens, cost in millionths of a dollar.
const EVENTS: [(i64, i64, i64, i64, i64); 4] = [
    (1, 0, 1_000, 500, 6_000),
    (1, 1, 2_000, 0, 4_000),
    (1, 0, 1_000, 1_000, 18_000),
    (1, 0, 10_000, 2_000, 60_000),
];

fn money(micros: i64) -> String {
    rust_decimal::Decimal::new(micros, 6).normalize().to_string()
}

/// A series point holding these events (by index); zeros for none.
fn point(start: DateTime<Utc>, events: &[usize]) -> Value {
    let mut sum = (0, 0, 0, 0, 0);
    for &i in events {
        let e = EVENTS[i];
        sum = (sum.0 + e.0, sum.1 + e.1, sum.2 + e.2, sum.3 + e.3, sum.4 + e.4);
    }
    json!({"start": start, "requestCount": sum.0, "errorCount": sum.1, "inputTokens": sum.2,
        "outputTokens": sum.3, "totalTokens": sum.2 + sum.3, "cost": money(sum.4)})
}

impl Fixture {
    fn url(&self, query: &str) -> String {
        format!("/v1/orgs/{}/activity/summary?{query}", self.tenant.org_id)
    }

    async fn summary(&self, query: &str) -> Value {
        self.app.get_json(&self.tenant.owner, &self.url(query)).await
    }

    async fn problem(&self, query: &str, code: &str) -> Value {
        let response = self
            .app
            .as_user(Method::GET, &self.url(query), &self.tenant.owner)
            .send()
            .await
            .unwrap();
        expect_problem(response, StatusCode::BAD_REQUEST, code).await
    }

    /// `from=…&to=…` as instants, `hours` apart, ending with the current hour.
    fn last_hours(&self, hours: i64) -> String {
        let to = self.hour + Duration::hours(1);
        format!("from={}&to={}", enc(to - Duration::hours(hours)), enc(to))
    }

    fn today(&self) -> NaiveDate {
        Utc::now().date_naive()
    }
}

/// An instant as a query value (`+` would read as a space).
fn enc(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).unwrap().and_utc()
}

#[tokio::test]
async fn every_field_of_a_four_hour_window() {
    let f = fixture().await;
    let h = f.hour;
    let body = f.summary(&f.last_hours(4)).await;
    assert_eq!(
        body,
        json!({
            "from": h - Duration::hours(3), "to": h + Duration::hours(1), "resolution": "hour",
            "totals": {"requestCount": 4, "successCount": 3, "errorCount": 1, "successRate": 75.0,
                "inputTokens": 14000, "outputTokens": 3500, "totalTokens": 17500, "cost": "0.088"},
            // (40 + 900 + 70,000 + 120) / 4; sorted 40 ≤ 50, 120 ≤ 200, 900 ≤ 1000, 70,000 > 60,000:
            // the 95th percentile (the 4th of 4) lies in the open top bucket.
            "latency": {"samples": 4, "meanMs": 17765.0, "p95Ms": null, "p95AboveMs": 60000},
            // (20 + 300 + 110) / 3 = 143.33; the 3rd of 3 (300 ms) lies in (200, 300].
            "timeToFirstToken": {"samples": 3, "meanMs": 143.33, "p95Ms": 300, "p95AboveMs": 200},
            "models": [
                {"id": "sum-b", "provider": "anthropic", "requestCount": 2, "successCount": 2, "errorCount": 0,
                 "successRate": 100.0, "inputTokens": 11000, "outputTokens": 3000, "totalTokens": 14000,
                 "cost": "0.078"},
                {"id": "sum-a", "provider": "openai", "requestCount": 2, "successCount": 1, "errorCount": 1,
                 "successRate": 50.0, "inputTokens": 3000, "outputTokens": 500, "totalTokens": 3500,
                 "cost": "0.01"},
            ],
            "series": [
                point(h - Duration::hours(3), &[]),
                point(h - Duration::hours(2), &[0, 1]),
                point(h - Duration::hours(1), &[2, 3]),
                point(h, &[]),
            ],
        })
    );
}

#[tokio::test]
async fn the_default_is_the_last_24_hours_hour_by_hour() {
    let f = fixture().await;
    let h = f.hour;
    let body = f.summary("").await;
    assert_eq!(
        (&body["from"], &body["to"], &body["resolution"]),
        (
            &json!(h - Duration::hours(23)),
            &json!(h + Duration::hours(1)),
            &json!("hour")
        )
    );
    let expected: Vec<Value> = (0..24)
        .map(|i| {
            let start = h - Duration::hours(23 - i);
            match 23 - i {
                2 => point(start, &[0, 1]),
                1 => point(start, &[2, 3]),
                _ => point(start, &[]),
            }
        })
        .collect();
    assert_eq!(body["series"], json!(expected));
    assert_eq!(f.summary("window=24h").await, body);
    assert_eq!(body["totals"]["requestCount"], 4);
}

#[tokio::test]
async fn longer_windows_go_day_by_day_with_zero_days() {
    let f = fixture().await;
    f.app.set_plan(f.tenant.org_id, "pro", 90).await;
    let today = f.today();
    // The events' days (the first two hours of a day put some on the day before).
    let day_of = |i: usize| f.at[i].date_naive();
    let daily = |days: i64| -> Vec<Value> {
        (0..days)
            .map(|ago| {
                let day = today - Duration::days(days - 1 - ago);
                let events: Vec<usize> = (0..4).filter(|i| day_of(*i) == day).collect();
                point(midnight(day), &events)
            })
            .collect()
    };
    for (query, days) in [("window=7d", 7), ("window=30d", 30)] {
        let body = f.summary(query).await;
        assert_eq!(body["resolution"], "day", "{query}");
        assert_eq!(
            (&body["from"], &body["to"]),
            (
                &json!(midnight(today - Duration::days(days - 1))),
                &json!(midnight(today + Duration::days(1)))
            )
        );
        assert_eq!(body["series"], json!(daily(days)), "{query}");
        assert_eq!(body["totals"]["cost"], "0.088");
        assert_eq!(body["latency"]["meanMs"], 17765.0);
        assert_eq!(body["timeToFirstToken"]["p95Ms"], 300);
    }
    // Three days given as dates: day by day; two: hour by hour (48 points).
    let three = f
        .summary(&format!("from={}&to={today}", today - Duration::days(2)))
        .await;
    assert_eq!(
        (&three["resolution"], &three["series"]),
        (&json!("day"), &json!(daily(3)))
    );
    let two = f.summary(&format!("from={}", today - Duration::days(1))).await;
    assert_eq!(two["resolution"], "hour");
    let series = two["series"].as_array().unwrap();
    assert_eq!(series.len(), 48);
    assert_eq!(series[0]["start"], json!(midnight(today - Duration::days(1))));
    assert_eq!(two["totals"], three["totals"]);
    let busy: Vec<&Value> = series.iter().filter(|p| p["requestCount"] != 0).collect();
    assert_eq!(
        busy,
        [
            &point(f.hour - Duration::hours(2), &[0, 1]),
            &point(f.hour - Duration::hours(1), &[2, 3])
        ]
    );
}

#[tokio::test]
async fn each_filter() {
    let f = fixture().await;
    let window = f.last_hours(4);
    let totals = |body: &Value| {
        let t = &body["totals"];
        (
            t["requestCount"].as_i64().unwrap(),
            t["errorCount"].as_i64().unwrap(),
            t["cost"].as_str().unwrap().to_owned(),
        )
    };
    let cases = [
        (format!("projectId={}", f.other_project_id), (1, 0, "0.06")),
        (format!("apiKeyId={}", f.other_key_id), (1, 0, "0.06")),
        (format!("apiKeyId={}", f.tenant.key_id), (3, 1, "0.028")),
        (format!("projectId={}", f.tenant.project_id), (3, 1, "0.028")),
        ("model=SUM-A".to_owned(), (2, 1, "0.01")),
        ("model=sum-b".to_owned(), (2, 0, "0.078")),
        ("customer=alice".to_owned(), (2, 0, "0.024")),
        ("customer=bob".to_owned(), (1, 1, "0.004")),
        ("agent=bot-2".to_owned(), (1, 0, "0.06")),
        ("agent=bot-1".to_owned(), (1, 0, "0.006")),
        ("customer=nobody".to_owned(), (0, 0, "0")),
        ("model=sum-a&customer=alice".to_owned(), (1, 0, "0.006")),
    ];
    for (filter, (requests, errors, cost)) in cases {
        let body = f.summary(&format!("{window}&{filter}")).await;
        assert_eq!(totals(&body), (requests, errors, cost.to_owned()), "{filter}");
        assert_eq!(body["series"].as_array().map(Vec::len), Some(4), "{filter}");
    }
    // One model: its latency mean (40 + 900) / 2 and p95 (the 2nd of 2, 900 ms) in (750, 1000].
    let one = f.summary(&format!("{window}&model=sum-a")).await;
    assert_eq!(
        one["latency"],
        json!({"samples": 2, "meanMs": 470.0, "p95Ms": 1000, "p95AboveMs": 750})
    );
    assert_eq!(
        one["timeToFirstToken"],
        json!({"samples": 2, "meanMs": 160.0, "p95Ms": 300, "p95AboveMs": 200})
    );
    assert_eq!(one["series"][1], point(f.hour - Duration::hours(2), &[0, 1]));
    assert_eq!(one["series"][2], point(f.hour - Duration::hours(1), &[]));
    // Nothing matches: zeros, and no latency figures.
    let none = f.summary(&format!("{window}&customer=nobody")).await;
    assert_eq!(
        (&none["models"], &none["latency"], &none["totals"]["successRate"]),
        (
            &json!([]),
            &json!({"samples": 0, "meanMs": null, "p95Ms": null, "p95AboveMs": null}),
            &json!(0.0)
        )
    );
}

#[tokio::test]
async fn malformed_windows_and_filters_are_400s() {
    let f = fixture().await;
    let today = f.today();
    let h = f.hour;
    for query in [
        "window=1h".to_owned(),
        format!("window=24h&from={today}"),
        format!("window=7d&to={today}"),
        // Instants: both ends, whole hours, in order, at most 48 hours apart.
        format!("from={}", enc(h)),
        format!(
            "from={}&to={}",
            enc(h + Duration::minutes(30)),
            enc(h + Duration::hours(1))
        ),
        format!("from={}&to={}", enc(h), enc(h)),
        format!("from={}&to={}", enc(h - Duration::hours(49)), enc(h)),
        format!("from={}&to={today}", enc(h)),
        "from=2026-13-01".to_owned(),
        "from=yesterday".to_owned(),
        format!("from={today}&to={}", today - Duration::days(1)),
        "projectId=not-a-uuid".to_owned(),
        "customer=%0A".to_owned(),
        "days=7".to_owned(),
    ] {
        f.problem(&query, "invalid_query_parameter").await;
    }
}

#[tokio::test]
async fn retention_per_plan_on_both_sides_of_the_boundary() {
    let f = fixture().await;
    let today = f.today();
    let day = |ago: i64| today - Duration::days(ago);
    let hour_after = |at: DateTime<Utc>| format!("from={}&to={}", enc(at), enc(at + Duration::hours(1)));
    // Free three days, pro 90, enterprise a custom value: the first day kept is
    // answered, the day before is refused with that first day.
    for (plan, retention) in [("free", 3i32), ("pro", 90), ("enterprise", 365), ("enterprise", 1)] {
        f.app.set_plan(f.tenant.org_id, plan, retention).await;
        let retention = i64::from(retention);
        let first = day(retention - 1);
        let kept = f.summary(&format!("from={first}&to={first}")).await;
        assert_eq!(kept["series"][0]["start"], json!(midnight(first)), "{plan}");
        let problem = f
            .problem(&format!("from={}&to={first}", day(retention)), "retention_exceeded")
            .await;
        assert_eq!(problem["earliestAllowedDate"], json!(first), "{plan} {retention}");
    }
    // Instants: the first hour kept, and the one before.
    f.app.set_plan(f.tenant.org_id, "free", 3).await;
    f.summary(&hour_after(midnight(day(2)))).await;
    let problem = f
        .problem(&hour_after(midnight(day(2)) - Duration::hours(1)), "retention_exceeded")
        .await;
    assert_eq!(problem["earliestAllowedDate"], json!(day(2)));
    // Presets: seven days reach before the free plan's three; after an upgrade the same
    // query is answered at once, and refused again after a downgrade.
    f.problem("window=7d", "retention_exceeded").await;
    f.app.set_plan(f.tenant.org_id, "pro", 90).await;
    assert_eq!(
        f.summary("window=30d").await["series"].as_array().map(Vec::len),
        Some(30)
    );
    // Hour by hour, eight days can be read; an older hour is asked for as days.
    f.summary(&hour_after(midnight(day(7)))).await;
    f.problem(
        &hour_after(midnight(day(7)) - Duration::hours(1)),
        "invalid_query_parameter",
    )
    .await;
    let old = f.summary(&format!("from={}&to={}", day(20), day(19))).await;
    assert_eq!(
        (&old["resolution"], old["series"].as_array().map(Vec::len)),
        (&json!("day"), Some(2))
    );
    f.app.set_plan(f.tenant.org_id, "free", 3).await;
    f.problem("window=30d", "retention_exceeded").await;
    // A one-day retention: the default window is cut to today; 24 hours are refused.
    f.app.set_plan(f.tenant.org_id, "enterprise", 1).await;
    let cut = f.summary("").await;
    assert_eq!(cut["from"], json!(midnight(today)));
    // The last 24 hours are the current hour and the 23 before: from 23:00 UTC on they
    // all fall on today, so they are refused only before then.
    if chrono::Timelike::hour(&Utc::now()) < 23 {
        f.problem("window=24h", "retention_exceeded").await;
    } else {
        assert_eq!(f.summary("window=24h").await["from"], json!(midnight(today)));
    }
}

#[tokio::test]
async fn another_tenant_sees_nothing() {
    let f = fixture().await;
    let other = f.app.tenant().await;
    let response = f
        .app
        .as_user(Method::GET, &f.url(""), &other.owner)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    // Its own summary holds none of the victim's calls, whatever the filters name.
    let own = f
        .app
        .get_json(
            &other.owner,
            &format!(
                "/v1/orgs/{}/activity/summary?projectId={}&customer=alice",
                other.org_id, f.tenant.project_id
            ),
        )
        .await;
    assert_eq!(own["totals"]["requestCount"], 0);
    let own = f
        .app
        .get_json(&other.owner, &format!("/v1/orgs/{}/activity/summary", other.org_id))
        .await;
    assert_eq!(own["totals"]["requestCount"], 0);
}
