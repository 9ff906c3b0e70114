//! Invoices: their headers (`invoices`), the lines of finalized ones
//! (`invoice_lines`), the per-organization number sequences, and the reads of the
//! per-customer cost ledger that drafts are computed from.
//!
//! Every change to an organization's invoices (create, edit, delete, finalize, void)
//! runs in a transaction that first takes the organization's invoicing lock (a
//! transaction-scoped advisory lock). That makes "no two live invoices of a customer
//! overlap" and "late usage is billed once" hold across instances, at the price of
//! serializing an organization's invoicing, which is not a hot path.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Days, NaiveDate, Utc};
use diesel::{
    sql_types::{Array, BigInt, Date, Int4, Nullable, Numeric, Text, Timestamptz, Uuid as SqlUuid},
    OptionalExtension, QueryableByName,
};
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{access::OrgAccess, billing, DbConn};
use crate::{
    domain::{
        billing::Currency,
        invoice::{
            self, InvoiceStatus, LineKey, LineKind, Period, PricedLine, Totals, UnitPrices, UsageLine, UsageSums,
        },
        role::Access,
    },
    error::{AppError, AppResult, ErrorCode},
};

/// The header of an invoice as stored.
#[derive(Debug, Clone, QueryableByName)]
pub struct Header {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub org_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub customer_id: Uuid,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Date)]
    pub period_start: NaiveDate,
    #[diesel(sql_type = Date)]
    pub period_end: NaiveDate,
    #[diesel(sql_type = Nullable<Text>)]
    pub memo: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Text>)]
    pub number: Option<String>,
    #[diesel(sql_type = Nullable<Date>)]
    pub issued_on: Option<NaiveDate>,
    #[diesel(sql_type = Nullable<Date>)]
    pub due_on: Option<NaiveDate>,
    #[diesel(sql_type = Nullable<Numeric>)]
    pub markup: Option<Decimal>,
    #[diesel(sql_type = Nullable<Numeric>)]
    pub tax_rate: Option<Decimal>,
    #[diesel(sql_type = Nullable<Text>)]
    pub issuer_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub issuer_address: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub issuer_tax_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub footer: Option<String>,
    #[diesel(sql_type = Text)]
    pub customer_external_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub bill_to_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub bill_to_email: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub bill_to_address: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub bill_to_tax_id: Option<String>,
    #[diesel(sql_type = Nullable<Numeric>)]
    pub cost: Option<Decimal>,
    #[diesel(sql_type = Nullable<Numeric>)]
    pub subtotal: Option<Decimal>,
    #[diesel(sql_type = Nullable<Numeric>)]
    pub discount_total: Option<Decimal>,
    #[diesel(sql_type = Nullable<Numeric>)]
    pub tax: Option<Decimal>,
    #[diesel(sql_type = Nullable<Numeric>)]
    pub total: Option<Decimal>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub finalized_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub voided_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    pub void_reason: Option<String>,
}

impl Header {
    pub fn status(&self) -> AppResult<InvoiceStatus> {
        self.status
            .parse()
            .map_err(|_| AppError::internal(anyhow::anyhow!("unknown stored invoice status {}", self.status)))
    }

    pub fn period(&self) -> Period {
        Period {
            start: self.period_start,
            end: self.period_end,
        }
    }

    /// The stored totals of a finalized or void invoice.
    pub fn totals(&self) -> Option<Totals> {
        Some(Totals {
            cost: self.cost?,
            subtotal: self.subtotal?,
            discount_total: self.discount_total?,
            tax: self.tax?,
            total: self.total?,
        })
    }
}

/// The header columns (the customer's current external id when the invoice has no
/// snapshot of it yet, i.e. a draft).
const HEADER: &str = "i.id, i.org_id, i.customer_id, i.status, i.period_start, i.period_end, i.memo, \
     i.created_at, i.number, i.issued_on, i.due_on, i.markup, i.tax_rate, i.issuer_name, i.issuer_address, \
     i.issuer_tax_id, i.footer, coalesce(i.customer_external_id, c.external_id) AS customer_external_id, \
     i.bill_to_name, i.bill_to_email, i.bill_to_address, i.bill_to_tax_id, i.cost, i.subtotal, \
     i.discount_total, i.tax, i.total, i.finalized_at, i.voided_at, i.void_reason \
     FROM invoices i JOIN customers c ON c.org_id = i.org_id AND c.id = i.customer_id";

/// Takes the organization's invoicing lock until the transaction ends.
async fn lock_invoicing(conn: &mut DbConn, org_id: Uuid) -> AppResult<()> {
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended('invoices:' || $1::text, 0))")
        .bind::<SqlUuid, _>(org_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// One invoice of the caller's organization; 404 for any other.
pub async fn header(conn: &mut DbConn, access: &OrgAccess, id: Uuid) -> AppResult<Header> {
    access.require(Access::Read)?;
    find(conn, access.org_id(), id, false).await
}

async fn find(conn: &mut DbConn, org_id: Uuid, id: Uuid, for_update: bool) -> AppResult<Header> {
    let lock = if for_update { " FOR UPDATE OF i" } else { "" };
    diesel::sql_query(format!("SELECT {HEADER} WHERE i.org_id = $1 AND i.id = $2{lock}"))
        .bind::<SqlUuid, _>(org_id)
        .bind::<SqlUuid, _>(id)
        .get_result(conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::not_found("invoice"))
}

/// What a list of invoices is narrowed to.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<InvoiceStatus>,
    pub customer_id: Option<Uuid>,
    /// Invoices created before this one (ids are time-ordered): the next page.
    pub before: Option<Uuid>,
}

