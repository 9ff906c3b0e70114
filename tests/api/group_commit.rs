//! Group commit: concurrent single events of one key share transactions, and every
//! promise of a request recorded alone still holds — a 2xx means committed, a
//! `requestId` is stored once (also when two coalesced requests carry it), a bad event
//! fails only its own request, and a request a failed transaction took down can be
//! retried without counting twice. (A PostgreSQL lost under grouped single events:
//! `db_restart.rs`.)

use std::collections::HashMap;

use diesel_async::RunQueryDsl;
use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{Tenant, TestApp};

/// One transaction of a key at a time, so that requests sent together queue behind it
/// and the next transaction takes them all.
async fn app_one_group_at_a_time() -> TestApp {
    TestApp::spawn_with(|c| c.ingest.group_in_flight = 1).await
}

fn event(request_id: &str, prompt_tokens: i64) -> Value {
    json!({
        "requestId": request_id, "endpoint": "/chat/completions", "provider": "openai",
        "model": "gpt-4o", "user": "customer-1", "promptTokens": prompt_tokens,
        "completionTokens": 100, "latencyMs": 300,
    })
}

/// Sends every event as its own `POST /v1/usage`, all at once; answers in order.
async fn send_together(app: &TestApp, tenant: &Tenant, events: &[Value]) -> Vec<(StatusCode, Value)> {
    join_all(events.iter().map(|event| async move {
        let response = app
            .request(Method::POST, "/v1/usage")
            .header("x-api-key", &tenant.key_secret)
            .json(event)
            .send()
            .await
            .expect("send usage");
        let status = response.status();
        (status, response.json::<Value>().await.unwrap_or(Value::Null))
    }))
    .await
}

/// (group transactions, requests in them) from the server's metrics.
async fn groups(app: &TestApp) -> (u64, u64) {
    let text = app.metrics().await;
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
            .parse::<f64>()
            .unwrap() as u64
    };
    (
        value("meterplane_ingest_group_requests_count"),
        value("meterplane_ingest_group_requests_sum"),
    )
}

async fn sql(app: &TestApp, statement: &str) {
    diesel::sql_query(statement)
        .execute(&mut app.db().await)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// (events stored, requests in the daily roll-ups, requests in the organization's
/// spend ledger) of the tenant.
async fn stored(app: &TestApp, tenant: &Tenant) -> (i64, i64, i64) {
    #[derive(diesel::QueryableByName)]
    struct Counts {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        events: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        daily: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        ledger: i64,
    }
    let counts: Counts = diesel::sql_query(
        "SELECT (SELECT count(*) FROM usage_events WHERE org_id = $1) AS events, \
         (SELECT coalesce(sum(requests), 0)::bigint FROM usage_daily WHERE org_id = $1) AS daily, \
         (SELECT coalesce(sum(requests), 0)::bigint FROM spend_ledger WHERE org_id = $1 \
          AND scope = 'organization') AS ledger",
    )
    .bind::<diesel::sql_types::Uuid, _>(tenant.org_id)
    .get_result(&mut app.db().await)
    .await
    .unwrap();
    (counts.events, counts.daily, counts.ledger)
}

#[tokio::test]
async fn coalesced_requests_carrying_one_request_id_store_it_once_and_answer_each() {
    let app = app_one_group_at_a_time().await;
    let tenant = app.tenant().await;
    // 15 ids sent twice with the same content, 15 twice with other content, 10 once.
    let mut events = Vec::new();
    for i in 0..15 {
        events.push(event(&format!("same-{i}"), 1000));
        events.push(event(&format!("same-{i}"), 1000));
        events.push(event(&format!("other-{i}"), 1000));
        events.push(event(&format!("other-{i}"), 2000 + i));
    }
    for i in 0..10 {
        events.push(event(&format!("once-{i}"), 1000));
    }
    let answers = send_together(&app, &tenant, &events).await;

    let (transactions, requests) = groups(&app).await;
    assert_eq!(requests, events.len() as u64, "every request went through a group");
    assert!(
        transactions < requests,
        "{requests} requests sent together shared transactions: {transactions} transactions"
    );
    let mut by_id: HashMap<String, Vec<&(StatusCode, Value)>> = HashMap::new();
    for (event, answer) in events.iter().zip(&answers) {
        by_id
            .entry(event["requestId"].as_str().unwrap().to_owned())
            .or_default()
            .push(answer);
    }
    assert_eq!(by_id.len(), 40);
    for (id, answers) in &by_id {
        let created: Vec<_> = answers.iter().filter(|(s, _)| *s == StatusCode::CREATED).collect();
        assert_eq!(created.len(), 1, "{id}: exactly one 201 among {answers:?}");
        let event_id = &created[0].1["eventId"];
        for (status, body) in answers.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
            assert_eq!(*status, StatusCode::OK, "{id}: {body}");
            assert_eq!(body["status"], "duplicate", "{id}: {body}");
            assert_eq!(&body["eventId"], event_id, "{id}: the duplicate names the stored event");
            assert_eq!(
                body["conflict"],
                json!(id.starts_with("other-")),
                "{id}: a conflict only when the content differs: {body}"
            );
        }
    }
    assert_eq!(stored(&app, &tenant).await, (40, 40, 40));
}

