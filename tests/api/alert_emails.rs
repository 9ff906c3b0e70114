//! Alert emails: queued once per budget, period and threshold, delivered over a real
//! SMTP server by the outbox worker, exactly once with several workers, late but once
//! when the server was down; and the organization's alert history.

use std::{collections::HashSet, time::Duration};

use diesel_async::{AsyncConnection, RunQueryDsl};
use meterplane::{
    domain::{
        email::EmailAddress,
        outbox::{EmailKind, OutgoingEmail},
    },
    store::outbox::{self, Enqueued},
};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

use crate::{
    helpers::{budget_alert, eventually, expect_problem, fast_email, Tenant, TestApp},
    smtp_sink::SmtpSink,
};

const WAIT: Duration = Duration::from_secs(10);

async fn app_sending_to(sink: &SmtpSink) -> TestApp {
    let url = sink.url();
    TestApp::spawn_with(|config| fast_email(config, &url)).await
}

async fn tenant_with_alert_addresses(app: &TestApp) -> Tenant {
    let tenant = app.tenant().await;
    app.set_alert_emails(&tenant, &["ops@acme.test", "cfo@acme.test"]).await;
    tenant
}

/// Waits until the alert with `id` has `status` in the history, and returns it.
async fn alert_with_status(app: &TestApp, tenant: &Tenant, id: Uuid, status: &str) -> Value {
    eventually(&format!("alert {id} to be {status}"), WAIT, || async {
        let page = app.alerts(&tenant.owner, tenant.org_id, "?limit=500").await;
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id.to_string() && a["status"] == status)
            .cloned()
    })
    .await
}

fn queued_id(enqueued: Enqueued) -> Uuid {
    match enqueued {
        Enqueued::Queued(id) => id,
        other => panic!("expected a queued email, got {other:?}"),
    }
}

#[tokio::test]
async fn an_enqueued_alert_is_delivered_once_with_its_subject_recipients_and_both_bodies() {
    let sink = SmtpSink::start().await;
    let app = app_sending_to(&sink).await;
    let tenant = tenant_with_alert_addresses(&app).await;
    let budget_id = Uuid::now_v7();
    let id = queued_id(app.enqueue_alert(tenant.org_id, &budget_alert(budget_id, 80)).await);
    let _worker = app.start_outbox_worker();

    let mail = sink.wait_for(1, WAIT).await.remove(0);
    assert_eq!(
        mail.subject(),
        "[Meterplane] Acme AI: customer \"alice\" reached 80% of its monthly budget"
    );
    let mut rcpt = mail.rcpt_to.clone();
    rcpt.sort();
    assert_eq!(rcpt, ["cfo@acme.test", "ops@acme.test"]);
    assert_eq!(mail.mail_from, "alerts@meterplane.test");
    assert!(mail.header("To").unwrap().contains("ops@acme.test"));
    assert_eq!(mail.header("Message-ID").unwrap(), format!("<{id}@meterplane.test>"));
    assert_eq!(mail.header("Auto-Submitted").unwrap(), "auto-generated");
    let text = mail.text_body().expect("a text part");
    for expected in [
        "The monthly budget of customer \"alice\" has reached 80% of its amount.",
        "Spend this period:  81.20 USD",
        "Budget:             100.00 USD",
        "2026-12-01 00:00 UTC to 2027-01-01 00:00 UTC",
        "calls for this customer are denied",
    ] {
        assert!(text.contains(expected), "text lacks {expected:?}:\n{text}");
    }
    let html = mail.html_body().expect("an HTML part");
    assert!(html.contains("<td style=\"padding:4px 0\">81.20 USD</td>"), "{html}");
    assert!(html.contains("customer &quot;alice&quot;"), "{html}");

    let alert = alert_with_status(&app, &tenant, id, "sent").await;
    assert_eq!(alert["attempts"], 1);
    assert_eq!(alert["kind"], "budget_alert");
    assert_eq!(alert["budgetId"], budget_id.to_string());
    assert_eq!(alert["thresholdPercent"], 80);
    assert_eq!(alert["periodStart"], "2026-12-01T00:00:00Z");
    assert!(alert["sentAt"].is_string() && alert["nextAttemptAt"].is_null());
    assert_eq!(alert["lastError"], Value::Null);

    // Sent means sent: later polls do not deliver it again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.received().len(), 1);
}

