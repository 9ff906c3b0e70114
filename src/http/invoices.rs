//! Invoices for an organization's customers: drafts made from the per-customer cost
//! ledger, finalized with a gapless number, voided; exported as JSON, CSV and a
//! printable HTML document, emailed to the customer, and reconciled with the events.

use actix_web::{delete, get, http::header, patch, post, web, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    extract::{AuthUser, JsonBody},
    paging,
    paths::OrgPath,
    state::AppState,
    validate::Fields,
};
use crate::{
    domain::{
        activity::iso_date,
        billing::Currency,
        invoice::{self, InvoiceStatus, LineKind, Period},
        role::Access,
        Invalid,
    },
    error::{AppError, AppResult, ErrorCode, Problem},
    render,
    store::{
        self,
        access::OrgAccess,
        invoices::{Document, Header, ListFilter},
    },
};

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
pub struct InvoicePath {
    pub org_id: Uuid,
    pub invoice_id: Uuid,
}

/// A party on an invoice: who issues it, or who it is billed to.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceParty {
    name: String,
    address: Option<String>,
    tax_id: Option<String>,
    /// The customer's billing email (only on `billTo`).
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
}

/// The unit prices a line was charged at, after markup (USD).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnitPricesView {
    /// When the price version took effect.
    valid_from: DateTime<Utc>,
    #[schema(value_type = String)]
    input_per_mtok: Decimal,
    #[schema(value_type = String)]
    output_per_mtok: Decimal,
    #[schema(value_type = String)]
    cached_input_per_mtok: Decimal,
    #[schema(value_type = String)]
    per_request: Decimal,
}

/// The finalized invoice a late-usage line bills for.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdjustedInvoiceView {
    invoice_id: Uuid,
    number: String,
    period_start: NaiveDate,
    period_end: NaiveDate,
}

/// One line: a provider's model at one price version.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceLineView {
    kind: LineKind,
    /// What the line is, as printed.
    description: String,
    provider: String,
    model: String,
    /// The price version that applied; `null` for calls without a price.
    price_id: Option<Uuid>,
    unit_prices: Option<UnitPricesView>,
    /// For `late_usage`: the earlier invoice whose period the usage is from.
    adjusts: Option<AdjustedInvoiceView>,
    requests: i64,
    input_tokens: i64,
    output_tokens: i64,
    cached_tokens: i64,
    /// The exact cost of the usage (after discounts, before markup), 10 decimals.
    #[schema(value_type = String)]
    cost: Decimal,
    /// After markup, in the currency's minor unit: `amountBeforeDiscount − discount = amount`.
    #[schema(value_type = String)]
    amount_before_discount: Decimal,
    #[schema(value_type = String)]
    discount: Decimal,
    #[schema(value_type = String)]
    amount: Decimal,
}

