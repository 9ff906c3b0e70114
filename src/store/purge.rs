//! The retention purge's statements. Each delete removes at most one batch and commits
//! on its own, so no lock is held for long and ingestion (which only inserts recent
//! rows) never waits behind it.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::sql_types::{BigInt, Date, Integer, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::{
    entity_rollups, partitions,
    usage::{Daily, Resolution, COARSE_DAILY_TABLES},
    DbConn,
};
use crate::{domain::retention::Cutoffs, error::AppResult};

/// Rows keyed by an instant: deleted by primary key, a batch at a time.
const EVENTS: &str = "DELETE FROM usage_events WHERE org_id = $1 AND (occurred_at, id) IN \
    (SELECT occurred_at, id FROM usage_events WHERE org_id = $1 AND occurred_at < $2 LIMIT $3)";
const REQUEST_IDS: &str = "DELETE FROM usage_request_ids WHERE org_id = $1 AND request_id IN \
    (SELECT request_id FROM usage_request_ids WHERE org_id = $1 AND occurred_at < $2 LIMIT $3)";
const DECISIONS: &str = "DELETE FROM authorize_decisions WHERE org_id = $1 AND (decided_at, id) IN \
    (SELECT decided_at, id FROM authorize_decisions WHERE org_id = $1 AND decided_at < $2 LIMIT $3)";
/// The daily roll-up tables: `usage_daily`, its coarse copy and the per-entity
/// roll-ups, kept alike. A week row goes with its Monday: a window holding the whole
/// week starts on or before that Monday, so it is refused once the Monday has expired.
const DAILY_ROLLUPS: [&str; 3] = [Daily::TABLE, COARSE_DAILY_TABLES[0], entity_rollups::TABLE];

/// Roll-ups are keyed by day and have no primary key of their own.
fn daily_rollups_sql(table: &str) -> String {
    format!(
        "DELETE FROM {table} WHERE ctid IN \
         (SELECT ctid FROM {table} WHERE org_id = $1 AND day < $2 LIMIT $3)"
    )
}

/// The per-customer cost ledger, kept as long as the daily roll-ups.
const CUSTOMER_COSTS: &str = "DELETE FROM customer_cost_daily WHERE ctid IN \
    (SELECT ctid FROM customer_cost_daily WHERE org_id = $1 AND day < $2 LIMIT $3)";

const HOURLY_ROLLUPS: &str = "DELETE FROM usage_hourly WHERE ctid IN \
    (SELECT ctid FROM usage_hourly WHERE org_id = $1 AND hour < $2 LIMIT $3)";

/// What one organization's purge removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    pub events: u64,
    pub request_ids: u64,
    pub decisions: u64,
    /// Rows of every daily roll-up table (`usage_daily` and the coarse ones).
    pub rollup_rows: u64,
    /// Rows of the per-customer cost ledger (`customer_cost_daily`).
    pub customer_cost_rows: u64,
    pub hourly_rollup_rows: u64,
}

/// Removes what one organization keeps no longer (`domain::retention::Cutoffs`): raw
/// events, request ids and decisions, daily roll-ups and customer costs (past the
/// billing horizon), hourly roll-ups.
pub async fn organization(conn: &mut DbConn, org_id: Uuid, cut: &Cutoffs, batch: i64) -> AppResult<Removed> {
    let events_before = cut.events_before;
    let mut rollup_rows = 0;
    for table in DAILY_ROLLUPS {
        rollup_rows += before_day(conn, &daily_rollups_sql(table), org_id, cut.rollups_before, batch).await?;
    }
    Ok(Removed {
        events: before_instant(conn, EVENTS, org_id, events_before, batch).await?,
        request_ids: before_instant(conn, REQUEST_IDS, org_id, events_before, batch).await?,
        decisions: before_instant(conn, DECISIONS, org_id, events_before, batch).await?,
        rollup_rows,
        customer_cost_rows: before_day(conn, CUSTOMER_COSTS, org_id, cut.rollups_before, batch).await?,
        hourly_rollup_rows: before_instant(conn, HOURLY_ROLLUPS, org_id, cut.hourly_rollups_before, batch).await?,
    })
}

