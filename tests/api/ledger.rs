//! The spend ledger: written with every accepted event, per scope and UTC day, and
//! equal to what the raw events add up to.

use chrono::{Duration, Utc};
use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use rand::{rngs::StdRng, Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{uuid, Tenant, TestApp};

#[derive(diesel::QueryableByName, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Line {
    #[diesel(sql_type = Text)]
    scope: String,
    #[diesel(sql_type = Text)]
    scope_id: String,
    #[diesel(sql_type = Text)]
    day: String,
    #[diesel(sql_type = Text)]
    cost: String,
    #[diesel(sql_type = BigInt)]
    micros: i64,
    #[diesel(sql_type = BigInt)]
    requests: i64,
    #[diesel(sql_type = BigInt)]
    tokens: i64,
}

/// The ledger as recomputed from the raw events: each event counted for its
/// organization, project, key, customer and agent, its cost in micro-dollars rounded up.
const FROM_EVENTS: &str = "WITH e AS (
        SELECT org_id, project_id, api_key_id, customer_id, agent_id, (occurred_at AT TIME ZONE 'UTC')::date AS day,
               cost, ceil(cost * 1000000)::bigint AS micros, prompt_tokens + completion_tokens AS tokens
        FROM usage_events WHERE org_id = $1),
    s AS (
        SELECT 'organization' AS scope, org_id AS scope_id, e.* FROM e
        UNION ALL SELECT 'project', project_id, e.* FROM e
        UNION ALL SELECT 'apiKey', api_key_id, e.* FROM e
        UNION ALL SELECT 'customer', customer_id, e.* FROM e WHERE customer_id IS NOT NULL
        UNION ALL SELECT 'agent', agent_id, e.* FROM e WHERE agent_id IS NOT NULL)
    SELECT scope, scope_id::text, day::text, trim_scale(sum(cost))::text AS cost, sum(micros)::bigint AS micros,
           count(*)::bigint AS requests, sum(tokens)::bigint AS tokens
    FROM s GROUP BY 1, 2, 3 ORDER BY 1, 2, 3";

const LEDGER: &str = "SELECT scope, scope_id::text, day::text, trim_scale(sum(cost))::text AS cost,
           sum(cost_micros)::bigint AS micros, sum(requests)::bigint AS requests, sum(tokens)::bigint AS tokens
    FROM spend_ledger WHERE org_id = $1 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3";

async fn lines(app: &TestApp, sql: &str, org_id: Uuid) -> Vec<Line> {
    diesel::sql_query(sql)
        .bind::<SqlUuid, _>(org_id)
        .load(&mut app.db().await)
        .await
        .unwrap()
}

/// A second key, in a second project, for a workload spread over keys and projects.
async fn second_key(app: &TestApp, tenant: &Tenant) -> String {
    let project = app
        .post_json(
            &tenant.owner,
            &format!("/v1/orgs/{}/projects", tenant.org_id),
            json!({"name": "Staging", "mode": "api-keys"}),
        )
        .await;
    let key = app
        .post_json(
            &tenant.owner,
            &format!("/v1/orgs/{}/projects/{}/keys", tenant.org_id, uuid(&project["id"])),
            json!({"name": "staging"}),
        )
        .await;
    key["secret"].as_str().unwrap().to_owned()
}

fn random_event(rng: &mut StdRng, n: usize) -> Value {
    let models = [
        ("openai", "gpt-4o"),
        ("anthropic", "claude-odd"),
        ("acme", "unpriced-1"),
    ];
    let (provider, model) = models[rng.random_range(0..models.len())];
    let mut event = json!({
        "requestId": format!("w-{}", rng.random_range(0..(n as u64 * 9 / 10))),
        "endpoint": "/chat/completions", "provider": provider, "model": model,
        "promptTokens": rng.random_range(0..20_000), "completionTokens": rng.random_range(0..4_000),
        "startedAt": (Utc::now() - Duration::minutes(rng.random_range(0..2 * 24 * 60))).to_rfc3339(),
    });
    if rng.random_bool(0.8) {
        event["user"] = json!(format!("customer-{}", rng.random_range(0..7)));
    }
    match rng.random_range(0..3) {
        0 => event["agentId"] = json!(format!("agent-{}", rng.random_range(0..3))),
        1 => event["endpoint"] = json!(format!("/a2a/agent-{}/tasks", rng.random_range(0..3))),
        _ => {}
    }
    if rng.random_bool(0.05) {
        event["promptTokens"] = json!(-1); // rejected: must not count
    }
    event
}