/// An invoice with its lines and totals. A draft is computed from the ledger when it
/// is read (it follows usage as it arrives); a finalized or void invoice is shown as
/// it was issued.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "id": "0193a1b2-7c3d-7e4f-8a5b-6c7d8e9f0a1b",
    "status": "finalized",
    "number": "INV-2026-000001",
    "customerId": "0193a1b2-7c3d-7e4f-8a5b-6c7d8e9f0a1c",
    "customerExternalId": "customer-42",
    "periodStart": "2026-11-01",
    "periodEnd": "2026-11-30",
    "issuedOn": "2026-12-01",
    "dueOn": "2026-12-31",
    "currency": "USD",
    "markup": "20",
    "taxRate": "8.25",
    "issuer": {"name": "Acme AI Inc.", "address": "1 Main Street\nSpringfield", "taxId": "US12-3456789"},
    "billTo": {"name": "Globex Corporation", "address": null, "taxId": null, "email": "ap@globex.example"},
    "memo": null,
    "footer": "Thank you for your business.",
    "lines": [{
        "kind": "usage",
        "description": "openai gpt-4o",
        "provider": "openai",
        "model": "gpt-4o",
        "priceId": "0193a1b2-7c3d-7e4f-8a5b-6c7d8e9f0a1d",
        "unitPrices": {"validFrom": "2026-01-01T00:00:00Z", "inputPerMtok": "3", "outputPerMtok": "12",
                       "cachedInputPerMtok": "1.5", "perRequest": "0"},
        "adjusts": null,
        "requests": 1200,
        "inputTokens": 1500000,
        "outputTokens": 200000,
        "cachedTokens": 0,
        "cost": "5.7500000000",
        "amountBeforeDiscount": "6.90",
        "discount": "0.00",
        "amount": "6.90"
    }],
    "cost": "5.7500000000",
    "subtotal": "6.90",
    "discountTotal": "0.00",
    "tax": "0.57",
    "total": "7.47",
    "createdAt": "2026-12-01T09:00:00Z",
    "finalizedAt": "2026-12-01T09:05:00Z",
    "voidedAt": null,
    "voidReason": null
}))]
pub struct InvoiceView {
    id: Uuid,
    status: InvoiceStatus,
    /// `INV-<year>-<sequence>`, gapless per organization and year; `null` for a draft.
    number: Option<String>,
    customer_id: Uuid,
    /// The `user` the gateway reports for the customer.
    customer_external_id: String,
    /// First UTC day of the period.
    period_start: NaiveDate,
    /// Last UTC day of the period (inclusive).
    period_end: NaiveDate,
    /// `null` for a draft.
    issued_on: Option<NaiveDate>,
    /// `null` for a draft.
    due_on: Option<NaiveDate>,
    currency: Currency,
    /// Percent added on top of cost.
    #[schema(value_type = String)]
    markup: Decimal,
    /// Percent of the subtotal.
    #[schema(value_type = String)]
    tax_rate: Decimal,
    issuer: InvoiceParty,
    bill_to: InvoiceParty,
    memo: Option<String>,
    footer: Option<String>,
    lines: Vec<InvoiceLineView>,
    /// The exact cost of the lines, before markup (10 decimals).
    #[schema(value_type = String)]
    cost: Decimal,
    /// Sum of the line amounts.
    #[schema(value_type = String)]
    subtotal: Decimal,
    #[schema(value_type = String)]
    discount_total: Decimal,
    #[schema(value_type = String)]
    tax: Decimal,
    /// `subtotal + tax`.
    #[schema(value_type = String)]
    total: Decimal,
    created_at: DateTime<Utc>,
    finalized_at: Option<DateTime<Utc>>,
    voided_at: Option<DateTime<Utc>>,
    void_reason: Option<String>,
}

impl InvoiceView {
    pub fn new(doc: Document) -> Self {
        let Document {
            header,
            status,
            terms,
            lines,
            totals,
        } = doc;
        let markup = terms.markup;
        let lines = lines
            .into_iter()
            .map(|line| {
                let usage = line.priced.usage;
                InvoiceLineView {
                    kind: usage.kind,
                    description: render::invoice::describe(&usage.key, line.adjusts.as_ref()),
                    unit_prices: line.unit_prices.map(|p| {
                        let p = p.marked_up(markup);
                        UnitPricesView {
                            valid_from: p.valid_from,
                            input_per_mtok: p.input_per_mtok,
                            output_per_mtok: p.output_per_mtok,
                            cached_input_per_mtok: p.cached_input_per_mtok,
                            per_request: p.per_request,
                        }
                    }),
                    adjusts: line.adjusts.map(|a| AdjustedInvoiceView {
                        invoice_id: a.id,
                        number: a.number,
                        period_start: a.period_start,
                        period_end: a.period_end,
                    }),
                    provider: usage.key.provider,
                    model: usage.key.model,
                    price_id: usage.key.price_id,
                    requests: usage.sums.requests,
                    input_tokens: usage.sums.prompt_tokens,
                    output_tokens: usage.sums.completion_tokens,
                    cached_tokens: usage.sums.cached_tokens,
                    cost: usage.sums.cost,
                    amount_before_discount: line.priced.amount_before_discount,
                    discount: line.priced.discount,
                    amount: line.priced.amount,
                }
            })
            .collect();
        let bill_to = terms.bill_to;
        Self {
            id: header.id,
            status,
            number: header.number,
            customer_id: header.customer_id,
            customer_external_id: bill_to.external_id.clone(),
            period_start: header.period_start,
            period_end: header.period_end,
            issued_on: header.issued_on,
            due_on: header.due_on,
            currency: terms.currency,
            markup,
            tax_rate: terms.tax_rate,
            issuer: InvoiceParty {
                name: terms.issuer_name,
                address: terms.issuer_address,
                tax_id: terms.issuer_tax_id,
                email: None,
            },
            bill_to: InvoiceParty {
                name: bill_to.billing_name.unwrap_or(bill_to.external_id),
                address: bill_to.address,
                tax_id: bill_to.tax_id,
                email: bill_to.email,
            },
            memo: header.memo,
            footer: terms.footer,
            lines,
            cost: totals.cost,
            subtotal: totals.subtotal,
            discount_total: totals.discount_total,
            tax: totals.tax,
            total: totals.total,
            created_at: header.created_at,
            finalized_at: header.finalized_at,
            voided_at: header.voided_at,
            void_reason: header.void_reason,
        }
    }
}

