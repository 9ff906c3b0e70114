//! Per-organization price overrides: negotiated prices for one organization that win
//! over the catalog for its calls (operators write them; the organization's owners
//! and admins read them). Same body and view as the catalog's price versions.

use actix_web::{get, post, web, HttpResponse};

use super::{
    extract::{AuthUser, JsonBody},
    paths::OrgPath,
    pricing::{price_view, price_views, CreatePrice, PriceView},
    state::AppState,
};
use crate::{
    domain::role::Access,
    error::{AppError, AppResult, Problem},
    store,
};

/// Adds a version of an organization's negotiated price for a model (operators only).
///
/// From `validFrom` on, the organization's calls to the model are charged this price
/// instead of the catalog's, also after a later catalog change, until its next
/// version; discounts apply on top as for catalog prices. The body is the catalog's:
/// every price component can be set, and an optional one left out falls back within
/// this version (not to the catalog). `model` may be the catalog id or the provider's
/// own name, in any case; it is stored as the catalog id when the catalog knows the
/// model, and an override of a model the catalog does not know makes it priced for this
/// organization. Versions cannot be changed or removed: a newer version supersedes.
#[utoipa::path(
    tag = "operator",
    security(("bearer" = [])),
    params(OrgPath),
    request_body = CreatePrice,
    responses(
        (status = 201, description = "The new override version", body = PriceView),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, description = "No such organization", body = Problem),
        (status = 409, description = "The organization has a version of this model starting at that instant", body = Problem),
        (status = 422, body = Problem),
    )
)]
#[post("/admin/orgs/{orgId}/prices")]
pub async fn create_organization_price(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
    body: JsonBody<CreatePrice>,
) -> AppResult<HttpResponse> {
    caller.0.require_operator()?;
    let org_id = path.org_id;
    let named = body.names_provider_model();
    let mut new = body.into_inner().parse().map_err(AppError::validation)?;
    let mut conn = state.conn().await?;
    // One chain per model: the catalog id when the catalog knows the model (by either
    // name), else the spelling the organization's overrides already use.
    let catalog = store::prices::catalog_for(&mut conn, std::slice::from_ref(&new.provider)).await?;
    let catalog_id = catalog.resolve(&new.provider, &new.model).map(str::to_owned);
    let spelling = match catalog_id {
        Some(id) => Some(id),
        None => store::org_prices::spelling_of(&mut conn, org_id, &new.provider, &new.model).await?,
    };
    if let Some(model) = spelling {
        new.model = model;
    }
    if !named {
        new.provider_model_name = store::prices::provider_model_name_of(&mut conn, &new.provider, &new.model)
            .await?
            .unwrap_or_else(|| new.model.clone());
    }
    let row = store::org_prices::insert(&mut conn, org_id, &new).await?;
    state.prices.changed(&mut conn).await;
    tracing::info!(%org_id, provider = %row.provider, model = %row.model, valid_from = %row.valid_from, "price override added");
    // Its `validUntil` depends on the organization's other versions of the model.
    let view = price_view(store::org_prices::list_for_operator(&mut conn, org_id).await?, row.id);
    Ok(HttpResponse::Created().json(view))
}

/// Every version of an organization's price overrides (operators only).
///
/// Oldest first per model, each with when it ends (`validUntil`).
#[utoipa::path(
    tag = "operator",
    security(("bearer" = [])),
    params(OrgPath),
    responses(
        (status = 200, description = "The organization's override versions", body = Vec<PriceView>),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, description = "No such organization", body = Problem),
    )
)]
#[get("/admin/orgs/{orgId}/prices")]
pub async fn list_organization_prices_as_operator(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
) -> AppResult<web::Json<Vec<PriceView>>> {
    caller.0.require_operator()?;
    let mut conn = state.conn().await?;
    Ok(web::Json(price_views(
        store::org_prices::list_for_operator(&mut conn, path.org_id).await?,
    )))
}

/// The organization's negotiated prices (owners and admins).
///
/// Every version, oldest first per model, each with when it ends (`validUntil`). For
/// the organization's calls a version in force wins over the catalog's price
/// (`GET /v1/prices`); discounts apply on top.
#[utoipa::path(
    tag = "pricing",
    security(("bearer" = [])),
    params(OrgPath),
    responses(
        (status = 200, description = "The organization's override versions", body = Vec<PriceView>),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[get("/orgs/{orgId}/prices")]
pub async fn list_organization_prices(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
) -> AppResult<web::Json<Vec<PriceView>>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    Ok(web::Json(price_views(
        store::org_prices::list_own(&mut conn, &access).await?,
    )))
}
