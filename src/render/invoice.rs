//! An invoice as a CSV table, a printable HTML document (`templates/invoice.html`)
//! and an email. Amounts are printed as the invoice holds them, never recomputed.

use askama::Template;
use rust_decimal::Decimal;

use crate::{
    domain::{
        billing::Currency,
        email::EmailAddress,
        invoice::{InvoiceStatus, LineKey, LineKind},
        outbox::{EmailKind, OutgoingEmail},
    },
    error::{AppError, AppResult},
    store::invoices::{Adjusted, Document},
};

/// What a line is, as printed: the provider and model, and for late usage the
/// invoice and period it belongs to.
pub fn describe(key: &LineKey, adjusts: Option<&Adjusted>) -> String {
    let base = format!("{} {}", key.provider, key.model);
    match adjusts {
        Some(a) => format!(
            "{base} (late usage for {}, {} to {})",
            a.number, a.period_start, a.period_end
        ),
        None => base,
    }
}

/// `INV-2026-000001.csv`, or `draft-<id>.csv` for a draft.
pub fn file_name(doc: &Document, ext: &str) -> String {
    match &doc.header.number {
        Some(number) => format!("{number}.{ext}"),
        None => format!("draft-{}.{ext}", doc.header.id.simple()),
    }
}

/// An amount with its currency, thousands separated: `$1,234.56`.
pub fn money(amount: Decimal, currency: Currency) -> String {
    let places = currency.minor_unit_places() as usize;
    let text = format!("{:.places$}", amount.abs());
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let grouped = group_thousands(whole);
    let sign = if amount.is_sign_negative() && !amount.is_zero() {
        "-"
    } else {
        ""
    };
    let symbol = match currency {
        Currency::Usd => "$",
    };
    if fraction.is_empty() {
        format!("{sign}{symbol}{grouped}")
    } else {
        format!("{sign}{symbol}{grouped}.{fraction}")
    }
}

/// ASCII digits with a comma every three from the right.
fn group_thousands(digits: &str) -> String {
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// A count with thousands separators: `1,234,567`.
pub fn count(n: i64) -> String {
    let grouped = group_thousands(&n.unsigned_abs().to_string());
    if n < 0 {
        format!("-{grouped}")
    } else {
        grouped
    }
}

const CSV_HEADER: [&str; 21] = [
    "invoice_number",
    "invoice_status",
    "customer",
    "period_start",
    "period_end",
    "line",
    "kind",
    "description",
    "provider",
    "model",
    "requests",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "input_per_mtok",
    "output_per_mtok",
    "cost",
    "amount_before_discount",
    "discount",
    "amount",
    "currency",
];

/// One row per line item, after a header row. Amounts are plain decimals.
pub fn csv(doc: &Document) -> AppResult<String> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(CSV_HEADER).map_err(AppError::internal)?;
    let number = doc.header.number.clone().unwrap_or_default();
    for (i, line) in doc.lines.iter().enumerate() {
        let usage = &line.priced.usage;
        let prices = line.unit_prices.as_ref().map(|p| p.marked_up(doc.terms.markup));
        out.write_record([
            number.clone(),
            doc.status.as_str().to_owned(),
            doc.terms.bill_to.external_id.clone(),
            doc.header.period_start.to_string(),
            doc.header.period_end.to_string(),
            (i + 1).to_string(),
            usage.kind.as_str().to_owned(),
            describe(&usage.key, line.adjusts.as_ref()),
            usage.key.provider.clone(),
            usage.key.model.clone(),
            usage.sums.requests.to_string(),
            usage.sums.prompt_tokens.to_string(),
            usage.sums.completion_tokens.to_string(),
            usage.sums.cached_tokens.to_string(),
            prices
                .as_ref()
                .map(|p| p.input_per_mtok.to_string())
                .unwrap_or_default(),
            prices
                .as_ref()
                .map(|p| p.output_per_mtok.to_string())
                .unwrap_or_default(),
            usage.sums.cost.to_string(),
            line.priced.amount_before_discount.to_string(),
            line.priced.discount.to_string(),
            line.priced.amount.to_string(),
            doc.terms.currency.as_str().to_owned(),
        ])
        .map_err(AppError::internal)?;
    }
    let bytes = out
        .into_inner()
        .map_err(|e| AppError::internal(anyhow::anyhow!("{e}")))?;
    String::from_utf8(bytes).map_err(AppError::internal)
}

/// A line as the HTML document prints it.
struct HtmlLine {
    description: String,
    late: bool,
    unit_prices: String,
    requests: String,
    tokens: String,
    amount_before_discount: String,
    discount: String,
    amount: String,
}

#[derive(Template)]
#[template(path = "invoice.html")]
struct InvoiceHtml<'a> {
    title: String,
    status: &'a str,
    draft: bool,
    void: bool,
    void_reason: Option<&'a str>,
    issuer_name: &'a str,
    issuer_address: Option<&'a str>,
    issuer_tax_id: Option<&'a str>,
    bill_to_name: String,
    bill_to_address: Option<&'a str>,
    bill_to_tax_id: Option<&'a str>,
    bill_to_email: Option<&'a str>,
    customer_id: &'a str,
    number: String,
    issued_on: String,
    due_on: String,
    period: String,
    memo: Option<&'a str>,
    footer: Option<&'a str>,
    lines: Vec<HtmlLine>,
    subtotal: String,
    discount_total: String,
    tax_label: String,
    tax: String,
    total: String,
    currency: &'a str,
}

