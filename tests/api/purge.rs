//! The retention purge removes exactly what no organization keeps any more, counts
//! what it removed, and leaves budget spend and the billing roll-ups alone.

use chrono::{DateTime, Duration, Utc};
use diesel::sql_types::{Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use meterplane::{
    domain::retention::BILLING_HORIZON_DAYS,
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
/// Rows per table of one organization; the daily roll-ups count `usage_daily` and
/// its coarse copies together.
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
    for coarse in ["usage_daily_models", "usage_entity_rollups"] {
        let n = app.count_rows(coarse, tenant.org_id).await;
        assert!(n > 0 || counts[3] == 0, "{coarse} is written with usage_daily");
        counts[3] += n;
    }
    counts
}

async fn purge_at(app: &TestApp, now: DateTime<Utc>) -> PurgeReport {
    run_once(&app.state.db, now, BATCH, BILLING_HORIZON_DAYS)
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
            // Statistics (tested below) may or may not be stale yet.
            partitions_analyzed: report.partitions_analyzed.clone(),
            events_table_analyzed: report.events_table_analyzed,
            rollups_analyzed: report.rollups_analyzed.clone(),
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
    let outcome = run_once(&app.state.db, Utc::now(), BATCH, BILLING_HORIZON_DAYS)
        .await
        .unwrap();
    assert_eq!(outcome, Err(Skipped::Busy));
    assert!(purge::unlock(&mut holder).await.unwrap());
    assert!(run_once(&app.state.db, Utc::now(), BATCH, BILLING_HORIZON_DAYS)
        .await
        .unwrap()
        .is_ok());
}

/// Per daily partition of `usage_events`: (name, rows the planner's statistics say,
/// rows changed since they were taken).
/// The `i`-th of `n` times `days_ago` days back, spread between that day's midnight
/// and its time of day now: every one stays on its UTC day and none is in the future,
/// at whatever hour the test runs.
fn spread_over_the_day(now: DateTime<Utc>, days_ago: i64, i: i32, n: i32) -> DateTime<Utc> {
    let midnight = now.date_naive().and_time(chrono::NaiveTime::MIN).and_utc();
    midnight - Duration::days(days_ago) + (now - midnight) * (i + 1) / (n + 1)
}

async fn partition_stats(app: &TestApp) -> Vec<(String, f32, i64)> {
    #[derive(diesel::QueryableByName)]
    struct Stat {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::Float4)]
        reltuples: f32,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        modified: i64,
    }
    let rows: Vec<Stat> = diesel::sql_query(
        "SELECT c.relname::text AS name, c.reltuples, s.n_mod_since_analyze AS modified \
         FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent AND p.relname = 'usage_events' \
         JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_stat_user_tables s ON s.relid = c.oid ORDER BY 1",
    )
    .load(&mut app.db().await)
    .await
    .unwrap();
    rows.into_iter().map(|r| (r.name, r.reltuples, r.modified)).collect()
}

#[tokio::test]
async fn the_purge_analyzes_the_partitions_whose_statistics_are_stale() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    set_plan(&app, &tenant, "pro", 90).await;
    let now = Utc::now();
    // 120 events today, 60 ten days ago, 1 twenty days ago: past the threshold of a
    // partition never analyzed, whatever its size.
    let mut events = Vec::new();
    for (days_ago, n) in [(0, 120), (10, 60), (20, 1)] {
        for i in 0..n {
            events.push(json!({
                "requestId": format!("stat-{days_ago}-{i}"), "endpoint": "/chat/completions",
                "provider": "openai", "model": "gpt-4o", "user": format!("customer-{}", i % 7),
                "startedAt": spread_over_the_day(now, days_ago, i, n).to_rfc3339(),
            }));
        }
    }
    let (status, body) = app.send_batch(&tenant.key_secret, json!(events)).await;
    assert_eq!(body["accepted"], 181, "{status} {body}");
    let filled: Vec<String> = [0, 10, 20]
        .iter()
        .map(|d| partition_name((now - Duration::days(*d)).date_naive()))
        .collect();
    // Servers publish their table statistics shortly after a transaction, not at once.
    crate::helpers::eventually(
        "the inserts to show in the statistics",
        std::time::Duration::from_secs(30),
        || async {
            let stats = partition_stats(&app).await;
            (stats.iter().map(|s| s.2).sum::<i64>() == 181).then_some(())
        },
    )
    .await;

    let report = purge_at(&app, now).await;
    let mut analyzed = report.partitions_analyzed.clone();
    analyzed.retain(|name| filled.contains(name));
    let mut expected = filled.clone();
    expected.sort();
    assert_eq!(analyzed, expected, "{report:?}");
    assert!(report.events_table_analyzed, "never analyzed before: {report:?}");
    // The roll-ups took 181 events too: every table was written and never analyzed.
    assert_eq!(
        report.rollups_analyzed,
        [
            "customer_cost_daily",
            "spend_ledger",
            "usage_daily",
            "usage_daily_models",
            "usage_entity_rollups",
            "usage_hourly"
        ],
        "{report:?}"
    );
    // The statistics now count each partition's rows.
    for (name, reltuples, modified) in partition_stats(&app).await {
        let held = match filled.iter().position(|f| *f == name) {
            Some(0) => 120.0,
            Some(1) => 60.0,
            Some(_) => 1.0,
            None => continue,
        };
        assert_eq!((reltuples, modified), (held, 0), "{name}");
    }

    // Fresh statistics are left alone; a few more rows stay under the threshold
    // (50 + 10 % of the rows).
    for i in 0..5 {
        app.record_event(&tenant, json!({"requestId": format!("more-{i}")}))
            .await;
    }
    let report = purge_at(&app, now).await;
    assert_eq!(
        (
            report.partitions_analyzed.clone(),
            report.events_table_analyzed,
            report.rollups_analyzed.clone()
        ),
        (vec![], false, vec![]),
        "{report:?}"
    );
}