/// The caller's organization's invoices, newest first, `limit` of them.
pub async fn list(conn: &mut DbConn, access: &OrgAccess, filter: &ListFilter, limit: i64) -> AppResult<Vec<Header>> {
    access.require(Access::Read)?;
    Ok(diesel::sql_query(format!(
        "SELECT {HEADER} WHERE i.org_id = $1 AND ($2::text IS NULL OR i.status = $2) \
         AND ($3::uuid IS NULL OR i.customer_id = $3) AND ($4::uuid IS NULL OR i.id < $4) \
         ORDER BY i.id DESC LIMIT $5"
    ))
    .bind::<SqlUuid, _>(access.org_id())
    .bind::<Nullable<Text>, _>(filter.status.map(InvoiceStatus::as_str))
    .bind::<Nullable<SqlUuid>, _>(filter.customer_id)
    .bind::<Nullable<SqlUuid>, _>(filter.before)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?)
}

/// The live (not void) invoice of `customer_id` whose period overlaps `period`, if any.
async fn overlapping(
    conn: &mut DbConn,
    org_id: Uuid,
    customer_id: Uuid,
    period: Period,
    except: Option<Uuid>,
) -> AppResult<Option<Header>> {
    Ok(diesel::sql_query(format!(
        "SELECT {HEADER} WHERE i.org_id = $1 AND i.customer_id = $2 AND i.status <> 'void' \
         AND i.period_start <= $4 AND $3 <= i.period_end AND ($5::uuid IS NULL OR i.id <> $5) LIMIT 1"
    ))
    .bind::<SqlUuid, _>(org_id)
    .bind::<SqlUuid, _>(customer_id)
    .bind::<Date, _>(period.start)
    .bind::<Date, _>(period.end)
    .bind::<Nullable<SqlUuid>, _>(except)
    .get_result(conn)
    .await
    .optional()?)
}

fn overlap_conflict(existing: &Header) -> AppError {
    AppError::conflict(format!(
        "the customer already has invoice {} ({}) for {} to {}, which overlaps this period",
        existing.number.as_deref().unwrap_or(&existing.id.to_string()),
        existing.status,
        existing.period_start,
        existing.period_end
    ))
}

/// Creates a draft for one customer of the caller's organization (owners and admins);
/// 404 for a customer it does not have, 409 when a live invoice of the customer
/// overlaps the period.
pub async fn create(
    conn: &mut DbConn,
    access: &OrgAccess,
    customer_id: Uuid,
    period: Period,
    memo: Option<&str>,
) -> AppResult<Header> {
    access.require(Access::Manage)?;
    let org_id = access.org_id();
    let id = diesel_async::AsyncConnection::transaction(conn, async |conn| {
        lock_invoicing(conn, org_id).await?;
        billing::profile(conn, access, customer_id).await?;
        if let Some(existing) = overlapping(conn, org_id, customer_id, period, None).await? {
            return Err(overlap_conflict(&existing));
        }
        insert_draft(conn, access, customer_id, period, memo).await
    })
    .await?;
    find(conn, org_id, id, false).await
}

async fn insert_draft(
    conn: &mut DbConn,
    access: &OrgAccess,
    customer_id: Uuid,
    period: Period,
    memo: Option<&str>,
) -> AppResult<Uuid> {
    let id = Uuid::now_v7();
    diesel::sql_query(
        "INSERT INTO invoices (id, org_id, customer_id, status, period_start, period_end, memo, created_by) \
         VALUES ($1, $2, $3, 'draft', $4, $5, $6, $7)",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<SqlUuid, _>(access.org_id())
    .bind::<SqlUuid, _>(customer_id)
    .bind::<Date, _>(period.start)
    .bind::<Date, _>(period.end)
    .bind::<Nullable<Text>, _>(memo)
    .bind::<SqlUuid, _>(access.user_id())
    .execute(conn)
    .await?;
    Ok(id)
}

/// What generating drafts for every customer did.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    pub created: Vec<Header>,
    /// Customers with usage in the period that already have an overlapping live
    /// invoice: (customer, that invoice).
    pub skipped: Vec<(Uuid, Header)>,
}

#[derive(QueryableByName)]
struct CustomerIdRow {
    #[diesel(sql_type = SqlUuid)]
    customer_id: Uuid,
}

/// Creates a draft for every customer of the caller's organization with usage in
/// `period` (owners and admins), skipping those that already have an overlapping
/// live invoice.
pub async fn create_for_all(conn: &mut DbConn, access: &OrgAccess, period: Period) -> AppResult<Generated> {
    access.require(Access::Manage)?;
    let org_id = access.org_id();
    let (created_ids, skipped) = diesel_async::AsyncConnection::transaction(conn, async |conn| {
        lock_invoicing(conn, org_id).await?;
        let customers: Vec<CustomerIdRow> = diesel::sql_query(
            "SELECT DISTINCT customer_id FROM customer_cost_daily \
             WHERE org_id = $1 AND day BETWEEN $2 AND $3 AND requests > 0 ORDER BY customer_id",
        )
        .bind::<SqlUuid, _>(org_id)
        .bind::<Date, _>(period.start)
        .bind::<Date, _>(period.end)
        .load(conn)
        .await?;
        let mut created = Vec::new();
        let mut skipped = Vec::new();
        for CustomerIdRow { customer_id } in customers {
            match overlapping(conn, org_id, customer_id, period, None).await? {
                Some(existing) => skipped.push((customer_id, existing)),
                None => created.push(insert_draft(conn, access, customer_id, period, None).await?),
            }
        }
        Ok::<_, AppError>((created, skipped))
    })
    .await?;
    let mut generated = Generated {
        created: Vec::with_capacity(created_ids.len()),
        skipped,
    };
    for id in created_ids {
        generated.created.push(find(conn, org_id, id, false).await?);
    }
    Ok(generated)
}

