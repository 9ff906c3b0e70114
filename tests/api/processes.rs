//! The real binary as OS processes, as deployed: three of them sharing one PostgreSQL
//! and one Redis with 50 gateway clients spending against one customer's hard budget
//! through all three at once, and one stopped the way an orchestrator stops it.

use std::{collections::BTreeMap, time::Duration};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    helpers::{authorize, eventually, id_of, Tenant, TestApp},
    server_process::ServerProcess,
    smtp_sink::SmtpSink,
};

const CLIENTS: usize = 50;
/// Each call is estimated at USD 0.05 (50,000 input tokens at USD 1 per million).
const ESTIMATE_TOKENS: i64 = 50_000;
/// A budget of USD 1: 20 estimates.
const BUDGET_MICROS: i64 = 1_000_000;

/// What one client's calls came to: allowed calls with their real cost (µUSD), and
/// whether it was finally denied for the budget.
#[derive(Debug, Default)]
struct ClientRun {
    allowed_costs: Vec<i64>,
    denied: bool,
    failures: Vec<String>,
}

async fn post(app: &TestApp, base: &str, path: &str, tenant: &Tenant, body: &Value) -> (StatusCode, Value) {
    let response = app
        .client
        .request(Method::POST, format!("{base}{path}"))
        .header("x-api-key", &tenant.key_secret)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// One gateway client: asks authorize, makes the call and reports its usage, round
/// robin over the processes, until the budget denies it. Every fifth client's calls
/// cost twice their estimate (the model answered at length), the rest exactly it.
async fn client(app: &TestApp, tenant: &Tenant, processes: &[ServerProcess], index: usize) -> ClientRun {
    let mut run = ClientRun::default();
    let prompt = if index.is_multiple_of(5) {
        2 * ESTIMATE_TOKENS
    } else {
        ESTIMATE_TOKENS
    };
    for attempt in 0..25 {
        let base = &processes[(index + attempt) % processes.len()].address;
        let request_id = format!("c{index}-{attempt}");
        let ask = json!({
            "requestId": request_id, "user": "shared", "endpoint": "/chat/completions",
            "provider": "openai", "model": "shared-model", "estimatedPromptTokens": ESTIMATE_TOKENS
        });
        let (status, answer) = post(app, base, "/v1/gateway/authorize", tenant, &ask).await;
        match (status, answer["allowed"].as_bool(), answer["reason"].as_str()) {
            (StatusCode::OK, Some(true), Some("allowed")) if answer["degraded"] == false => {}
            (StatusCode::OK, Some(false), Some("budget_exceeded")) => {
                run.denied = true;
                return run;
            }
            _ => {
                run.failures.push(format!("authorize {request_id}: {status} {answer}"));
                return run;
            }
        }
        let event = json!({
            "requestId": request_id, "user": "shared", "endpoint": "/chat/completions",
            "provider": "openai", "model": "shared-model", "promptTokens": prompt, "completionTokens": 0
        });
        let base = &processes[(index + attempt + 1) % processes.len()].address;
        let (status, body) = post(app, base, "/v1/usage", tenant, &event).await;
        if status != StatusCode::CREATED {
            run.failures.push(format!("usage {request_id}: {status} {body}"));
            return run;
        }
        run.allowed_costs.push(prompt);
    }
    run
}

/// The customer's spend this month in the ledger (µUSD) and its raw events.
async fn customer_spend(app: &TestApp, tenant: &Tenant, customer: uuid::Uuid) -> (i64, i64) {
    #[derive(diesel::QueryableByName)]
    struct Spend {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        micros: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        events: i64,
    }
    let row: Spend = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query(
            "SELECT (SELECT coalesce(sum(cost_micros), 0)::int8 FROM spend_ledger WHERE org_id = $1 \
                       AND scope = 'customer' AND scope_id = $2 AND day >= date_trunc('month', now())::date) AS micros, \
                    (SELECT count(*) FROM usage_events WHERE org_id = $1 AND customer_id = $2) AS events",
        )
        .bind::<diesel::sql_types::Uuid, _>(tenant.org_id)
        .bind::<diesel::sql_types::Uuid, _>(customer),
        &mut app.db().await,
    )
    .await
    .unwrap();
    (row.micros, row.events)
}

/// The organization's queued emails by status.
async fn outbox_statuses(app: &TestApp, tenant: &Tenant) -> BTreeMap<String, i64> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        status: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let rows: Vec<Row> = diesel_async::RunQueryDsl::load(
        diesel::sql_query("SELECT status, count(*) AS n FROM email_outbox WHERE org_id = $1 GROUP BY status")
            .bind::<diesel::sql_types::Uuid, _>(tenant.org_id),
        &mut app.db().await,
    )
    .await
    .unwrap();
    rows.into_iter().map(|r| (r.status, r.n)).collect()
}

