//! Members of an organization and their roles.

use actix_web::{delete, get, patch, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    auth::hash_password,
    extract::{AuthUser, JsonBody},
    invitations::InvitationView,
    paths::{MemberPath, OrgPath},
    schemas::{DisplayName, Email, NewPassword},
    state::AppState,
    validate,
};
use crate::{
    domain::{
        email::EmailAddress,
        names::Name,
        password::Password,
        role::{Access, Role},
    },
    error::{AppResult, Problem},
    store::{
        self,
        members::{Added, Member, NewMember},
    },
};

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    user_id: Uuid,
    email: String,
    name: String,
    role: Role,
    joined_at: DateTime<Utc>,
}

impl From<Member> for MemberView {
    fn from(m: Member) -> Self {
        Self {
            user_id: m.user_id,
            email: m.email,
            name: m.display_name,
            role: m.role,
            joined_at: m.joined_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"email": "grace@example.com", "role": "viewer", "password": "initial password 1"}))]
pub struct AddMember {
    #[schema(value_type = Email)]
    email: String,
    role: Role,
    /// Provisions an account for an email that has none yet; without it, or when the
    /// email has an account, the person is invited instead.
    #[serde(default)]
    #[schema(value_type = Option<NewPassword>)]
    password: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<DisplayName>)]
    name: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"role": "admin"}))]
pub struct ChangeRole {
    role: Role,
}

/// The members of the organization and their roles.
#[utoipa::path(
    tag = "members",
    security(("bearer" = [])),
    params(OrgPath),
    responses((status = 200, description = "The members", body = Vec<MemberView>), (status = 401, body = Problem), (status = 404, body = Problem))
)]
#[get("/orgs/{orgId}/members")]
pub async fn list_members(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
) -> AppResult<web::Json<Vec<MemberView>>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Read).await?;
    let members = store::members::list(&mut conn, &access).await?;
    Ok(web::Json(members.into_iter().map(MemberView::from).collect()))
}

/// Adds a person to the organization, or invites them.
///
/// With a `password` and an email that has no account yet, the account
/// is created and joins at once (201). Otherwise the person is invited and joins by
/// accepting (202) — the answer is the same whether or not the email has an account.
/// Only owners may add or invite owners.
#[utoipa::path(
    tag = "members",
    security(("bearer" = [])),
    params(OrgPath),
    request_body = AddMember,
    responses(
        (status = 201, description = "A new account was created and is a member", body = MemberView),
        (status = 202, description = "The person is invited", body = InvitationView),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 409, description = "Already a member", body = Problem),
        (status = 422, body = Problem),
    )
)]
#[post("/orgs/{orgId}/members")]
pub async fn add_member(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
    body: JsonBody<AddMember>,
) -> AppResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    let body = body.into_inner();
    let (email, password, name) = validate::all3(
        validate::field("email", EmailAddress::parse(&body.email)),
        validate::optional("password", body.password.as_deref().map(Password::parse)),
        validate::optional("name", body.name.as_deref().map(Name::parse)),
    )?;
    let password_hash = match password {
        Some(password) => Some(hash_password(password).await?),
        None => None,
    };
    let new = NewMember {
        email,
        role: body.role,
        display_name: name.map(Name::into_string).unwrap_or_default(),
        password_hash,
    };
    Ok(
        match store::members::add(&mut conn, &access, new, &state.config.auth.account_mail).await? {
            Added::Member(member) => {
                state.outbox.notify();
                HttpResponse::Created().json(MemberView::from(member))
            }
            Added::Invited(invitation) => HttpResponse::Accepted().json(InvitationView::from(invitation)),
        },
    )
}

/// Changes a member's role. An organization always keeps at least one owner.
#[utoipa::path(
    tag = "members",
    security(("bearer" = [])),
    params(MemberPath),
    request_body = ChangeRole,
    responses(
        (status = 200, description = "The member with the new role", body = MemberView),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 409, description = "Would leave no owner", body = Problem),
    )
)]
#[patch("/orgs/{orgId}/members/{userId}")]
pub async fn change_member_role(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<MemberPath>,
    body: JsonBody<ChangeRole>,
) -> AppResult<web::Json<MemberView>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    let member = store::members::change_role(&mut conn, &access, path.user_id, body.role).await?;
    Ok(web::Json(member.into()))
}

/// Removes a member. An organization always keeps at least one owner.
#[utoipa::path(
    tag = "members",
    security(("bearer" = [])),
    params(MemberPath),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 409, description = "Would leave no owner", body = Problem),
    )
)]
#[delete("/orgs/{orgId}/members/{userId}")]
pub async fn remove_member(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<MemberPath>,
) -> AppResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    store::members::remove(&mut conn, &access, path.user_id).await?;
    Ok(HttpResponse::NoContent().finish())
}