/// A change to a draft; `None` keeps what it has.
#[derive(Debug, Clone, Default)]
pub struct DraftChange {
    pub period: Option<Period>,
    /// `Some(None)` clears the memo.
    pub memo: Option<Option<String>>,
}

/// Edits a draft (owners and admins); 409 for a finalized or void invoice, or when
/// the new period overlaps another live invoice of the customer.
pub async fn update_draft(conn: &mut DbConn, access: &OrgAccess, id: Uuid, change: &DraftChange) -> AppResult<Header> {
    access.require(Access::Manage)?;
    let org_id = access.org_id();
    diesel_async::AsyncConnection::transaction(conn, async |conn| {
        lock_invoicing(conn, org_id).await?;
        let current = find(conn, org_id, id, true).await?;
        require_draft(&current)?;
        let period = change.period.unwrap_or(current.period());
        if let Some(existing) = overlapping(conn, org_id, current.customer_id, period, Some(id)).await? {
            return Err(overlap_conflict(&existing));
        }
        let memo = change.memo.clone().unwrap_or(current.memo);
        diesel::sql_query("UPDATE invoices SET period_start = $2, period_end = $3, memo = $4 WHERE id = $1")
            .bind::<SqlUuid, _>(id)
            .bind::<Date, _>(period.start)
            .bind::<Date, _>(period.end)
            .bind::<Nullable<Text>, _>(memo)
            .execute(conn)
            .await?;
        Ok::<_, AppError>(())
    })
    .await?;
    find(conn, org_id, id, false).await
}

fn require_draft(header: &Header) -> AppResult<()> {
    match header.status()?.not_a_draft() {
        None => Ok(()),
        Some(why) => Err(AppError::conflict(why)),
    }
}

/// Deletes a draft (owners and admins); 409 for a finalized or void invoice.
pub async fn delete_draft(conn: &mut DbConn, access: &OrgAccess, id: Uuid) -> AppResult<()> {
    access.require(Access::Manage)?;
    let org_id = access.org_id();
    diesel_async::AsyncConnection::transaction(conn, async |conn| {
        lock_invoicing(conn, org_id).await?;
        require_draft(&find(conn, org_id, id, true).await?)?;
        diesel::sql_query("DELETE FROM invoices WHERE id = $1")
            .bind::<SqlUuid, _>(id)
            .execute(conn)
            .await?;
        Ok(())
    })
    .await
}

/// Voids a finalized invoice (owners and admins); it keeps its number and lines.
pub async fn void(conn: &mut DbConn, access: &OrgAccess, id: Uuid, reason: Option<&str>) -> AppResult<Header> {
    access.require(Access::Manage)?;
    let org_id = access.org_id();
    diesel_async::AsyncConnection::transaction(conn, async |conn| {
        lock_invoicing(conn, org_id).await?;
        let current = find(conn, org_id, id, true).await?;
        if let Some(why) = current.status()?.not_voidable() {
            return Err(AppError::conflict(why));
        }
        diesel::sql_query(
            "UPDATE invoices SET status = 'void', voided_at = now(), voided_by = $2, void_reason = $3 WHERE id = $1",
        )
        .bind::<SqlUuid, _>(id)
        .bind::<SqlUuid, _>(access.user_id())
        .bind::<Nullable<Text>, _>(reason)
        .execute(conn)
        .await?;
        Ok(())
    })
    .await?;
    find(conn, org_id, id, false).await
}

/// The sums columns of a ledger or line grouping, in this order.
const SUMS: &str = "sum(requests)::int8 AS requests, sum(prompt_tokens)::int8 AS prompt_tokens, \
     sum(completion_tokens)::int8 AS completion_tokens, sum(cached_tokens)::int8 AS cached_tokens, \
     sum(cost_before_discount) AS cost_before_discount, sum(discount_savings) AS discount_savings, \
     sum(cost) AS cost";

#[derive(QueryableByName)]
struct KeyedSums {
    /// The finalized invoice a row belongs to (unused for a draft's own usage).
    #[diesel(sql_type = Nullable<SqlUuid>)]
    invoice_id: Option<Uuid>,
    #[diesel(sql_type = Text)]
    provider: String,
    #[diesel(sql_type = Text)]
    model: String,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    price_id: Option<Uuid>,
    #[diesel(sql_type = BigInt)]
    requests: i64,
    #[diesel(sql_type = BigInt)]
    prompt_tokens: i64,
    #[diesel(sql_type = BigInt)]
    completion_tokens: i64,
    #[diesel(sql_type = BigInt)]
    cached_tokens: i64,
    #[diesel(sql_type = Numeric)]
    cost_before_discount: Decimal,
    #[diesel(sql_type = Numeric)]
    discount_savings: Decimal,
    #[diesel(sql_type = Numeric)]
    cost: Decimal,
}

impl KeyedSums {
    fn split(self) -> (Option<Uuid>, LineKey, UsageSums) {
        (
            self.invoice_id,
            LineKey {
                provider: self.provider,
                model: self.model,
                price_id: self.price_id,
            },
            UsageSums {
                requests: self.requests,
                prompt_tokens: self.prompt_tokens,
                completion_tokens: self.completion_tokens,
                cached_tokens: self.cached_tokens,
                cost_before_discount: self.cost_before_discount,
                discount_savings: self.discount_savings,
                cost: self.cost,
            },
        )
    }
}

/// Rows grouped by line key only (no invoice).
fn by_key(rows: Vec<KeyedSums>) -> Vec<(LineKey, UsageSums)> {
    rows.into_iter()
        .map(|r| {
            let (_, key, sums) = r.split();
            (key, sums)
        })
        .collect()
}

