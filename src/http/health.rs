//! Liveness and readiness probes.

use actix_web::{get, web, HttpResponse};
use diesel_async::RunQueryDsl;
use serde::Serialize;
use utoipa::ToSchema;

use super::state::AppState;
use crate::error::{AppError, AppResult};

#[derive(Serialize, ToSchema)]
pub struct HealthStatus {
    #[schema(example = "ok")]
    status: &'static str,
}

#[derive(Serialize, ToSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Readiness {
    /// PostgreSQL and Redis answer.
    Ok,
    /// PostgreSQL answers, Redis does not: usage is still recorded; the authorize check
    /// follows its configured policy and counters are rebuilt when Redis is back.
    Degraded,
}

#[derive(Serialize, ToSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum DependencyState {
    Up,
    Down,
}

#[derive(Serialize, ToSchema)]
pub struct ReadinessStatus {
    status: Readiness,
    postgres: DependencyState,
    redis: DependencyState,
}

/// The process is up.
#[utoipa::path(tag = "operations", responses((status = 200, description = "The process is up", body = HealthStatus)))]
#[get("/healthz")]
pub async fn healthz() -> web::Json<HealthStatus> {
    web::Json(HealthStatus { status: "ok" })
}

/// Whether this instance can serve; a load balancer sends traffic only on 200.
///
/// PostgreSQL, the system of record, must answer. Redis being down leaves the instance
/// in service as `degraded`: taking every instance out when Redis fails would stop
/// usage recording, which does not need it.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "PostgreSQL answers; `status` says whether Redis does too", body = ReadinessStatus),
        (status = 503, description = "PostgreSQL does not answer", body = crate::error::Problem),
    )
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> AppResult<HttpResponse> {
    let mut conn = state.conn().await?;
    diesel::sql_query("SELECT 1")
        .execute(&mut conn)
        .await
        .map_err(AppError::unavailable)?;
    let mut redis = state.redis.clone();
    let redis_state = match redis::cmd("PING").query_async::<String>(&mut redis).await {
        Ok(_) => DependencyState::Up,
        Err(e) => {
            tracing::warn!(error = %e, "readiness: Redis does not answer");
            DependencyState::Down
        }
    };
    Ok(HttpResponse::Ok().json(ReadinessStatus {
        status: match redis_state {
            DependencyState::Up => Readiness::Ok,
            DependencyState::Down => Readiness::Degraded,
        },
        postgres: DependencyState::Up,
        redis: redis_state,
    }))
}
