//! The retention purge: drops the daily event partitions no organization keeps any
//! more, then removes each organization's expired rows in bounded batches, then
//! analyzes the daily partitions whose planner statistics are stale. What is
//! kept and why: `domain::retention`. One instance purges at a time (a PostgreSQL
//! advisory lock); the others skip that round.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{JobHandle, Shutdown};
use crate::{
    config::PurgeConfig,
    domain::retention,
    store::{self, DbPool},
};

/// What one purge removed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PurgeReport {
    pub organizations: usize,
    /// Whole daily partitions of raw events dropped, and the events they held.
    pub partitions_dropped: Vec<String>,
    pub events_in_dropped_partitions: u64,
    /// Rows deleted one batch at a time.
    pub events: u64,
    pub request_ids: u64,
    pub decisions: u64,
    /// Rows of the daily roll-ups (`usage_daily` and its coarse copies).
    pub rollup_rows: u64,
    /// Rows of the per-customer cost ledger older than the billing horizon.
    pub customer_cost_rows: u64,
    pub hourly_rollup_rows: u64,
    /// Daily partitions whose planner statistics were stale and were analyzed (the
    /// spend log's plans depend on them; see `store::purge::stale_partitions`).
    pub partitions_analyzed: Vec<String>,
    /// The partitioned table's own statistics were renewed (at most once a day).
    pub events_table_analyzed: bool,
    /// Roll-up tables whose statistics were stale and were vacuumed and analyzed (the
    /// analytics' plans depend on them as much, and their index-only scans on the
    /// vacuum).
    pub rollups_analyzed: Vec<String>,
}

/// Why a purge did not run.
#[derive(Debug, PartialEq, Eq)]
pub enum Skipped {
    /// Another instance is purging.
    Busy,
}

/// Purges everything that has expired at `now`, billing data kept for
/// `billing_horizon_days` (`MP_BILLING_HORIZON_DAYS`).
pub async fn run_once(
    db: &DbPool,
    now: DateTime<Utc>,
    batch: i64,
    billing_horizon_days: i32,
) -> anyhow::Result<Result<PurgeReport, Skipped>> {
    let mut conn = db.get().await?;
    if !store::purge::try_lock(&mut conn).await? {
        return Ok(Err(Skipped::Busy));
    }
    let purged = purge(&mut conn, now, batch, billing_horizon_days).await;
    // The lock belongs to the pooled connection's session: release it before the
    // connection goes back, whatever happened.
    let unlocked = store::purge::unlock(&mut conn).await;
    let report = purged?;
    unlocked?;
    Ok(Ok(report))
}

async fn purge(
    conn: &mut store::DbConn,
    now: DateTime<Utc>,
    batch: i64,
    billing_horizon_days: i32,
) -> anyhow::Result<PurgeReport> {
    let mut report = PurgeReport::default();
    let longest = store::purge::longest_retention_days(conn).await?;
    for (name, day) in store::purge::event_partitions(conn).await? {
        if retention::partition_expired(day, now, longest) {
            report.events_in_dropped_partitions += store::purge::drop_partition(conn, &name).await?;
            report.partitions_dropped.push(name);
        }
    }
    let orgs = store::orgs::list_all(conn).await?;
    report.organizations = orgs.len();
    for org in orgs {
        let cut = retention::cutoffs(now, org.retention_days, billing_horizon_days);
        let removed = store::purge::organization(conn, org.id, &cut, batch).await?;
        report.events += removed.events;
        report.request_ids += removed.request_ids;
        report.decisions += removed.decisions;
        report.rollup_rows += removed.rollup_rows;
        report.customer_cost_rows += removed.customer_cost_rows;
        report.hourly_rollup_rows += removed.hourly_rollup_rows;
    }
    // After the deletes, so the statistics describe what is left.
    for name in store::purge::stale_partitions(conn).await? {
        store::purge::analyze(conn, &name).await?;
        report.partitions_analyzed.push(name);
    }
    if store::purge::events_table_stale(conn, chrono::Duration::days(1)).await? {
        store::purge::analyze(conn, "usage_events").await?;
        report.events_table_analyzed = true;
    }
    for name in store::purge::stale_rollups(conn).await? {
        store::purge::vacuum_analyze(conn, &name).await?;
        report.rollups_analyzed.push(name);
    }
    Ok(report)
}

/// The scheduled purge: every `config.interval`, starting one interval after start
/// (a fleet restarting at once does not purge at once).
pub fn spawn(db: DbPool, config: PurgeConfig) -> Option<JobHandle> {
    if config.interval.is_zero() {
        tracing::info!("MP_PURGE_INTERVAL_SECS=0: this instance does not run the retention purge");
        return None;
    }
    Some(JobHandle::spawn("purge", move |shutdown| run(db, config, shutdown)))
}

async fn run(db: DbPool, config: PurgeConfig, mut shutdown: Shutdown) {
    let start = tokio::time::Instant::now() + config.interval;
    let mut every = tokio::time::interval_at(start, config.interval.max(Duration::from_secs(1)));
    loop {
        tokio::select! {
            _ = shutdown.requested() => return,
            _ = every.tick() => {}
        }
        match run_once(&db, Utc::now(), config.batch_rows, config.billing_horizon_days).await {
            Ok(Ok(report)) => tracing::info!(?report, "retention purge done"),
            Ok(Err(Skipped::Busy)) => tracing::debug!("another instance is purging"),
            Err(e) => tracing::warn!(error = %e, "retention purge failed; it runs again next time"),
        }
    }
}