/// What the ledger holds for one customer and period, per line key, in key order.
pub async fn ledger_usage(
    conn: &mut DbConn,
    org_id: Uuid,
    customer_id: Uuid,
    period: Period,
) -> AppResult<Vec<(LineKey, UsageSums)>> {
    let rows: Vec<KeyedSums> = diesel::sql_query(format!(
        "SELECT NULL::uuid AS invoice_id, provider, model, price_id, {SUMS} FROM customer_cost_daily \
         WHERE org_id = $1 AND customer_id = $2 AND day BETWEEN $3 AND $4 \
         GROUP BY provider, model, price_id ORDER BY provider, model, price_id NULLS FIRST"
    ))
    .bind::<SqlUuid, _>(org_id)
    .bind::<SqlUuid, _>(customer_id)
    .bind::<Date, _>(period.start)
    .bind::<Date, _>(period.end)
    .load(conn)
    .await?;
    Ok(by_key(rows))
}

/// A finalized invoice a late-usage line points at.
#[derive(Debug, Clone, QueryableByName)]
pub struct Adjusted {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Text)]
    pub number: String,
    #[diesel(sql_type = Date)]
    pub period_start: NaiveDate,
    #[diesel(sql_type = Date)]
    pub period_end: NaiveDate,
}

/// The late usage of `customer_id`'s finalized invoices whose period starts on or
/// after `earliest` (the ledger's first kept day: before it, the ledger no longer
/// holds what was billed), with the invoices it adjusts.
async fn late_usage(
    conn: &mut DbConn,
    org_id: Uuid,
    customer_id: Uuid,
    earliest: NaiveDate,
) -> AppResult<(Vec<UsageLine>, HashMap<Uuid, Adjusted>)> {
    let finalized: Vec<Adjusted> = diesel::sql_query(
        "SELECT id, number, period_start, period_end FROM invoices \
         WHERE org_id = $1 AND customer_id = $2 AND status = 'finalized' AND period_start >= $3",
    )
    .bind::<SqlUuid, _>(org_id)
    .bind::<SqlUuid, _>(customer_id)
    .bind::<Date, _>(earliest)
    .load(conn)
    .await?;
    if finalized.is_empty() {
        return Ok((Vec::new(), HashMap::new()));
    }
    let ids: Vec<Uuid> = finalized.iter().map(|f| f.id).collect();
    let ledger: Vec<KeyedSums> = diesel::sql_query(format!(
        "SELECT i.id AS invoice_id, l.provider, l.model, l.price_id, \
         {} FROM invoices i JOIN customer_cost_daily l ON l.org_id = i.org_id AND l.customer_id = i.customer_id \
         AND l.day BETWEEN i.period_start AND i.period_end \
         WHERE i.id = ANY($1) GROUP BY i.id, l.provider, l.model, l.price_id",
        SUMS.replace("sum(", "sum(l.")
    ))
    .bind::<Array<SqlUuid>, _>(&ids)
    .load(conn)
    .await?;
    let billed: Vec<KeyedSums> = diesel::sql_query(format!(
        "SELECT coalesce(il.adjusts_invoice_id, il.invoice_id) AS invoice_id, il.provider, il.model, il.price_id, \
         {} FROM invoice_lines il JOIN invoices i ON i.id = il.invoice_id AND i.status = 'finalized' \
         WHERE coalesce(il.adjusts_invoice_id, il.invoice_id) = ANY($1) \
         GROUP BY 1, il.provider, il.model, il.price_id",
        SUMS.replace("sum(", "sum(il.")
    ))
    .bind::<Array<SqlUuid>, _>(&ids)
    .load(conn)
    .await?;
    let keyed = |rows: Vec<KeyedSums>| -> Vec<(Uuid, LineKey, UsageSums)> {
        rows.into_iter()
            .filter_map(|r| {
                let (invoice, key, sums) = r.split();
                Some((invoice?, key, sums))
            })
            .collect()
    };
    let order: BTreeMap<Uuid, String> = finalized.iter().map(|f| (f.id, f.number.clone())).collect();
    let lines = invoice::late_usage(&keyed(ledger), &keyed(billed), &order);
    Ok((lines, finalized.into_iter().map(|f| (f.id, f)).collect()))
}

#[derive(QueryableByName)]
struct PriceRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    valid_from: DateTime<Utc>,
    #[diesel(sql_type = Numeric)]
    input_per_mtok: Decimal,
    #[diesel(sql_type = Numeric)]
    output_per_mtok: Decimal,
    #[diesel(sql_type = Numeric)]
    cached_input_per_mtok: Decimal,
    #[diesel(sql_type = Numeric)]
    per_request: Decimal,
}

/// The unit prices of the price versions `ids` names: catalog versions, or the
/// organization's own overrides (never another organization's).
async fn unit_prices(conn: &mut DbConn, org_id: Uuid, ids: &[Uuid]) -> AppResult<HashMap<Uuid, UnitPrices>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<PriceRow> = diesel::sql_query(
        "SELECT id, valid_from, input_per_mtok, output_per_mtok, cached_input_per_mtok, per_request \
           FROM model_prices WHERE id = ANY($1) \
         UNION ALL \
         SELECT id, valid_from, input_per_mtok, output_per_mtok, cached_input_per_mtok, per_request \
           FROM org_model_prices WHERE id = ANY($1) AND org_id = $2",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .bind::<SqlUuid, _>(org_id)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.id,
                UnitPrices {
                    valid_from: r.valid_from,
                    input_per_mtok: r.input_per_mtok,
                    output_per_mtok: r.output_per_mtok,
                    cached_input_per_mtok: r.cached_input_per_mtok,
                    per_request: r.per_request,
                },
            )
        })
        .collect())
}

/// One line of an invoice as shown: priced, with the unit prices that applied (before
/// markup) and, for late usage, the invoice it adjusts.
#[derive(Debug, Clone)]
pub struct Line {
    pub priced: PricedLine,
    pub unit_prices: Option<UnitPrices>,
    pub adjusts: Option<Adjusted>,
}