/// A page of invoices, newest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvoicePage {
    data: Vec<InvoiceView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// The first day the billing ledger holds now.
fn ledger_start(state: &AppState, now: DateTime<Utc>) -> NaiveDate {
    store::invoices::ledger_start(now, state.config.purge.billing_horizon_days)
}

async fn view(
    state: &AppState,
    conn: &mut store::DbConn,
    access: &OrgAccess,
    header: Header,
) -> AppResult<InvoiceView> {
    let doc = store::invoices::document(conn, access, header, ledger_start(state, Utc::now())).await?;
    Ok(InvoiceView::new(doc))
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct InvoiceListQuery {
    status: Option<InvoiceStatus>,
    /// Only this customer's invoices.
    customer_id: Option<Uuid>,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// The organization's invoices, newest first.
///
/// Any member. Drafts show their totals as of now.
#[utoipa::path(
    tag = "invoices",
    security(("bearer" = [])),
    params(OrgPath, InvoiceListQuery),
    responses(
        (status = 200, description = "A page of invoices", body = InvoicePage),
        (status = 400, body = Problem),
        (status = 401, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[get("/orgs/{orgId}/invoices")]
pub async fn list_invoices(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
    query: web::Query<InvoiceListQuery>,
) -> AppResult<web::Json<InvoicePage>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Read).await?;
    let q = query.into_inner();
    let limit = paging::page_size(q.limit)?;
    let filter = ListFilter {
        status: q.status,
        customer_id: q.customer_id,
        before: paging::id_cursor(q.cursor.as_deref())?,
    };
    let mut headers = store::invoices::list(&mut conn, &access, &filter, limit + 1).await?;
    let more = headers.len() as i64 > limit;
    headers.truncate(usize::try_from(limit).unwrap_or(0));
    let next_cursor = more
        .then(|| headers.last().map(|h| h.id.simple().to_string()))
        .flatten();
    let mut data = Vec::with_capacity(headers.len());
    for header in headers {
        data.push(view(&state, &mut conn, &access, header).await?);
    }
    Ok(web::Json(InvoicePage { data, next_cursor }))
}

/// A billing period in a request body.
fn period(f: &mut Fields, start: &str, end: &str, now: DateTime<Utc>, earliest: NaiveDate) -> Option<Period> {
    let start = f.take("periodStart", iso_date(start));
    let end = f.take("periodEnd", iso_date(end));
    let (start, end) = (start?, end?);
    match Period::new(start, end, now.date_naive(), earliest) {
        Ok(period) => Some(period),
        Err(e) => {
            f.push(e.field, e.invalid.0);
            None
        }
    }
}

fn memo(f: &mut Fields, raw: Option<&str>) -> Option<Option<String>> {
    match raw {
        None => Some(None),
        Some(raw) => f.take("memo", invoice::note(raw, invoice::MAX_MEMO_LEN)).map(Some),
    }
}

/// A draft invoice for one customer and period.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "customerId": "0193a1b2-7c3d-7e4f-8a5b-6c7d8e9f0a1c",
    "periodStart": "2026-11-01",
    "periodEnd": "2026-11-30",
    "memo": "PO 4711"
}))]
pub struct CreateInvoice {
    /// The customer's id (`id` in the customer listing).
    customer_id: Uuid,
    /// First UTC day, `YYYY-MM-DD`; not after today, and not before the first day the
    /// billing data is kept for.
    #[schema(format = Date)]
    period_start: String,
    /// Last UTC day (inclusive), `YYYY-MM-DD`; at most 366 days after the start.
    #[schema(format = Date)]
    period_end: String,
    /// Printed on the invoice.
    #[serde(default)]
    #[schema(max_length = 2000)]
    memo: Option<String>,
}

