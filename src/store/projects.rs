//! Projects: the unit API keys and usage belong to.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::{access::OrgAccess, schema::projects, DbConn};
use crate::{
    domain::{names::Name, project_mode::ProjectMode, role::Access},
    error::{AppError, AppResult, OrConflict},
};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = projects, check_for_backend(diesel::pg::Pg))]
pub struct Project {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub mode: ProjectMode,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const DUPLICATE_NAME: &str = "a project with this name already exists in the organization";

pub async fn create(conn: &mut DbConn, access: &OrgAccess, name: Name, mode: ProjectMode) -> AppResult<Project> {
    access.require(Access::Manage)?;
    diesel::insert_into(projects::table)
        .values((
            projects::id.eq(Uuid::now_v7()),
            projects::org_id.eq(access.org_id()),
            projects::name.eq(name.as_str()),
            projects::mode.eq(mode),
        ))
        .returning(Project::as_returning())
        .get_result(conn)
        .await
        .or_conflict(DUPLICATE_NAME)
}

pub async fn list(conn: &mut DbConn, access: &OrgAccess) -> AppResult<Vec<Project>> {
    Ok(projects::table
        .filter(projects::org_id.eq(access.org_id()))
        .order(projects::created_at.asc())
        .select(Project::as_select())
        .load(conn)
        .await?)
}

/// A project of the caller's organization; another organization's project is 404.
pub async fn get(conn: &mut DbConn, access: &OrgAccess, project_id: Uuid) -> AppResult<Project> {
    projects::table
        .filter(projects::org_id.eq(access.org_id()))
        .filter(projects::id.eq(project_id))
        .select(Project::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::not_found("project"))
}

pub async fn update(
    conn: &mut DbConn,
    access: &OrgAccess,
    project_id: Uuid,
    name: Option<Name>,
    mode: Option<ProjectMode>,
) -> AppResult<Project> {
    access.require(Access::Manage)?;
    diesel::update(
        projects::table
            .filter(projects::org_id.eq(access.org_id()))
            .filter(projects::id.eq(project_id)),
    )
    .set((
        name.as_ref().map(|n| projects::name.eq(n.as_str())),
        mode.map(|m| projects::mode.eq(m)),
        projects::updated_at.eq(diesel::dsl::now),
    ))
    .returning(Project::as_returning())
    .get_result(conn)
    .await
    .optional()
    .or_conflict(DUPLICATE_NAME)?
    .ok_or_else(|| AppError::not_found("project"))
}