/// The lines a draft has now: the ledger's usage in its period, then the late usage of
/// the customer's finalized invoices.
async fn draft_lines(
    conn: &mut DbConn,
    header: &Header,
    earliest: NaiveDate,
) -> AppResult<(Vec<UsageLine>, HashMap<Uuid, Adjusted>)> {
    let mut lines: Vec<UsageLine> = ledger_usage(conn, header.org_id, header.customer_id, header.period())
        .await?
        .into_iter()
        .map(|(key, sums)| UsageLine {
            kind: LineKind::Usage,
            adjusts_invoice_id: None,
            key,
            sums,
        })
        .collect();
    let (late, adjusted) = late_usage(conn, header.org_id, header.customer_id, earliest).await?;
    lines.extend(late);
    Ok((lines, adjusted))
}

/// The terms an invoice is priced and addressed with.
#[derive(Debug, Clone)]
pub struct Terms {
    pub currency: Currency,
    pub markup: Decimal,
    pub tax_rate: Decimal,
    pub due_days: i32,
    pub issuer_name: String,
    pub issuer_address: Option<String>,
    pub issuer_tax_id: Option<String>,
    pub footer: Option<String>,
    pub bill_to: billing::StoredProfile,
}

/// An invoice with its lines and totals: a draft computed now, a finalized or void
/// one as issued.
#[derive(Debug, Clone)]
pub struct Document {
    pub header: Header,
    pub status: InvoiceStatus,
    pub terms: Terms,
    pub lines: Vec<Line>,
    pub totals: Totals,
}

async fn current_terms(conn: &mut DbConn, access: &OrgAccess, customer_id: Uuid) -> AppResult<Terms> {
    let settings = billing::settings(conn, access).await?;
    let bill_to = billing::profile(conn, access, customer_id).await?;
    let s = settings.settings;
    Ok(Terms {
        currency: s.currency,
        markup: s.markup,
        tax_rate: s.tax_rate,
        due_days: s.due_days,
        issuer_name: s.issuer_name.unwrap_or(settings.org_name),
        issuer_address: s.issuer_address,
        issuer_tax_id: s.tax_id,
        footer: s.footer,
        bill_to,
    })
}

fn stored_terms(h: &Header) -> Terms {
    Terms {
        currency: Currency::Usd,
        markup: h.markup.unwrap_or_default().normalize(),
        tax_rate: h.tax_rate.unwrap_or_default().normalize(),
        due_days: match (h.issued_on, h.due_on) {
            (Some(issued), Some(due)) => i32::try_from((due - issued).num_days()).unwrap_or_default(),
            _ => 0,
        },
        issuer_name: h.issuer_name.clone().unwrap_or_default(),
        issuer_address: h.issuer_address.clone(),
        issuer_tax_id: h.issuer_tax_id.clone(),
        footer: h.footer.clone(),
        bill_to: billing::StoredProfile {
            customer_id: h.customer_id,
            external_id: h.customer_external_id.clone(),
            billing_name: h.bill_to_name.clone(),
            email: h.bill_to_email.clone(),
            address: h.bill_to_address.clone(),
            tax_id: h.bill_to_tax_id.clone(),
            updated_at: None,
        },
    }
}

/// Prices a draft's lines with the organization's current terms.
async fn compute(conn: &mut DbConn, access: &OrgAccess, header: Header, earliest: NaiveDate) -> AppResult<Document> {
    let terms = current_terms(conn, access, header.customer_id).await?;
    let (mut usage, adjusted) = draft_lines(conn, &header, earliest).await?;
    let price_ids: Vec<Uuid> = usage.iter().filter_map(|l| l.key.price_id).collect();
    let prices = unit_prices(conn, header.org_id, &price_ids).await?;
    // The period's usage, then late usage by the invoice it adjusts; within each, by
    // provider and model, and a model's price versions in the order they took effect.
    usage.sort_by_cached_key(|l| {
        (
            l.kind,
            l.adjusts_invoice_id
                .and_then(|id| adjusted.get(&id))
                .map(|a| a.number.clone()),
            l.key.provider.clone(),
            l.key.model.clone(),
            l.key.price_id.and_then(|id| prices.get(&id)).map(|p| p.valid_from),
        )
    });
    let (priced, totals) = invoice::price_lines(usage, terms.markup, terms.tax_rate, terms.currency);
    let lines = priced
        .into_iter()
        .map(|priced| Line {
            unit_prices: priced.usage.key.price_id.and_then(|id| prices.get(&id).cloned()),
            adjusts: priced
                .usage
                .adjusts_invoice_id
                .and_then(|id| adjusted.get(&id).cloned()),
            priced,
        })
        .collect();
    Ok(Document {
        status: header.status()?,
        header,
        terms,
        lines,
        totals,
    })
}

#[derive(QueryableByName)]
struct StoredLine {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    adjusts_invoice_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    adjusts_number: Option<String>,
    #[diesel(sql_type = Nullable<Date>)]
    adjusts_start: Option<NaiveDate>,
    #[diesel(sql_type = Nullable<Date>)]
    adjusts_end: Option<NaiveDate>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    price_valid_from: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Numeric>)]
    input_per_mtok: Option<Decimal>,
    #[diesel(sql_type = Nullable<Numeric>)]
    output_per_mtok: Option<Decimal>,
    #[diesel(sql_type = Nullable<Numeric>)]
    cached_input_per_mtok: Option<Decimal>,
    #[diesel(sql_type = Nullable<Numeric>)]
    per_request: Option<Decimal>,
    #[diesel(sql_type = Numeric)]
    amount_before_discount: Decimal,
    #[diesel(sql_type = Numeric)]
    discount: Decimal,
    #[diesel(sql_type = Numeric)]
    amount: Decimal,
    #[diesel(embed)]
    sums: KeyedSums,
}

