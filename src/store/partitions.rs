//! Daily partitions of `usage_events`, created on demand before events land in them.

use chrono::NaiveDate;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::DbConn;
use crate::error::{AppError, AppResult};

pub fn partition_name(day: NaiveDate) -> String {
    format!("usage_events_p{}", day.format("%Y%m%d"))
}

/// Creates the partition for `day` if it does not exist. An advisory lock per day
/// serializes concurrent creators; `lock_timeout` keeps a busy parent table from
/// stalling ingestion for long.
pub async fn ensure_day(conn: &mut DbConn, day: NaiveDate) -> AppResult<()> {
    let next = day
        .succ_opt()
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("no day after {day}")))?;
    let key: i32 = day.format("%Y%m%d").to_string().parse().unwrap_or_default();
    let create = format!(
        "CREATE TABLE IF NOT EXISTS {} PARTITION OF usage_events \
         FOR VALUES FROM ('{day} 00:00:00+00') TO ('{next} 00:00:00+00')",
        partition_name(day)
    );
    conn.transaction(async |conn| {
        diesel::sql_query("SET LOCAL lock_timeout = '10s'")
            .execute(conn)
            .await?;
        diesel::sql_query(format!("SELECT pg_advisory_xact_lock(8812, {key})"))
            .execute(conn)
            .await?;
        diesel::sql_query(create).execute(conn).await?;
        Ok::<_, AppError>(())
    })
    .await
}

/// Names of the existing partitions, oldest first.
pub async fn list(conn: &mut DbConn) -> AppResult<Vec<String>> {
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    let rows: Vec<Name> = diesel::sql_query(
        "SELECT c.relname::text AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'usage_events' ORDER BY 1",
    )
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.name).collect())
}