#[tokio::test]
async fn fifty_clients_over_three_processes_stay_within_the_overspend_bound_with_one_email_per_threshold() {
    let sink = SmtpSink::start().await;
    // This instance only sets the tenant up; the calls go to the three processes.
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    app.set_alert_emails(&tenant, &["ops@acme.test"]).await;
    app.add_price("openai", "shared-model", "shared-model", "1", "2", "0.5")
        .await;
    authorize(&app, &tenant, json!({"requestId": "first-sight", "user": "shared"})).await;
    let customer = id_of(&app, "customers", tenant.org_id, "shared").await;
    let response = app
        .as_user(
            Method::PUT,
            &format!("/v1/orgs/{}/budgets/customer/{customer}", tenant.org_id),
            &tenant.owner,
        )
        .json(&json!({"amount": "1", "period": "monthly", "hardLimit": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    let env = [
        ("MP_SMTP_URL", sink.url()),
        ("MP_OUTBOX_POLL_MS", "50".to_owned()),
        ("MP_OUTBOX_RETRY_BASE_MS", "100".to_owned()),
        ("MP_OUTBOX_RETRY_CAP_MS", "400".to_owned()),
    ];
    let (a, b, c) = tokio::join!(
        ServerProcess::start(&app, &env),
        ServerProcess::start(&app, &env),
        ServerProcess::start(&app, &env)
    );
    let processes = [a, b, c];

    let runs = futures_util::future::join_all((0..CLIENTS).map(|i| client(&app, &tenant, &processes, i))).await;
    let failures: Vec<&String> = runs.iter().flat_map(|r| &r.failures).collect();
    assert!(failures.is_empty(), "{failures:?}");
    assert!(runs.iter().all(|r| r.denied), "every client ends denied by the budget");

    // Reservations never pass the amount: at most 20 estimates of 0.05 were allowed.
    let allowed: Vec<i64> = runs.iter().flat_map(|r| r.allowed_costs.iter().copied()).collect();
    let estimate_micros = ESTIMATE_TOKENS;
    assert!(
        allowed.len() as i64 * estimate_micros <= BUDGET_MICROS,
        "{} allowed",
        allowed.len()
    );
    // Spend passes the amount only by what calls cost beyond their estimates (README,
    // "Overspend bound"); costs are whole micro-dollars here, so no rounding either.
    let spent: i64 = allowed.iter().sum();
    let beyond_estimates: i64 = allowed.iter().map(|c| (c - estimate_micros).max(0)).sum();
    let (ledger, events) = customer_spend(&app, &tenant, customer).await;
    assert_eq!((ledger, events), (spent, allowed.len() as i64));
    assert!(
        spent <= BUDGET_MICROS + beyond_estimates,
        "spent {spent} µUSD, bound {}",
        BUDGET_MICROS + beyond_estimates
    );
    // Every cost is a multiple of the estimate, so a denial means the budget was used up.
    assert!(spent >= BUDGET_MICROS, "spent {spent} µUSD");

    // The three processes' outbox workers send each threshold's email once.
    eventually("every alert sent", Duration::from_secs(20), || async {
        let statuses = outbox_statuses(&app, &tenant).await;
        (statuses.get("sent") == Some(&3) && statuses.len() == 1).then_some(())
    })
    .await;
    let mut subjects: Vec<String> = sink.received().iter().map(|m| m.subject()).collect();
    subjects.sort();
    assert_eq!(subjects.len(), 3, "{subjects:?}");
    for (subject, percent) in subjects.iter().zip(["100%", "50%", "80%"]) {
        assert!(subject.contains(percent) && subject.contains("shared"), "{subject}");
    }
    assert!(sink.received().iter().all(|m| m.rcpt_to == ["ops@acme.test"]));
}

/// Denials are written to the decision log in batches off the request path; the
/// batch being gathered when the process is asked to stop is written before it exits.
#[tokio::test]
async fn decisions_made_just_before_a_graceful_stop_are_in_the_log() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    authorize(&app, &tenant, json!({"requestId": "first-sight", "user": "blocked"})).await;
    let customer = id_of(&app, "customers", tenant.org_id, "blocked").await;
    let response = app
        .as_user(
            Method::POST,
            &format!("/v1/orgs/{}/customers/{customer}/block", tenant.org_id),
            &tenant.owner,
        )
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.text().await.unwrap());
    let process = ServerProcess::start(&app, &[]).await;
    // No idle connections left open: the server has nothing to wait for when it stops.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    for n in 0..3 {
        let response = client
            .post(format!("{}/v1/gateway/authorize", process.address))
            .header("x-api-key", &tenant.key_secret)
            .json(&json!({"requestId": format!("last-{n}"), "user": "blocked"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["reason"], "customer_blocked");
    }
    assert!(process.terminate().await, "a clean exit");
    let logged = app
        .get_json(
            &tenant.owner,
            &format!("/v1/orgs/{}/decisions?allowed=false", tenant.org_id),
        )
        .await;
    let mut ids: Vec<&str> = logged["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["requestId"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["last-0", "last-1", "last-2"]);
}