async fn stored_lines(conn: &mut DbConn, id: Uuid) -> AppResult<Vec<Line>> {
    let rows: Vec<StoredLine> = diesel::sql_query(
        "SELECT il.kind, il.adjusts_invoice_id, a.number AS adjusts_number, a.period_start AS adjusts_start, \
                a.period_end AS adjusts_end, il.price_valid_from, il.input_per_mtok, il.output_per_mtok, \
                il.cached_input_per_mtok, il.per_request, il.amount_before_discount, il.discount, il.amount, \
                NULL::uuid AS invoice_id, il.provider, il.model, il.price_id, il.requests, il.prompt_tokens, \
                il.completion_tokens, il.cached_tokens, il.cost_before_discount, il.discount_savings, il.cost \
           FROM invoice_lines il LEFT JOIN invoices a ON a.id = il.adjusts_invoice_id \
          WHERE il.invoice_id = $1 ORDER BY il.position",
    )
    .bind::<SqlUuid, _>(id)
    .load(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            let kind: LineKind = r
                .kind
                .parse()
                .map_err(|_| AppError::internal(anyhow::anyhow!("unknown stored line kind {}", r.kind)))?;
            let adjusts = match (r.adjusts_invoice_id, r.adjusts_number, r.adjusts_start, r.adjusts_end) {
                (Some(id), Some(number), Some(period_start), Some(period_end)) => Some(Adjusted {
                    id,
                    number,
                    period_start,
                    period_end,
                }),
                _ => None,
            };
            let unit_prices = match (
                r.price_valid_from,
                r.input_per_mtok,
                r.output_per_mtok,
                r.cached_input_per_mtok,
                r.per_request,
            ) {
                (Some(valid_from), Some(input), Some(output), Some(cached), Some(per_request)) => Some(UnitPrices {
                    valid_from,
                    input_per_mtok: input,
                    output_per_mtok: output,
                    cached_input_per_mtok: cached,
                    per_request,
                }),
                _ => None,
            };
            let (_, key, sums) = r.sums.split();
            Ok(Line {
                priced: PricedLine {
                    usage: UsageLine {
                        kind,
                        adjusts_invoice_id: r.adjusts_invoice_id,
                        key,
                        sums,
                    },
                    amount_before_discount: r.amount_before_discount,
                    discount: r.discount,
                    amount: r.amount,
                },
                unit_prices,
                adjusts,
            })
        })
        .collect()
}

/// The first day the billing ledger holds at `now`, for a deployment keeping it
/// `horizon_days`.
pub fn ledger_start(now: DateTime<Utc>, horizon_days: i32) -> NaiveDate {
    let today = now.date_naive();
    today
        .checked_sub_days(Days::new(u64::try_from(horizon_days).unwrap_or(0)))
        .unwrap_or(NaiveDate::MIN)
}

/// An invoice of the caller's organization with its lines and totals.
pub async fn document(
    conn: &mut DbConn,
    access: &OrgAccess,
    header: Header,
    earliest: NaiveDate,
) -> AppResult<Document> {
    access.require(Access::Read)?;
    let status = header.status()?;
    if status == InvoiceStatus::Draft {
        return compute(conn, access, header, earliest).await;
    }
    let lines = stored_lines(conn, header.id).await?;
    let totals = header
        .totals()
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("finalized invoice {} has no totals", header.id)))?;
    Ok(Document {
        status,
        terms: stored_terms(&header),
        header,
        lines,
        totals,
    })
}

#[derive(QueryableByName)]
struct Sequence {
    #[diesel(sql_type = BigInt)]
    last_number: i64,
}

/// Takes the next number of the organization's sequence for `year`, in the caller's
/// transaction (see `invoice_sequences`).
async fn next_number(conn: &mut DbConn, org_id: Uuid, year: i32) -> AppResult<String> {
    let Sequence { last_number } = diesel::sql_query(
        "INSERT INTO invoice_sequences AS s (org_id, year, last_number) VALUES ($1, $2, 1) \
         ON CONFLICT (org_id, year) DO UPDATE SET last_number = s.last_number + 1 RETURNING s.last_number",
    )
    .bind::<SqlUuid, _>(org_id)
    .bind::<Int4, _>(year)
    .get_result(conn)
    .await?;
    Ok(invoice::number(year, last_number))
}

