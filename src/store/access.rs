//! The tenancy check: every tenant-scoped store function needs an [`OrgAccess`].

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::{
    schema::{memberships, organizations},
    DbConn,
};
use crate::{
    domain::{
        identity::Caller,
        role::{Access, Role},
    },
    error::{AppError, AppResult, ErrorCode},
};

/// Proof that a caller is a member of `org_id` with a role that allows the requested
/// access. Only [`authorize`] makes one.
#[derive(Debug, Clone, Copy)]
pub struct OrgAccess {
    org_id: Uuid,
    user_id: Uuid,
    role: Role,
}

impl OrgAccess {
    /// Read access for the command line (`meterplane reconcile-invoices`), which is run
    /// by whoever operates the deployment, not by a member.
    pub fn command_line_reader(org_id: Uuid) -> Self {
        Self {
            org_id,
            user_id: Uuid::nil(),
            role: Role::Viewer,
        }
    }

    pub fn org_id(&self) -> Uuid {
        self.org_id
    }
    pub fn user_id(&self) -> Uuid {
        self.user_id
    }
    pub fn role(&self) -> Role {
        self.role
    }

    /// A further check inside an operation (e.g. assigning the owner role).
    pub fn require(&self, access: Access) -> AppResult<()> {
        if self.role.allows(access) {
            Ok(())
        } else {
            Err(forbidden(self.role))
        }
    }
}

/// Non-members get 404 (they learn nothing, not even that the organization exists);
/// members whose role is too weak get 403.
pub async fn authorize(conn: &mut DbConn, caller: &Caller, org_id: Uuid, access: Access) -> AppResult<OrgAccess> {
    let role: Option<Role> = memberships::table
        .filter(memberships::org_id.eq(org_id))
        .filter(memberships::user_id.eq(caller.user_id))
        .select(memberships::role)
        .first(conn)
        .await
        .optional()?;
    let role = role.ok_or_else(|| AppError::not_found("organization"))?;
    if !caller.email_verified {
        // Read only for the unverified: verified callers, nearly all, pay nothing.
        let created_by: Option<Uuid> = organizations::table
            .find(org_id)
            .select(organizations::created_by)
            .first(conn)
            .await?;
        if created_by != Some(caller.user_id) {
            return Err(AppError::new(
                ErrorCode::EmailNotVerified,
                "confirm your email address first: until then you can act only on organizations you created",
            ));
        }
    }
    if !role.allows(access) {
        return Err(forbidden(role));
    }
    Ok(OrgAccess {
        org_id,
        user_id: caller.user_id,
        role,
    })
}

fn forbidden(role: Role) -> AppError {
    AppError::forbidden(format!("the {} role does not allow this operation", role.as_str()))
}

/// Access granted by creating the organization: its creator is its first owner.
pub(super) fn new_owner(org_id: Uuid, user_id: Uuid) -> OrgAccess {
    OrgAccess {
        org_id,
        user_id,
        role: Role::Owner,
    }
}