/// The printable document.
pub fn html(doc: &Document) -> AppResult<String> {
    let c = doc.terms.currency;
    let lines = doc
        .lines
        .iter()
        .map(|line| {
            let usage = &line.priced.usage;
            let unit_prices = line
                .unit_prices
                .as_ref()
                .map(|p| {
                    let p = p.marked_up(doc.terms.markup);
                    let mut parts = vec![
                        format!("in ${}/M", p.input_per_mtok),
                        format!("out ${}/M", p.output_per_mtok),
                    ];
                    if !p.cached_input_per_mtok.is_zero() {
                        parts.push(format!("cached ${}/M", p.cached_input_per_mtok));
                    }
                    if !p.per_request.is_zero() {
                        parts.push(format!("${}/request", p.per_request));
                    }
                    format!("{} (from {})", parts.join(", "), p.valid_from.date_naive())
                })
                .unwrap_or_else(|| "not priced".into());
            HtmlLine {
                description: describe(&usage.key, line.adjusts.as_ref()),
                late: usage.kind == LineKind::LateUsage,
                unit_prices,
                requests: count(usage.sums.requests),
                tokens: format!(
                    "{} in / {} out{}",
                    count(usage.sums.prompt_tokens),
                    count(usage.sums.completion_tokens),
                    if usage.sums.cached_tokens > 0 {
                        format!(" / {} cached", count(usage.sums.cached_tokens))
                    } else {
                        String::new()
                    }
                ),
                amount_before_discount: money(line.priced.amount_before_discount, c),
                discount: money(line.priced.discount, c),
                amount: money(line.priced.amount, c),
            }
        })
        .collect();
    let bill_to = &doc.terms.bill_to;
    let number = doc.header.number.clone().unwrap_or_else(|| "Draft".into());
    let page = InvoiceHtml {
        title: format!("Invoice {number}"),
        status: doc.status.as_str(),
        draft: doc.status == InvoiceStatus::Draft,
        void: doc.status == InvoiceStatus::Void,
        void_reason: doc.header.void_reason.as_deref(),
        issuer_name: &doc.terms.issuer_name,
        issuer_address: doc.terms.issuer_address.as_deref(),
        issuer_tax_id: doc.terms.issuer_tax_id.as_deref(),
        bill_to_name: bill_to
            .billing_name
            .clone()
            .unwrap_or_else(|| bill_to.external_id.clone()),
        bill_to_address: bill_to.address.as_deref(),
        bill_to_tax_id: bill_to.tax_id.as_deref(),
        bill_to_email: bill_to.email.as_deref(),
        customer_id: &bill_to.external_id,
        number,
        issued_on: doc
            .header
            .issued_on
            .map(|d| d.to_string())
            .unwrap_or_else(|| "not issued".into()),
        due_on: doc.header.due_on.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
        period: format!("{} to {}", doc.header.period_start, doc.header.period_end),
        memo: doc.header.memo.as_deref(),
        footer: doc.terms.footer.as_deref(),
        lines,
        subtotal: money(doc.totals.subtotal, c),
        discount_total: money(doc.totals.discount_total, c),
        tax_label: format!("Tax ({}%)", doc.terms.tax_rate),
        tax: money(doc.totals.tax, c),
        total: money(doc.totals.total, c),
        currency: c.as_str(),
    };
    page.render().map_err(AppError::internal)
}

/// The email that sends a finalized invoice to `to`: the HTML document as its HTML
/// body and a plain-text summary. Each send is its own email (a resend is a new one).
pub fn email(doc: &Document, to: &str) -> AppResult<OutgoingEmail> {
    let c = doc.terms.currency;
    let number = doc.header.number.clone().unwrap_or_default();
    let to = EmailAddress::parse(to).map_err(|e| AppError::internal(anyhow::anyhow!("stored billing email: {e}")))?;
    let subject = format!("Invoice {number} from {}", doc.terms.issuer_name);
    let mut text = format!(
        "Invoice {number}\nFrom: {}\nTo: {}\nPeriod: {} to {}\nIssued: {}\nDue: {}\n\n",
        doc.terms.issuer_name,
        doc.terms
            .bill_to
            .billing_name
            .as_deref()
            .unwrap_or(&doc.terms.bill_to.external_id),
        doc.header.period_start,
        doc.header.period_end,
        doc.header.issued_on.map(|d| d.to_string()).unwrap_or_default(),
        doc.header.due_on.map(|d| d.to_string()).unwrap_or_default(),
    );
    for line in &doc.lines {
        text.push_str(&format!(
            "{}: {} requests, {}\n",
            describe(&line.priced.usage.key, line.adjusts.as_ref()),
            count(line.priced.usage.sums.requests),
            money(line.priced.amount, c)
        ));
    }
    text.push_str(&format!(
        "\nSubtotal: {}\nTax ({}%): {}\nTotal: {} {}\n",
        money(doc.totals.subtotal, c),
        doc.terms.tax_rate,
        money(doc.totals.tax, c),
        money(doc.totals.total, c),
        c.as_str()
    ));
    if let Some(footer) = &doc.terms.footer {
        text.push_str(&format!("\n{footer}\n"));
    }
    OutgoingEmail::new(
        EmailKind::Invoice,
        Some(doc.header.org_id),
        format!("invoice:{}:{}", doc.header.id.simple(), uuid::Uuid::now_v7().simple()),
        vec![to],
        subject,
        text,
        html(doc)?,
    )
    .map_err(|e| AppError::internal(anyhow::anyhow!("invoice email: {e}")))
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;

    #[test]
    fn money_has_a_symbol_thousands_separators_and_cents() {
        assert_eq!(money(dec!(0), Currency::Usd), "$0.00");
        assert_eq!(money(dec!(1234567.8), Currency::Usd), "$1,234,567.80");
        assert_eq!(money(dec!(-12.5), Currency::Usd), "-$12.50");
        assert_eq!(money(dec!(999.99), Currency::Usd), "$999.99");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(999), "999");
        assert_eq!(count(-1_234_567), "-1,234,567");
    }
}
