//! Memberships: who belongs to an organization, with which role.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use uuid::Uuid;

use super::{
    access::OrgAccess,
    account_tokens,
    invitations::{self, Invitation},
    schema::{memberships, users},
    users::{self as user_store, NewUser},
    DbConn,
};
use crate::{
    domain::{
        account_email::{AccountEmail, AccountMailSettings},
        email::EmailAddress,
        role::{Access, Role},
    },
    error::{AppError, AppResult},
};

#[derive(Debug, Clone, Queryable)]
pub struct Member {
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

type MemberColumns = (
    users::id,
    users::email,
    users::display_name,
    memberships::role,
    memberships::created_at,
);
const MEMBER_COLUMNS: MemberColumns = (
    users::id,
    users::email,
    users::display_name,
    memberships::role,
    memberships::created_at,
);

pub async fn list(conn: &mut DbConn, access: &OrgAccess) -> AppResult<Vec<Member>> {
    Ok(memberships::table
        .inner_join(users::table)
        .filter(memberships::org_id.eq(access.org_id()))
        .order(memberships::created_at.asc())
        .select(MEMBER_COLUMNS)
        .load(conn)
        .await?)
}

async fn get(conn: &mut DbConn, org_id: Uuid, user_id: Uuid) -> AppResult<Member> {
    memberships::table
        .inner_join(users::table)
        .filter(memberships::org_id.eq(org_id))
        .filter(memberships::user_id.eq(user_id))
        .select(MEMBER_COLUMNS)
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::not_found("member"))
}

/// A person to add: a new account with this password, or an invitation.
pub struct NewMember {
    pub email: EmailAddress,
    pub role: Role,
    pub display_name: String,
    /// Argon2 hash, used only when no account exists for the email.
    pub password_hash: Option<String>,
}

pub enum Added {
    /// A new account, provisioned with the given password, is a member now.
    Member(Member),
    /// The email has an account (which joins only by accepting), or has none and no
    /// password was given. Both answer the same, so the caller learns nothing about
    /// accounts outside the organization.
    Invited(Invitation),
}

/// A provisioned account gets a verification email (wake the outbox worker after):
/// its address is the admin's word until its owner confirms it, and until then it
/// cannot act on the organization.
pub async fn add(
    conn: &mut DbConn,
    access: &OrgAccess,
    new: NewMember,
    mail: &AccountMailSettings,
) -> AppResult<Added> {
    access.require(new.role.access_to_assign())?;
    let org_id = access.org_id();
    conn.transaction(
        async |conn| match (user_store::find_by_email(conn, &new.email).await?, new.password_hash) {
            (Some(user), _) => {
                if get(conn, org_id, user.id).await.is_ok() {
                    return Err(AppError::conflict("this person is already a member"));
                }
                Ok(Added::Invited(
                    invitations::open(conn, access, &new.email, new.role).await?,
                ))
            }
            (None, Some(password_hash)) => {
                let display_name = new.display_name.clone();
                let email = new.email.clone();
                let user = user_store::insert(
                    conn,
                    NewUser {
                        email,
                        password_hash,
                        display_name,
                        is_operator: false,
                    },
                )
                .await?;
                diesel::insert_into(memberships::table)
                    .values((
                        memberships::org_id.eq(org_id),
                        memberships::user_id.eq(user.id),
                        memberships::role.eq(new.role),
                    ))
                    .execute(conn)
                    .await?;
                account_tokens::send(conn, &user, AccountEmail::Verify, mail).await?;
                Ok(Added::Member(get(conn, org_id, user.id).await?))
            }
            (None, None) => Ok(Added::Invited(
                invitations::open(conn, access, &new.email, new.role).await?,
            )),
        },
    )
    .await
}

/// Makes an existing account a member with `role`, unless it is one already (then its
/// role stays as it is). For `meterplane demo`, whose accounts are made verified by the
/// operator's own command: no invitation or email is involved.
pub async fn ensure(conn: &mut DbConn, access: &OrgAccess, user_id: Uuid, role: Role) -> AppResult<Member> {
    access.require(role.access_to_assign())?;
    diesel::insert_into(memberships::table)
        .values((
            memberships::org_id.eq(access.org_id()),
            memberships::user_id.eq(user_id),
            memberships::role.eq(role),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    get(conn, access.org_id(), user_id).await
}

pub async fn change_role(conn: &mut DbConn, access: &OrgAccess, user_id: Uuid, role: Role) -> AppResult<Member> {
    access.require(Access::Manage)?;
    let org_id = access.org_id();
    conn.transaction(async |conn| {
        let current = lock_membership(conn, org_id, user_id).await?;
        access.require(current.access_to_assign())?;
        access.require(role.access_to_assign())?;
        if current == Role::Owner && role != Role::Owner {
            ensure_another_owner(conn, org_id).await?;
        }
        diesel::update(memberships::table.find((org_id, user_id)))
            .set((memberships::role.eq(role), memberships::updated_at.eq(diesel::dsl::now)))
            .execute(conn)
            .await?;
        get(conn, org_id, user_id).await
    })
    .await
}

pub async fn remove(conn: &mut DbConn, access: &OrgAccess, user_id: Uuid) -> AppResult<()> {
    access.require(Access::Manage)?;
    let org_id = access.org_id();
    conn.transaction(async |conn| {
        let current = lock_membership(conn, org_id, user_id).await?;
        access.require(current.access_to_assign())?;
        if current == Role::Owner {
            ensure_another_owner(conn, org_id).await?;
        }
        diesel::delete(memberships::table.find((org_id, user_id)))
            .execute(conn)
            .await?;
        Ok(())
    })
    .await
}

async fn lock_membership(conn: &mut DbConn, org_id: Uuid, user_id: Uuid) -> AppResult<Role> {
    memberships::table
        .find((org_id, user_id))
        .select(memberships::role)
        .for_update()
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::not_found("member"))
}

/// An organization always keeps at least one owner. The owner rows are locked so two
/// concurrent demotions cannot both pass this check.
async fn ensure_another_owner(conn: &mut DbConn, org_id: Uuid) -> AppResult<()> {
    let owners: Vec<Uuid> = memberships::table
        .filter(memberships::org_id.eq(org_id))
        .filter(memberships::role.eq(Role::Owner))
        .select(memberships::user_id)
        .for_update()
        .load(conn)
        .await?;
    if owners.len() < 2 {
        return Err(AppError::conflict("an organization must keep at least one owner"));
    }
    Ok(())
}
