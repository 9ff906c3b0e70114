//! Usage recording from the gateway: idempotency, exact costs, batches, bad input.

use chrono::{Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{expect_json, expect_problem, uuid, Tenant, TestApp};

async fn priced_app() -> (TestApp, Tenant) {
    let app = TestApp::spawn().await;
    add_sonnet_price(&app).await;
    let tenant = app.tenant().await;
    (app, tenant)
}

/// Claude Sonnet 4.5 list price: $3 in, $15 out, $0.30 cached, per million tokens.
async fn add_sonnet_price(app: &TestApp) {
    app.add_price(
        "anthropic",
        "claude-sonnet-4-5",
        "claude-sonnet-4-5-20250929",
        "3",
        "15",
        "0.30",
    )
    .await;
}

fn event(request_id: &str) -> Value {
    json!({
        "requestId": request_id, "endpoint": "/chat/completions", "provider": "anthropic",
        "model": "claude-sonnet-4-5", "user": "customer-7", "promptTokens": 1200, "completionTokens": 300,
        "cachedTokens": 200, "latencyMs": 840,
    })
}

async fn post_event(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.request(Method::POST, "/v1/usage")
        .header("x-api-key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_event_is_priced_exactly_and_shows_in_the_log() {
    let (app, tenant) = priced_app().await;
    let recorded = expect_json(
        post_event(&app, &tenant.key_secret, &event("req-1")).await,
        StatusCode::CREATED,
    )
    .await;
    // input (1200 − 200) × 3/M = 0.003; cached 200 × 0.30/M = 0.00006; output 300 × 15/M = 0.0045.
    assert_eq!(recorded["status"], "accepted");
    assert_eq!(recorded["cost"], "0.00756");
    assert_eq!(recorded["unpriced"], false);

    let detail = app
        .get_json(
            &tenant.owner,
            &format!(
                "/v1/orgs/{}/spend-logs/{}",
                tenant.org_id,
                recorded["eventId"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(
        detail["costBreakdown"],
        json!({
            "input": "0.003", "output": "0.0045", "cachedInput": "0.00006", "cacheWrite5m": "0", "cacheWrite1h": "0",
            "reasoning": "0", "audioInput": "0", "audioOutput": "0", "request": "0", "image": "0", "imageInput": "0",
            "imageOutput": "0", "dataStorage": "0"
        })
    );
    assert_eq!(
        (detail["user"].as_str(), detail["totalTokens"].as_i64()),
        (Some("customer-7"), Some(1500))
    );
    assert_eq!(detail["billingSource"], "credits");
    assert_eq!(uuid(&detail["apiKeyId"]), tenant.key_id);
}

#[tokio::test]
async fn the_same_request_id_sent_twenty_times_at_once_is_stored_once() {
    let (app, tenant) = priced_app().await;
    let body = event("req-concurrent");
    let sends = (0..20).map(|_| post_event(&app, &tenant.key_secret, &body));
    let responses = futures_util::future::join_all(sends).await;
    let mut created = 0;
    let mut event_ids = std::collections::HashSet::new();
    for response in responses {
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        match status {
            StatusCode::CREATED => created += 1,
            StatusCode::OK => assert_eq!(
                (&body["status"], &body["conflict"]),
                (&json!("duplicate"), &json!(false))
            ),
            other => panic!("unexpected {other}: {body}"),
        }
        event_ids.insert(body["eventId"].as_str().unwrap().to_owned());
    }
    assert_eq!(created, 1, "exactly one request records the event");
    assert_eq!(event_ids.len(), 1, "every answer names the same event");
    assert_eq!(app.count_rows("usage_events", tenant.org_id).await, 1);
    let summed: Value = rollup_totals(&app, &tenant).await;
    assert_eq!(summed["requests"], 1);
    assert_eq!(summed["cost"], "0.00756");
}

/// Sums of the organization's roll-ups, as analytics will read them.
async fn rollup_totals(app: &TestApp, tenant: &Tenant) -> Value {
    #[derive(diesel::QueryableByName)]
    struct Totals {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        requests: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        prompt_tokens: i64,
        #[diesel(sql_type = diesel::sql_types::Text)]
        cost: String,
    }
    use diesel_async::RunQueryDsl;
    let t: Totals = diesel::sql_query(
        "SELECT coalesce(sum(requests), 0)::bigint AS requests, coalesce(sum(prompt_tokens), 0)::bigint AS prompt_tokens, \
         trim_scale(coalesce(sum(cost), 0))::text AS cost FROM usage_daily WHERE org_id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(tenant.org_id)
    .get_result(&mut app.db().await)
    .await
    .unwrap();
    json!({"requests": t.requests, "promptTokens": t.prompt_tokens, "cost": t.cost})
}

#[tokio::test]
async fn a_batch_answers_per_event_and_one_bad_event_loses_nothing() {
    let (app, tenant) = priced_app().await;
    expect_json(
        post_event(&app, &tenant.key_secret, &event("already-there")).await,
        StatusCode::CREATED,
    )
    .await;
    let events = json!([
        event("b-1"),
        event("already-there"),
        {"requestId": "b-neg", "endpoint": "/chat/completions", "provider": "anthropic", "model": "claude-sonnet-4-5", "promptTokens": -5},
        {"requestId": 42},
        event("b-2"),
        event("b-1"),
        {"requestId": "b-unknown", "endpoint": "/chat/completions", "provider": "acme", "model": "mystery-1", "promptTokens": 10},
    ]);
    let (status, body) = app.send_batch(&tenant.key_secret, events).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["accepted"].as_i64(),
            body["duplicates"].as_i64(),
            body["rejected"].as_i64()
        ),
        (Some(3), Some(2), Some(2))
    );
    let statuses: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "accepted",
            "duplicate",
            "rejected",
            "rejected",
            "accepted",
            "duplicate",
            "accepted"
        ]
    );
    let results = &body["results"];
    assert_eq!(
        results[5]["eventId"], results[0]["eventId"],
        "a repeat inside the batch points at the first"
    );
    assert_eq!(results[2]["errors"][0]["field"], "promptTokens");
    assert_eq!(results[3]["errors"][0]["field"], "event");
    assert_eq!(
        (results[6]["unpriced"].as_bool(), results[6]["cost"].as_str()),
        (Some(true), Some("0"))
    );

    // Stored: the first single event plus the three accepted ones.
    assert_eq!(app.count_rows("usage_events", tenant.org_id).await, 4);
    let totals = rollup_totals(&app, &tenant).await;
    assert_eq!(totals["requests"], 4);
    assert_eq!(
        totals["cost"], "0.02268",
        "three priced events of 0.00756 and one unpriced"
    );
}

#[tokio::test]
async fn bad_events_get_problems_and_store_nothing() {
    let (app, tenant) = priced_app().await;
    let base = event("bad");
    let with = |patch: Value| {
        let mut e = base.clone();
        e.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
        e
    };
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            with(json!({"promptTokens": -1})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            with(json!({"completionTokens": 100_000_000_001_i64})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            with(json!({"cachedTokens": 5000})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            with(json!({"latencyMs": -3})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            with(json!({"latencyMs": 200, "timeToFirstTokenMs": 201})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            with(json!({"requestId": ""})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            with(json!({"metadata": [1, 2]})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            with(json!({"startedAt": "2026-01-01T00:00:00Z", "endedAt": "2025-12-31T00:00:00Z"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            with(json!({"startedAt": (Utc::now() - Duration::days(10)).to_rfc3339()})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            with(json!({"startedAt": (Utc::now() + Duration::hours(2)).to_rfc3339()})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            with(json!({"billingSource": "api-keys"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            with(json!({"promptTokens": 1.5})),
            StatusCode::BAD_REQUEST,
            "invalid_type",
        ),
        (
            with(json!({"promptTokens": 1e40})),
            StatusCode::BAD_REQUEST,
            "invalid_type",
        ),
        (
            with(json!({"promptTokens": "12"})),
            StatusCode::BAD_REQUEST,
            "invalid_type",
        ),
        (
            with(json!({"status": "maybe"})),
            StatusCode::BAD_REQUEST,
            "invalid_type",
        ),
        (
            with(json!({"surprise": true})),
            StatusCode::BAD_REQUEST,
            "unknown_field",
        ),
        (
            json!({"endpoint": "/x", "provider": "a", "model": "b"}),
            StatusCode::BAD_REQUEST,
            "missing_field",
        ),
    ];
    for (body, status, code) in cases {
        let response = post_event(&app, &tenant.key_secret, &body).await;
        assert_eq!(response.status(), status, "{body}");
        expect_problem(response, status, code).await;
    }
    let oversized = with(json!({"metadata": {"blob": "x".repeat(300_000)}}));
    expect_problem(
        post_event(&app, &tenant.key_secret, &oversized).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;

    // Batches: empty, over the limit, not a batch, oversized.
    let (status, body) = app.send_batch(&tenant.key_secret, json!([])).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed"))
    );
    let too_many: Vec<Value> = (0..1001).map(|i| event(&format!("many-{i}"))).collect();
    let (status, body) = app.send_batch(&tenant.key_secret, json!(too_many)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed"))
    );
    let not_a_batch = app
        .request(Method::POST, "/v1/usage/batch")
        .header("x-api-key", &tenant.key_secret)
        .json(&json!([event("x")]))
        .send()
        .await
        .unwrap();
    expect_problem(not_a_batch, StatusCode::BAD_REQUEST, "invalid_type").await;

    assert_eq!(app.count_rows("usage_events", tenant.org_id).await, 0);
    assert_eq!(app.count_rows("usage_request_ids", tenant.org_id).await, 0);
    assert_eq!(app.count_rows("customers", tenant.org_id).await, 0);
}

#[tokio::test]
async fn the_batch_endpoint_takes_bodies_larger_than_other_endpoints() {
    let (app, tenant) = priced_app().await;
    // ~600 KB: over the 256 KiB limit of other endpoints, well under the batch limit.
    let events: Vec<Value> = (0..300)
        .map(|i| {
            let mut e = event(&format!("big-{i}"));
            e["metadata"] = json!({"note": "y".repeat(2000)});
            e
        })
        .collect();
    let (status, body) = app.send_batch(&tenant.key_secret, json!(events)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 300);
}

#[tokio::test]
async fn revoked_and_unknown_keys_cannot_record() {
    let (app, tenant) = priced_app().await;
    app.post_json(
        &tenant.owner,
        &format!(
            "/v1/orgs/{}/projects/{}/keys/{}/revoke",
            tenant.org_id, tenant.project_id, tenant.key_id
        ),
        json!(null),
    )
    .await;
    expect_problem(
        post_event(&app, &tenant.key_secret, &event("r")).await,
        StatusCode::UNAUTHORIZED,
        "api_key_revoked",
    )
    .await;
    let (status, body) = app.send_batch(&tenant.key_secret, json!([event("r")])).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("api_key_revoked"))
    );
    assert_eq!(app.count_rows("usage_events", tenant.org_id).await, 0);
}

#[tokio::test]
async fn customers_and_agents_are_created_on_first_sight() {
    let (app, tenant) = priced_app().await;
    let mut a2a = event("agent-call");
    a2a["endpoint"] = json!("/a2a/planner/tasks");
    a2a.as_object_mut().unwrap().remove("user");
    let mut explicit = event("agent-explicit");
    explicit["agentId"] = json!("writer");
    let (status, body) = app
        .send_batch(&tenant.key_secret, json!([event("c-1"), event("c-2"), a2a, explicit]))
        .await;
    assert_eq!((status, body["accepted"].as_i64()), (StatusCode::OK, Some(4)), "{body}");
    assert_eq!(
        app.count_rows("customers", tenant.org_id).await,
        1,
        "customer-7 once, however many events"
    );
    assert_eq!(app.count_rows("agents", tenant.org_id).await, 2);
    let log = app
        .get_json(
            &tenant.owner,
            &format!("/v1/orgs/{}/spend-logs?agent=planner", tenant.org_id),
        )
        .await;
    assert_eq!(log["data"].as_array().unwrap().len(), 1);
    assert_eq!(log["data"][0]["endpoint"], "/a2a/planner/tasks");
    assert_eq!(log["data"][0]["user"], Value::Null);
}

#[tokio::test]
async fn bodies_are_capped_redacted_and_charged_for_storage() {
    let app = TestApp::spawn_with(|c| c.ingest.body_cap_bytes = 100).await;
    add_sonnet_price(&app).await;
    let tenant = app.tenant().await;
    let mut stored = event("with-bodies");
    stored["requestBody"] = json!({"messages": [{"role": "user", "content": "é".repeat(200)}]});
    stored["responseBody"] = json!("short answer");
    let mut redacted = event("redacted");
    redacted["requestBody"] = json!({"secret": "do not keep"});
    redacted["redactBodies"] = json!(true);
    let (_, body) = app.send_batch(&tenant.key_secret, json!([stored, redacted])).await;
    let path = |i: usize| {
        format!(
            "/v1/orgs/{}/spend-logs/{}",
            tenant.org_id,
            body["results"][i]["eventId"].as_str().unwrap()
        )
    };
    let kept = app.get_json(&tenant.owner, &path(0)).await;
    assert!(kept["requestBody"].as_str().unwrap().len() <= 100);
    assert_eq!(kept["responseBody"], "short answer");
    assert_eq!(kept["bodiesTruncated"], true);
    // 1,500 stored tokens × $0.01/M = 0.000015, on top of the model charges.
    assert_eq!(kept["costBreakdown"]["dataStorage"], "0.000015");
    assert_eq!(kept["cost"], "0.007575");
    let gone = app.get_json(&tenant.owner, &path(1)).await;
    assert_eq!(
        (gone["requestBody"].clone(), gone["cost"].clone()),
        (Value::Null, json!("0.00756"))
    );
}

#[tokio::test]
async fn hybrid_projects_split_credits_and_api_keys_cost() {
    let (app, tenant) = priced_app().await;
    let hybrid = app
        .post_json(
            &tenant.owner,
            &format!("/v1/orgs/{}/projects", tenant.org_id),
            json!({"name": "Hybrid", "mode": "hybrid"}),
        )
        .await;
    let key = app
        .post_json(
            &tenant.owner,
            &format!(
                "/v1/orgs/{}/projects/{}/keys",
                tenant.org_id,
                hybrid["id"].as_str().unwrap()
            ),
            json!({"name": "hybrid"}),
        )
        .await;
    let mut own_keys = event("h-1");
    own_keys["billingSource"] = json!("api-keys");
    let (_, body) = app
        .send_batch(key["secret"].as_str().unwrap(), json!([own_keys, event("h-2")]))
        .await;
    assert_eq!(body["accepted"], 2, "{body}");
    #[derive(diesel::QueryableByName)]
    struct Split {
        #[diesel(sql_type = diesel::sql_types::Text)]
        credits: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        api_keys: String,
    }
    use diesel_async::RunQueryDsl;
    let split: Split = diesel::sql_query(
        "SELECT trim_scale(sum(credits_cost))::text AS credits, trim_scale(sum(api_keys_cost))::text AS api_keys \
         FROM usage_daily WHERE org_id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(tenant.org_id)
    .get_result(&mut app.db().await)
    .await
    .unwrap();
    assert_eq!(
        (split.credits.as_str(), split.api_keys.as_str()),
        ("0.00756", "0.00756")
    );
}

#[tokio::test]
async fn provider_model_names_roll_up_under_the_catalog_model() {
    let (app, tenant) = priced_app().await;
    let mut dated = event("dated");
    dated["model"] = json!("claude-sonnet-4-5-20250929");
    let (_, body) = app.send_batch(&tenant.key_secret, json!([event("plain"), dated])).await;
    assert_eq!(body["accepted"], 2);
    assert_eq!(
        body["results"][1]["cost"], "0.00756",
        "priced through the provider's name"
    );
    assert_eq!(
        app.count_rows("usage_daily", tenant.org_id).await,
        1,
        "one roll-up row for both names"
    );
}

#[tokio::test]
async fn roll_ups_keep_latency_histograms_and_counts() {
    let (app, tenant) = priced_app().await;
    let mut events = Vec::new();
    for (i, (latency, status, cache_hit)) in [
        (10, "success", true),
        (30, "success", false),
        (120, "error", false),
        (70_000, "success", false),
    ]
    .into_iter()
    .enumerate()
    {
        let mut e = event(&format!("lat-{i}"));
        e["latencyMs"] = json!(latency);
        e["status"] = json!(status);
        e["cacheHit"] = json!(cache_hit);
        events.push(e);
    }
    let mut no_latency = event("lat-none");
    no_latency.as_object_mut().unwrap().remove("latencyMs");
    events.push(no_latency);
    let (_, body) = app.send_batch(&tenant.key_secret, json!(events)).await;
    assert_eq!(body["accepted"], 5);

    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Array<diesel::sql_types::BigInt>)]
        buckets: Vec<i64>,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        latency_sum: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        latency_count: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        errors: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        cache_hits: i64,
    }
    let columns: Vec<String> = (0..17).map(|i| format!("sum(latency_b{i:02})")).collect();
    use diesel_async::RunQueryDsl;
    let row: Row = diesel::sql_query(format!(
        "SELECT ARRAY[{}]::bigint[] AS buckets, sum(latency_ms_sum)::bigint AS latency_sum, \
         sum(latency_count)::bigint AS latency_count, sum(errors)::bigint AS errors, \
         sum(cache_hits)::bigint AS cache_hits FROM usage_daily WHERE org_id = $1",
        columns.join(", ")
    ))
    .bind::<diesel::sql_types::Uuid, _>(tenant.org_id)
    .get_result(&mut app.db().await)
    .await
    .unwrap();
    let mut expected = vec![0; 17];
    expected[0] = 1; // 10 ms ≤ 25
    expected[1] = 1; // 30 ms ≤ 50
    expected[3] = 1; // 120 ms ≤ 200
    expected[16] = 1; // 70 s: beyond the last bound
    assert_eq!(row.buckets, expected);
    assert_eq!(
        (row.latency_sum, row.latency_count),
        (70_160, 4),
        "the event without latency is not counted"
    );
    assert_eq!((row.errors, row.cache_hits), (1, 1));
    assert_eq!(meterplane::domain::rollup::percentile(&row.buckets, 0.5), Some(50));
}

#[tokio::test]
async fn partitions_are_prepared_ahead_and_created_on_demand() {
    let (app, tenant) = priced_app().await;
    app.state.ingest.prepare_partitions(2).await.unwrap();
    app.state.ingest.prepare_partitions(2).await.unwrap(); // idempotent
    let names = meterplane::store::partitions::list(&mut app.db().await).await.unwrap();
    let today = Utc::now().date_naive();
    let expected: Vec<String> = today
        .iter_days()
        .take(3)
        .map(meterplane::store::partitions::partition_name)
        .collect();
    assert_eq!(names, expected);

    // An event two days back needs a partition nobody prepared: created on the way in.
    let mut late = event("late");
    late["startedAt"] = json!((today - Duration::days(2))
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_utc()
        .to_rfc3339());
    expect_json(post_event(&app, &tenant.key_secret, &late).await, StatusCode::CREATED).await;
    let names = meterplane::store::partitions::list(&mut app.db().await).await.unwrap();
    assert_eq!(names.len(), 4);
    assert_eq!(
        names[0],
        meterplane::store::partitions::partition_name(today - Duration::days(2))
    );
}

#[tokio::test]
async fn nul_characters_never_reach_the_database() {
    let (app, tenant) = priced_app().await;
    let mut with_nul_body = event("nul-body");
    with_nul_body["requestBody"] = json!("a\u{0}b");
    let mut with_nul_metadata = event("nul-metadata");
    with_nul_metadata["metadata"] = json!({"k": "a\u{0}b"});
    let (status, body) = app
        .send_batch(
            &tenant.key_secret,
            json!([event("ok"), with_nul_body, with_nul_metadata]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["accepted"].as_i64(), body["rejected"].as_i64()),
        (Some(2), Some(1))
    );
    assert_eq!(body["results"][2]["errors"][0]["field"], "metadata");
    let stored = app
        .get_json(
            &tenant.owner,
            &format!(
                "/v1/orgs/{}/spend-logs/{}",
                tenant.org_id,
                body["results"][1]["eventId"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(stored["requestBody"], "a\u{FFFD}b");

    let filter = app
        .as_user(
            Method::GET,
            &format!("/v1/orgs/{}/spend-logs?customer=a%00b", tenant.org_id),
            &tenant.owner,
        )
        .send()
        .await
        .unwrap();
    expect_problem(filter, StatusCode::BAD_REQUEST, "invalid_query_parameter").await;
    let signup = app
        .request(Method::POST, "/v1/auth/signup")
        .json(&json!({"email": "a\u{0}b@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    expect_problem(signup, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let login = app.login("a\u{0}b@example.com", "correct horse battery").await;
    expect_problem(login, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

async fn post_raw(app: &TestApp, key: &str, body: &str) -> Value {
    let response = app
        .request(Method::POST, "/v1/usage")
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{status}: {body}");
    json!({"http": status.as_u16(), "status": body["status"], "conflict": body["conflict"], "eventId": body["eventId"]})
}

#[tokio::test]
async fn a_retried_request_id_with_other_content_is_answered_as_a_conflict() {
    let (app, tenant) = priced_app().await;
    let key = &tenant.key_secret;
    let original = r#"{"requestId": "r-1", "endpoint": "/chat/completions", "provider": "anthropic",
        "model": "claude-sonnet-4-5", "promptTokens": 1200, "completionTokens": 300, "cachedTokens": 200,
        "metadata": {"a": 1, "b": {"x": true, "y": [1, 2]}}}"#;
    let first = post_raw(&app, key, original).await;
    assert_eq!((first["http"].as_u64(), first["conflict"].is_null()), (Some(201), true));
    let event_id = first["eventId"].clone();

    // The same content: metadata keys in another order, names in another case, sent
    // later (no startedAt, so the event time is the time of receipt).
    let same = r#"{"requestId": "r-1", "endpoint": "/chat/completions", "provider": "Anthropic",
        "model": "CLAUDE-SONNET-4-5", "promptTokens": 1200, "completionTokens": 300, "cachedTokens": 200,
        "metadata": {"b": {"y": [1, 2], "x": true}, "a": 1}}"#;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(
        post_raw(&app, key, same).await,
        json!({"http": 200, "status": "duplicate", "conflict": false, "eventId": event_id})
    );
    // Other content under the same request id: still the first event, flagged.
    for other in [
        original.replace("\"completionTokens\": 300", "\"completionTokens\": 301"),
        original.replace("\"y\": [1, 2]", "\"y\": [2, 1]"),
        original.replace("\"endpoint\": \"/chat/completions\"", "\"endpoint\": \"/responses\""),
        original.replace(
            "\"cachedTokens\": 200,",
            "\"cachedTokens\": 200, \"user\": \"someone\",",
        ),
    ] {
        assert_eq!(
            post_raw(&app, key, &other).await,
            json!({"http": 200, "status": "duplicate", "conflict": true, "eventId": event_id}),
            "{other}"
        );
    }

    // In a batch: a repeat within the batch and repeats of the recorded event.
    let mut changed = event("r-2");
    changed["completionTokens"] = json!(1);
    let mut recorded_changed: Value = serde_json::from_str(original).unwrap();
    recorded_changed["status"] = json!("error");
    let (status, body) = app
        .send_batch(
            key,
            json!([
                event("r-2"),
                changed,
                serde_json::from_str::<Value>(same).unwrap(),
                recorded_changed
            ]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let summary = |b: &Value| (b["accepted"].clone(), b["duplicates"].clone(), b["conflicts"].clone());
    assert_eq!(summary(&body), (json!(1), json!(3), json!(2)));
    let results: Vec<(Value, Value)> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["status"].clone(), r["conflict"].clone()))
        .collect();
    assert_eq!(
        results,
        [
            (json!("accepted"), Value::Null),
            (json!("duplicate"), json!(true)),
            (json!("duplicate"), json!(false)),
            (json!("duplicate"), json!(true)),
        ]
    );
    assert_eq!(body["results"][1]["eventId"], body["results"][0]["eventId"]);
    assert_eq!(body["results"][3]["eventId"], event_id);

    // Nothing was changed by the conflicting retries.
    assert_eq!(app.count_rows("usage_events", tenant.org_id).await, 2);
    let totals = rollup_totals(&app, &tenant).await;
    assert_eq!(
        (totals["requests"].clone(), totals["cost"].clone()),
        (json!(2), json!("0.01512"))
    );

    // An event recorded before fingerprints were kept cannot be compared: no conflict.
    use diesel_async::RunQueryDsl;
    diesel::sql_query("UPDATE usage_request_ids SET fingerprint = NULL WHERE org_id = $1 AND request_id = 'r-1'")
        .bind::<diesel::sql_types::Uuid, _>(tenant.org_id)
        .execute(&mut app.db().await)
        .await
        .unwrap();
    let other = original.replace("\"completionTokens\": 300", "\"completionTokens\": 999");
    assert_eq!(
        post_raw(&app, key, &other).await,
        json!({"http": 200, "status": "duplicate", "conflict": false, "eventId": event_id})
    );
}