/// Finalizes a draft (owners and admins): computes it one last time from the ledger,
/// numbers it, and stores its lines, totals, issuer and customer as they are now.
/// 409 for an invoice that is not a draft or has nothing to bill.
pub async fn finalize(
    conn: &mut DbConn,
    access: &OrgAccess,
    id: Uuid,
    now: DateTime<Utc>,
    earliest: NaiveDate,
) -> AppResult<Header> {
    access.require(Access::Manage)?;
    let org_id = access.org_id();
    diesel_async::AsyncConnection::transaction(conn, async |conn| {
        lock_invoicing(conn, org_id).await?;
        let current = find(conn, org_id, id, true).await?;
        require_draft(&current)?;
        let doc = compute(conn, access, current, earliest).await?;
        if doc
            .lines
            .iter()
            .all(|l| l.priced.usage.sums.requests == 0 && l.priced.amount.is_zero())
        {
            return Err(AppError::new(
                ErrorCode::Conflict,
                "nothing to invoice: the customer has no usage in the period (delete the draft instead)",
            ));
        }
        let number = next_number(conn, org_id, invoice::sequence_year(now)).await?;
        let issued_on = now.date_naive();
        let due_on = issued_on
            .checked_add_days(Days::new(u64::try_from(doc.terms.due_days).unwrap_or(0)))
            .unwrap_or(issued_on);
        let t = &doc.terms;
        diesel::sql_query(
            "UPDATE invoices SET status = 'finalized', number = $2, issued_on = $3, due_on = $4, currency = $5, \
             markup = $6, tax_rate = $7, issuer_name = $8, issuer_address = $9, issuer_tax_id = $10, footer = $11, \
             customer_external_id = $12, bill_to_name = $13, bill_to_email = $14, bill_to_address = $15, \
             bill_to_tax_id = $16, cost = $17, subtotal = $18, discount_total = $19, tax = $20, total = $21, \
             finalized_at = $22, finalized_by = $23 WHERE id = $1",
        )
        .bind::<SqlUuid, _>(id)
        .bind::<Text, _>(&number)
        .bind::<Date, _>(issued_on)
        .bind::<Date, _>(due_on)
        .bind::<Text, _>(t.currency.as_str())
        .bind::<Numeric, _>(t.markup)
        .bind::<Numeric, _>(t.tax_rate)
        .bind::<Text, _>(&t.issuer_name)
        .bind::<Nullable<Text>, _>(t.issuer_address.as_deref())
        .bind::<Nullable<Text>, _>(t.issuer_tax_id.as_deref())
        .bind::<Nullable<Text>, _>(t.footer.as_deref())
        .bind::<Text, _>(&t.bill_to.external_id)
        .bind::<Nullable<Text>, _>(t.bill_to.billing_name.as_deref())
        .bind::<Nullable<Text>, _>(t.bill_to.email.as_deref())
        .bind::<Nullable<Text>, _>(t.bill_to.address.as_deref())
        .bind::<Nullable<Text>, _>(t.bill_to.tax_id.as_deref())
        .bind::<Numeric, _>(doc.totals.cost)
        .bind::<Numeric, _>(doc.totals.subtotal)
        .bind::<Numeric, _>(doc.totals.discount_total)
        .bind::<Numeric, _>(doc.totals.tax)
        .bind::<Numeric, _>(doc.totals.total)
        .bind::<Timestamptz, _>(now)
        .bind::<SqlUuid, _>(access.user_id())
        .execute(conn)
        .await?;
        for (position, line) in doc.lines.iter().enumerate() {
            insert_line(conn, id, position, line).await?;
        }
        Ok::<_, AppError>(())
    })
    .await?;
    find(conn, org_id, id, false).await
}

async fn insert_line(conn: &mut DbConn, invoice_id: Uuid, position: usize, line: &Line) -> AppResult<()> {
    let usage = &line.priced.usage;
    let prices = line.unit_prices.as_ref();
    diesel::sql_query(
        "INSERT INTO invoice_lines (invoice_id, position, kind, adjusts_invoice_id, provider, model, price_id, \
         price_valid_from, input_per_mtok, output_per_mtok, cached_input_per_mtok, per_request, requests, \
         prompt_tokens, completion_tokens, cached_tokens, cost_before_discount, discount_savings, cost, \
         amount_before_discount, discount, amount) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)",
    )
    .bind::<SqlUuid, _>(invoice_id)
    .bind::<Int4, _>(i32::try_from(position).map_err(AppError::internal)?)
    .bind::<Text, _>(usage.kind.as_str())
    .bind::<Nullable<SqlUuid>, _>(usage.adjusts_invoice_id)
    .bind::<Text, _>(&usage.key.provider)
    .bind::<Text, _>(&usage.key.model)
    .bind::<Nullable<SqlUuid>, _>(usage.key.price_id)
    .bind::<Nullable<Timestamptz>, _>(prices.map(|p| p.valid_from))
    .bind::<Nullable<Numeric>, _>(prices.map(|p| p.input_per_mtok))
    .bind::<Nullable<Numeric>, _>(prices.map(|p| p.output_per_mtok))
    .bind::<Nullable<Numeric>, _>(prices.map(|p| p.cached_input_per_mtok))
    .bind::<Nullable<Numeric>, _>(prices.map(|p| p.per_request))
    .bind::<BigInt, _>(usage.sums.requests)
    .bind::<BigInt, _>(usage.sums.prompt_tokens)
    .bind::<BigInt, _>(usage.sums.completion_tokens)
    .bind::<BigInt, _>(usage.sums.cached_tokens)
    .bind::<Numeric, _>(usage.sums.cost_before_discount)
    .bind::<Numeric, _>(usage.sums.discount_savings)
    .bind::<Numeric, _>(usage.sums.cost)
    .bind::<Numeric, _>(line.priced.amount_before_discount)
    .bind::<Numeric, _>(line.priced.discount)
    .bind::<Numeric, _>(line.priced.amount)
    .execute(conn)
    .await?;
    Ok(())
}

/// Requests and exact cost.
#[derive(Debug, Clone, Default, PartialEq, Eq, QueryableByName)]
pub struct CountAndCost {
    #[diesel(sql_type = BigInt)]
    pub requests: i64,
    #[diesel(sql_type = Numeric)]
    pub cost: Decimal,
}

/// What the raw events of a customer and period add up to, per line key.
pub async fn event_usage(
    conn: &mut DbConn,
    org_id: Uuid,
    customer_id: Uuid,
    period: Period,
) -> AppResult<Vec<(LineKey, UsageSums)>> {
    let start = period.start.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let end = period
        .end
        .checked_add_days(Days::new(1))
        .unwrap_or(period.end)
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc();
    let rows: Vec<KeyedSums> = diesel::sql_query(
        "SELECT NULL::uuid AS invoice_id, provider, canonical_model AS model, price_id, count(*)::int8 AS requests, \
                sum(prompt_tokens)::int8 AS prompt_tokens, sum(completion_tokens)::int8 AS completion_tokens, \
                sum(cached_tokens)::int8 AS cached_tokens, sum(cost_before_discount) AS cost_before_discount, \
                sum(discount_savings) AS discount_savings, sum(cost) AS cost \
           FROM usage_events WHERE org_id = $1 AND customer_id = $2 AND occurred_at >= $3 AND occurred_at < $4 \
          GROUP BY provider, canonical_model, price_id",
    )
    .bind::<SqlUuid, _>(org_id)
    .bind::<SqlUuid, _>(customer_id)
    .bind::<Timestamptz, _>(start)
    .bind::<Timestamptz, _>(end)
    .load(conn)
    .await?;
    Ok(by_key(rows))
}

