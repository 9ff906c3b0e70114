//! The per-customer, per-agent and per-endpoint reports on a randomized workload over
//! five weeks, against totals the test computes from the events it sent: windows with
//! and without whole ISO weeks (read from week roll-ups) and edge days (day roll-ups),
//! every entity's totals, model breakdown and daily trend; and the same reports read
//! from `usage_daily` (a project filter) agree.

use std::collections::BTreeMap;

use chrono::{Days, Duration, NaiveDate, Utc};
use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use rand::{rngs::StdRng, seq::IndexedRandom, Rng, SeedableRng};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::helpers::TestApp;

/// Sums the reports show, as the test computes them from what it sent.
#[derive(Default, Clone, Debug)]
struct Sums {
    requests: i64,
    errors: i64,
    input: i64,
    output: i64,
    cost: Decimal,
}

impl Sums {
    fn add(&mut self, e: &Sent) {
        self.requests += 1;
        self.errors += i64::from(e.error);
        self.input += e.input;
        self.output += e.output;
        self.cost += e.cost;
    }
}

struct Sent {
    day: NaiveDate,
    customer: Option<String>,
    agent: Option<String>,
    endpoint: String,
    model: &'static str,
    error: bool,
    input: i64,
    output: i64,
    cost: Decimal,
}

/// (model, provider, USD per million input tokens, per million output tokens).
const MODELS: [(&str, &str, i64, i64); 3] = [
    ("er-a", "openai", 2, 8),
    ("er-b", "anthropic", 3, 15),
    ("er-c", "google", 1, 4),
];

/// What an entity is called in a report, from what was sent.
type NameOf = fn(&Sent) -> Option<String>;

#[derive(Default)]
struct Expected {
    total: Sums,
    models: BTreeMap<&'static str, Sums>,
    days: BTreeMap<NaiveDate, Sums>,
}

fn expected(
    sent: &[Sent],
    from: NaiveDate,
    to: NaiveDate,
    name_of: impl Fn(&Sent) -> Option<String>,
) -> BTreeMap<Option<String>, Expected> {
    let mut by: BTreeMap<Option<String>, Expected> = BTreeMap::new();
    for e in sent.iter().filter(|e| e.day >= from && e.day <= to) {
        let x = by.entry(name_of(e)).or_default();
        x.total.add(e);
        x.models.entry(e.model).or_default().add(e);
        x.days.entry(e.day).or_default().add(e);
    }
    by
}

fn money(d: Decimal) -> Value {
    json!(d.normalize().to_string())
}

