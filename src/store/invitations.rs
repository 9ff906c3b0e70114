//! Invitations to join an organization, accepted by the invited person.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use uuid::Uuid;

use super::{
    access::OrgAccess,
    schema::{invitations, memberships, organizations},
    DbConn,
};
use crate::{
    domain::{email::EmailAddress, role::Role},
    error::{AppError, AppResult},
};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = invitations, check_for_backend(diesel::pg::Pg))]
pub struct Invitation {
    pub id: Uuid,
    pub org_id: Uuid,
    pub email: String,
    pub role: Role,
    pub invited_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
}

/// Opens an invitation, or renews the open one for the same person with the new role.
/// Runs inside the caller's transaction.
pub(super) async fn open(
    conn: &mut DbConn,
    access: &OrgAccess,
    email: &EmailAddress,
    role: Role,
) -> AppResult<Invitation> {
    let open_one = invitations::table
        .filter(invitations::org_id.eq(access.org_id()))
        .filter(invitations::email.eq(email.as_str()))
        .filter(invitations::accepted_at.is_null());
    let renewed: Option<Invitation> = diesel::update(open_one)
        .set((
            invitations::role.eq(role),
            invitations::invited_by.eq(access.user_id()),
            invitations::created_at.eq(diesel::dsl::now),
        ))
        .returning(Invitation::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    if let Some(invitation) = renewed {
        return Ok(invitation);
    }
    Ok(diesel::insert_into(invitations::table)
        .values((
            invitations::id.eq(Uuid::now_v7()),
            invitations::org_id.eq(access.org_id()),
            invitations::email.eq(email.as_str()),
            invitations::role.eq(role),
            invitations::invited_by.eq(access.user_id()),
        ))
        .returning(Invitation::as_returning())
        .get_result(conn)
        .await?)
}

/// The organization's invitations not yet accepted, newest first.
pub async fn list_open(conn: &mut DbConn, access: &OrgAccess) -> AppResult<Vec<Invitation>> {
    Ok(invitations::table
        .filter(invitations::org_id.eq(access.org_id()))
        .filter(invitations::accepted_at.is_null())
        .order(invitations::created_at.desc())
        .select(Invitation::as_select())
        .load(conn)
        .await?)
}

/// Withdraws an open invitation. Only an owner withdraws an invitation to become owner.
pub async fn revoke(conn: &mut DbConn, access: &OrgAccess, id: Uuid) -> AppResult<()> {
    let open_one = invitations::table
        .filter(invitations::org_id.eq(access.org_id()))
        .filter(invitations::id.eq(id))
        .filter(invitations::accepted_at.is_null());
    let role: Role = open_one
        .select(invitations::role)
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::not_found("invitation"))?;
    access.require(role.access_to_assign())?;
    diesel::delete(open_one).execute(conn).await?;
    Ok(())
}

/// Open invitations addressed to `email`, with the inviting organization's name.
pub async fn open_for(conn: &mut DbConn, email: &str) -> AppResult<Vec<(Invitation, String)>> {
    Ok(invitations::table
        .inner_join(organizations::table)
        .filter(invitations::email.eq(email))
        .filter(invitations::accepted_at.is_null())
        .order(invitations::created_at.asc())
        .select((Invitation::as_select(), organizations::name))
        .load(conn)
        .await?)
}

/// Joins the organization of an invitation addressed to `email`. Anyone else's
/// invitation, or one already used or withdrawn, is a 404.
pub async fn accept(conn: &mut DbConn, id: Uuid, user_id: Uuid, email: &str) -> AppResult<Invitation> {
    conn.transaction(async |conn| {
        let invitation: Invitation = invitations::table
            .filter(invitations::id.eq(id))
            .filter(invitations::email.eq(email))
            .filter(invitations::accepted_at.is_null())
            .select(Invitation::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| AppError::not_found("invitation"))?;
        diesel::insert_into(memberships::table)
            .values((
                memberships::org_id.eq(invitation.org_id),
                memberships::user_id.eq(user_id),
                memberships::role.eq(invitation.role),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        Ok(diesel::update(invitations::table.find(id))
            .set(invitations::accepted_at.eq(diesel::dsl::now))
            .returning(Invitation::as_returning())
            .get_result(conn)
            .await?)
    })
    .await
}