/// Runs a batch delete whose bound is an instant until a batch comes back short.
async fn before_instant(
    conn: &mut DbConn,
    sql: &str,
    org_id: Uuid,
    before: DateTime<Utc>,
    batch: i64,
) -> AppResult<u64> {
    let mut total = 0;
    loop {
        let deleted = diesel::sql_query(sql)
            .bind::<SqlUuid, _>(org_id)
            .bind::<Timestamptz, _>(before)
            .bind::<BigInt, _>(batch)
            .execute(conn)
            .await?;
        total += deleted as u64;
        if (deleted as i64) < batch {
            return Ok(total);
        }
    }
}

/// [`before_instant`] for a bound that is a day.
async fn before_day(conn: &mut DbConn, sql: &str, org_id: Uuid, before: NaiveDate, batch: i64) -> AppResult<u64> {
    let mut total = 0;
    loop {
        let deleted = diesel::sql_query(sql)
            .bind::<SqlUuid, _>(org_id)
            .bind::<Date, _>(before)
            .bind::<BigInt, _>(batch)
            .execute(conn)
            .await?;
        total += deleted as u64;
        if (deleted as i64) < batch {
            return Ok(total);
        }
    }
}

/// The longest retention any organization has (1 day when there is none).
pub async fn longest_retention_days(conn: &mut DbConn) -> AppResult<i32> {
    #[derive(diesel::QueryableByName)]
    struct Longest {
        #[diesel(sql_type = Integer)]
        days: i32,
    }
    let row: Longest = diesel::sql_query("SELECT coalesce(max(retention_days), 1) AS days FROM organizations")
        .get_result(conn)
        .await?;
    Ok(row.days)
}

/// The daily partitions of `usage_events` and their days, oldest first.
pub async fn event_partitions(conn: &mut DbConn) -> AppResult<Vec<(String, NaiveDate)>> {
    Ok(partitions::list(conn)
        .await?
        .into_iter()
        .filter_map(|name| partitions::day_of(&name).map(|day| (name, day)))
        .collect())
}

/// When a table's planner statistics are stale: never analyzed while rows arrived, or
/// changed by more than a tenth of its rows since (autovacuum's default rule, kept here
/// because a server may run without autovacuum, and autovacuum never analyzes the
/// partitioned table itself). `c` is its `pg_class` row, `s` its `pg_stat_user_tables`.
const STALE: &str =
    "s.n_mod_since_analyze > 0 AND (c.reltuples < 0 OR s.n_mod_since_analyze >= 50 + 0.1 * c.reltuples)";

/// The roll-up tables analytics, budgets and invoices read; they are upserted on every
/// ingest.
pub const ROLLUP_TABLES: [&str; 6] = [
    "customer_cost_daily",
    "usage_daily",
    "usage_hourly",
    "spend_ledger",
    COARSE_DAILY_TABLES[0],
    entity_rollups::TABLE,
];

#[derive(diesel::QueryableByName)]
struct TableName {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
}

/// Daily partitions of `usage_events` whose planner statistics are stale ([`STALE`]),
/// oldest first.
pub async fn stale_partitions(conn: &mut DbConn) -> AppResult<Vec<String>> {
    let rows: Vec<TableName> = diesel::sql_query(format!(
        "SELECT c.relname::text AS name FROM pg_inherits i \
         JOIN pg_class p ON p.oid = i.inhparent AND p.relname = 'usage_events' \
         JOIN pg_class c ON c.oid = i.inhrelid \
         JOIN pg_stat_user_tables s ON s.relid = c.oid \
         WHERE {STALE} ORDER BY 1"
    ))
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.name).collect())
}