#[tokio::test]
async fn the_same_alert_enqueued_twice_or_concurrently_is_one_email() {
    let sink = SmtpSink::start().await;
    let app = app_sending_to(&sink).await;
    let tenant = tenant_with_alert_addresses(&app).await;
    let budget_id = Uuid::now_v7();

    let first = app.enqueue_alert(tenant.org_id, &budget_alert(budget_id, 50)).await;
    assert!(matches!(first, Enqueued::Queued(_)));
    assert_eq!(
        app.enqueue_alert(tenant.org_id, &budget_alert(budget_id, 50)).await,
        Enqueued::Duplicate
    );

    // Sixteen transactions race to queue the 80 % alert, each holding its transaction
    // open a moment after inserting so they overlap.
    let racers = (0..16).map(|_| {
        let pool = app.state.db.clone();
        let org_id = tenant.org_id;
        tokio::spawn(async move {
            let mut conn = pool.get().await.unwrap();
            conn.transaction(async |conn| {
                let result = outbox::enqueue_budget_alert(conn, org_id, &budget_alert(budget_id, 80)).await?;
                diesel::sql_query("SELECT pg_sleep(0.05)").execute(conn).await?;
                Ok::<_, meterplane::error::AppError>(result)
            })
            .await
            .unwrap()
        })
    });
    let results = futures_util::future::join_all(racers).await;
    let queued = results
        .iter()
        .filter(|r| matches!(r.as_ref().unwrap(), Enqueued::Queued(_)))
        .count();
    assert_eq!(queued, 1, "{results:?}");

    let _worker = app.start_outbox_worker();
    let mails = sink.wait_for(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.received().len(), 2, "{mails:?}");
    let subjects: HashSet<String> = sink.received().iter().map(|m| m.subject()).collect();
    assert!(subjects.iter().any(|s| s.contains("reached 50%")));
    assert!(subjects.iter().any(|s| s.contains("reached 80%")));
}

#[tokio::test]
async fn with_the_smtp_server_down_attempts_back_off_and_the_alert_arrives_once_when_it_is_back() {
    let mut sink = SmtpSink::start().await;
    sink.stop().await;
    let app = app_sending_to(&sink).await;
    let tenant = tenant_with_alert_addresses(&app).await;
    let id = queued_id(
        app.enqueue_alert(tenant.org_id, &budget_alert(Uuid::now_v7(), 80))
            .await,
    );
    let started = std::time::Instant::now();
    let _worker = app.start_outbox_worker();

    let pending = eventually("three failed attempts", WAIT, || async {
        let page = app.alerts(&tenant.owner, tenant.org_id, "").await;
        let alert = page["data"][0].clone();
        (alert["attempts"].as_i64().unwrap() >= 3).then_some(alert)
    })
    .await;
    // Backoff, not the 50 ms poll: three attempts need at least 50 + 100 ms of waiting
    // (the lower jitter bounds of the first two retries).
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(pending["status"], "pending");
    assert!(pending["sentAt"].is_null());
    assert!(pending["nextAttemptAt"].is_string());
    let error = pending["lastError"].as_str().unwrap();
    assert!(error.contains("Connection refused"), "{error}");
    assert!(!error.is_empty(), "{pending}");
    assert_eq!(sink.received().len(), 0);

    sink.restart().await;
    let mails = sink.wait_for(1, WAIT).await;
    let sent = alert_with_status(&app, &tenant, id, "sent").await;
    assert!(sent["attempts"].as_i64().unwrap() >= 4, "{sent}");
    assert!(sent["sentAt"].as_str().unwrap() > sent["createdAt"].as_str().unwrap());
    assert!(
        sent["lastError"].is_string(),
        "the history tells why it was late: {sent}"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sink.received().len(), 1, "{mails:?}");
}

