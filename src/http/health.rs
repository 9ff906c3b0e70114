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

/// The process is up.
#[utoipa::path(tag = "operations", responses((status = 200, description = "The process is up", body = HealthStatus)))]
#[get("/healthz")]
pub async fn healthz() -> web::Json<HealthStatus> {
    web::Json(HealthStatus { status: "ok" })
}

/// PostgreSQL and Redis both answer; a load balancer sends traffic only when this is 200.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "PostgreSQL and Redis answer", body = HealthStatus),
        (status = 503, description = "A backing service does not answer", body = crate::error::Problem),
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
    let _: String = redis::cmd("PING").query_async(&mut redis).await?;
    Ok(HttpResponse::Ok().json(HealthStatus { status: "ok" }))
}