#[tokio::test]
async fn the_ledger_equals_what_the_raw_events_add_up_to() {
    let app = TestApp::spawn().await;
    // Prices with many decimal places, so rounding to micro-dollars matters.
    app.add_price("openai", "gpt-4o", "gpt-4o-2024-08-06", "2.5", "10", "1.25")
        .await;
    app.add_price(
        "anthropic",
        "claude-odd",
        "claude-odd",
        "3.3333333",
        "15.7777777",
        "0.3",
    )
    .await;
    let tenant = app.tenant().await;
    let keys = [tenant.key_secret.clone(), second_key(&app, &tenant).await];
    let seed: u64 = rand::random();
    let mut rng = StdRng::seed_from_u64(seed);
    let n = 600;
    // Concurrent batches of random sizes (request ids repeat: duplicates must not count).
    let mut batches = Vec::new();
    let mut sent = 0;
    while sent < n {
        let size = rng.random_range(1..80).min(n - sent);
        let events: Vec<Value> = (0..size).map(|_| random_event(&mut rng, n)).collect();
        batches.push((keys[rng.random_range(0..2)].clone(), json!(events)));
        sent += size;
    }
    let results =
        futures_util::future::join_all(batches.iter().map(|(key, events)| app.send_batch(key, events.clone()))).await;
    let mut accepted = 0;
    for (status, body) in results {
        assert_eq!(status, StatusCode::OK, "seed {seed}: {body}");
        accepted += body["accepted"].as_i64().unwrap();
    }
    assert!(
        accepted > 100,
        "seed {seed}: a meaningful workload ({accepted} accepted)"
    );
    assert_eq!(app.count_rows("usage_events", tenant.org_id).await, accepted);

    let expected = lines(&app, FROM_EVENTS, tenant.org_id).await;
    let actual = lines(&app, LEDGER, tenant.org_id).await;
    assert_eq!(actual, expected, "seed {seed}");
    let organization_requests: i64 = actual
        .iter()
        .filter(|l| l.scope == "organization")
        .map(|l| l.requests)
        .sum();
    assert_eq!(organization_requests, accepted);
    assert!(actual.iter().any(|l| l.scope == "agent") && actual.iter().any(|l| l.scope == "customer"));
}

#[tokio::test]
async fn duplicates_and_rejected_events_add_nothing() {
    let app = TestApp::spawn().await;
    app.add_price("openai", "gpt-4o", "gpt-4o-2024-08-06", "2.5", "10", "1.25")
        .await;
    let tenant = app.tenant().await;
    app.record_event(&tenant, json!({"requestId": "once"})).await;
    app.record_event(&tenant, json!({"requestId": "once"})).await;
    let (_, body) = app
        .send_batch(
            &tenant.key_secret,
            json!([{"requestId": "once", "endpoint": "/x", "provider": "openai", "model": "gpt-4o"},
                   {"requestId": "bad", "endpoint": "/x", "provider": "openai", "model": "gpt-4o", "promptTokens": -1}]),
        )
        .await;
    assert_eq!(
        (body["duplicates"].as_i64(), body["rejected"].as_i64()),
        (Some(1), Some(1))
    );
    let ledger = lines(&app, LEDGER, tenant.org_id).await;
    // One event, counted for its organization, project, key and customer.
    assert_eq!(ledger.len(), 4, "{ledger:?}");
    assert!(ledger
        .iter()
        .all(|l| l.requests == 1 && l.cost == "0.0035" && l.micros == 3_500));
}
