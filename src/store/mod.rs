//! Persistence: the only module that speaks SQL.
//!
//! Every function that reads or writes tenant rows takes an [`access::OrgAccess`],
//! which can only be obtained by checking the caller's membership, so a query cannot
//! forget the tenancy check.

pub mod access;
pub mod account_tokens;
pub mod activity;
pub mod api_keys;
pub mod billing;
pub mod budgets;
pub mod columns;
pub mod connection;
pub mod customer_costs;
pub mod decisions;
pub mod defaults;
pub mod discounts;
pub mod entity_rollups;
pub mod invitations;
pub mod invoices;
pub mod limits;
pub mod live;
pub mod members;
pub mod org_prices;
pub mod orgs;
pub mod outbox;
pub mod parties;
pub mod partitions;
pub mod prepared;
pub mod prices;
pub mod projects;
pub mod purge;
pub mod rate_limits;
pub mod schema;
pub mod scopes;
pub mod spend_ledger;
pub mod spend_logs;
mod sql_enums;
pub mod summary;
pub mod usage;
pub mod users;

use std::time::Duration;

use anyhow::Context;
use diesel_async::{
    pooled_connection::{deadpool::Pool, AsyncDieselConnectionManager, ManagerConfig},
    AsyncPgConnection,
};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use futures_util::FutureExt;

pub use connection::PgTarget;

pub type DbPool = Pool<AsyncPgConnection>;
pub type DbConn = AsyncPgConnection;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// A pool of connections to `url` (TLS as its `sslmode` says, see [`connection`]).
/// Connections open on first use; a bad URL or CA file fails here.
pub fn connect(url: &str, max_size: usize, acquire_timeout: Duration) -> anyhow::Result<DbPool> {
    let target = PgTarget::parse(url)?;
    let mut manager_config = ManagerConfig::default();
    manager_config.custom_setup = Box::new(move |_url| {
        let target = target.clone();
        async move { target.connect().await }.boxed()
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, manager_config);
    Pool::builder(manager)
        .max_size(max_size)
        .wait_timeout(Some(acquire_timeout))
        .create_timeout(Some(acquire_timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .context("building the database pool")
}

/// Applies pending migrations; returns the names of those applied.
pub async fn run_migrations(url: &str) -> anyhow::Result<Vec<String>> {
    use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;

    let conn = PgTarget::parse(url)?
        .connect()
        .await
        .context("connecting to PostgreSQL to migrate")?;
    // The migration harness is synchronous; run it off the async worker threads. The
    // wrapper drives the connection on this runtime from there.
    tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| anyhow::anyhow!("running migrations: {e}"))?;
        Ok(applied.iter().map(ToString::to_string).collect())
    })
    .await
    .context("migration task panicked")?
}

/// A keyset page read with `limit + 1` rows: the page itself, and the cursor of its last
/// row when the extra row shows there is more.
pub fn split_page<T, C>(mut rows: Vec<T>, limit: i64, cursor_of: impl Fn(&T) -> C) -> (Vec<T>, Option<C>) {
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let next = if more { rows.last().map(cursor_of) } else { None };
    (rows, next)
}
