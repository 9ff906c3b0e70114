//! Budget alerts end to end: usage recorded through the API crosses a budget's
//! thresholds, and the organization's alert addresses get exactly one email per
//! threshold per period, through a real SMTP server, with several instances at once.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    helpers::{fast_email, Tenant, TestApp},
    smtp_sink::SmtpSink,
};

async fn execute(app: &TestApp, sql: &str) {
    diesel_async::RunQueryDsl::execute(diesel::sql_query(sql), &mut app.db().await)
        .await
        .unwrap();
}

async fn record(app: &TestApp, tenant: &Tenant, event: Value) {
    let response = app
        .request(Method::POST, "/v1/usage")
        .header("x-api-key", &tenant.key_secret)
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

/// A call of the test model costing `cents` US cents (USD 1 per million input tokens).
fn spend(request_id: &str, user: &str, cents: i64) -> Value {
    json!({
        "requestId": request_id, "user": user, "endpoint": "/chat/completions",
        "provider": "openai", "model": "alert-model", "promptTokens": cents * 10_000
    })
}

#[tokio::test]
async fn crossing_thresholds_from_three_instances_sends_one_email_each() {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let first = TestApp::spawn_with(|c| fast_email(c, &url)).await;
    let tenant = first.tenant().await;
    first.set_alert_emails(&tenant, &["ops@acme.test"]).await;
    first
        .add_price("openai", "alert-model", "alert-model", "1", "1", "1")
        .await;
    record(&first, &tenant, spend("seed", "big-spender", 0)).await;
    execute(
        &first,
        &format!(
            "INSERT INTO budgets (id, org_id, scope, scope_id, amount, period, hard_limit) \
             SELECT '{}', org_id, 'customer', id, 1, 'monthly', true FROM customers \
             WHERE org_id = '{}' AND external_id = 'big-spender'",
            Uuid::new_v4(),
            tenant.org_id
        ),
    )
    .await;
    first.state.enforcer.forget_rules(tenant.org_id);
    let second = first.another_instance().await;
    let third = first.another_instance().await;
    let _worker = first.start_outbox_worker();
    let _other_worker = first.start_other_instance_worker();

    // 30 calls of 5 cents from three instances at once: USD 1.50 against a budget of
    // USD 1 crosses 50 %, 80 % and 100 % once each.
    let instances = [&first, &second, &third];
    let calls = (0..30).map(|i| {
        let app = instances[i % 3];
        let tenant = &tenant;
        async move { record(app, tenant, spend(&format!("call-{i}"), "big-spender", 5)).await }
    });
    futures_util::future::join_all(calls).await;

    let emails = sink.wait_for(3, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let emails_after = sink.received();
    assert_eq!(emails_after.len(), 3, "one email per threshold, not more");
    let mut subjects: Vec<String> = emails
        .iter()
        .map(|e| {
            e.data
                .lines()
                .find(|l| l.starts_with("Subject:"))
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    subjects.sort();
    for (subject, percent) in subjects.iter().zip(["100%", "50%", "80%"]) {
        assert!(subject.contains(percent), "{subject}");
        assert!(subject.contains("big-spender"), "{subject}");
    }
    assert!(emails.iter().all(|e| e.rcpt_to == ["ops@acme.test"]));
    let history = first
        .get_json(&tenant.owner, &format!("/v1/orgs/{}/alerts", tenant.org_id))
        .await;
    let thresholds: Vec<i64> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["thresholdPercent"].as_i64().unwrap())
        .collect();
    assert_eq!(thresholds.len(), 3);
    assert!(thresholds.contains(&50) && thresholds.contains(&80) && thresholds.contains(&100));
}

#[tokio::test]
async fn a_default_budget_alerts_for_each_customer_on_its_own() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    app.set_alert_emails(&tenant, &["ops@acme.test"]).await;
    app.add_price("openai", "alert-model", "alert-model", "1", "1", "1")
        .await;
    execute(
        &app,
        &format!(
            "INSERT INTO budgets (id, org_id, scope, scope_id, amount, period, hard_limit, thresholds) \
             VALUES ('{}', '{}', 'customer', NULL, 0.1, 'monthly', false, '{{50}}')",
            Uuid::new_v4(),
            tenant.org_id
        ),
    )
    .await;
    // One batch, two customers, 6 cents each: both pass 50 % of their own 10 cents;
    // a third spends 4 cents and does not.
    let (status, body) = app
        .send_batch(
            &tenant.key_secret,
            json!([spend("x-1", "x", 6), spend("y-1", "y", 6), spend("z-1", "z", 4)]),
        )
        .await;
    assert_eq!((status, body["accepted"].as_u64()), (StatusCode::OK, Some(3)));
    let history = app
        .get_json(&tenant.owner, &format!("/v1/orgs/{}/alerts", tenant.org_id))
        .await;
    let alerts = history["data"].as_array().unwrap();
    assert_eq!(alerts.len(), 2, "{history}");
    let subjects: std::collections::HashSet<&str> = alerts.iter().map(|a| a["subjectId"].as_str().unwrap()).collect();
    assert_eq!(subjects.len(), 2, "one alert per customer");
    assert!(alerts.iter().all(|a| a["thresholdPercent"] == 50));
    // The same spend reported again (a duplicate) queues nothing more.
    app.send_batch(&tenant.key_secret, json!([spend("x-1", "x", 6)])).await;
    let again = app
        .get_json(&tenant.owner, &format!("/v1/orgs/{}/alerts", tenant.org_id))
        .await;
    assert_eq!(again["data"].as_array().unwrap().len(), 2);
}
