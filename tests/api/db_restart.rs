//! Losing PostgreSQL mid-request: while a private PostgreSQL restarts under a load of
//! single usage events, requests are answered 503 with `Retry-After` (never 500), the
//! clients' retries succeed once it is back, and each event is stored exactly once
//! with the spend ledger matching the stored events.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{helpers::TestApp, pg_server::PgServer};

const CLIENTS: usize = 8;
const EVENTS_PER_CLIENT: usize = 60;

/// What the clients saw, over all their attempts.
#[derive(Default)]
struct Seen {
    /// (status, Retry-After) of every answer that was not a 2xx.
    failures: Vec<(StatusCode, Option<String>)>,
    /// Status of every request that did not get an answer at all.
    unanswered: Vec<String>,
}

/// Sends one event until it is answered 2xx: every 503 is retried after a short pause,
/// as a gateway honouring `Retry-After` would (shortened, to keep the test quick).
async fn send_until_stored(app: &TestApp, key: &str, event: &Value, seen: &Mutex<Seen>) -> StatusCode {
    loop {
        let sent = app
            .request(Method::POST, "/v1/usage")
            .header("x-api-key", key)
            .json(event)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => return response.status(),
            Ok(response) => {
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                seen.lock().unwrap().failures.push((status, retry_after));
                if status != StatusCode::SERVICE_UNAVAILABLE {
                    return status;
                }
            }
            Err(e) => seen.lock().unwrap().unanswered.push(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_restart_under_single_events_is_503_with_retry_after_and_stores_each_event_once() {
    let pg = tokio::task::spawn_blocking(PgServer::start).await.unwrap();
    meterplane::store::run_migrations(&pg.url())
        .await
        .expect("migrate the private database");
    let redis = std::env::var("MP_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let app = Arc::new(TestApp::spawn_on(pg.url(), redis).await);
    app.add_price("openai", "gpt-4o", "gpt-4o", "2.50", "10.00", "1.25")
        .await;
    let tenant = app.tenant().await;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let stored = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (app, key, seen, stored) = (app.clone(), tenant.key_secret.clone(), seen.clone(), stored.clone());
        clients.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..EVENTS_PER_CLIENT {
                let event = json!({
                    "requestId": format!("restart-{client}-{i}"),
                    "endpoint": "/chat/completions", "provider": "openai", "model": "gpt-4o",
                    "user": format!("customer-{}", i % 5),
                    "promptTokens": 1000 + i, "completionTokens": 100 + client, "latencyMs": 300,
                });
                statuses.push(send_until_stored(&app, &key, &event, &seen).await);
                stored.fetch_add(1, Ordering::Relaxed);
            }
            statuses
        }));
    }

    // Restart twice while the clients are busy: once early, once in the middle.
    let total = CLIENTS * EVENTS_PER_CLIENT;
    for threshold in [total / 5, total / 2] {
        while stored.load(Ordering::Relaxed) < threshold {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let pg_ref = &pg;
        tokio::task::block_in_place(|| pg_ref.restart_fast());
    }

    let mut answered = Vec::new();
    for client in clients {
        answered.extend(client.await.expect("client task"));
    }
    let seen = seen.lock().unwrap();
    assert!(
        seen.unanswered.is_empty(),
        "requests without an answer: {:?}",
        seen.unanswered
    );
    let not_503: Vec<_> = seen
        .failures
        .iter()
        .filter(|(status, _)| *status != StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(not_503.is_empty(), "answers other than 2xx and 503: {not_503:?}");
    assert!(
        !seen.failures.is_empty(),
        "no request was answered 503 during two restarts"
    );
    for (_, retry_after) in &seen.failures {
        let seconds: u64 = retry_after
            .as_deref()
            .expect("every 503 carries Retry-After")
            .parse()
            .expect("Retry-After in seconds");
        assert!((1..=60).contains(&seconds), "Retry-After {seconds}");
    }
    // A request cut off in its commit may have committed: its retry is then answered
    // 200 (already recorded) instead of 201, which is the promise, not a loss.
    assert_eq!(answered.len(), total);
    assert!(answered
        .iter()
        .all(|s| *s == StatusCode::CREATED || *s == StatusCode::OK));

    let org = tenant.org_id;
    let events = pg.psql(&format!(
        "SELECT count(*) || ' ' || count(DISTINCT request_id) FROM usage_events WHERE org_id = '{org}'"
    ));
    assert_eq!(
        events,
        format!("{total} {total}"),
        "events stored (all, distinct request ids)"
    );
    let expected_ids = pg.psql(&format!(
        "SELECT count(*) FROM usage_events WHERE org_id = '{org}' AND request_id ~ '^restart-[0-7]-[0-9]+$'"
    ));
    assert_eq!(expected_ids, total.to_string());
    let costs = pg.psql(&format!(
        "SELECT (SELECT sum(cost) FROM usage_events WHERE org_id = '{org}') || ' ' || \
         (SELECT sum(cost) FROM spend_ledger WHERE org_id = '{org}' AND scope = 'organization') || ' ' || \
         (SELECT sum(requests) FROM spend_ledger WHERE org_id = '{org}' AND scope = 'organization')"
    ));
    let parts: Vec<&str> = costs.split(' ').collect();
    assert_eq!(parts.len(), 3, "{costs}");
    let events_cost: rust_decimal::Decimal = parts[0].parse().unwrap();
    let ledger_cost: rust_decimal::Decimal = parts[1].parse().unwrap();
    assert!(events_cost > rust_decimal::Decimal::ZERO);
    assert_eq!(
        ledger_cost, events_cost,
        "the spend ledger equals the sum of event costs"
    );
    assert_eq!(parts[2], total.to_string(), "ledger requests");
}
