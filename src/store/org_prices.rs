//! Per-organization price overrides, `org_model_prices`: the catalog's columns
//! ([`PriceRow`]) for one organization. Operators write them; pricing reads them by
//! organization id (established from an API key); tenants read their own.

use std::sync::OnceLock;

use diesel::{
    dsl::exists,
    prelude::*,
    result::{DatabaseErrorKind, Error},
    sql_types::{Text, Uuid as SqlUuid},
};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::{
    access::OrgAccess,
    columns::array_casts,
    prepared::Prepared,
    prices::{column_list, NewPrice, PriceRow},
    schema::organizations,
    DbConn,
};
use crate::{
    domain::pricing::{CatalogEntry, OrgPrices},
    error::{AppError, AppResult},
};

/// Adds a version of an organization's price for a model; versions are immutable and a
/// later one supersedes. 404 for an organization that does not exist; 409 when the
/// model already has a version starting at that instant (in any spelling).
pub async fn insert(conn: &mut DbConn, org_id: Uuid, new: &NewPrice) -> AppResult<PriceRow> {
    static SQL: OnceLock<String> = OnceLock::new();
    let sql = SQL.get_or_init(|| {
        format!(
            "INSERT INTO org_model_prices (org_id, {columns}) SELECT $1, * FROM unnest({arrays}) \
             RETURNING {columns}",
            columns = column_list(),
            arrays = array_casts(PriceRow::TYPES, 2),
        )
    });
    let row = [PriceRow {
        id: Uuid::now_v7(),
        ..new.clone()
    }];
    let query = Prepared::new(sql.as_str()).bind::<SqlUuid, _>(org_id);
    PriceRow::bind_arrays(query, &row, |r| r)
        .get_result(conn)
        .await
        .map_err(|e| match e {
            Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => AppError::not_found("organization"),
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                AppError::conflict("this organization already has a price for this model starting at that instant")
            }
            other => other.into(),
        })
}

/// How the organization's overrides already spell a model of `provider` (names are
/// case-insensitive), so that its versions form one chain.
pub async fn spelling_of(conn: &mut DbConn, org_id: Uuid, provider: &str, model: &str) -> AppResult<Option<String>> {
    #[derive(QueryableByName)]
    struct Name {
        #[diesel(sql_type = Text)]
        model: String,
    }
    let found: Option<Name> = diesel::sql_query(
        "SELECT model FROM org_model_prices WHERE org_id = $1 AND provider = $2 AND lower(model) = lower($3) \
         ORDER BY valid_from DESC LIMIT 1",
    )
    .bind::<SqlUuid, _>(org_id)
    .bind::<Text, _>(provider)
    .bind::<Text, _>(model)
    .get_result(conn)
    .await
    .optional()?;
    Ok(found.map(|n| n.model))
}

/// Every version of one organization's overrides, by provider, model, then validFrom.
async fn list(conn: &mut DbConn, org_id: Uuid) -> AppResult<Vec<PriceRow>> {
    Ok(diesel::sql_query(format!(
        "SELECT {} FROM org_model_prices WHERE org_id = $1 ORDER BY provider, model, valid_from",
        column_list()
    ))
    .bind::<SqlUuid, _>(org_id)
    .load(conn)
    .await?)
}

/// Operator view of an organization's overrides; 404 for an unknown organization (the
/// caller is an operator, checked by the handler).
pub async fn list_for_operator(conn: &mut DbConn, org_id: Uuid) -> AppResult<Vec<PriceRow>> {
    let known: bool = diesel::select(exists(organizations::table.find(org_id)))
        .get_result(conn)
        .await?;
    if !known {
        return Err(AppError::not_found("organization"));
    }
    list(conn, org_id).await
}

/// A tenant's view of its own overrides.
pub async fn list_own(conn: &mut DbConn, access: &OrgAccess) -> AppResult<Vec<PriceRow>> {
    list(conn, access.org_id()).await
}

/// The overrides pricing needs for a call of the organization (established from an API
/// key): every version of its overrides for these providers.
pub async fn for_pricing(conn: &mut DbConn, org_id: Uuid, providers: &[String]) -> AppResult<OrgPrices> {
    let rows: Vec<PriceRow> = diesel::sql_query(format!(
        "SELECT {} FROM org_model_prices WHERE org_id = $1 AND provider = ANY($2)",
        column_list()
    ))
    .bind::<SqlUuid, _>(org_id)
    .bind::<diesel::sql_types::Array<Text>, _>(providers)
    .load(conn)
    .await?;
    Ok(OrgPrices::new(rows.into_iter().map(CatalogEntry::from).collect()))
}

/// Every version of the organization's overrides, of every provider, for the authorize
/// check's estimate (cached per organization).
pub async fn all_for_pricing(conn: &mut DbConn, org_id: Uuid) -> AppResult<OrgPrices> {
    let rows = list(conn, org_id).await?;
    Ok(OrgPrices::new(rows.into_iter().map(CatalogEntry::from).collect()))
}