#[tokio::test]
async fn a_bad_event_fails_only_its_own_request_and_a_failed_one_is_retried_without_counting_twice() {
    let app = app_one_group_at_a_time().await;
    let tenant = app.tenant().await;
    // PostgreSQL refuses events whose request id starts with "boom-": they pass every
    // check of the API, so the transaction holding one fails.
    sql(
        &app,
        "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         IF NEW.request_id LIKE 'boom-%' THEN RAISE EXCEPTION 'refused %', NEW.request_id; END IF; \
         RETURN NEW; END $$",
    )
    .await;
    sql(
        &app,
        "CREATE TRIGGER refuse_boom BEFORE INSERT ON usage_events FOR EACH ROW EXECUTE FUNCTION refuse_boom()",
    )
    .await;

    let mut events = Vec::new();
    for i in 0..30 {
        events.push(event(&format!("good-{i}"), 1000 + i));
        if i % 10 == 5 {
            // Invalid: more cached tokens than prompt tokens.
            let mut invalid = event(&format!("invalid-{i}"), 100);
            invalid["cachedTokens"] = json!(500);
            events.push(invalid);
            events.push(event(&format!("boom-{i}"), 1000));
        }
    }
    let answers = send_together(&app, &tenant, &events).await;
    let (transactions, requests) = groups(&app).await;
    assert!(transactions < requests, "requests shared transactions");
    for (event, (status, body)) in events.iter().zip(&answers) {
        let id = event["requestId"].as_str().unwrap();
        let expected = if id.starts_with("good-") {
            StatusCode::CREATED
        } else if id.starts_with("invalid-") {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        assert_eq!(*status, expected, "{id}: {body}");
    }
    assert_eq!(
        stored(&app, &tenant).await,
        (30, 30, 30),
        "only the good events are stored"
    );

    // Fixed: every request is sent again, as a gateway retries what failed (and
    // what it is unsure of). The failed ones are stored now, the others once.
    sql(&app, "DROP TRIGGER refuse_boom ON usage_events").await;
    let retried = send_together(&app, &tenant, &events).await;
    for (event, (status, body)) in events.iter().zip(&retried) {
        let id = event["requestId"].as_str().unwrap();
        let expected = if id.starts_with("good-") {
            StatusCode::OK
        } else if id.starts_with("invalid-") {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::CREATED
        };
        assert_eq!(*status, expected, "retry of {id}: {body}");
    }
    assert_eq!(stored(&app, &tenant).await, (33, 33, 33));
}

#[tokio::test]
async fn an_idle_request_is_recorded_alone() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    for i in 0..3 {
        app.record_event(&tenant, json!({ "requestId": format!("alone-{i}") }))
            .await;
    }
    assert_eq!(
        groups(&app).await,
        (3, 3),
        "one transaction per request sent one after another"
    );
    assert_eq!(stored(&app, &tenant).await, (3, 3, 3));
}
