//! Invitations: an organization's open ones, and accepting one addressed to you.

use actix_web::{delete, get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{extract::AuthUser, paths::OrgPath, state::AppState};
use crate::{
    domain::role::{Access, Role},
    error::{AppError, AppResult, ErrorCode, Problem},
    store::{self, invitations::Invitation},
};

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvitationView {
    id: Uuid,
    org_id: Uuid,
    email: String,
    role: Role,
    invited_at: DateTime<Utc>,
}

impl From<Invitation> for InvitationView {
    fn from(i: Invitation) -> Self {
        Self {
            id: i.id,
            org_id: i.org_id,
            email: i.email,
            role: i.role,
            invited_at: i.created_at,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
pub struct OrgInvitationPath {
    org_id: Uuid,
    invitation_id: Uuid,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
pub struct InvitationPath {
    invitation_id: Uuid,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedInvitation {
    org_id: Uuid,
    role: Role,
}

/// Invitations not yet accepted.
#[utoipa::path(
    tag = "members",
    security(("bearer" = [])),
    params(OrgPath),
    responses((status = 200, description = "The open invitations", body = Vec<InvitationView>), (status = 401, body = Problem), (status = 404, body = Problem))
)]
#[get("/orgs/{orgId}/invitations")]
pub async fn list_invitations(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
) -> AppResult<web::Json<Vec<InvitationView>>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Read).await?;
    let open = store::invitations::list_open(&mut conn, &access).await?;
    Ok(web::Json(open.into_iter().map(InvitationView::from).collect()))
}

/// Withdraws an invitation that has not been accepted.
#[utoipa::path(
    tag = "members",
    security(("bearer" = [])),
    params(OrgInvitationPath),
    responses(
        (status = 204, description = "Withdrawn"),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[delete("/orgs/{orgId}/invitations/{invitationId}")]
pub async fn revoke_invitation(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgInvitationPath>,
) -> AppResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    store::invitations::revoke(&mut conn, &access, path.invitation_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Joins the organization that invited the caller's email address.
#[utoipa::path(
    tag = "members",
    security(("bearer" = [])),
    params(InvitationPath),
    responses(
        (status = 200, description = "The caller is now a member", body = AcceptedInvitation),
        (status = 401, body = Problem),
        (status = 403, description = "`email_not_verified`: confirm the address first", body = Problem),
        (status = 404, description = "No open invitation for you with this id", body = Problem),
    )
)]
#[post("/invitations/{invitationId}/accept")]
pub async fn accept_invitation(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<InvitationPath>,
) -> AppResult<web::Json<AcceptedInvitation>> {
    let mut conn = state.conn().await?;
    let user = store::users::find(&mut conn, caller.0.user_id)
        .await?
        .ok_or_else(|| AppError::not_found("user"))?;
    // An invitation is addressed to an email: only its proven owner may take it.
    if !user.email_verified() {
        return Err(AppError::new(
            ErrorCode::EmailNotVerified,
            "confirm your email address before accepting invitations",
        ));
    }
    let accepted = store::invitations::accept(&mut conn, path.invitation_id, user.id, &user.email).await?;
    tracing::info!(org_id = %accepted.org_id, user_id = %user.id, "invitation accepted");
    Ok(web::Json(AcceptedInvitation {
        org_id: accepted.org_id,
        role: accepted.role,
    }))
}