/// Creates a draft invoice for one customer and period (owners and admins).
///
/// The draft's lines are computed from the customer's usage each time it is read, so
/// it follows usage as it arrives; it also bills, as `late_usage` lines, usage of the
/// customer's finalized invoices' periods that arrived after they were finalized.
/// 409 when a live (not void) invoice of the customer overlaps the period.
#[utoipa::path(
    tag = "invoices",
    security(("bearer" = [])),
    params(OrgPath),
    request_body = CreateInvoice,
    responses(
        (status = 201, description = "The draft", body = InvoiceView),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, description = "No such organization, or no such customer in it", body = Problem),
        (status = 409, description = "An invoice of the customer overlaps the period", body = Problem),
        (status = 422, body = Problem),
    )
)]
#[post("/orgs/{orgId}/invoices")]
pub async fn create_invoice(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
    body: JsonBody<CreateInvoice>,
) -> AppResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    let now = Utc::now();
    let mut f = Fields::default();
    let period = period(
        &mut f,
        &body.period_start,
        &body.period_end,
        now,
        ledger_start(&state, now),
    );
    let memo = memo(&mut f, body.memo.as_deref());
    let (Some(period), Some(memo)) = (period, memo) else {
        return Err(AppError::validation(f.into_errors()));
    };
    let header = store::invoices::create(&mut conn, &access, body.customer_id, period, memo.as_deref()).await?;
    let view = view(&state, &mut conn, &access, header).await?;
    Ok(HttpResponse::Created().json(view))
}

/// Drafts for every customer with usage in a period.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"periodStart": "2026-11-01", "periodEnd": "2026-11-30"}))]
pub struct GenerateInvoices {
    #[schema(format = Date)]
    period_start: String,
    #[schema(format = Date)]
    period_end: String,
}

/// A customer that got no draft: it already has an invoice overlapping the period.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkippedCustomer {
    customer_id: Uuid,
    /// The overlapping invoice.
    invoice_id: Uuid,
    status: InvoiceStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GeneratedInvoices {
    /// The drafts made, one per customer with usage in the period.
    created: Vec<InvoiceView>,
    skipped: Vec<SkippedCustomer>,
}

/// Creates a draft for every customer with usage in the period.
///
/// Owners and admins; customers that already have an invoice overlapping the period
/// are skipped and listed.
#[utoipa::path(
    tag = "invoices",
    security(("bearer" = [])),
    params(OrgPath),
    request_body = GenerateInvoices,
    responses(
        (status = 200, description = "The drafts made and the customers skipped", body = GeneratedInvoices),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 422, body = Problem),
    )
)]
// Not under `/invoices/`: there it would shadow an invoice id for the other methods
// (`PATCH …/invoices/generate` would be a bad id, not a 405).
#[post("/orgs/{orgId}/invoice-runs")]
pub async fn generate_invoices(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
    body: JsonBody<GenerateInvoices>,
) -> AppResult<web::Json<GeneratedInvoices>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    let now = Utc::now();
    let mut f = Fields::default();
    let Some(period) = period(
        &mut f,
        &body.period_start,
        &body.period_end,
        now,
        ledger_start(&state, now),
    ) else {
        return Err(AppError::validation(f.into_errors()));
    };
    let generated = store::invoices::create_for_all(&mut conn, &access, period).await?;
    let mut created = Vec::with_capacity(generated.created.len());
    for header in generated.created {
        created.push(view(&state, &mut conn, &access, header).await?);
    }
    let skipped = generated
        .skipped
        .into_iter()
        .map(|(customer_id, h)| {
            Ok(SkippedCustomer {
                customer_id,
                invoice_id: h.id,
                status: h.status()?,
            })
        })
        .collect::<AppResult<_>>()?;
    Ok(web::Json(GeneratedInvoices { created, skipped }))
}

