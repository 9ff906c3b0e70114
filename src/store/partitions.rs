//! Daily partitions of `usage_events`, created on demand before events land in them.

use chrono::NaiveDate;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::DbConn;
use crate::error::{AppError, AppResult};

pub fn partition_name(day: NaiveDate) -> String {
    format!("usage_events_p{}", day.format("%Y%m%d"))
}

/// The day a partition named by [`partition_name`] holds.
pub fn day_of(name: &str) -> Option<NaiveDate> {
    let digits = name.strip_prefix("usage_events_p")?;
    NaiveDate::parse_from_str(digits, "%Y%m%d").ok()
}

/// Creates the partition for `day` if it does not exist.
///
/// `CREATE TABLE … PARTITION OF` would lock the parent against readers and writers;
/// creating a standalone table and then `ATTACH`ing it only takes a lock that lets
/// inserts and queries go on. An advisory lock per day serializes concurrent creators.
/// Failures are transient (a lock wait timed out), so they answer 503.
pub async fn ensure_day(conn: &mut DbConn, day: NaiveDate) -> AppResult<()> {
    let next = day
        .succ_opt()
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("no day after {day}")))?;
    let key: i32 = day.format("%Y%m%d").to_string().parse().unwrap_or_default();
    let name = partition_name(day);
    conn.transaction(async |conn| {
        diesel::sql_query("SET LOCAL lock_timeout = '5s'").execute(conn).await?;
        diesel::sql_query(format!("SELECT pg_advisory_xact_lock(8812, {key})"))
            .execute(conn)
            .await?;
        if exists(conn, &name).await? {
            return Ok(());
        }
        diesel::sql_query(format!(
            "CREATE TABLE {name} (LIKE usage_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        ))
        .execute(conn)
        .await?;
        diesel::sql_query(format!(
            "ALTER TABLE usage_events ATTACH PARTITION {name} \
             FOR VALUES FROM ('{day} 00:00:00+00') TO ('{next} 00:00:00+00')"
        ))
        .execute(conn)
        .await?;
        Ok::<_, diesel::result::Error>(())
    })
    .await
    .map_err(AppError::unavailable)
}

async fn exists(conn: &mut DbConn, name: &str) -> Result<bool, diesel::result::Error> {
    #[derive(diesel::QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        found: bool,
    }
    let found: Found = diesel::sql_query("SELECT to_regclass($1) IS NOT NULL AS found")
        .bind::<diesel::sql_types::Text, _>(name)
        .get_result(conn)
        .await?;
    Ok(found.found)
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

/// Whether a `DETACH PARTITION … CONCURRENTLY` of `name` was interrupted half-way.
pub async fn detach_pending(conn: &mut DbConn, name: &str) -> AppResult<bool> {
    #[derive(diesel::QueryableByName)]
    struct Pending {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        pending: bool,
    }
    let rows: Vec<Pending> = diesel::sql_query(
        "SELECT i.inhdetachpending AS pending FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE c.relname = $1",
    )
    .bind::<diesel::sql_types::Text, _>(name)
    .load(conn)
    .await?;
    Ok(rows.into_iter().any(|r| r.pending))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_name_gives_back_its_day() {
        let day = NaiveDate::from_ymd_opt(2026, 2, 28).unwrap();
        assert_eq!(day_of(&partition_name(day)), Some(day));
        assert_eq!(day_of("usage_events_default"), None);
    }
}
