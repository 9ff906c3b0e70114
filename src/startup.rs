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
    auth::{jwt::JwtService, key_resolver::ApiKeyResolver, throttle::LoginThrottle},
    config::Config,
    counters::Counters,
    enforcement::{EnforcementSettings, Enforcer},
    http::large_bodies::LargeBodies,
    http::{self, rejections, state::AppState},
    ingest::{
        group::{GroupCommit, GroupSettings},
        IngestSettings, Ingestor,
    },
    jobs::{self, decision_log::DecisionLog, outbox::Wakeup, JobHandle},
    live::LiveHub,
    price_book::PriceBook,
    store,
};

/// Connections of an instance's background work besides `MP_DB_POOL_SIZE`: the
/// decision-log writer and each background job hold one at a time. Live streams need
/// none of these: the subscriber only speaks to Redis, and each stream borrows a
/// request connection for the moment it reads the rows of new events.
const BACKGROUND_POOL_SIZE: usize = 3;

impl AppState {
    /// Opens the database pools and the Redis connection described by `config`.
    pub async fn connect(config: Config) -> anyhow::Result<Self> {
        let db = store::connect(
            config.database.url.expose(),
            config.database.pool_size,
            config.database.acquire_timeout,
        )?;
        let background_db = store::connect(
            config.database.url.expose(),
            BACKGROUND_POOL_SIZE,
            config.database.acquire_timeout,
        )?;
        let client = crate::counters::connect::client(config.redis.url.expose())?;
        // Lazy: the service starts, records usage and answers probes while Redis is
        // down, and the manager reconnects by itself when it is back. A command that
        // finds the connection gone starts one connection attempt and fails; the next
        // command uses the new connection or starts another attempt. No retries with
        // back-off inside an attempt: while Redis is down, every request waiting on
        // one would wait the back-off too (0.1-0.2 s per Redis step) instead of being
        // answered by the policy at once. Measured in `tests/api/redis_faults.rs`:
        // an authorize call and its usage report took 0.55 s with Redis down with
        // one retry, 0.05 s without.
        let redis_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.redis.timeout))
            .set_response_timeout(Some(config.redis.timeout))
            .set_number_of_retries(0);
        let redis = redis::aio::ConnectionManager::new_lazy_with_config(client.clone(), redis_config)
            .context("configuring the Redis connection")?;
        // Pub/sub needs a connection of its own; the hub opens it, on this runtime.
        let live = LiveHub::start(
            config.live,
            &config.redis.key_prefix,
            client,
            redis.clone(),
            config.redis.timeout,
        );
        let keys = ApiKeyResolver::new(
            db.clone(),
            config.auth.api_key_pepper.expose().to_owned(),
            config.auth.api_key_cache_ttl,
        );
        let prices = PriceBook::new(db.clone(), config.ingest.prices_check_every);
        let ingest = Ingestor::new(
            db.clone(),
            prices.clone(),
            IngestSettings {
                storage_per_mtok: config.ingest.storage_price_per_mtok,
                body_cap_bytes: config.ingest.body_cap_bytes,
            },
        );
        let ingest_groups = GroupCommit::new(GroupSettings {
            max_events: config.ingest.group_max_events,
            in_flight: config.ingest.group_in_flight,
        })
        .context("building the ingest group metrics")?;
        let counters = Counters::new(redis.clone(), &config.redis.key_prefix);
        let outbox = Wakeup::default();
        let enforcer = Enforcer::new(
            db.clone(),
            prices.clone(),
            counters,
            &config.redis.key_prefix,
            DecisionLog::start(background_db.clone()),
            outbox.clone(),
            EnforcementSettings {
                reservation_ttl: chrono::Duration::from_std(config.budgets.reservation_ttl)
                    .context("MP_RESERVATION_TTL_SECS is too large")?,
                rules_ttl: config.budgets.rules_cache_ttl,
                when_redis_down: config.redis.when_down,
                allow_sample_every: config.budgets.decision_sample_every,
            },
        );
        Ok(Self {
            enforcer,
            jwt: JwtService::new(&config.auth),
            login_throttle: LoginThrottle::new(redis.clone(), &config.redis.key_prefix, config.auth.login_throttle),
            keys,
            ingest,
            ingest_groups,
            large_bodies: LargeBodies::new(config.http.large_body_bytes, config.http.large_body_concurrency),
            prices,
            outbox,
            db,
            background_db,
            redis,
            live,
            config: Arc::new(config),
        })
    }
}

