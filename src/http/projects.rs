//! Projects of an organization.

use actix_web::{get, patch, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    extract::{AuthUser, JsonBody},
    paths::{OrgPath, ProjectPath},
    schemas::DisplayName,
    state::AppState,
    validate,
};
use crate::{
    domain::{names::Name, project_mode::ProjectMode, role::Access},
    error::{AppResult, Problem},
    store::{self, projects::Project},
};

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectView {
    id: Uuid,
    org_id: Uuid,
    name: String,
    mode: ProjectMode,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Project> for ProjectView {
    fn from(p: Project) -> Self {
        Self {
            id: p.id,
            org_id: p.org_id,
            name: p.name,
            mode: p.mode,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"name": "Production", "mode": "credits"}))]
pub struct CreateProject {
    #[schema(value_type = DisplayName)]
    name: String,
    mode: ProjectMode,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"name": "Production EU", "mode": "hybrid"}))]
pub struct UpdateProject {
    #[serde(default)]
    #[schema(value_type = Option<DisplayName>)]
    name: Option<String>,
    #[serde(default)]
    mode: Option<ProjectMode>,
}

/// Creates a project in the organization (owners and admins).
#[utoipa::path(
    tag = "projects",
    security(("bearer" = [])),
    params(OrgPath),
    request_body = CreateProject,
    responses(
        (status = 201, description = "The new project", body = ProjectView),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 409, description = "The name is taken", body = Problem),
        (status = 422, body = Problem),
    )
)]
#[post("/orgs/{orgId}/projects")]
pub async fn create_project(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
    body: JsonBody<CreateProject>,
) -> AppResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    let name = validate::one(validate::field("name", Name::parse(&body.name)))?;
    let project = store::projects::create(&mut conn, &access, name, body.mode).await?;
    Ok(HttpResponse::Created().json(ProjectView::from(project)))
}

/// The projects of the organization.
#[utoipa::path(
    tag = "projects",
    security(("bearer" = [])),
    params(OrgPath),
    responses((status = 200, description = "The organization's projects", body = Vec<ProjectView>), (status = 401, body = Problem), (status = 404, body = Problem))
)]
#[get("/orgs/{orgId}/projects")]
pub async fn list_projects(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
) -> AppResult<web::Json<Vec<ProjectView>>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Read).await?;
    let projects = store::projects::list(&mut conn, &access).await?;
    Ok(web::Json(projects.into_iter().map(ProjectView::from).collect()))
}

/// One project.
#[utoipa::path(
    tag = "projects",
    security(("bearer" = [])),
    params(ProjectPath),
    responses((status = 200, description = "The project", body = ProjectView), (status = 401, body = Problem), (status = 404, body = Problem))
)]
#[get("/orgs/{orgId}/projects/{projectId}")]
pub async fn get_project(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<ProjectPath>,
) -> AppResult<web::Json<ProjectView>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Read).await?;
    Ok(web::Json(
        store::projects::get(&mut conn, &access, path.project_id).await?.into(),
    ))
}

/// Renames a project or changes its mode (owners and admins).
#[utoipa::path(
    tag = "projects",
    security(("bearer" = [])),
    params(ProjectPath),
    request_body = UpdateProject,
    responses(
        (status = 200, description = "The updated project", body = ProjectView),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 409, description = "The name is taken", body = Problem),
        (status = 422, body = Problem),
    )
)]
#[patch("/orgs/{orgId}/projects/{projectId}")]
pub async fn update_project(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<ProjectPath>,
    body: JsonBody<UpdateProject>,
) -> AppResult<web::Json<ProjectView>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    let name = validate::one(validate::optional("name", body.name.as_deref().map(Name::parse)))?;
    let project = store::projects::update(&mut conn, &access, path.project_id, name, body.mode).await?;
    Ok(web::Json(project.into()))
}
