//! Builds the application from configuration and runs the HTTP server. Tests start
//! the same server on port 0.

use std::{net::TcpListener, sync::Arc};

use actix_web::{dev::Server, web, App, HttpServer};
use actix_web_prom::{PrometheusMetrics, PrometheusMetricsBuilder};
use anyhow::Context;
use tracing_actix_web::TracingLogger;
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::SwaggerUi;

use crate::{
    auth::{jwt::JwtService, key_resolver::ApiKeyResolver},
    config::Config,
    http::{self, rejections, state::AppState},
    ingest::{IngestSettings, Ingestor},
    store,
};

impl AppState {
    /// Opens the database pool and the Redis connection described by `config`.
    pub async fn connect(config: Config) -> anyhow::Result<Self> {
        let db = store::connect(
            config.database.url.expose(),
            config.database.pool_size,
            config.database.acquire_timeout,
        )?;
        let client = redis::Client::open(config.redis.url.expose()).context("parsing REDIS_URL")?;
        // Lazy: the service starts, records usage and answers probes while Redis is
        // down, and the manager reconnects by itself when it is back.
        let redis_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.redis.timeout))
            .set_response_timeout(Some(config.redis.timeout))
            .set_number_of_retries(1)
            .set_max_delay(std::time::Duration::from_secs(2));
        let redis = redis::aio::ConnectionManager::new_lazy_with_config(client, redis_config)
            .context("configuring the Redis connection")?;
        let keys = ApiKeyResolver::new(
            db.clone(),
            config.auth.api_key_pepper.expose().to_owned(),
            config.auth.api_key_cache_ttl,
        );
        let ingest = Ingestor::new(
            db.clone(),
            IngestSettings {
                storage_per_mtok: config.ingest.storage_price_per_mtok,
                body_cap_bytes: config.ingest.body_cap_bytes,
            },
        );
        Ok(Self {
            jwt: JwtService::new(&config.auth),
            keys,
            ingest,
            db,
            redis,
            config: Arc::new(config),
        })
    }
}

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.bind).with_context(|| format!("binding {}", config.bind))?;
        let workers = config.workers;
        let state = AppState::connect(config).await?;
        tokio::spawn(prepare_partitions_hourly(state.ingest.clone()));
        Self::from_parts(listener, state, workers)
    }

    /// Serves `state` on an already bound listener (port 0 in tests).
    pub fn from_parts(listener: TcpListener, state: AppState, workers: usize) -> anyhow::Result<Self> {
        let port = listener.local_addr()?.port();
        let metrics = metrics()?;
        let docs = http::openapi::document();
        let known_routes = web::Data::new(rejections::KnownRoutes::from_document(&docs));
        let json_limit = state.config.http.json_limit;
        let batch_limit = state.config.ingest.batch_limit_bytes;
        let state = web::Data::new(state);
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(TracingLogger::default())
                .wrap(metrics.clone())
                .app_data(state.clone())
                .app_data(known_routes.clone())
                .app_data(rejections::json_config(json_limit))
                .app_data(rejections::path_config())
                .app_data(rejections::query_config())
                .into_utoipa_app()
                .configure(http::routes(batch_limit))
                .into_app()
                .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", docs.clone()))
                .default_service(web::to(rejections::route_not_found))
        })
        .listen(listener)?;
        if workers > 0 {
            server = server.workers(workers);
        }
        Ok(Self {
            port,
            server: server.run(),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Keeps usage partitions for today and the next two days in place.
async fn prepare_partitions_hourly(ingest: Ingestor) {
    let mut every_hour = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        every_hour.tick().await;
        if let Err(e) = ingest.prepare_partitions(2).await {
            tracing::warn!(error = %e, "could not prepare usage partitions; ingestion will create them on demand");
        }
    }
}

/// Request counts and latency histograms per route pattern (`/v1/orgs/{orgId}`), so
/// ids never become label values.
fn metrics() -> anyhow::Result<PrometheusMetrics> {
    PrometheusMetricsBuilder::new("meterplane")
        .registry(prometheus::Registry::new())
        .endpoint("/metrics")
        .mask_unmatched_patterns("UNMATCHED")
        .build()
        .map_err(|e| anyhow::anyhow!("building metrics: {e}"))
}