pub struct Application {
    port: u16,
    server: Server,
    /// Written out once the server has answered its last request.
    decisions: DecisionLog,
    /// Told to end its streams when the process is asked to stop.
    live: LiveHub,
    /// Background jobs started with the server and stopped after it.
    jobs: Vec<JobHandle>,
    /// What the request metrics are gathered into, served on their own address.
    metrics_registry: prometheus::Registry,
    /// The `/metrics` server, when one is listening.
    metrics_server: Option<Server>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.bind).with_context(|| format!("binding {}", config.bind))?;
        let workers = config.workers;
        let state = AppState::connect(config).await?;
        let jobs = jobs::spawn_all(&state.config, &state.background_db, &state.ingest, &state.outbox)?;
        let metrics_bind = state.config.metrics_bind;
        let mut app = Self::from_parts(listener, state, workers)?;
        app.jobs = jobs;
        if let Some(address) = metrics_bind {
            let listener =
                TcpListener::bind(address).with_context(|| format!("binding {address} (MP_METRICS_ADDR)"))?;
            app.serve_metrics(listener)?;
        }
        Ok(app)
    }

    /// Serves `state` on an already bound listener (port 0 in tests), without the
    /// background jobs (tests start the ones they need).
    pub fn from_parts(listener: TcpListener, state: AppState, workers: usize) -> anyhow::Result<Self> {
        let port = listener.local_addr()?.port();
        let decisions = state.enforcer.decision_log().clone();
        let live = state.live.clone();
        let metrics = metrics()?;
        metrics
            .registry
            .register(Box::new(state.ingest_groups.sizes().clone()))
            .context("registering the ingest group metrics")?;
        let metrics_registry = metrics.registry.clone();
        let docs = http::openapi::document();
        let known_routes = web::Data::new(rejections::KnownRoutes::from_document(&docs));
        // Serialized once and shared: the document is megabytes in memory, and the
        // reference page given it would keep a copy per worker.
        let docs_json = web::Bytes::from(serde_json::to_vec(&docs).context("serializing the OpenAPI document")?);
        drop(docs);
        let json_limit = state.config.http.json_limit;
        let batch_limit = state.config.ingest.batch_limit_bytes;
        let state = web::Data::new(state);
        let mut server = HttpServer::new(move || {
            App::new()
                // Innermost, so the request log and metrics see what it refuses.
                .wrap(actix_web::middleware::from_fn(http::head_limits::enforce))
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
                .route("/openapi.json", web::get().to(openapi_json(docs_json.clone())))
                .service(SwaggerUi::new("/docs/{_:.*}").config(utoipa_swagger_ui::Config::from("/openapi.json")))
                .configure(http::ui::configure)
                .default_service(web::to(rejections::route_not_found))
        })
        .listen(listener)?;
        if workers > 0 {
            server = server.workers(workers);
        }
        Ok(Self {
            port,
            server: server.run(),
            decisions,
            live,
            jobs: Vec::new(),
            metrics_registry,
            metrics_server: None,
        })
    }

    /// Serves `GET /metrics` (Prometheus text) on `listener`, apart from the API: the
    /// deployment decides who reaches it (loopback by default). Returns its port.
    pub fn serve_metrics(&mut self, listener: TcpListener) -> anyhow::Result<u16> {
        let port = listener.local_addr()?.port();
        let registry = self.metrics_registry.clone();
        let server = HttpServer::new(move || {
            let registry = registry.clone();
            App::new().route(
                "/metrics",
                web::get().to(move || {
                    let registry = registry.clone();
                    async move {
                        let mut buffer = Vec::new();
                        match prometheus::Encoder::encode(
                            &prometheus::TextEncoder::new(),
                            &registry.gather(),
                            &mut buffer,
                        ) {
                            Ok(()) => actix_web::HttpResponse::Ok()
                                .content_type(prometheus::TEXT_FORMAT)
                                .body(buffer),
                            Err(e) => {
                                tracing::error!(error = %e, "encoding metrics");
                                actix_web::HttpResponse::InternalServerError().finish()
                            }
                        }
                    }
                }),
            )
        })
        .workers(1)
        .listen(listener)?
        .run();
        self.metrics_server = Some(server);
        Ok(port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server from elsewhere (tests; the process stops on SIGINT/SIGTERM).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until the server stops (SIGINT/SIGTERM), then writes the decisions not
    /// yet logged and lets each background job finish its current step: an email
    /// being delivered is recorded, not re-sent.
    ///
    /// Open live streams would hold up the graceful stop until actix's shutdown timeout;
    /// so on SIGINT/SIGTERM (which the server also receives) they end at once with
    /// `shutdown`, and their clients reconnect to another instance.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let live = self.live.clone();
        let metrics = self
            .metrics_server
            .map(|server| (server.handle(), tokio::spawn(server)));
        let signals = tokio::spawn(async move {
            stop_requested().await;
            live.shutdown();
        });
        let result = self.server.await;
        signals.abort();
        if let Some((handle, running)) = metrics {
            handle.stop(true).await;
            let _ = running.await;
        }
        self.decisions.stop().await;
        for job in self.jobs {
            tracing::info!(job = job.name(), "stopping");
            job.stop().await;
        }
        result
    }
}

/// Resolves on SIGINT or SIGTERM (never where signals cannot be listened to).
async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending::<()>().await,
        }
    }
    #[cfg(not(unix))]
    {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Request counts and latency histograms per route pattern (`/v1/orgs/{orgId}`), so
/// ids never become label values.
fn metrics() -> anyhow::Result<PrometheusMetrics> {
    PrometheusMetricsBuilder::new("meterplane")
        .registry(prometheus::Registry::new())
        .mask_unmatched_patterns("UNMATCHED")
        .build()
        .map_err(|e| anyhow::anyhow!("building metrics: {e}"))
}

/// `GET /openapi.json`: the document, serialized at start-up.
fn openapi_json(body: web::Bytes) -> impl Fn() -> std::future::Ready<actix_web::HttpResponse> + Clone + 'static {
    move || {
        std::future::ready(
            actix_web::HttpResponse::Ok()
                .content_type(actix_web::http::header::ContentType::json())
                .body(body.clone()),
        )
    }
}
