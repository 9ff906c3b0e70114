//! The model price catalog, `model_prices`: read and written with SQL generated from
//! one column list ([`PriceRow`]), like the wide usage tables.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use diesel::{
    sql_types::{Array, Int8, Nullable, Numeric, Text, Timestamptz, Uuid as SqlUuid},
    OptionalExtension,
};
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{
    columns::{array_casts, columns},
    prepared::Prepared,
    DbConn,
};
use crate::{
    domain::pricing::{Catalog, CatalogEntry, LongContext, Price},
    error::{AppResult, OrConflict},
};

columns! {
    /// One price version: every column of `model_prices` but `created_at`. Amounts are
    /// USD per million tokens, per request or per image; an optional price left `None`
    /// falls back as `domain::pricing::Price::rates` says.
    #[derive(Debug, Clone, Default, PartialEq)]
    pub struct PriceRow {
        /// Minted by [`insert`]; whatever a new row carries is ignored.
        id: Uuid => SqlUuid,
        provider: String => Text,
        /// The catalog id (`claude-sonnet-4-5`).
        model: String => Text,
        /// The provider's own name (`claude-sonnet-4-5-20250929`); events may use either.
        provider_model_name: String => Text,
        valid_from: DateTime<Utc> => Timestamptz,
        input_per_mtok: Decimal => Numeric,
        output_per_mtok: Decimal => Numeric,
        cached_input_per_mtok: Decimal => Numeric,
        per_request: Decimal => Numeric,
        /// Per image the call generated.
        per_image: Decimal => Numeric,
        /// Per image sent with the request.
        per_input_image: Decimal => Numeric,
        cache_write_5m_per_mtok: Option<Decimal> => Nullable<Numeric>,
        cache_write_1h_per_mtok: Option<Decimal> => Nullable<Numeric>,
        reasoning_per_mtok: Option<Decimal> => Nullable<Numeric>,
        audio_input_per_mtok: Option<Decimal> => Nullable<Numeric>,
        audio_output_per_mtok: Option<Decimal> => Nullable<Numeric>,
        /// The long-context prices (`domain::pricing::LongContext`): all four of the
        /// threshold and the input, output and cached input prices, or none.
        long_context_above_tokens: Option<i64> => Nullable<Int8>,
        long_context_input_per_mtok: Option<Decimal> => Nullable<Numeric>,
        long_context_output_per_mtok: Option<Decimal> => Nullable<Numeric>,
        long_context_cached_input_per_mtok: Option<Decimal> => Nullable<Numeric>,
        long_context_cache_write_5m_per_mtok: Option<Decimal> => Nullable<Numeric>,
        long_context_cache_write_1h_per_mtok: Option<Decimal> => Nullable<Numeric>,
    }
}

/// A checked price version to add (see `http::pricing::CreatePrice::parse`).
pub type NewPrice = PriceRow;

impl From<PriceRow> for CatalogEntry {
    fn from(row: PriceRow) -> Self {
        Self {
            price: Price {
                id: row.id,
                input_per_mtok: row.input_per_mtok,
                output_per_mtok: row.output_per_mtok,
                cached_input_per_mtok: row.cached_input_per_mtok,
                per_request: row.per_request,
                per_image: row.per_image,
                per_input_image: row.per_input_image,
                cache_write_5m_per_mtok: row.cache_write_5m_per_mtok,
                cache_write_1h_per_mtok: row.cache_write_1h_per_mtok,
                reasoning_per_mtok: row.reasoning_per_mtok,
                audio_input_per_mtok: row.audio_input_per_mtok,
                audio_output_per_mtok: row.audio_output_per_mtok,
                long_context: long_context_of(&row),
            },
            provider: row.provider,
            model: row.model,
            provider_model_name: row.provider_model_name,
            valid_from: row.valid_from,
        }
    }
}

/// The long-context prices of a row; a CHECK keeps their required parts together.
fn long_context_of(row: &PriceRow) -> Option<LongContext> {
    Some(LongContext {
        above_tokens: row.long_context_above_tokens?,
        input_per_mtok: row.long_context_input_per_mtok?,
        output_per_mtok: row.long_context_output_per_mtok?,
        cached_input_per_mtok: row.long_context_cached_input_per_mtok?,
        cache_write_5m_per_mtok: row.long_context_cache_write_5m_per_mtok,
        cache_write_1h_per_mtok: row.long_context_cache_write_1h_per_mtok,
    })
}

pub(super) fn column_list() -> &'static str {
    static LIST: OnceLock<String> = OnceLock::new();
    LIST.get_or_init(|| PriceRow::COLUMNS.join(", "))
}

/// `INSERT … SELECT FROM unnest(…)` of price rows; `on_conflict` follows it.
fn insert_sql(on_conflict: &str) -> String {
    format!(
        "INSERT INTO model_prices ({columns}) SELECT * FROM unnest({arrays}) {on_conflict} RETURNING {columns}",
        columns = column_list(),
        arrays = array_casts(PriceRow::TYPES, 1),
    )
}

