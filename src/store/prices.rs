//! The model price catalog.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{schema::model_prices, DbConn};
use crate::{
    domain::pricing::{Catalog, CatalogEntry, Price},
    error::{AppResult, OrConflict},
};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = model_prices, check_for_backend(diesel::pg::Pg))]
pub struct PriceRow {
    pub id: Uuid,
    pub provider: String,
    pub model: String,
    pub provider_model_name: String,
    pub input_per_mtok: Decimal,
    pub output_per_mtok: Decimal,
    pub cached_input_per_mtok: Decimal,
    pub per_request: Decimal,
    pub per_image: Decimal,
    pub per_input_image: Decimal,
    pub valid_from: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// A checked price version (see `http::pricing::CreatePrice::parse`).
#[derive(Debug, Clone)]
pub struct NewPrice {
    pub provider: String,
    pub model: String,
    pub provider_model_name: String,
    pub input_per_mtok: Decimal,
    pub output_per_mtok: Decimal,
    pub cached_input_per_mtok: Decimal,
    pub per_request: Decimal,
    pub per_image: Decimal,
    pub per_input_image: Decimal,
    pub valid_from: DateTime<Utc>,
}

impl From<PriceRow> for CatalogEntry {
    fn from(row: PriceRow) -> Self {
        Self {
            provider: row.provider,
            model: row.model,
            provider_model_name: row.provider_model_name,
            valid_from: row.valid_from,
            price: Price {
                id: row.id,
                input_per_mtok: row.input_per_mtok,
                output_per_mtok: row.output_per_mtok,
                cached_input_per_mtok: row.cached_input_per_mtok,
                per_request: row.per_request,
                per_image: row.per_image,
                per_input_image: row.per_input_image,
            },
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = model_prices)]
struct PriceInsert<'a> {
    id: Uuid,
    provider: &'a str,
    model: &'a str,
    provider_model_name: &'a str,
    input_per_mtok: Decimal,
    output_per_mtok: Decimal,
    cached_input_per_mtok: Decimal,
    per_request: Decimal,
    per_image: Decimal,
    per_input_image: Decimal,
    valid_from: DateTime<Utc>,
}

fn values(new: &NewPrice) -> PriceInsert<'_> {
    PriceInsert {
        id: Uuid::now_v7(),
        provider: &new.provider,
        model: &new.model,
        provider_model_name: &new.provider_model_name,
        input_per_mtok: new.input_per_mtok,
        output_per_mtok: new.output_per_mtok,
        cached_input_per_mtok: new.cached_input_per_mtok,
        per_request: new.per_request,
        per_image: new.per_image,
        per_input_image: new.per_input_image,
        valid_from: new.valid_from,
    }
}

/// Adds a price version; one model cannot have two versions starting at the same instant.
pub async fn insert(conn: &mut DbConn, new: &NewPrice) -> AppResult<PriceRow> {
    diesel::insert_into(model_prices::table)
        .values(values(new))
        .returning(PriceRow::as_returning())
        .get_result(conn)
        .await
        .or_conflict("this model already has a price starting at that instant")
}

/// Loads seed prices; a version that exists already is updated in place. Returns how
/// many versions were written.
pub async fn upsert_all(conn: &mut DbConn, prices: &[NewPrice]) -> AppResult<usize> {
    let mut written = 0;
    for new in prices {
        written += diesel::insert_into(model_prices::table)
            .values(values(new))
            .on_conflict((model_prices::provider, model_prices::model, model_prices::valid_from))
            .do_update()
            .set((
                model_prices::provider_model_name.eq(&new.provider_model_name),
                model_prices::input_per_mtok.eq(new.input_per_mtok),
                model_prices::output_per_mtok.eq(new.output_per_mtok),
                model_prices::cached_input_per_mtok.eq(new.cached_input_per_mtok),
                model_prices::per_request.eq(new.per_request),
                model_prices::per_image.eq(new.per_image),
                model_prices::per_input_image.eq(new.per_input_image),
            ))
            .execute(conn)
            .await?;
    }
    Ok(written)
}

/// The provider's own name the latest version of a model carries, if any.
pub async fn provider_model_name_of(conn: &mut DbConn, provider: &str, model: &str) -> AppResult<Option<String>> {
    Ok(model_prices::table
        .filter(model_prices::provider.eq(provider))
        .filter(model_prices::model.eq(model))
        .order(model_prices::valid_from.desc())
        .select(model_prices::provider_model_name)
        .first(conn)
        .await
        .optional()?)
}

/// How the catalog already spells a model of `provider` whose name differs from
/// `model` only in case (names are case-insensitive, so that is the same model).
pub async fn other_spelling_of(conn: &mut DbConn, provider: &str, model: &str) -> AppResult<Option<String>> {
    #[derive(diesel::QueryableByName)]
    struct Spelling {
        #[diesel(sql_type = diesel::sql_types::Text)]
        model: String,
    }
    let found: Option<Spelling> = diesel::sql_query(
        "SELECT model FROM model_prices WHERE provider = $1 AND lower(model) = lower($2) AND model <> $2 LIMIT 1",
    )
    .bind::<diesel::sql_types::Text, _>(provider)
    .bind::<diesel::sql_types::Text, _>(model)
    .get_result(conn)
    .await
    .optional()?;
    Ok(found.map(|s| s.model))
}

/// Every version, optionally of one provider, grouped by model, oldest first.
pub async fn list(conn: &mut DbConn, provider: Option<&str>) -> AppResult<Vec<PriceRow>> {
    let mut query = model_prices::table.select(PriceRow::as_select()).into_boxed();
    if let Some(provider) = provider {
        query = query.filter(model_prices::provider.eq(provider.to_owned()));
    }
    Ok(query
        .order((model_prices::provider, model_prices::model, model_prices::valid_from))
        .load(conn)
        .await?)
}

/// The price versions of these providers, for pricing a batch of events.
pub async fn catalog_for(conn: &mut DbConn, providers: &[String]) -> AppResult<Catalog> {
    let rows: Vec<PriceRow> = model_prices::table
        .filter(model_prices::provider.eq_any(providers))
        .select(PriceRow::as_select())
        .load(conn)
        .await?;
    Ok(Catalog::new(rows.into_iter().map(CatalogEntry::from).collect()))
}