/// One invoice (any member).
#[utoipa::path(
    tag = "invoices",
    security(("bearer" = [])),
    params(InvoicePath),
    responses(
        (status = 200, description = "The invoice", body = InvoiceView),
        (status = 401, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[get("/orgs/{orgId}/invoices/{invoiceId}")]
pub async fn get_invoice(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<InvoicePath>,
) -> AppResult<web::Json<InvoiceView>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Read).await?;
    let header = store::invoices::header(&mut conn, &access, path.invoice_id).await?;
    Ok(web::Json(view(&state, &mut conn, &access, header).await?))
}

/// Changes to a draft; a field left out keeps its value, `memo: null` clears it.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"periodStart": "2026-11-01", "periodEnd": "2026-11-15", "memo": "PO 4711"}))]
pub struct UpdateInvoice {
    /// With `periodEnd`: both or neither.
    #[serde(default)]
    #[schema(format = Date)]
    period_start: Option<String>,
    #[serde(default)]
    #[schema(format = Date)]
    period_end: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 2000)]
    memo: Option<Option<String>>,
}

/// A field that may be sent as `null`: `Some(None)` then, `None` when left out.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Edits a draft's period or memo.
///
/// Owners and admins; 409 for a finalized or void invoice, which never changes.
#[utoipa::path(
    tag = "invoices",
    security(("bearer" = [])),
    params(InvoicePath),
    request_body = UpdateInvoice,
    responses(
        (status = 200, description = "The draft as now", body = InvoiceView),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 409, description = "Not a draft, or the new period overlaps another invoice", body = Problem),
        (status = 422, body = Problem),
    )
)]
#[patch("/orgs/{orgId}/invoices/{invoiceId}")]
pub async fn update_invoice(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<InvoicePath>,
    body: JsonBody<UpdateInvoice>,
) -> AppResult<web::Json<InvoiceView>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    let now = Utc::now();
    let body = body.into_inner();
    let mut f = Fields::default();
    let period = match (&body.period_start, &body.period_end) {
        (None, None) => Some(None),
        (Some(start), Some(end)) => period(&mut f, start, end, now, ledger_start(&state, now)).map(Some),
        _ => {
            f.push("periodEnd", "periodStart and periodEnd are changed together");
            None
        }
    };
    let memo = match &body.memo {
        None => Some(None),
        Some(raw) => memo(&mut f, raw.as_deref()).map(Some),
    };
    let (Some(period), Some(memo)) = (period, memo) else {
        return Err(AppError::validation(f.into_errors()));
    };
    let change = store::invoices::DraftChange { period, memo };
    let header = store::invoices::update_draft(&mut conn, &access, path.invoice_id, &change).await?;
    Ok(web::Json(view(&state, &mut conn, &access, header).await?))
}

/// Deletes a draft (owners and admins); a finalized invoice is voided instead.
#[utoipa::path(
    tag = "invoices",
    security(("bearer" = [])),
    params(InvoicePath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 409, description = "Not a draft", body = Problem),
    )
)]
#[delete("/orgs/{orgId}/invoices/{invoiceId}")]
pub async fn delete_invoice(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<InvoicePath>,
) -> AppResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    store::invoices::delete_draft(&mut conn, &access, path.invoice_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Finalizes a draft: numbers it and freezes it.
///
/// Owners and admins. It is computed one last time, gets the
/// next number of the organization's gapless sequence for this year, and freezes its
/// lines, totals, issuer and customer details. Usage of its period that arrives
/// later is billed on the customer's next invoice as a `late_usage` line.
#[utoipa::path(
    tag = "invoices",
    security(("bearer" = [])),
    params(InvoicePath),
    responses(
        (status = 200, description = "The finalized invoice", body = InvoiceView),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 409, description = "Not a draft, or nothing to bill", body = Problem),
    )
)]
#[post("/orgs/{orgId}/invoices/{invoiceId}/finalize")]
pub async fn finalize_invoice(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<InvoicePath>,
) -> AppResult<web::Json<InvoiceView>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    let now = Utc::now();
    let header = store::invoices::finalize(&mut conn, &access, path.invoice_id, now, ledger_start(&state, now)).await?;
    Ok(web::Json(view(&state, &mut conn, &access, header).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"reason": "Issued to the wrong customer"}))]