/// The report's entries keyed by name, checked against `want` field by field.
fn check(report: &Value, want: &BTreeMap<Option<String>, Expected>, from: NaiveDate, to: NaiveDate, what: &str) {
    let data = report["data"].as_array().unwrap();
    assert_eq!(data.len(), want.len(), "{what}: entities {report}");
    let costs: Vec<Decimal> = data
        .iter()
        .map(|e| e["cost"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(costs.windows(2).all(|w| w[0] >= w[1]), "{what}: largest spend first");
    for entry in data {
        let name = entry["name"].as_str().map(str::to_owned);
        let x = &want[&name];
        let t = &x.total;
        let at = format!("{what} {name:?}");
        assert_eq!(entry["requestCount"], json!(t.requests), "{at}");
        assert_eq!(entry["errorCount"], json!(t.errors), "{at}");
        assert_eq!(entry["successCount"], json!(t.requests - t.errors), "{at}");
        assert_eq!(entry["inputTokens"], json!(t.input), "{at}");
        assert_eq!(entry["outputTokens"], json!(t.output), "{at}");
        assert_eq!(entry["cost"], money(t.cost), "{at}");
        let models: BTreeMap<String, Value> = entry["modelBreakdown"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["id"].as_str().unwrap().to_owned(), m.clone()))
            .collect();
        assert_eq!(models.len(), x.models.len(), "{at}: models {entry}");
        for (model, s) in &x.models {
            let m = &models[*model];
            assert_eq!(
                (&m["requestCount"], &m["inputTokens"], &m["outputTokens"], &m["cost"]),
                (&json!(s.requests), &json!(s.input), &json!(s.output), &money(s.cost)),
                "{at} {model}"
            );
        }
        let days = entry["daily"].as_array().unwrap();
        assert_eq!(days.len() as i64, (to - from).num_days() + 1, "{at}: one point per day");
        for (day, point) in from.iter_days().zip(days) {
            let s = x.days.get(&day).cloned().unwrap_or_default();
            assert_eq!(point["date"], json!(day), "{at}");
            assert_eq!(
                (
                    &point["requestCount"],
                    &point["errorCount"],
                    &point["totalTokens"],
                    &point["cost"]
                ),
                (
                    &json!(s.requests),
                    &json!(s.errors),
                    &json!(s.input + s.output),
                    &money(s.cost)
                ),
                "{at} {day}"
            );
        }
    }
}

#[tokio::test]
async fn entity_reports_sum_whole_weeks_and_edge_days_exactly() {
    let seed: u64 = std::env::var("MP_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("entity report seed: {seed} (MP_TEST_SEED={seed} repeats it)");
    let mut rng = StdRng::seed_from_u64(seed);

    let app = TestApp::spawn().await;
    for (model, provider, input, output) in MODELS {
        app.add_price(provider, model, model, &input.to_string(), &output.to_string(), "0")
            .await;
    }
    let tenant = app.tenant().await;
    diesel::sql_query("UPDATE organizations SET plan = $2, retention_days = 90 WHERE id = $1")
        .bind::<SqlUuid, _>(tenant.org_id)
        .bind::<Text, _>("pro")
        .execute(&mut app.db().await)
        .await
        .unwrap();
    // Another tenant's calls must count nowhere.
    let other = app.tenant().await;

    let now = Utc::now();
    let today = now.date_naive();
    let oldest = today - Days::new(36);
    let mut sent = Vec::new();
    let mut events = Vec::new();
    for i in 0..700 {
        let ago = rng.random_range(0..=36);
        let at = now - Duration::days(ago) - Duration::seconds(rng.random_range(0..3_600));
        let (model, provider, input_price, output_price) = *MODELS.choose(&mut rng).unwrap();
        let (input, output) = (rng.random_range(0..20_000i64), rng.random_range(0..5_000i64));
        let customer = rng.random_bool(0.8).then(|| format!("cust-{}", rng.random_range(0..7)));
        let agent = rng
            .random_bool(0.4)
            .then(|| format!("agent-{}", rng.random_range(0..3)));
        let endpoint = match &agent {
            Some(a) if rng.random_bool(0.5) => format!("/a2a/{a}"),
            _ => ["/chat/completions", "/embeddings"]
                .choose(&mut rng)
                .unwrap()
                .to_string(),
        };
        let error = rng.random_bool(0.1);
        let mut event = json!({"requestId": format!("er-{i}"), "endpoint": endpoint, "provider": provider,
            "model": model, "promptTokens": input, "completionTokens": output, "startedAt": at,
            "status": if error { "error" } else { "success" }});
        if let Some(c) = &customer {
            event["user"] = json!(c);
        }
        if let Some(a) = &agent {
            event["agentId"] = json!(a);
        }
        events.push(event);
        sent.push(Sent {
            day: at.date_naive(),
            customer,
            agent,
            endpoint: if endpoint.starts_with("/a2a/") {
                "/a2a/{agentId}".into()
            } else {
                endpoint
            },
            model,
            error,
            input,
            output,
            cost: (Decimal::from(input * input_price) + Decimal::from(output * output_price))
                / Decimal::from(1_000_000),
        });
    }
    // In batches and as single calls, so both ingest paths write the roll-ups.
    let mut rest = &events[..];
    while !rest.is_empty() {
        let n = rng.random_range(1..=rest.len().min(90));
        let (chunk, tail) = rest.split_at(n);
        let (status, body) = app.send_batch(&tenant.key_secret, json!(chunk)).await;
        assert_eq!(
            (status, body["accepted"].as_u64()),
            (StatusCode::OK, Some(n as u64)),
            "{body}"
        );
        rest = tail;
    }
    let (status, _) = app.send_batch(&other.key_secret, json!([events[0].clone()])).await;
    assert_eq!(status, StatusCode::OK);

    // Windows: the whole period, whole weeks with edges on both sides, shorter than a
    // week, exactly one ISO week, a single day; then random ones.
    let monday = oldest + Days::new(u64::from(7 - chrono::Datelike::weekday(&oldest).num_days_from_monday()) % 7);
    let mut windows = vec![
        (oldest, today),
        (oldest + Days::new(2), today - Days::new(3)),
        (today - Days::new(4), today),
        (monday, monday + Days::new(6)),
        (monday + Days::new(7), monday + Days::new(20)),
        (today, today),
    ];
    for _ in 0..4 {
        let a = oldest + Days::new(rng.random_range(0..=36));
        let b = oldest + Days::new(rng.random_range(0..=36));
        windows.push((a.min(b), a.max(b)));
    }
    let kinds: [(&str, NameOf); 3] = [
        ("customers", |e| e.customer.clone()),
        ("agents", |e| e.agent.clone()),
        ("endpoints", |e| Some(e.endpoint.clone())),
    ];
    for (from, to) in windows {
        for (kind, name_of) in kinds {
            let path = format!(
                "/v1/orgs/{}/activity/{kind}?from={from}&to={to}&limit=100",
                tenant.org_id
            );
            let report = app.get_json(&tenant.owner, &path).await;
            let want = expected(&sent, from, to, name_of);
            check(&report, &want, from, to, &format!("{kind} {from}..{to}"));
            // The same report from `usage_daily` (the only project is the filter).
            let filtered = app
                .get_json(&tenant.owner, &format!("{path}&projectId={}", tenant.project_id))
                .await;
            check(&filtered, &want, from, to, &format!("{kind} {from}..{to} by project"));
        }
    }
}