/// Adds a price version with a new id; one model cannot have two versions starting at
/// the same instant.
pub async fn insert(conn: &mut DbConn, new: &NewPrice) -> AppResult<PriceRow> {
    static SQL: OnceLock<String> = OnceLock::new();
    let sql = SQL.get_or_init(|| insert_sql(""));
    let row = [PriceRow {
        id: Uuid::now_v7(),
        ..new.clone()
    }];
    PriceRow::bind_arrays(Prepared::new(sql.as_str()), &row, |r| r)
        .get_result(conn)
        .await
        .or_conflict("this model already has a price starting at that instant")
}

/// Loads seed prices; a version that exists already (same provider, model and start)
/// is updated in place. Returns how many versions were written.
pub async fn upsert_all(conn: &mut DbConn, prices: &[NewPrice]) -> AppResult<usize> {
    static SQL: OnceLock<String> = OnceLock::new();
    let sql = SQL.get_or_init(|| {
        let updates: Vec<String> = PriceRow::COLUMNS
            .iter()
            .filter(|c| !matches!(**c, "id" | "provider" | "model" | "valid_from"))
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        insert_sql(&format!(
            "ON CONFLICT (provider, model, valid_from) DO UPDATE SET {}",
            updates.join(", ")
        ))
    });
    let mut written = 0;
    // One statement per version: a file that names a version twice keeps the last.
    for new in prices {
        let row = [PriceRow {
            id: Uuid::now_v7(),
            ..new.clone()
        }];
        written += PriceRow::bind_arrays(Prepared::new(sql.as_str()), &row, |r| r)
            .execute(conn)
            .await?;
    }
    Ok(written)
}

/// The `name` the query finds for (`provider`, `model`) as `$1`, `$2`, if any.
async fn name_for(conn: &mut DbConn, sql: &'static str, provider: &str, model: &str) -> AppResult<Option<String>> {
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = Text)]
        name: String,
    }
    let found: Option<Name> = diesel::sql_query(sql)
        .bind::<Text, _>(provider)
        .bind::<Text, _>(model)
        .get_result(conn)
        .await
        .optional()?;
    Ok(found.map(|n| n.name))
}

/// The provider's own name the latest version of a model carries, if any.
pub async fn provider_model_name_of(conn: &mut DbConn, provider: &str, model: &str) -> AppResult<Option<String>> {
    let sql = "SELECT provider_model_name AS name FROM model_prices WHERE provider = $1 AND model = $2 \
               ORDER BY valid_from DESC LIMIT 1";
    name_for(conn, sql, provider, model).await
}

/// How the catalog already spells a model of `provider` whose name differs from
/// `model` only in case (names are case-insensitive, so that is the same model).
pub async fn other_spelling_of(conn: &mut DbConn, provider: &str, model: &str) -> AppResult<Option<String>> {
    let sql = "SELECT model AS name FROM model_prices WHERE provider = $1 AND lower(model) = lower($2) \
               AND model <> $2 LIMIT 1";
    name_for(conn, sql, provider, model).await
}

/// Every version, optionally of one provider, grouped by model, oldest first.
pub async fn list(conn: &mut DbConn, provider: Option<&str>) -> AppResult<Vec<PriceRow>> {
    Ok(diesel::sql_query(format!(
        "SELECT {} FROM model_prices WHERE ($1::text IS NULL OR provider = $1) \
         ORDER BY provider, model, valid_from",
        column_list()
    ))
    .bind::<Nullable<Text>, _>(provider)
    .load(conn)
    .await?)
}

/// The price versions of these providers, for pricing a batch of events.
pub async fn catalog_for(conn: &mut DbConn, providers: &[String]) -> AppResult<Catalog> {
    let rows: Vec<PriceRow> = diesel::sql_query(format!(
        "SELECT {} FROM model_prices WHERE provider = ANY($1)",
        column_list()
    ))
    .bind::<Array<Text>, _>(providers)
    .load(conn)
    .await?;
    Ok(Catalog::new(rows.into_iter().map(CatalogEntry::from).collect()))
}

#[derive(diesel::QueryableByName)]
struct ChangeNumber {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    number: i64,
}

/// Records that what events are priced with changed (a catalog price, an organization's
/// override, a discount), for every instance to notice (see `crate::price_book`). Called
/// after the change committed: an instance that notices it must read the change.
/// Returns the change's number.
pub async fn announce_change(conn: &mut DbConn) -> AppResult<i64> {
    let row: ChangeNumber = diesel::sql_query("SELECT nextval('price_changes') AS number")
        .get_result(conn)
        .await?;
    Ok(row.number)
}

/// The number of the latest change announced (0 before any); reading it takes no lock
/// and touches no table.
pub async fn last_change(conn: &mut DbConn) -> AppResult<i64> {
    let row: ChangeNumber =
        diesel::sql_query("SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS number FROM price_changes")
            .get_result(conn)
            .await?;
    Ok(row.number)
}