pub struct VoidInvoice {
    #[serde(default)]
    #[schema(max_length = 500)]
    reason: Option<String>,
}

/// Voids a finalized invoice.
///
/// Owners and admins. It keeps its number and lines; its period may be invoiced again.
#[utoipa::path(
    tag = "invoices",
    security(("bearer" = [])),
    params(InvoicePath),
    request_body = VoidInvoice,
    responses(
        (status = 200, description = "The void invoice", body = InvoiceView),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 409, description = "A draft (delete it instead), or already void", body = Problem),
        (status = 422, body = Problem),
    )
)]
#[post("/orgs/{orgId}/invoices/{invoiceId}/void")]
pub async fn void_invoice(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<InvoicePath>,
    body: JsonBody<VoidInvoice>,
) -> AppResult<web::Json<InvoiceView>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    let reason = body
        .reason
        .as_deref()
        .map(|r| invoice::note(r, invoice::MAX_VOID_REASON_LEN))
        .transpose()
        .map_err(|e: Invalid| AppError::invalid_field("reason", e.0))?;
    let header = store::invoices::void(&mut conn, &access, path.invoice_id, reason.as_deref()).await?;
    Ok(web::Json(view(&state, &mut conn, &access, header).await?))
}

async fn document(state: &AppState, caller: &AuthUser, path: &InvoicePath) -> AppResult<Document> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Read).await?;
    let header = store::invoices::header(&mut conn, &access, path.invoice_id).await?;
    store::invoices::document(&mut conn, &access, header, ledger_start(state, Utc::now())).await
}

/// The invoice as CSV: a header row, then one row per line item (any member).
#[utoipa::path(
    tag = "invoices",
    security(("bearer" = [])),
    params(InvoicePath),
    responses(
        (status = 200, description = "One row per line item", content_type = "text/csv", body = String),
        (status = 401, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[get("/orgs/{orgId}/invoices/{invoiceId}/csv")]
pub async fn invoice_csv(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<InvoicePath>,
) -> AppResult<HttpResponse> {
    let doc = document(&state, &caller, &path).await?;
    let name = render::invoice::file_name(&doc, "csv");
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")))
        .body(render::invoice::csv(&doc)?))
}

/// The invoice as a printable HTML document.
///
/// Any member. Issuer and customer, number and dates, the line table and totals, with a print stylesheet. A browser's
/// "Print → Save as PDF" makes the PDF.
#[utoipa::path(
    tag = "invoices",
    security(("bearer" = [])),
    params(InvoicePath),
    responses(
        (status = 200, description = "The invoice document", content_type = "text/html", body = String),
        (status = 401, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[get("/orgs/{orgId}/invoices/{invoiceId}/html")]
pub async fn invoice_html(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<InvoicePath>,
) -> AppResult<HttpResponse> {
    let doc = document(&state, &caller, &path).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        // The document embeds nothing from elsewhere and runs no script.
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
        ))
        .body(render::invoice::html(&doc)?))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceSent {
    /// The queued email (see the organization's email outbox).
    email_id: Uuid,
    to: String,
}

/// Emails a finalized invoice to the customer's billing email.
///
/// Owners and admins; through the email outbox: the HTML document as the body, with a plain-text
/// version. 409 for a draft or a void invoice, 422 when the customer's billing
/// profile has no email.
#[utoipa::path(
    tag = "invoices",
    security(("bearer" = [])),
    params(InvoicePath),
    responses(
        (status = 202, description = "Queued for delivery", body = InvoiceSent),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 409, description = "Not finalized", body = Problem),
        (status = 422, description = "The customer has no billing email", body = Problem),
    )
)]
#[post("/orgs/{orgId}/invoices/{invoiceId}/send")]
pub async fn send_invoice(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<InvoicePath>,
) -> AppResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    let header = store::invoices::header(&mut conn, &access, path.invoice_id).await?;
    let doc = store::invoices::document(&mut conn, &access, header, ledger_start(&state, Utc::now())).await?;
    if doc.status != InvoiceStatus::Finalized {
        return Err(AppError::conflict("only a finalized invoice is sent"));
    }
    let to = doc
        .terms
        .bill_to
        .email
        .clone()
        .ok_or_else(|| AppError::invalid_field("email", "the customer's billing profile has no email address"))?;
    let email = render::invoice::email(&doc, &to)?;
    let queued = store::outbox::enqueue(&mut conn, &email).await?;
    let email_id = queued
        .id()
        .ok_or_else(|| AppError::new(ErrorCode::Internal, "the invoice email was not queued"))?;
    if queued.needs_delivery() {
        state.outbox.notify();
    }
    Ok(HttpResponse::Accepted().json(InvoiceSent { email_id, to }))
}

