//! Organizations (tenants).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use uuid::Uuid;

use super::{
    access::{self, OrgAccess},
    schema::{memberships, organizations},
    DbConn,
};
use crate::{
    domain::{
        email::EmailAddress,
        names::{Name, Slug},
        plan::Plan,
        role::{Access, Role},
        unpriced::UnpricedModels,
    },
    error::{AppError, AppResult, OrConflict},
};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = organizations, check_for_backend(diesel::pg::Pg))]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub plan: Plan,
    pub retention_days: i32,
    pub alert_emails: Vec<String>,
    pub unpriced_models: UnpricedModels,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub struct NewOrganization {
    pub name: Name,
    /// `None`: derived from the name, with a suffix if that one is taken.
    pub slug: Option<Slug>,
    pub alert_emails: Vec<EmailAddress>,
}

#[derive(Default)]
pub struct OrganizationChanges {
    pub name: Option<Name>,
    pub alert_emails: Option<Vec<EmailAddress>>,
    pub unpriced_models: Option<UnpricedModels>,
}

fn emails(list: &[EmailAddress]) -> Vec<String> {
    list.iter().map(|e| e.as_str().to_owned()).collect()
}

/// Creates an organization with `owner_id` as its first owner, atomically.
pub async fn create(conn: &mut DbConn, owner_id: Uuid, new: NewOrganization) -> AppResult<(Organization, OrgAccess)> {
    let slug = match new.slug {
        Some(slug) => slug,
        None => available_slug(conn, &new.name).await?,
    };
    let id = Uuid::now_v7();
    let org = conn
        .transaction(async |conn| {
            let org = diesel::insert_into(organizations::table)
                .values((
                    organizations::id.eq(id),
                    organizations::name.eq(new.name.as_str()),
                    organizations::slug.eq(slug.as_str()),
                    organizations::alert_emails.eq(emails(&new.alert_emails)),
                    organizations::created_by.eq(owner_id),
                ))
                .returning(Organization::as_returning())
                .get_result(conn)
                .await
                .or_conflict("an organization with this slug already exists")?;
            diesel::insert_into(memberships::table)
                .values((
                    memberships::org_id.eq(id),
                    memberships::user_id.eq(owner_id),
                    memberships::role.eq(Role::Owner),
                ))
                .execute(conn)
                .await?;
            Ok::<_, AppError>(org)
        })
        .await?;
    Ok((org, access::new_owner(id, owner_id)))
}

/// A slug derived from the name that is not yet taken (a racing insert still hits
/// the unique index and gets a 409).
async fn available_slug(conn: &mut DbConn, name: &Name) -> AppResult<Slug> {
    let base = Slug::from_name(name);
    let taken: bool = diesel::select(diesel::dsl::exists(
        organizations::table.filter(organizations::slug.eq(base.as_str())),
    ))
    .get_result(conn)
    .await?;
    if !taken {
        return Ok(base);
    }
    let suffix = &Uuid::new_v4().simple().to_string()[..6];
    base.with_suffix(suffix)
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("derived slug with suffix is invalid")))
}

pub async fn get(conn: &mut DbConn, access: &OrgAccess) -> AppResult<Organization> {
    Ok(organizations::table
        .find(access.org_id())
        .select(Organization::as_select())
        .first(conn)
        .await?)
}

/// The organizations a user belongs to, with the user's role in each.
pub async fn list_for_user(conn: &mut DbConn, user_id: Uuid) -> AppResult<Vec<(Organization, Role)>> {
    Ok(organizations::table
        .inner_join(memberships::table)
        .filter(memberships::user_id.eq(user_id))
        .order(organizations::created_at.asc())
        .select((Organization::as_select(), memberships::role))
        .load(conn)
        .await?)
}

pub async fn update(conn: &mut DbConn, access: &OrgAccess, changes: OrganizationChanges) -> AppResult<Organization> {
    access.require(Access::Manage)?;
    let name = changes.name.as_ref().map(Name::as_str);
    let alert_emails = changes.alert_emails.as_deref().map(emails);
    Ok(diesel::update(organizations::table.find(access.org_id()))
        .set((
            name.map(|n| organizations::name.eq(n)),
            alert_emails.map(|a| organizations::alert_emails.eq(a)),
            changes.unpriced_models.map(|u| organizations::unpriced_models.eq(u)),
            organizations::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Organization::as_returning())
        .get_result(conn)
        .await?)
}

/// The organization's policy for unpriced models, for the authorize check (the caller
/// established the organization from an API key, hence no `OrgAccess`).
pub async fn unpriced_models(conn: &mut DbConn, org_id: Uuid) -> AppResult<UnpricedModels> {
    Ok(organizations::table
        .find(org_id)
        .select(organizations::unpriced_models)
        .first(conn)
        .await
        .optional()?
        .unwrap_or_default())
}

/// Operator view: every organization, oldest first.
pub async fn list_all(conn: &mut DbConn) -> AppResult<Vec<Organization>> {
    Ok(organizations::table
        .order(organizations::created_at.asc())
        .select(Organization::as_select())
        .load(conn)
        .await?)
}

/// Operator action: moves an organization to a plan and its retention.
pub async fn set_plan(conn: &mut DbConn, org_id: Uuid, plan: Plan, retention_days: i32) -> AppResult<Organization> {
    diesel::update(organizations::table.find(org_id))
        .set((
            organizations::plan.eq(plan),
            organizations::retention_days.eq(retention_days),
            organizations::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Organization::as_returning())
        .get_result(conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::not_found("organization"))
}
