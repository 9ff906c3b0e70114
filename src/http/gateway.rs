//! Endpoints the gateway calls with a project API key.

use actix_web::{get, web};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::GatewayKey;
use crate::error::Problem;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyIdentityView {
    key_id: Uuid,
    project_id: Uuid,
    org_id: Uuid,
}

/// The project and organization of the presented key.
///
/// Lets a gateway check its configuration.
#[utoipa::path(
    tag = "gateway",
    security(("api_key" = [])),
    responses((status = 200, description = "The project and organization of the key", body = KeyIdentityView), (status = 401, description = "Missing, unknown, revoked or expired key", body = Problem))
)]
#[get("/gateway/whoami")]
pub async fn whoami(key: GatewayKey) -> web::Json<KeyIdentityView> {
    let id = key.0;
    web::Json(KeyIdentityView {
        key_id: id.key_id,
        project_id: id.project_id,
        org_id: id.org_id,
    })
}