#[tokio::test]
async fn after_the_last_attempt_an_alert_is_failed_and_never_sent() {
    let mut sink = SmtpSink::start().await;
    sink.stop().await;
    let url = sink.url();
    let app = TestApp::spawn_with(|config| {
        fast_email(config, &url);
        config.email.retry =
            meterplane::domain::outbox::RetryPolicy::new(Duration::from_millis(20), Duration::from_millis(40), 2)
                .unwrap();
    })
    .await;
    let tenant = tenant_with_alert_addresses(&app).await;
    let id = queued_id(
        app.enqueue_alert(tenant.org_id, &budget_alert(Uuid::now_v7(), 80))
            .await,
    );
    let _worker = app.start_outbox_worker();

    let failed = alert_with_status(&app, &tenant, id, "failed").await;
    assert_eq!(failed["attempts"], 2);
    assert!(failed["lastError"].is_string());
    assert!(failed["nextAttemptAt"].is_null());

    sink.restart().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sink.received().len(), 0);
}

#[tokio::test]
async fn two_instances_deliver_each_email_exactly_once() {
    let sink = SmtpSink::start().await;
    // A slow server keeps both workers busy at the same time.
    sink.set_accept_delay(Duration::from_millis(20));
    let app = app_sending_to(&sink).await;
    let tenant = tenant_with_alert_addresses(&app).await;
    let mut ids = HashSet::new();
    for _ in 0..15 {
        let budget = Uuid::now_v7();
        for threshold in [50, 80] {
            ids.insert(queued_id(
                app.enqueue_alert(tenant.org_id, &budget_alert(budget, threshold)).await,
            ));
        }
    }
    let _one = app.start_outbox_worker();
    let _other = app.start_other_instance_worker();

    sink.wait_for(ids.len(), WAIT).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mails = sink.received();
    assert_eq!(mails.len(), ids.len());
    let delivered: HashSet<Uuid> = mails.iter().map(message_row_id).collect();
    assert_eq!(delivered, ids, "every email once, none twice");
    assert!(
        sink.max_concurrent() >= 2,
        "both instances were delivering at the same time"
    );
    let page = eventually("all sent", WAIT, || async {
        let page = app.alerts(&tenant.owner, tenant.org_id, "?status=sent&limit=500").await;
        (page["data"].as_array().unwrap().len() == ids.len()).then_some(page)
    })
    .await;
    assert!(page["data"].as_array().unwrap().iter().all(|a| a["attempts"] == 1));
}

#[tokio::test]
async fn a_restarted_worker_carries_on_and_only_a_crash_mid_delivery_can_repeat_an_email() {
    let sink = SmtpSink::start().await;
    sink.set_accept_delay(Duration::from_millis(30));
    let app = app_sending_to(&sink).await;
    let tenant = tenant_with_alert_addresses(&app).await;
    let mut ids = HashSet::new();
    for threshold in 1..=12 {
        ids.insert(queued_id(
            app.enqueue_alert(tenant.org_id, &budget_alert(Uuid::now_v7(), threshold))
                .await,
        ));
    }

    // A graceful stop finishes and records the email in flight: nothing repeats.
    let worker = app.start_outbox_worker();
    sink.wait_for(3, WAIT).await;
    worker.stop().await;
    let after_stop = sink.received().len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.received().len(), after_stop, "a stopped worker sends nothing more");

    // A crash (the task dropped mid-conversation) rolls back the email in flight: if
    // the server had accepted it already, the next worker sends it again, with the
    // same Message-ID. That is the documented at-least-once window, one email wide.
    let worker = app.start_outbox_worker();
    sink.wait_for(after_stop + 2, WAIT).await;
    worker.abort();
    let _restarted = app.start_outbox_worker();
    eventually("every alert sent", WAIT, || async {
        let page = app.alerts(&tenant.owner, tenant.org_id, "?status=sent&limit=500").await;
        (page["data"].as_array().unwrap().len() == ids.len()).then_some(())
    })
    .await;
    let mails = sink.received();
    let delivered: HashSet<Uuid> = mails.iter().map(message_row_id).collect();
    assert_eq!(delivered, ids);
    assert!(
        mails.len() <= ids.len() + 1,
        "at most the one email in flight at the crash repeats: {} for {}",
        mails.len(),
        ids.len()
    );
}

