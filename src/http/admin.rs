//! Platform operator endpoints: every organization, and plans.

use actix_web::{get, put, web};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{
    extract::{AuthUser, JsonBody},
    orgs::OrganizationView,
    paths::OrgPath,
    state::AppState,
    validate,
};
use crate::{
    domain::plan::Plan,
    error::{AppResult, Problem},
    store,
};

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"plan": "enterprise", "retentionDays": 180}))]
pub struct SetPlan {
    plan: Plan,
    /// Enterprise only (default 365); free keeps 3 days, pro 90.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 365)]
    retention_days: Option<i32>,
}

/// Every organization on the platform (operators only).
#[utoipa::path(
    tag = "operator",
    security(("bearer" = [])),
    responses((status = 200, description = "Every organization", body = Vec<OrganizationView>), (status = 401, body = Problem), (status = 403, body = Problem))
)]
#[get("/admin/orgs")]
pub async fn list_all_organizations(
    state: web::Data<AppState>,
    caller: AuthUser,
) -> AppResult<web::Json<Vec<OrganizationView>>> {
    caller.0.require_operator()?;
    let mut conn = state.conn().await?;
    let orgs = store::orgs::list_all(&mut conn).await?;
    Ok(web::Json(orgs.into_iter().map(OrganizationView::from).collect()))
}

/// Moves an organization to a plan, which sets its retention (operators only).
#[utoipa::path(
    tag = "operator",
    security(("bearer" = [])),
    params(OrgPath),
    request_body = SetPlan,
    responses(
        (status = 200, description = "The organization on its new plan", body = OrganizationView),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 422, body = Problem),
    )
)]
#[put("/admin/orgs/{orgId}/plan")]
pub async fn set_organization_plan(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
    body: JsonBody<SetPlan>,
) -> AppResult<web::Json<OrganizationView>> {
    caller.0.require_operator()?;
    let retention = validate::one(validate::field(
        "retentionDays",
        body.plan.retention_days(body.retention_days),
    ))?;
    let mut conn = state.conn().await?;
    let org = store::orgs::set_plan(&mut conn, path.org_id, body.plan, retention).await?;
    tracing::info!(org_id = %org.id, plan = org.plan.as_str(), retention_days = org.retention_days, "plan changed");
    Ok(web::Json(org.into()))
}