/// What later invoices billed as late usage of invoice `id`: (their numbers, sums).
pub async fn carried_late_usage(conn: &mut DbConn, id: Uuid) -> AppResult<(Vec<String>, CountAndCost)> {
    #[derive(QueryableByName)]
    struct Carried {
        #[diesel(sql_type = Array<Text>)]
        numbers: Vec<String>,
        #[diesel(embed)]
        sums: CountAndCost,
    }
    let carried: Carried = diesel::sql_query(
        "SELECT coalesce(array_agg(DISTINCT i.number) FILTER (WHERE i.number IS NOT NULL), '{}') AS numbers, \
                coalesce(sum(il.requests), 0)::int8 AS requests, coalesce(sum(il.cost), 0) AS cost \
           FROM invoice_lines il JOIN invoices i ON i.id = il.invoice_id AND i.status = 'finalized' \
          WHERE il.adjusts_invoice_id = $1",
    )
    .bind::<SqlUuid, _>(id)
    .get_result(conn)
    .await?;
    Ok((carried.numbers, carried.sums))
}

/// An invoice beside what its customer's usage of the period adds up to.
#[derive(Debug, Clone)]
pub struct Reconciled {
    pub invoice_id: Uuid,
    pub number: Option<String>,
    pub status: InvoiceStatus,
    pub period: Period,
    pub invoiced: CountAndCost,
    pub carried_later: CountAndCost,
    pub carried_on: Vec<String>,
    pub ledger: CountAndCost,
    pub events: Option<CountAndCost>,
    pub unbilled: CountAndCost,
    pub events_subtotal: Option<Decimal>,
    pub invoiced_subtotal: Decimal,
    pub reconciled: bool,
}

fn count_and_cost<'a>(sums: impl IntoIterator<Item = &'a UsageSums>) -> CountAndCost {
    sums.into_iter().fold(CountAndCost::default(), |acc, s| CountAndCost {
        requests: acc.requests + s.requests,
        cost: acc.cost + s.cost,
    })
}

/// Reconciles one invoice of the caller's organization with the customer's raw events
/// and cost ledger for its period (see `Reconciled`).
pub async fn reconcile(
    conn: &mut DbConn,
    access: &OrgAccess,
    header: Header,
    now: DateTime<Utc>,
    earliest: NaiveDate,
) -> AppResult<Reconciled> {
    let org = super::orgs::get(conn, access).await?;
    let events_kept_from = crate::domain::usage::retention_start(now, org.retention_days);
    let doc = document(conn, access, header, earliest).await?;
    let period = doc.header.period();
    let own: Vec<&Line> = doc
        .lines
        .iter()
        .filter(|l| l.priced.usage.kind == LineKind::Usage)
        .collect();
    let invoiced = count_and_cost(own.iter().map(|l| &l.priced.usage.sums));
    let invoiced_subtotal = own.iter().map(|l| l.priced.amount).sum();
    let (carried_on, carried_later) = if doc.status == InvoiceStatus::Draft {
        (Vec::new(), CountAndCost::default())
    } else {
        carried_late_usage(conn, doc.header.id).await?
    };
    let ledger_rows = ledger_usage(conn, doc.header.org_id, doc.header.customer_id, period).await?;
    let ledger = count_and_cost(ledger_rows.iter().map(|(_, s)| s));
    let events_kept = period
        .start
        .and_hms_opt(0, 0, 0)
        .is_some_and(|t| t.and_utc() >= events_kept_from);
    let (events, events_subtotal) = if events_kept {
        let rows = event_usage(conn, doc.header.org_id, doc.header.customer_id, period).await?;
        let lines = rows
            .iter()
            .map(|(key, sums)| UsageLine {
                kind: LineKind::Usage,
                adjusts_invoice_id: None,
                key: key.clone(),
                sums: sums.clone(),
            })
            .collect();
        let (_, totals) = invoice::price_lines(lines, doc.terms.markup, doc.terms.tax_rate, doc.terms.currency);
        (Some(count_and_cost(rows.iter().map(|(_, s)| s))), Some(totals.subtotal))
    } else {
        (None, None)
    };
    let unbilled = CountAndCost {
        requests: ledger.requests - invoiced.requests - carried_later.requests,
        cost: ledger.cost - invoiced.cost - carried_later.cost,
    };
    let nothing_outside = unbilled == CountAndCost::default() && carried_later == CountAndCost::default();
    // Unbilled usage is not a mismatch (the next invoice bills it); billing more than
    // the usage is.
    let reconciled = unbilled.requests >= 0
        && !unbilled.cost.is_sign_negative()
        && events
            .as_ref()
            .is_none_or(|e| e.requests == ledger.requests && e.cost == ledger.cost)
        && (!nothing_outside || events_subtotal.is_none_or(|s| s == invoiced_subtotal));
    Ok(Reconciled {
        invoice_id: doc.header.id,
        number: doc.header.number.clone(),
        status: doc.status,
        period,
        invoiced,
        carried_later,
        carried_on,
        ledger,
        events,
        unbilled,
        events_subtotal,
        invoiced_subtotal,
        reconciled,
    })
}