#[tokio::test]
async fn a_wakeup_after_commit_delivers_without_waiting_for_the_poll() {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let app = TestApp::spawn_with(|config| {
        fast_email(config, &url);
        config.email.poll_interval = Duration::from_secs(600);
    })
    .await;
    let tenant = tenant_with_alert_addresses(&app).await;
    let _worker = app.start_outbox_worker();
    // Let the worker finish its first (empty) pass and go to sleep.
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.enqueue_alert(tenant.org_id, &budget_alert(Uuid::now_v7(), 80))
        .await;
    app.state.outbox.notify();
    sink.wait_for(1, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn account_emails_use_the_same_outbox_stay_out_of_alert_history_and_drop_their_links_once_sent() {
    let sink = SmtpSink::start().await;
    let app = app_sending_to(&sink).await;
    let tenant = tenant_with_alert_addresses(&app).await;
    let email = OutgoingEmail::new(
        EmailKind::PasswordReset,
        None,
        format!("password_reset:{}", Uuid::now_v7()),
        vec![EmailAddress::parse(&tenant.owner.email).unwrap()],
        "Reset your Meterplane password".into(),
        "Open https://meterplane.test/reset?token=secret-token-123 within an hour.".into(),
        String::new(),
    )
    .unwrap();
    let mut conn = app.state.db.get().await.unwrap();
    let id = queued_id(outbox::enqueue(&mut conn, &email).await.unwrap());
    let _worker = app.start_outbox_worker();

    let mail = sink.wait_for(1, WAIT).await.remove(0);
    assert_eq!(mail.subject(), "Reset your Meterplane password");
    assert_eq!(mail.rcpt_to, [tenant.owner.email.as_str()]);
    assert!(mail.text_body().unwrap().contains("secret-token-123"));
    assert!(mail.html_body().is_none(), "text-only emails have no HTML part");

    let bodies = eventually("the reset email to be recorded as sent", WAIT, || async {
        let row: BodyRow = diesel::sql_query("SELECT status, text_body, html_body FROM email_outbox WHERE id = $1")
            .bind::<diesel::sql_types::Uuid, _>(id)
            .get_result(&mut app.db().await)
            .await
            .unwrap();
        (row.status == "sent").then_some(row)
    })
    .await;
    assert_eq!((bodies.text_body.as_str(), bodies.html_body.as_str()), ("", ""));
    let page = app.alerts(&tenant.owner, tenant.org_id, "").await;
    assert_eq!(page["data"].as_array().unwrap().len(), 0);
}

#[derive(diesel::QueryableByName)]
struct BodyRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    text_body: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    html_body: String,
}

#[tokio::test]
async fn without_an_smtp_server_no_worker_runs_and_alerts_stay_pending() {
    let app = TestApp::spawn().await;
    assert!(app.state.config.email.smtp.is_none());
    let worker = meterplane::jobs::outbox::OutboxWorker::from_config(
        app.state.db.clone(),
        &app.state.config.email,
        Default::default(),
    )
    .unwrap();
    assert!(worker.is_none());
    let tenant = tenant_with_alert_addresses(&app).await;
    app.enqueue_alert(tenant.org_id, &budget_alert(Uuid::now_v7(), 80))
        .await;
    let page = app.alerts(&tenant.owner, tenant.org_id, "").await;
    assert_eq!(page["data"][0]["status"], "pending");
    assert_eq!(page["data"][0]["attempts"], 0);
}

#[tokio::test]
async fn alert_history_is_newest_first_paginated_filtered_and_tenant_isolated() {
    let app = TestApp::spawn().await;
    let tenant = tenant_with_alert_addresses(&app).await;
    let viewer = app.member(&tenant, "viewer").await;
    let budget = Uuid::now_v7();
    for threshold in [50, 80, 100] {
        app.enqueue_alert(tenant.org_id, &budget_alert(budget, threshold)).await;
    }
    // Another tenant, without alert addresses: its alert is recorded as skipped.
    let other = app.tenant().await;
    let skipped = app.enqueue_alert(other.org_id, &budget_alert(Uuid::now_v7(), 80)).await;
    assert!(matches!(skipped, Enqueued::Skipped(_)));

    let all = app.alerts(&viewer, tenant.org_id, "").await;
    let thresholds: Vec<i64> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["thresholdPercent"].as_i64().unwrap())
        .collect();
    assert_eq!(thresholds, [100, 80, 50], "newest first");
    assert_eq!(all["nextCursor"], Value::Null);
    assert_eq!(
        all["data"][0]["recipients"],
        serde_json::json!(["ops@acme.test", "cfo@acme.test"])
    );
    assert_eq!(all["data"][0]["status"], "pending");
    assert!(all["data"][0]["subject"]
        .as_str()
        .unwrap()
        .ends_with("; calls are now denied"));

    let first = app.alerts(&tenant.owner, tenant.org_id, "?limit=2").await;
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    let cursor = first["nextCursor"].as_str().expect("a next page");
    let second = app
        .alerts(&tenant.owner, tenant.org_id, &format!("?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    assert_eq!(second["data"][0]["thresholdPercent"], 50);
    assert_eq!(second["nextCursor"], Value::Null);
    let sent = app.alerts(&tenant.owner, tenant.org_id, "?status=sent").await;
    assert_eq!(sent["data"].as_array().unwrap().len(), 0);

    // The other tenant sees only its own skipped alert, and none of these.
    let theirs = app.alerts(&other.owner, other.org_id, "").await;
    assert_eq!(theirs["data"].as_array().unwrap().len(), 1);
    assert_eq!(theirs["data"][0]["status"], "skipped");
    assert_eq!(theirs["data"][0]["recipients"], serde_json::json!([]));
    assert!(theirs["data"][0]["lastError"]
        .as_str()
        .unwrap()
        .contains("no alert email addresses"));
    let response = app
        .as_user(Method::GET, &format!("/v1/orgs/{}/alerts", tenant.org_id), &other.owner)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    // Another tenant's cursor only pages through the caller's own alerts.
    let foreign_cursor = all["data"][2]["id"].as_str().unwrap();
    let via_cursor = app
        .alerts(&other.owner, other.org_id, &format!("?cursor={foreign_cursor}"))
        .await;
    assert!(via_cursor.to_string().find(&tenant.org_id.to_string()).is_none());
    assert!(via_cursor["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["status"] == "skipped"));

    let anonymous = app
        .request(Method::GET, &format!("/v1/orgs/{}/alerts", tenant.org_id))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    for bad in ["?limit=0", "?limit=501", "?cursor=nope", "?status=lost", "?sort=spend"] {
        let response = app
            .as_user(
                Method::GET,
                &format!("/v1/orgs/{}/alerts{bad}", tenant.org_id),
                &tenant.owner,
            )
            .send()
            .await
            .unwrap();
        expect_problem(response, StatusCode::BAD_REQUEST, "invalid_query_parameter").await;
    }
}

/// The outbox row id, from the `Message-ID` the mailer sets (`<id@domain>`).
fn message_row_id(mail: &crate::smtp_sink::ReceivedEmail) -> Uuid {
    let id = mail.header("Message-ID").expect("a Message-ID");
    id.trim_start_matches('<')
        .split('@')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected Message-ID {id}"))
}

#[tokio::test]
async fn a_failing_alert_leaves_the_callers_transaction_usable() {
    let app = TestApp::spawn().await;
    let tenant = tenant_with_alert_addresses(&app).await;
    let mut conn = app.state.db.get().await.unwrap();
    let kept = conn
        .transaction(async |conn| {
            // The organization does not exist: the alert fails inside its savepoint...
            let missing = outbox::enqueue_budget_alert(conn, Uuid::now_v7(), &budget_alert(Uuid::now_v7(), 80)).await;
            assert!(missing.is_err());
            // ...and the caller's transaction goes on and commits what it did.
            outbox::enqueue_budget_alert(conn, tenant.org_id, &budget_alert(Uuid::now_v7(), 50)).await
        })
        .await
        .unwrap();
    assert!(matches!(kept, Enqueued::Queued(_)));
    let page = app.alerts(&tenant.owner, tenant.org_id, "").await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
}