/// The [`ROLLUP_TABLES`] whose planner statistics are stale ([`STALE`]).
pub async fn stale_rollups(conn: &mut DbConn) -> AppResult<Vec<String>> {
    let rows: Vec<TableName> = diesel::sql_query(format!(
        "SELECT c.relname::text AS name FROM pg_class c \
         JOIN pg_stat_user_tables s ON s.relid = c.oid \
         WHERE c.relname = ANY($1) AND {STALE} ORDER BY 1"
    ))
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(ROLLUP_TABLES.to_vec())
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.name).collect())
}

/// Whether the partitioned `usage_events` itself was last analyzed longer ago than
/// `max_age` (or never). Its statistics cover all partitions together.
pub async fn events_table_stale(conn: &mut DbConn, max_age: chrono::Duration) -> AppResult<bool> {
    #[derive(diesel::QueryableByName)]
    struct Stale {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        stale: bool,
    }
    let row: Stale = diesel::sql_query(
        "SELECT coalesce(max(greatest(last_analyze, last_autoanalyze)) < now() - make_interval(secs => $1), true) \
         AS stale FROM pg_stat_user_tables WHERE relname = 'usage_events'",
    )
    .bind::<diesel::sql_types::Double, _>(max_age.num_seconds() as f64)
    .get_result(conn)
    .await?;
    Ok(row.stale)
}

/// `ANALYZE` of one table named by the catalog (a partition of [`event_partitions`]'s
/// shape, `usage_events`, or one of [`ROLLUP_TABLES`]).
pub async fn analyze(conn: &mut DbConn, table: &str) -> AppResult<()> {
    diesel::sql_query(format!("ANALYZE {table}")).execute(conn).await?;
    Ok(())
}

/// `VACUUM (ANALYZE)` of one of [`ROLLUP_TABLES`]: besides the statistics, it marks
/// the pages no write has touched since as all-visible, which lets the reports read
/// the roll-ups' covering indexes alone (an index-only scan), and reclaims the row
/// versions the upserts leave behind. Autovacuum does the same where it is on.
pub async fn vacuum_analyze(conn: &mut DbConn, table: &str) -> AppResult<()> {
    diesel::sql_query(format!("VACUUM (ANALYZE) {table}"))
        .execute(conn)
        .await?;
    Ok(())
}

/// Detaches and drops one daily partition, answering how many events it held.
/// `DETACH … CONCURRENTLY` lets inserts and reads of the other partitions go on; a
/// detach interrupted half-way is finished first.
pub async fn drop_partition(conn: &mut DbConn, name: &str) -> AppResult<u64> {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    // `name` comes from the catalog and has the shape `partition_name` gives.
    let held: Count = diesel::sql_query(format!("SELECT count(*) AS n FROM {name}"))
        .get_result(conn)
        .await?;
    if partitions::detach_pending(conn, name).await? {
        diesel::sql_query(format!("ALTER TABLE usage_events DETACH PARTITION {name} FINALIZE"))
            .execute(conn)
            .await?;
    } else {
        diesel::sql_query(format!("ALTER TABLE usage_events DETACH PARTITION {name} CONCURRENTLY"))
            .execute(conn)
            .await?;
    }
    diesel::sql_query(format!("DROP TABLE {name}")).execute(conn).await?;
    Ok(held.n.max(0) as u64)
}

/// Takes the purge's advisory lock on this connection's session, unless another
/// instance holds it.
pub async fn try_lock(conn: &mut DbConn) -> AppResult<bool> {
    advisory(conn, "pg_try_advisory_lock").await
}

pub async fn unlock(conn: &mut DbConn) -> AppResult<bool> {
    advisory(conn, "pg_advisory_unlock").await
}

/// The purge's lock: one key, distinct from the partition creators' (8812, day).
const PURGE_LOCK: (i32, i32) = (8813, 0);

async fn advisory(conn: &mut DbConn, function: &str) -> AppResult<bool> {
    #[derive(diesel::QueryableByName)]
    struct Held {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        ok: bool,
    }
    let (class, key) = PURGE_LOCK;
    let held: Held = diesel::sql_query(format!("SELECT {function}({class}, {key}) AS ok"))
        .get_result(conn)
        .await?;
    Ok(held.ok)
}
