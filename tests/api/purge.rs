//! The retention purge removes exactly what no organization keeps any more, counts
//! what it removed, and leaves budget spend and the billing roll-ups alone.

use chrono::{DateTime, Duration, Utc};
use diesel::sql_types::{Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use meterplane::{
    jobs::purge::{run_once, PurgeReport, Skipped},
    store::{partitions::partition_name, purge},
};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Tenant, TestApp};

/// Small, so every delete loops over several batches.
const BATCH: i64 = 2;

async fn set_plan(app: &TestApp, tenant: &Tenant, plan: &str, retention_days: i32) {
    diesel::sql_query("UPDATE organizations SET plan = $2, retention_days = $3 WHERE id = $1")
        .bind::<SqlUuid, _>(tenant.org_id)
        .bind::<Text, _>(plan)
        .bind::<diesel::sql_types::Integer, _>(retention_days)
        .execute(&mut app.db().await)
        .await
        .unwrap();
}

/// A logged authorize decision at `at` (the decision log's writer runs off the request
/// path; the purge only cares about the row).
async fn decision(app: &TestApp, tenant: &Tenant, at: DateTime<Utc>) {
    diesel::sql_query(
        "INSERT INTO authorize_decisions (org_id, id, decided_at, project_id, api_key_id, allowed, reason, scopes, sampled) \
         VALUES ($1, $2, $3, $4, $5, false, 'budget_exceeded', '[]', false)",
    )
    .bind::<SqlUuid, _>(tenant.org_id)
    .bind::<SqlUuid, _>(Uuid::new_v4())
    .bind::<Timestamptz, _>(at)
    .bind::<SqlUuid, _>(tenant.project_id)
    .bind::<SqlUuid, _>(tenant.key_id)
    .execute(&mut app.db().await)
    .await
    .unwrap();
}

/// Rows per table for one organization.
async fn rows(app: &TestApp, tenant: &Tenant) -> [i64; 6] {
    let mut counts = [0; 6];
    for (i, table) in [
        "usage_events",
        "usage_request_ids",
        "authorize_decisions",
        "usage_daily",
        "spend_ledger",
        "usage_hourly",
    ]
    .into_iter()
    .enumerate()
    {
        counts[i] = app.count_rows(table, tenant.org_id).await;
    }
    counts
}

async fn purge_at(app: &TestApp, now: DateTime<Utc>) -> PurgeReport {
    run_once(&app.state.db, now, BATCH)
        .await
        .expect("purge runs")
        .expect("no other purge holds the lock")
}

#[tokio::test]
async fn the_purge_removes_what_retention_no_longer_keeps_and_keeps_spend_and_billing_data() {
    let app = TestApp::spawn().await;
    let free = app.tenant().await;
    let pro = app.tenant().await;
    set_plan(&app, &pro, "pro", 90).await;
    let now = Utc::now();
    // Today, yesterday and the day before: all inside the free plan's three days.
    let days: Vec<DateTime<Utc>> = (0..3).map(|ago| now - Duration::days(ago)).collect();
    for tenant in [&free, &pro] {
        for (i, at) in days.iter().enumerate() {
            app.record_event(
                tenant,
                json!({"startedAt": at, "user": format!("customer-{i}"), "model": "gpt-4o"}),
            )
            .await;
            decision(&app, tenant, *at).await;
        }
    }
    let free_before = rows(&app, &free).await;
    let pro_before = rows(&app, &pro).await;
    assert_eq!(free_before[..3], [3, 3, 3]);
    assert_eq!(free_before[5], 3, "one hourly roll-up per event, a day apart");
    assert!(
        free_before[3] >= 3 && free_before[4] > 0,
        "roll-ups and ledger exist: {free_before:?}"
    );

    // Nothing has expired yet.
    let report = purge_at(&app, now).await;
    assert_eq!(
        report,
        PurgeReport {
            organizations: 2,
            ..PurgeReport::default()
        }
    );

    // Two days on, the free organization keeps only the first day's event (and its
    // hour); the pro organization keeps everything (hours for eight days).
    let report = purge_at(&app, now + Duration::days(2)).await;
    assert_eq!(
        (report.events, report.request_ids, report.decisions),
        (2, 2, 2),
        "{report:?}"
    );
    assert_eq!(
        (
            report.rollup_rows,
            report.hourly_rollup_rows,
            report.partitions_dropped.len()
        ),
        (0, 2, 0),
        "{report:?}"
    );
    let free_after = rows(&app, &free).await;
    assert_eq!(free_after, [1, 1, 1, free_before[3], free_before[4], 1]);
    assert_eq!(rows(&app, &pro).await, pro_before);
    // The event kept is the newest one.
    let logs = app
        .get_json(&free.owner, &format!("/v1/orgs/{}/spend-logs", free.org_id))
        .await;
    assert_eq!(logs["data"].as_array().map(Vec::len), Some(1), "{logs}");
    assert_eq!(logs["data"][0]["user"], "customer-0");

    // The pro organization moves to the free plan. 200 days on, no organization keeps
    // those days: their partitions are dropped whole, with the events they held.
    set_plan(&app, &pro, "free", 3).await;
    let report = purge_at(&app, now + Duration::days(200)).await;
    let mut expected: Vec<String> = days.iter().map(|at| partition_name(at.date_naive())).collect();
    expected.sort();
    let mut dropped = report.partitions_dropped.clone();
    dropped.retain(|name| expected.contains(name));
    assert_eq!(dropped, expected, "{report:?}");
    assert_eq!(report.events_in_dropped_partitions, 1 + 3, "{report:?}");
    assert_eq!(
        (
            report.request_ids,
            report.decisions,
            report.rollup_rows,
            report.hourly_rollup_rows
        ),
        (1 + 3, 1 + 3, 0, 1 + 3)
    );
    for (tenant, before) in [(&free, free_before), (&pro, pro_before)] {
        // Daily roll-ups (each customer's daily cost) and the budget ledger stay; the
        // hourly ones, which only serve recent summaries, go.
        assert_eq!(rows(&app, tenant).await, [0, 0, 0, before[3], before[4], 0]);
    }

    // Past the billing horizon the roll-ups go too; the spend ledger never does.
    let report = purge_at(&app, now + Duration::days(500)).await;
    assert_eq!(report.rollup_rows as i64, free_before[3] + pro_before[3], "{report:?}");
    for (tenant, before) in [(&free, free_before), (&pro, pro_before)] {
        assert_eq!(rows(&app, tenant).await, [0, 0, 0, 0, before[4], 0]);
    }

    // An event for a day whose partition was dropped still lands: the partition is
    // made again on demand (here the day is still inside the free retention of the
    // real clock; in production, an organization whose retention grew).
    app.record_event(&free, json!({"startedAt": days[2]})).await;
    assert_eq!(app.count_rows("usage_events", free.org_id).await, 1);
}

#[tokio::test]
async fn one_instance_purges_at_a_time() {
    let app = TestApp::spawn().await;
    let mut holder = app.state.db.get().await.unwrap();
    assert!(purge::try_lock(&mut holder).await.unwrap());
    let outcome = run_once(&app.state.db, Utc::now(), BATCH).await.unwrap();
    assert_eq!(outcome, Err(Skipped::Busy));
    assert!(purge::unlock(&mut holder).await.unwrap());
    assert!(run_once(&app.state.db, Utc::now(), BATCH).await.unwrap().is_ok());
}
