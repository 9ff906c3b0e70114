//! Shared, cheaply cloned handles every handler can reach.

use std::sync::Arc;

use redis::aio::ConnectionManager;

use super::large_bodies::LargeBodies;

use crate::{
    auth::{jwt::JwtService, key_resolver::ApiKeyResolver, throttle::LoginThrottle},
    config::Config,
    enforcement::Enforcer,
    error::AppResult,
    ingest::{group::GroupCommit, Ingestor},
    jobs::outbox::Wakeup,
    live::LiveHub,
    price_book::PriceBook,
    store::DbPool,
};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: DbPool,
    /// Connections of the decision-log writer and the background jobs, whose work must
    /// finish after the HTTP workers have stopped (the decision log's last batch, the
    /// email being delivered). A connection lives on the runtime that opened it: one
    /// opened by a request lives on that HTTP worker's runtime and breaks when the
    /// worker stops at shutdown. These are opened by the background tasks themselves,
    /// on the main runtime.
    pub background_db: DbPool,
    pub redis: ConnectionManager,
    pub jwt: JwtService,
    /// Failed sign-ins counted across instances (Redis).
    pub login_throttle: LoginThrottle,
    pub keys: ApiKeyResolver,
    pub ingest: Ingestor,
    /// Turns for requests with large bodies (`super::large_bodies`).
    pub large_bodies: LargeBodies,
    /// Coalesces concurrent small ingest requests of a key into shared transactions.
    pub ingest_groups: GroupCommit,
    /// Prices, overrides and discounts, cached; told of an operator's change.
    pub prices: PriceBook,
    pub enforcer: Enforcer,
    /// Wakes this instance's outbox worker after a transaction that queued an email commits.
    pub outbox: Wakeup,
    /// The live spend-log stream: publishing new events, this instance's subscriber
    /// and its open streams.
    pub live: LiveHub,
}

pub type PooledConn = diesel_async::pooled_connection::deadpool::Object<diesel_async::AsyncPgConnection>;

impl AppState {
    /// A pooled database connection; pool exhaustion or an unreachable database is a 503.
    pub async fn conn(&self) -> AppResult<PooledConn> {
        Ok(self.db.get().await?)
    }

    pub fn api_key_pepper(&self) -> &str {
        self.config.auth.api_key_pepper.expose()
    }
}
