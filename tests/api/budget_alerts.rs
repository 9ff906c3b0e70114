//! Budget alerts end to end: usage recorded through the API crosses a budget's
//! thresholds, and the organization's alert addresses get exactly one email per
//! threshold per period, through a real SMTP server, with several instances at once.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    helpers::{eventually, fast_email, Tenant, TestApp},
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

/// With the clock injected into the alert check: crossing 50, 80 and 100 % of a daily
/// budget queues one alert each, checking again within the day queues nothing, and the
/// next day's spend crosses them again as a second set — three emails per day.
#[tokio::test]
async fn the_next_period_alerts_again_and_no_threshold_twice_within_one() {
    use chrono::{DateTime, Duration as Days, DurationRound, Utc};
    use meterplane::{
        domain::identity::KeyIdentity,
        ingest::{CommittedEvent, CommittedSpend},
    };

    let sink = SmtpSink::start().await;
    let url = sink.url();
    let app = TestApp::spawn_with(|c| fast_email(c, &url)).await;
    let tenant = app.tenant().await;
    app.set_alert_emails(&tenant, &["ops@acme.test"]).await;
    app.add_price("openai", "alert-model", "alert-model", "1", "1", "1")
        .await;
    record(&app, &tenant, spend("first-sight", "daily-spender", 0)).await;
    let customer = crate::helpers::id_of(&app, "customers", tenant.org_id, "daily-spender").await;
    let response = app
        .as_user(
            Method::PUT,
            &format!("/v1/orgs/{}/budgets/customer/{customer}", tenant.org_id),
            &tenant.owner,
        )
        .json(&json!({"amount": "1", "period": "daily"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    let key = KeyIdentity {
        key_id: tenant.key_id,
        project_id: tenant.project_id,
        org_id: tenant.org_id,
    };
    let outbox_rows = || async { app.count_rows("email_outbox", tenant.org_id).await };
    // The day before yesterday and yesterday: inside the free plan's three days of
    // retention, and before today, so the checks that recording runs with the real
    // clock (today's window: nothing spent) queue nothing.
    let today = Utc::now().duration_trunc(Days::days(1)).unwrap();
    let mut queued = 0;
    for day in [today - Days::days(2), today - Days::days(1)] {
        // 30 + 30 + 25 + 20 cents: 30 %, 60 % (crosses 50), 85 % (80), 105 % (100).
        for (i, (cents, crossed)) in [(30, 0), (30, 1), (25, 1), (20, 1)].into_iter().enumerate() {
            let at: DateTime<Utc> = day + Days::hours(10) + Days::minutes(i as i64);
            let request_id = format!("{}-{i}", day.format("%Y%m%d"));
            let mut event = spend(&request_id, "daily-spender", cents);
            event["startedAt"] = json!(at);
            record(&app, &tenant, event).await;
            let usage = CommittedSpend {
                org_id: tenant.org_id,
                by_scope: vec![],
                events: vec![CommittedEvent {
                    request_id,
                    occurred_at: at,
                    cost_micros: cents * 10_000,
                    tokens: cents * 10_000,
                    customer_id: Some(customer),
                    agent_id: None,
                }],
            };
            app.state.enforcer.alert_after_usage(&key, &usage, at).await;
            queued += crossed;
            assert_eq!(outbox_rows().await, queued, "after {i} on {day}");
            // The same spend seen again later that day (another instance, a retry, a
            // duplicate event) queues nothing new.
            let later = day + Days::hours(23) + Days::minutes(59);
            app.state.enforcer.alert_after_usage(&key, &usage, later).await;
            assert_eq!(outbox_rows().await, queued, "checked again on {day}");
        }
    }
    assert_eq!(queued, 6);

    let _worker = app.start_outbox_worker();
    let emails = sink.wait_for(6, Duration::from_secs(15)).await;
    eventually("every alert sent", Duration::from_secs(15), || async {
        let history = app.alerts(&tenant.owner, tenant.org_id, "").await;
        let data = history["data"].as_array().cloned().unwrap_or_default();
        (data.len() == 6 && data.iter().all(|a| a["status"] == "sent")).then_some(())
    })
    .await;
    assert_eq!(sink.received().len(), 6, "{emails:?}");
    // One email per threshold per day.
    let history = app.alerts(&tenant.owner, tenant.org_id, "").await;
    let mut sent: Vec<(String, i64)> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["periodStart"].as_str().unwrap().to_owned(),
                a["thresholdPercent"].as_i64().unwrap(),
            )
        })
        .collect();
    sent.sort();
    let day = |n: i64| (today - Days::days(n)).format("%Y-%m-%dT00:00:00Z").to_string();
    assert_eq!(
        sent,
        [
            (day(2), 50),
            (day(2), 80),
            (day(2), 100),
            (day(1), 50),
            (day(1), 80),
            (day(1), 100)
        ]
    );
    // Each email names its day; each day has one email per threshold.
    for n in [2, 1] {
        let start = today - Days::days(n);
        let period = format!(
            "daily, {} to {}",
            start.format("%Y-%m-%d 00:00 UTC"),
            (start + Days::days(1)).format("%Y-%m-%d 00:00 UTC")
        );
        let mut thresholds: Vec<&str> = emails
            .iter()
            .filter(|m| m.text_body().unwrap_or_default().contains(&period))
            .filter_map(|m| {
                ["50%", "80%", "100%"]
                    .into_iter()
                    .find(|t| m.subject().contains(&format!("reached {t}")))
            })
            .collect();
        thresholds.sort();
        assert_eq!(thresholds, ["100%", "50%", "80%"], "{period}");
    }
}