/// Requests and exact cost.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CountAndCostView {
    requests: i64,
    #[schema(value_type = String)]
    cost: Decimal,
}

/// An invoice beside what its customer's usage of the period adds up to.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reconciliation {
    invoice_id: Uuid,
    number: Option<String>,
    status: InvoiceStatus,
    period_start: NaiveDate,
    period_end: NaiveDate,
    /// The invoice's own usage lines (not its late-usage lines for earlier periods).
    invoiced: CountAndCostView,
    /// Usage of this period billed later, as late-usage lines of other finalized invoices.
    carried_later: CountAndCostView,
    carried_on: Vec<String>,
    /// The per-customer cost ledger for the period, now.
    ledger: CountAndCostView,
    /// The raw events of the customer and period, now; `null` once the retention has
    /// removed events of the period.
    events: Option<CountAndCostView>,
    /// `ledger − invoiced − carriedLater`: usage not billed yet (it will be on the
    /// customer's next invoice).
    unbilled: CountAndCostView,
    /// The invoice's usage subtotal recomputed from the raw events with the invoice's
    /// markup and rounding (`null` when the events are gone).
    #[schema(value_type = Option<String>)]
    events_subtotal: Option<Decimal>,
    /// The sum of the invoice's own usage line amounts.
    #[schema(value_type = String)]
    invoiced_subtotal: Decimal,
    /// The ledger equals the events, nothing was billed beyond the usage, and, when
    /// nothing was carried or left unbilled, the invoiced subtotal equals the one
    /// recomputed from the events.
    reconciled: bool,
}

/// Reconciles an invoice with the customer's events and cost ledger.
///
/// Any member: its totals beside the sums over the customer's raw events and the
/// cost ledger for the period.
#[utoipa::path(
    tag = "invoices",
    security(("bearer" = [])),
    params(InvoicePath),
    responses(
        (status = 200, description = "The invoice beside the events and the ledger", body = Reconciliation),
        (status = 401, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[get("/orgs/{orgId}/invoices/{invoiceId}/reconciliation")]
pub async fn reconcile_invoice(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<InvoicePath>,
) -> AppResult<web::Json<Reconciliation>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Read).await?;
    let header = store::invoices::header(&mut conn, &access, path.invoice_id).await?;
    let now = Utc::now();
    let r = store::invoices::reconcile(&mut conn, &access, header, now, ledger_start(&state, now)).await?;
    Ok(web::Json(Reconciliation::from(r)))
}

impl From<store::invoices::Reconciled> for Reconciliation {
    fn from(r: store::invoices::Reconciled) -> Self {
        let view = |c: store::invoices::CountAndCost| CountAndCostView {
            requests: c.requests,
            cost: c.cost,
        };
        Self {
            invoice_id: r.invoice_id,
            number: r.number,
            status: r.status,
            period_start: r.period.start,
            period_end: r.period.end,
            invoiced: view(r.invoiced),
            carried_later: view(r.carried_later),
            carried_on: r.carried_on,
            ledger: view(r.ledger),
            events: r.events.map(view),
            unbilled: view(r.unbilled),
            events_subtotal: r.events_subtotal,
            invoiced_subtotal: r.invoiced_subtotal,
            reconciled: r.reconciled,
        }
    }
}
