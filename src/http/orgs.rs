//! Organizations as their members see them.

use actix_web::{get, patch, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    extract::{AuthUser, JsonBody},
    paths::OrgPath,
    schemas::{self, DisplayName, Email},
    state::AppState,
    validate,
};
use crate::{
    domain::{
        email::EmailAddress,
        names::{Name, Slug},
        plan::Plan,
        role::{Access, Role},
        unpriced::UnpricedModels,
    },
    error::{AppError, AppResult, Problem},
    store::{
        self,
        orgs::{NewOrganization, Organization, OrganizationChanges},
    },
};

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationView {
    id: Uuid,
    name: String,
    slug: String,
    plan: Plan,
    /// Usage older than this many days is neither returned nor kept.
    retention_days: i32,
    /// Where budget alerts are sent.
    alert_emails: Vec<String>,
    /// Whether the authorize check denies calls to models without a price (`deny`,
    /// reason `unpriced_model`) or allows them (`allow`, the default). Their usage is
    /// recorded either way, at zero cost and flagged `unpriced`.
    unpriced_models: UnpricedModels,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Organization> for OrganizationView {
    fn from(org: Organization) -> Self {
        Self {
            id: org.id,
            name: org.name,
            slug: org.slug,
            plan: org.plan,
            retention_days: org.retention_days,
            alert_emails: org.alert_emails,
            unpriced_models: org.unpriced_models,
            created_at: org.created_at,
            updated_at: org.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationWithRole {
    #[serde(flatten)]
    organization: OrganizationView,
    /// The caller's role in this organization.
    role: Role,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"name": "Acme AI", "alertEmails": ["billing@acme.example"]}))]
pub struct CreateOrganization {
    #[schema(value_type = DisplayName)]
    name: String,
    /// Derived from the name when left out.
    #[serde(default)]
    #[schema(value_type = Option<schemas::Slug>)]
    slug: Option<String>,
    /// Where budget alerts go (at most 20).
    #[serde(default)]
    #[schema(value_type = Vec<Email>, max_items = 20)]
    alert_emails: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"name": "Acme AI Labs", "alertEmails": ["ops@acme.example"], "unpricedModels": "deny"}))]
pub struct UpdateOrganization {
    #[serde(default)]
    #[schema(value_type = Option<DisplayName>)]
    name: Option<String>,
    /// Replaces the alert addresses (at most 20).
    #[serde(default)]
    #[schema(value_type = Option<Vec<Email>>, max_items = 20)]
    alert_emails: Option<Vec<String>>,
    /// `deny` makes the authorize check refuse calls to models without a price.
    #[serde(default)]
    unpriced_models: Option<UnpricedModels>,
}

const MAX_ALERT_EMAILS: usize = 20;

fn parse_alert_emails(raw: &[String]) -> Result<Vec<EmailAddress>, Vec<crate::error::FieldError>> {
    if raw.len() > MAX_ALERT_EMAILS {
        return Err(vec![crate::error::FieldError {
            field: "alertEmails".into(),
            message: format!("at most {MAX_ALERT_EMAILS} addresses"),
        }]);
    }
    validate::each("alertEmails", raw, |e| EmailAddress::parse(e))
}

/// Creates an organization owned by the caller.
#[utoipa::path(
    tag = "organizations",
    security(("bearer" = [])),
    request_body = CreateOrganization,
    responses(
        (status = 201, description = "The new organization", body = OrganizationView),
        (status = 401, body = Problem),
        (status = 409, description = "The slug is taken", body = Problem),
        (status = 422, body = Problem),
    )
)]
#[post("/orgs")]
pub async fn create_organization(
    state: web::Data<AppState>,
    caller: AuthUser,
    body: JsonBody<CreateOrganization>,
) -> AppResult<HttpResponse> {
    let body = body.into_inner();
    let (name, slug) = validate::all2(
        validate::field("name", Name::parse(&body.name)),
        validate::optional("slug", body.slug.as_deref().map(Slug::parse)),
    )?;
    let alert_emails = parse_alert_emails(&body.alert_emails).map_err(AppError::validation)?;
    let mut conn = state.conn().await?;
    let (org, _) = store::orgs::create(
        &mut conn,
        caller.0.user_id,
        NewOrganization {
            name,
            slug,
            alert_emails,
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(OrganizationView::from(org)))
}

/// The organizations the caller belongs to.
#[utoipa::path(
    tag = "organizations",
    security(("bearer" = [])),
    responses((status = 200, description = "The caller's organizations and their role in each", body = Vec<OrganizationWithRole>), (status = 401, body = Problem))
)]
#[get("/orgs")]
pub async fn list_organizations(
    state: web::Data<AppState>,
    caller: AuthUser,
) -> AppResult<web::Json<Vec<OrganizationWithRole>>> {
    let mut conn = state.conn().await?;
    let orgs = store::orgs::list_for_user(&mut conn, caller.0.user_id).await?;
    Ok(web::Json(
        orgs.into_iter()
            .map(|(org, role)| OrganizationWithRole {
                organization: org.into(),
                role,
            })
            .collect(),
    ))
}

/// One organization the caller belongs to.
#[utoipa::path(
    tag = "organizations",
    security(("bearer" = [])),
    params(OrgPath),
    responses((status = 200, description = "The organization", body = OrganizationView), (status = 401, body = Problem), (status = 404, body = Problem))
)]
#[get("/orgs/{orgId}")]
pub async fn get_organization(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
) -> AppResult<web::Json<OrganizationView>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Read).await?;
    Ok(web::Json(store::orgs::get(&mut conn, &access).await?.into()))
}

/// Changes the organization's name, alert addresses or unpriced-model policy (owners and admins).
///
/// `unpricedModels: deny` makes the authorize check refuse calls to models without a
/// price (reason `unpriced_model`); `allow`, the default, lets them through.
#[utoipa::path(
    tag = "organizations",
    security(("bearer" = [])),
    params(OrgPath),
    request_body = UpdateOrganization,
    responses(
        (status = 200, description = "The updated organization", body = OrganizationView),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 422, body = Problem),
    )
)]
#[patch("/orgs/{orgId}")]
pub async fn update_organization(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
    body: JsonBody<UpdateOrganization>,
) -> AppResult<web::Json<OrganizationView>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    let body = body.into_inner();
    let name = validate::one(validate::optional("name", body.name.as_deref().map(Name::parse)))?;
    let alert_emails = body
        .alert_emails
        .as_deref()
        .map(parse_alert_emails)
        .transpose()
        .map_err(AppError::validation)?;
    let org = store::orgs::update(
        &mut conn,
        &access,
        OrganizationChanges {
            name,
            alert_emails,
            unpriced_models: body.unpriced_models,
        },
    )
    .await?;
    if body.unpriced_models.is_some() {
        state.enforcer.forget_rules(path.org_id);
    }
    Ok(web::Json(org.into()))
}
