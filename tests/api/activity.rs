//! The activity API against hand-computed expectations: every field of a day, zero
//! days, filters, breakdowns, retention on both sides of its boundary, bad windows,
//! and another tenant.

use chrono::{Duration, NaiveDate, Utc};
use diesel::sql_types::{Integer, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{expect_problem, Tenant, TestApp};

struct Fixture {
    app: TestApp,
    tenant: Tenant,
    hybrid_key_id: String,
    hybrid_project_id: String,
    today: NaiveDate,
}

/// Two priced models; three calls today through the tenant's key (credits), one
/// yesterday through a hybrid project's key paid with the tenant's own keys.
async fn fixture() -> Fixture {
    let app = TestApp::spawn().await;
    // USD per million tokens: input, output, cached input.
    app.add_price("openai", "act-a", "act-a", "2", "8", "1").await;
    app.add_price("anthropic", "act-b", "act-b", "3", "15", "0.3").await;
    let tenant = app.tenant().await;
    let (hybrid_project_id, key) = app
        .project_with_key(&tenant.owner, tenant.org_id, "Hybrid", "hybrid")
        .await;
    let hybrid_project_id = hybrid_project_id.to_string();
    let now = Utc::now();
    let event = |id: &str, provider: &str, model: &str, user: &str, extra: Value| {
        let mut e = json!({"requestId": id, "endpoint": "/chat/completions", "provider": provider, "model": model,
            "user": user, "startedAt": now});
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    };
    let (status, body) = app
        .send_batch(
            &tenant.key_secret,
            json!([
                // input 800 × 2 + cached 200 × 1 + output 500 × 8, bodies stored: 1,500 × 0.01.
                event(
                    "t-1",
                    "openai",
                    "act-a",
                    "alice",
                    json!({"promptTokens": 1000, "cachedTokens": 200,
                    "completionTokens": 500, "requestBody": {"q": 1}})
                ),
                event(
                    "t-2",
                    "openai",
                    "act-a",
                    "bob",
                    json!({"promptTokens": 2000, "status": "error",
                    "errorCode": "upstream_timeout"})
                ),
                event(
                    "t-3",
                    "anthropic",
                    "act-b",
                    "alice",
                    json!({"promptTokens": 1000, "completionTokens": 1000,
                    "cacheHit": true})
                ),
            ]),
        )
        .await;
    assert_eq!((status, body["accepted"].as_i64()), (StatusCode::OK, Some(3)), "{body}");
    let yesterday = now - Duration::days(1);
    let (status, body) = app
        .send_batch(
            key["secret"].as_str().unwrap(),
            json!([event(
                "y-1",
                "anthropic",
                "act-b",
                "carol",
                json!({"promptTokens": 10000,
                "completionTokens": 2000, "startedAt": yesterday, "billingSource": "api-keys",
                "requestBody": {"q": 2}})
            )]),
        )
        .await;
    assert_eq!((status, body["accepted"].as_i64()), (StatusCode::OK, Some(1)), "{body}");
    Fixture {
        app,
        tenant,
        hybrid_key_id: key["id"].as_str().unwrap().to_owned(),
        hybrid_project_id,
        today: now.date_naive(),
    }
}

impl Fixture {
    async fn activity(&self, query: &str) -> Value {
        self.app
            .get_json(
                &self.tenant.owner,
                &format!("/v1/orgs/{}/activity?{query}", self.tenant.org_id),
            )
            .await
    }

    async fn entities(&self, path: &str) -> Value {
        self.app
            .get_json(
                &self.tenant.owner,
                &format!("/v1/orgs/{}/activity/{path}", self.tenant.org_id),
            )
            .await
    }

    async fn problem(&self, query: &str, code: &str) -> Value {
        let r = self
            .app
            .as_user(
                Method::GET,
                &format!("/v1/orgs/{}/activity?{query}", self.tenant.org_id),
                &self.tenant.owner,
            )
            .send()
            .await
            .unwrap();
        expect_problem(r, StatusCode::BAD_REQUEST, code).await
    }

    async fn set_plan(&self, plan: &str, retention_days: i32) {
        diesel::sql_query("UPDATE organizations SET plan = $2, retention_days = $3 WHERE id = $1")
            .bind::<SqlUuid, _>(self.tenant.org_id)
            .bind::<Text, _>(plan)
            .bind::<Integer, _>(retention_days)
            .execute(&mut self.app.db().await)
            .await
            .unwrap();
    }
}

/// Adds the parts no call of these fixtures has (cache writes, reasoning, audio), at zero.
fn without_priced_apart_parts(mut day: Value) -> Value {
    for part in ["cacheWrite5m", "cacheWrite1h", "reasoning", "audioInput", "audioOutput"] {
        day[format!("{part}Tokens")] = json!(0);
        day[format!("{part}Cost")] = json!("0");
    }
    day
}

fn zero_day(date: NaiveDate) -> Value {
    without_priced_apart_parts(json!({
        "date": date, "requestCount": 0, "inputTokens": 0, "outputTokens": 0, "cachedTokens": 0,
        "totalTokens": 0, "cost": "0", "inputCost": "0", "outputCost": "0", "requestCost": "0",
        "cachedInputCost": "0", "imageInputCost": "0", "imageOutputCost": "0", "dataStorageCost": "0",
        "creditsRequestCount": 0, "apiKeysRequestCount": 0, "creditsCost": "0", "apiKeysCost": "0",
        "creditsDataStorageCost": "0", "apiKeysDataStorageCost": "0", "discountSavings": "0",
        "errorCount": 0, "errorRate": 0.0, "cacheCount": 0, "cacheRate": 0.0, "modelBreakdown": [],
    }))
}

fn today_expected(date: NaiveDate) -> Value {
    without_priced_apart_parts(json!({
        "date": date, "requestCount": 3, "inputTokens": 4000, "outputTokens": 1500, "cachedTokens": 200,
        "totalTokens": 5500,
        // 0.005815 + 0.004 + 0.018
        "cost": "0.027815", "inputCost": "0.0086", "outputCost": "0.019", "requestCost": "0",
        "cachedInputCost": "0.0002", "imageInputCost": "0", "imageOutputCost": "0", "dataStorageCost": "0.000015",
        "creditsRequestCount": 3, "apiKeysRequestCount": 0, "creditsCost": "0.027815", "apiKeysCost": "0",
        "creditsDataStorageCost": "0.000015", "apiKeysDataStorageCost": "0", "discountSavings": "0",
        "errorCount": 1, "errorRate": 33.33, "cacheCount": 1, "cacheRate": 33.33,
        "modelBreakdown": [
            {"id": "act-b", "provider": "anthropic", "requestCount": 1, "inputTokens": 1000, "outputTokens": 1000,
             "totalTokens": 2000, "cost": "0.018"},
            {"id": "act-a", "provider": "openai", "requestCount": 2, "inputTokens": 3000, "outputTokens": 500,
             "totalTokens": 3500, "cost": "0.009815"},
        ],
    }))
}

fn yesterday_expected(date: NaiveDate) -> Value {
    without_priced_apart_parts(json!({
        "date": date, "requestCount": 1, "inputTokens": 10000, "outputTokens": 2000, "cachedTokens": 0,
        "totalTokens": 12000,
        // 0.03 + 0.03 + storage 12,000 × 0.01 / 10^6
        "cost": "0.06012", "inputCost": "0.03", "outputCost": "0.03", "requestCost": "0",
        "cachedInputCost": "0", "imageInputCost": "0", "imageOutputCost": "0", "dataStorageCost": "0.00012",
        "creditsRequestCount": 0, "apiKeysRequestCount": 1, "creditsCost": "0", "apiKeysCost": "0.06012",
        "creditsDataStorageCost": "0", "apiKeysDataStorageCost": "0.00012", "discountSavings": "0",
        "errorCount": 0, "errorRate": 0.0, "cacheCount": 0, "cacheRate": 0.0,
        "modelBreakdown": [
            {"id": "act-b", "provider": "anthropic", "requestCount": 1, "inputTokens": 10000, "outputTokens": 2000,
             "totalTokens": 12000, "cost": "0.06012"},
        ],
    }))
}

#[tokio::test]
async fn every_field_of_every_day_including_days_without_calls() {
    let f = fixture().await;
    let (today, yesterday, before) = (f.today, f.today - Duration::days(1), f.today - Duration::days(2));
    // The free plan keeps three days, so the default window is those three.
    let body = f.activity("").await;
    assert_eq!(
        body,
        json!({"from": before, "to": today, "activity": [
            zero_day(before), yesterday_expected(yesterday), today_expected(today),
        ]})
    );
    // An explicit window; `from`/`to` override `days`.
    let body = f.activity(&format!("days=1&from={yesterday}&to={yesterday}")).await;
    assert_eq!(body["activity"], json!([yesterday_expected(yesterday)]));
}

#[tokio::test]
async fn filters_and_breakdowns() {
    let f = fixture().await;
    let (today, yesterday) = (f.today, f.today - Duration::days(1));
    let window = format!("from={yesterday}&to={today}");

    let by_key = f.activity(&format!("{window}&apiKeyId={}", f.tenant.key_id)).await;
    assert_eq!(by_key["activity"], json!([zero_day(yesterday), today_expected(today)]));
    let by_project = f.activity(&format!("{window}&projectId={}", f.hybrid_project_id)).await;
    assert_eq!(
        by_project["activity"],
        json!([yesterday_expected(yesterday), zero_day(today)])
    );

    let body = f
        .activity(&format!("{window}&apiKeyBreakdown=true&customerBreakdown=true"))
        .await;
    let days = body["activity"].as_array().unwrap();
    assert_eq!(
        days[0]["apiKeyBreakdown"],
        json!([{"id": f.hybrid_key_id, "name": "hybrid", "requestCount": 1, "totalTokens": 12000, "cost": "0.06012"}])
    );
    assert_eq!(days[1]["apiKeyBreakdown"][0]["id"], json!(f.tenant.key_id));
    assert_eq!(days[1]["apiKeyBreakdown"][0]["requestCount"], 3);
    assert_eq!(days[1]["apiKeyBreakdown"][0]["cost"], "0.027815");
    let customers: Vec<(Value, Value, Value)> = days[1]["customerBreakdown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["externalId"].clone(), c["requestCount"].clone(), c["cost"].clone()))
        .collect();
    assert_eq!(
        customers,
        [
            (json!("alice"), json!(2), json!("0.023815")),
            (json!("bob"), json!(1), json!("0.004")),
        ]
    );
    // Without asking, no breakdowns.
    assert!(f.activity(&window).await["activity"][0]
        .get("customerBreakdown")
        .is_none());
}

#[tokio::test]
async fn retention_bounds_the_window_and_follows_the_plan() {
    let f = fixture().await;
    let earliest = f.today - Duration::days(2);
    // Free plan: three days. The first day kept is fine, the day before is refused.
    assert!(f.activity(&format!("from={earliest}")).await["activity"].is_array());
    for query in ["days=7".to_owned(), format!("from={}", earliest - Duration::days(1))] {
        let problem = f.problem(&query, "retention_exceeded").await;
        assert_eq!(problem["earliestAllowedDate"], json!(earliest), "{query}");
    }
    // Upgraded, the same query is answered at once, with every day.
    f.set_plan("pro", 90).await;
    assert_eq!(f.activity("days=7").await["activity"].as_array().map(Vec::len), Some(7));
    assert_eq!(f.activity("").await["activity"].as_array().map(Vec::len), Some(7));
    // Downgraded again: shrinks at once.
    f.set_plan("free", 3).await;
    f.problem("days=7", "retention_exceeded").await;
}

#[tokio::test]
async fn malformed_windows_are_400s() {
    let f = fixture().await;
    f.set_plan("enterprise", 365).await;
    let (today, yesterday) = (f.today, f.today - Duration::days(1));
    for query in [
        "days=0".to_owned(),
        "days=-2".to_owned(),
        "days=367".to_owned(),
        "from=2026-13-01".to_owned(),
        "to=yesterday".to_owned(),
        format!("from={today}&to={yesterday}"),
        format!("from={}&to={today}", today - Duration::days(366)),
        "projectId=not-a-uuid".to_owned(),
    ] {
        f.problem(&query, "invalid_query_parameter").await;
    }
}

#[tokio::test]
async fn another_tenant_sees_nothing() {
    let f = fixture().await;
    let other = f.app.tenant().await;
    let r = f
        .app
        .as_user(
            Method::GET,
            &format!("/v1/orgs/{}/activity", f.tenant.org_id),
            &other.owner,
        )
        .send()
        .await
        .unwrap();
    expect_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    // Its own activity holds none of the first tenant's calls, even filtered by them.
    let own = f
        .app
        .get_json(
            &other.owner,
            &format!("/v1/orgs/{}/activity?apiKeyId={}", other.org_id, f.tenant.key_id),
        )
        .await;
    assert!(
        own["activity"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["requestCount"] == 0),
        "{own}"
    );
}

#[tokio::test]
async fn per_customer_agent_and_endpoint_sorted_paged_with_trend_and_models() {
    let f = fixture().await;
    let (today, yesterday) = (f.today, f.today - Duration::days(1));
    let window = format!("from={yesterday}&to={today}");
    let names = |page: &Value| -> Vec<Value> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].clone())
            .collect()
    };

    let by_spend = f.entities(&format!("customers?{window}")).await;
    assert_eq!(names(&by_spend), [json!("carol"), json!("alice"), json!("bob")]);
    assert_eq!(by_spend["nextOffset"], Value::Null);
    let alice = &by_spend["data"][1];
    assert_eq!(
        (
            alice["requestCount"].clone(),
            alice["successCount"].clone(),
            alice["errorCount"].clone(),
            alice["successRate"].clone()
        ),
        (json!(2), json!(2), json!(0), json!(100.0))
    );
    assert_eq!(
        (
            alice["inputTokens"].clone(),
            alice["outputTokens"].clone(),
            alice["totalTokens"].clone(),
            alice["cost"].clone()
        ),
        (json!(2000), json!(1500), json!(3500), json!("0.023815"))
    );
    assert_eq!(
        alice["modelBreakdown"],
        json!([
            {"id": "act-b", "provider": "anthropic", "requestCount": 1, "inputTokens": 1000, "outputTokens": 1000,
             "totalTokens": 2000, "cost": "0.018"},
            {"id": "act-a", "provider": "openai", "requestCount": 1, "inputTokens": 1000, "outputTokens": 500,
             "totalTokens": 1500, "cost": "0.005815"},
        ])
    );
    assert_eq!(
        alice["daily"],
        json!([
            {"date": yesterday, "requestCount": 0, "errorCount": 0, "totalTokens": 0, "cost": "0"},
            {"date": today, "requestCount": 2, "errorCount": 0, "totalTokens": 3500, "cost": "0.023815"},
        ])
    );
    let bob = &by_spend["data"][2];
    assert_eq!(
        (bob["errorCount"].clone(), bob["successRate"].clone()),
        (json!(1), json!(0.0))
    );
    assert!(alice["id"].as_str().is_some_and(|id| id.len() == 36), "{alice}");

    // By requests, paged by two.
    let first = f.entities(&format!("customers?{window}&sort=requests&limit=2")).await;
    assert_eq!(names(&first), [json!("alice"), json!("carol")]);
    assert_eq!(first["nextOffset"], 2);
    let second = f
        .entities(&format!("customers?{window}&sort=requests&limit=2&offset=2"))
        .await;
    assert_eq!(
        (names(&second), second["nextOffset"].clone()),
        (vec![json!("bob")], Value::Null)
    );
    // Only some customers.
    let some = f.entities(&format!("customers?{window}&ids=bob,alice")).await;
    assert_eq!(names(&some), [json!("alice"), json!("bob")]);

    // Two agent calls through A2A paths: one endpoint entry, two agents.
    let (_, body) = f
        .app
        .send_batch(
            &f.tenant.key_secret,
            json!([
                {"requestId": "a2a-1", "endpoint": "/a2a/planner", "provider": "openai", "model": "act-a",
                 "user": "alice", "promptTokens": 1000},
                {"requestId": "a2a-2", "endpoint": "/a2a/coder", "provider": "openai", "model": "act-a",
                 "user": "alice", "promptTokens": 1000},
            ]),
        )
        .await;
    assert_eq!(body["accepted"], 2, "{body}");
    let endpoints = f.entities(&format!("endpoints?{window}&sort=requests")).await;
    let summary: Vec<(Value, Value, Value)> = endpoints["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].clone(), e["requestCount"].clone(), e["id"].clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (json!("/chat/completions"), json!(4), Value::Null),
            (json!("/a2a/{agentId}"), json!(2), Value::Null),
        ]
    );
    let agents = f.entities(&format!("agents?{window}&sort=requests")).await;
    let mut agent_names = names(&agents);
    agent_names.sort_by_key(|v| v.to_string());
    // Calls that named no agent form their own entry, without id or name.
    assert_eq!(agent_names, [json!("coder"), json!("planner"), Value::Null]);

    // Bad parameters; another tenant.
    for query in ["sort=cost", "limit=0", "offset=-1", "days=0"] {
        let r = f
            .app
            .as_user(
                Method::GET,
                &format!("/v1/orgs/{}/activity/customers?{query}", f.tenant.org_id),
                &f.tenant.owner,
            )
            .send()
            .await
            .unwrap();
        expect_problem(r, StatusCode::BAD_REQUEST, "invalid_query_parameter").await;
    }
    let other = f.app.tenant().await;
    let r = f
        .app
        .as_user(
            Method::GET,
            &format!("/v1/orgs/{}/activity/customers", f.tenant.org_id),
            &other.owner,
        )
        .send()
        .await
        .unwrap();
    expect_problem(r, StatusCode::NOT_FOUND, "not_found").await;
}
