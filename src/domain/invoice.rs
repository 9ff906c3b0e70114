//! Invoices' rules: the billing period, the lifecycle, the number, and how usage
//! becomes money on a line, with the one rounding rule to the currency's minor unit.
//!
//! Amounts: a line's `cost` is exact (the sum of its events' costs, ten decimal
//! places). The customer is charged `cost × (1 + markup)`, rounded to the minor unit
//! (cents) half away from zero, once per line. The subtotal is the sum of the rounded
//! lines, the tax is the subtotal times the tax rate rounded the same way, and the
//! total is subtotal plus tax. So the total is recomputable, to the cent, from the
//! spend logs of the customer and period.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{billing::Currency, money::round_money, Invalid};

/// The longest billing period, in days (a leap year).
pub const MAX_PERIOD_DAYS: i64 = 366;
/// The longest memo printed on an invoice, in characters.
pub const MAX_MEMO_LEN: usize = 2000;
/// The longest reason given for voiding an invoice, in characters.
pub const MAX_VOID_REASON_LEN: usize = 500;

impl Currency {
    /// Decimal places of the currency's minor unit (cents for USD).
    pub fn minor_unit_places(self) -> u32 {
        match self {
            Currency::Usd => 2,
        }
    }
}

/// The one rounding rule for what a customer is charged: to the currency's minor
/// unit, halves away from zero (0.125 → 0.13).
pub fn to_minor_unit(amount: Decimal, currency: Currency) -> Decimal {
    let mut rounded =
        amount.round_dp_with_strategy(currency.minor_unit_places(), RoundingStrategy::MidpointAwayFromZero);
    // Always written with every minor digit: 2.50, 0.00.
    rounded.rescale(currency.minor_unit_places());
    rounded
}

/// Where an invoice is in its life.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, strum::EnumString, strum::IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum InvoiceStatus {
    /// Computed from the ledger each time it is read; may be edited or deleted.
    Draft,
    /// Numbered and immutable.
    Finalized,
    /// Cancelled after it was finalized; keeps its number and lines.
    Void,
}

impl InvoiceStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Why an invoice in this status cannot be changed as a draft (edited,
    /// finalized or deleted), or `None` when it can.
    pub fn not_a_draft(self) -> Option<&'static str> {
        match self {
            InvoiceStatus::Draft => None,
            InvoiceStatus::Finalized => Some("the invoice is finalized: it can no longer change (void it instead)"),
            InvoiceStatus::Void => Some("the invoice is void"),
        }
    }

    /// Why an invoice in this status cannot be voided, or `None` when it can.
    pub fn not_voidable(self) -> Option<&'static str> {
        match self {
            InvoiceStatus::Finalized => None,
            InvoiceStatus::Draft => Some("a draft is not voided: delete it"),
            InvoiceStatus::Void => Some("the invoice is already void"),
        }
    }
}

/// What a line bills.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    ToSchema,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum LineKind {
    /// Usage in the invoice's own period.
    Usage,
    /// Usage of an earlier, finalized invoice's period that reached the ledger after
    /// that invoice was finalized.
    LateUsage,
}

impl LineKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A billing period: UTC days, both inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

/// Which bound of a period broke a rule, and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodError {
    pub field: &'static str,
    pub invalid: Invalid,
}

impl Period {
    /// A period that ends on or after its start, spans at most [`MAX_PERIOD_DAYS`],
    /// does not start after `today`, and starts no earlier than `earliest` (the
    /// first day the billing ledger still holds).
    pub fn new(start: NaiveDate, end: NaiveDate, today: NaiveDate, earliest: NaiveDate) -> Result<Self, PeriodError> {
        let error = |field, message: String| PeriodError {
            field,
            invalid: Invalid::new(message),
        };
        if end < start {
            return Err(error("periodEnd", "must not be before periodStart".into()));
        }
        if (end - start).num_days() + 1 > MAX_PERIOD_DAYS {
            return Err(error(
                "periodEnd",
                format!("a period spans at most {MAX_PERIOD_DAYS} days"),
            ));
        }
        if start > today {
            return Err(error("periodStart", format!("must not be after today ({today})")));
        }
        if start < earliest {
            return Err(error(
                "periodStart",
                format!("the billing data is kept from {earliest} on; a period must not start before it"),
            ));
        }
        Ok(Self { start, end })
    }

    pub fn overlaps(&self, other: &Period) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

/// The number of the `sequence`-th invoice an organization finalized in `year`.
pub fn number(year: i32, sequence: i64) -> String {
    format!("INV-{year}-{sequence:06}")
}

/// The year whose sequence an invoice finalized at `at` takes its number from.
pub fn sequence_year(at: DateTime<Utc>) -> i32 {
    at.year()
}

/// The unit prices of the price version that applied (USD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitPrices {
    pub valid_from: DateTime<Utc>,
    pub input_per_mtok: Decimal,
    pub output_per_mtok: Decimal,
    pub cached_input_per_mtok: Decimal,
    pub per_request: Decimal,
}

impl UnitPrices {
    /// The prices as the customer is charged them: times `1 + markup`.
    pub fn marked_up(&self, markup: Decimal) -> UnitPrices {
        let factor = markup_factor(markup);
        UnitPrices {
            valid_from: self.valid_from,
            input_per_mtok: round_money(self.input_per_mtok * factor).normalize(),
            output_per_mtok: round_money(self.output_per_mtok * factor).normalize(),
            cached_input_per_mtok: round_money(self.cached_input_per_mtok * factor).normalize(),
            per_request: round_money(self.per_request * factor).normalize(),
        }
    }
}

/// What a line bills, keyed the way the ledger is: provider, model, price version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LineKey {
    pub provider: String,
    pub model: String,
    pub price_id: Option<Uuid>,
}

/// Usage summed over a line's key: counts and exact costs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageSums {
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cost_before_discount: Decimal,
    pub discount_savings: Decimal,
    pub cost: Decimal,
}

impl UsageSums {
    pub fn plus(&self, other: &UsageSums) -> UsageSums {
        UsageSums {
            requests: self.requests + other.requests,
            prompt_tokens: self.prompt_tokens + other.prompt_tokens,
            completion_tokens: self.completion_tokens + other.completion_tokens,
            cached_tokens: self.cached_tokens + other.cached_tokens,
            cost_before_discount: self.cost_before_discount + other.cost_before_discount,
            discount_savings: self.discount_savings + other.discount_savings,
            cost: self.cost + other.cost,
        }
    }

    fn minus(&self, other: &UsageSums) -> UsageSums {
        UsageSums {
            requests: self.requests - other.requests,
            prompt_tokens: self.prompt_tokens - other.prompt_tokens,
            completion_tokens: self.completion_tokens - other.completion_tokens,
            cached_tokens: self.cached_tokens - other.cached_tokens,
            cost_before_discount: self.cost_before_discount - other.cost_before_discount,
            discount_savings: self.discount_savings - other.discount_savings,
            cost: self.cost - other.cost,
        }
    }

    /// Nothing at all (decimals compare by value: 0.00 is zero).
    fn is_zero(&self) -> bool {
        self.requests == 0
            && self.prompt_tokens == 0
            && self.completion_tokens == 0
            && self.cached_tokens == 0
            && self.cost_before_discount.is_zero()
            && self.discount_savings.is_zero()
            && self.cost.is_zero()
    }
}

/// A line before it is priced: what it bills and the usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageLine {
    pub kind: LineKind,
    /// For a late-usage line: the finalized invoice whose period the usage is from.
    pub adjusts_invoice_id: Option<Uuid>,
    pub key: LineKey,
    pub sums: UsageSums,
}

/// A line as charged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedLine {
    pub usage: UsageLine,
    /// Amount before discount, discount and amount, after markup, in the minor unit;
    /// `amount_before_discount − discount = amount` exactly.
    pub amount_before_discount: Decimal,
    pub discount: Decimal,
    pub amount: Decimal,
}

/// An invoice's totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// The exact cost of the lines, before markup.
    pub cost: Decimal,
    pub subtotal: Decimal,
    pub discount_total: Decimal,
    pub tax: Decimal,
    pub total: Decimal,
}

fn markup_factor(markup: Decimal) -> Decimal {
    Decimal::ONE + markup / Decimal::ONE_HUNDRED
}

/// Prices the lines with `markup` and `tax_rate` (percentages) in `currency`; see the
/// module's comment for the rule.
pub fn price_lines(
    lines: Vec<UsageLine>,
    markup: Decimal,
    tax_rate: Decimal,
    currency: Currency,
) -> (Vec<PricedLine>, Totals) {
    let factor = markup_factor(markup);
    let mut totals = Totals::default();
    let priced: Vec<PricedLine> = lines
        .into_iter()
        .map(|usage| {
            let amount = to_minor_unit(usage.sums.cost * factor, currency);
            let discount = to_minor_unit(usage.sums.discount_savings * factor, currency);
            totals.cost += usage.sums.cost;
            totals.subtotal += amount;
            totals.discount_total += discount;
            PricedLine {
                usage,
                amount_before_discount: amount + discount,
                discount,
                amount,
            }
        })
        .collect();
    totals.subtotal = to_minor_unit(totals.subtotal, currency);
    totals.discount_total = to_minor_unit(totals.discount_total, currency);
    totals.tax = to_minor_unit(totals.subtotal * tax_rate / Decimal::ONE_HUNDRED, currency);
    totals.total = totals.subtotal + totals.tax;
    (priced, totals)
}

/// The late-usage lines for finalized invoices: per invoice and key, what the ledger
/// holds for the invoice's period now minus what was billed for it (on the invoice
/// itself and on later invoices' late-usage lines). Keys with nothing left are
/// dropped. Ordered by the `order` given to invoices (their numbers), then key.
pub fn late_usage(
    ledger: &[(Uuid, LineKey, UsageSums)],
    billed: &[(Uuid, LineKey, UsageSums)],
    order: &BTreeMap<Uuid, String>,
) -> Vec<UsageLine> {
    let mut remaining: BTreeMap<(String, Uuid, LineKey), UsageSums> = BTreeMap::new();
    let rank = |id: &Uuid| order.get(id).cloned().unwrap_or_default();
    for (invoice, key, sums) in ledger {
        let entry = remaining.entry((rank(invoice), *invoice, key.clone())).or_default();
        *entry = entry.plus(sums);
    }
    for (invoice, key, sums) in billed {
        let entry = remaining.entry((rank(invoice), *invoice, key.clone())).or_default();
        *entry = entry.minus(sums);
    }
    remaining
        .into_iter()
        .filter(|(_, sums)| !sums.is_zero())
        .map(|((_, invoice, key), sums)| UsageLine {
            kind: LineKind::LateUsage,
            adjusts_invoice_id: Some(invoice),
            key,
            sums,
        })
        .collect()
}

/// Checks a free-text memo or void reason: trimmed, not blank, at most `max`
/// characters, no control characters but line breaks.
pub fn note(raw: &str, max: usize) -> Result<String, Invalid> {
    super::billing::multiline(raw, max)
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn key(model: &str) -> LineKey {
        LineKey {
            provider: "openai".into(),
            model: model.into(),
            price_id: None,
        }
    }

    fn sums(requests: i64, cost: Decimal, discount: Decimal) -> UsageSums {
        UsageSums {
            requests,
            prompt_tokens: requests * 100,
            completion_tokens: requests * 10,
            cached_tokens: 0,
            cost_before_discount: cost + discount,
            discount_savings: discount,
            cost,
        }
    }

    fn usage(model: &str, s: UsageSums) -> UsageLine {
        UsageLine {
            kind: LineKind::Usage,
            adjusts_invoice_id: None,
            key: key(model),
            sums: s,
        }
    }

    #[test]
    fn cents_round_half_away_from_zero() {
        assert_eq!(to_minor_unit(dec!(0.125), Currency::Usd), dec!(0.13));
        assert_eq!(to_minor_unit(dec!(0.1249999999), Currency::Usd), dec!(0.12));
        assert_eq!(to_minor_unit(dec!(0.005), Currency::Usd), dec!(0.01));
        assert_eq!(to_minor_unit(dec!(0.0049999999), Currency::Usd), dec!(0.00));
    }

    #[test]
    fn lines_are_marked_up_and_rounded_one_by_one_and_tax_is_on_the_rounded_subtotal() {
        // 1.234 × 1.2 = 1.4808 → 1.48; discount 0.1 × 1.2 = 0.12.
        // 0.0625 × 1.2 = 0.075 → 0.08 (half away from zero).
        let (lines, totals) = price_lines(
            vec![
                usage("gpt-4o", sums(3, dec!(1.234), dec!(0.1))),
                usage("gpt-4o-mini", sums(1, dec!(0.0625), dec!(0))),
            ],
            dec!(20),
            dec!(8.25),
            Currency::Usd,
        );
        assert_eq!(
            lines
                .iter()
                .map(|l| (l.amount_before_discount, l.discount, l.amount))
                .collect::<Vec<_>>(),
            vec![(dec!(1.60), dec!(0.12), dec!(1.48)), (dec!(0.08), dec!(0), dec!(0.08))]
        );
        // Subtotal 1.56; tax 1.56 × 8.25 % = 0.1287 → 0.13; total 1.69.
        assert_eq!(
            totals,
            Totals {
                cost: dec!(1.2965),
                subtotal: dec!(1.56),
                discount_total: dec!(0.12),
                tax: dec!(0.13),
                total: dec!(1.69),
            }
        );
    }

    #[test]
    fn no_lines_is_a_zero_invoice() {
        let (lines, totals) = price_lines(vec![], dec!(10), dec!(10), Currency::Usd);
        assert!(lines.is_empty());
        assert_eq!(totals.total.to_string(), "0.00", "every minor digit written");
    }

    #[test]
    fn late_usage_is_what_the_ledger_holds_beyond_what_was_billed() {
        let first = Uuid::from_u128(1);
        let second = Uuid::from_u128(2);
        let order = BTreeMap::from([
            (first, "INV-2026-000001".to_owned()),
            (second, "INV-2026-000002".to_owned()),
        ]);
        let ledger = vec![
            (first, key("a"), sums(5, dec!(0.5), dec!(0))),
            (first, key("b"), sums(2, dec!(0.2), dec!(0))),
            (second, key("a"), sums(1, dec!(0.1), dec!(0))),
        ];
        let billed = vec![
            (first, key("a"), sums(3, dec!(0.3), dec!(0))),
            (first, key("a"), sums(1, dec!(0.1), dec!(0))),
            (first, key("b"), sums(2, dec!(0.2), dec!(0))),
            (second, key("a"), sums(1, dec!(0.1), dec!(0))),
        ];
        let lines = late_usage(&ledger, &billed, &order);
        assert_eq!(
            lines,
            vec![UsageLine {
                kind: LineKind::LateUsage,
                adjusts_invoice_id: Some(first),
                key: key("a"),
                sums: sums(1, dec!(0.1), dec!(0)),
            }]
        );
    }

    #[test]
    fn periods_are_ordered_bounded_and_inside_the_billing_data() {
        let today = day("2026-12-04");
        let earliest = day("2025-10-30");
        let ok = Period::new(day("2026-11-01"), day("2026-11-30"), today, earliest).unwrap();
        assert_eq!((ok.start, ok.end), (day("2026-11-01"), day("2026-11-30")));
        // Ending in the future is a period still running (a draft follows it).
        assert!(Period::new(day("2026-12-01"), day("2026-12-31"), today, earliest).is_ok());
        let field = |r: Result<Period, PeriodError>| r.unwrap_err().field;
        assert_eq!(
            field(Period::new(day("2026-11-30"), day("2026-11-01"), today, earliest)),
            "periodEnd"
        );
        assert_eq!(
            field(Period::new(day("2025-11-01"), day("2026-11-02"), today, earliest)),
            "periodEnd"
        );
        assert!(Period::new(day("2025-11-01"), day("2026-11-01"), today, earliest).is_ok());
        assert_eq!(
            field(Period::new(day("2026-12-05"), day("2026-12-31"), today, earliest)),
            "periodStart"
        );
        assert_eq!(
            field(Period::new(day("2025-10-29"), day("2025-11-30"), today, earliest)),
            "periodStart"
        );
        assert!(ok.overlaps(&Period {
            start: day("2026-11-30"),
            end: day("2026-12-31")
        }));
        assert!(!ok.overlaps(&Period {
            start: day("2026-12-01"),
            end: day("2026-12-31")
        }));
    }

    #[test]
    fn numbers_carry_the_year_and_six_digits() {
        assert_eq!(number(2026, 123), "INV-2026-000123");
        assert_eq!(number(2027, 1_234_567), "INV-2027-1234567");
    }

    #[test]
    fn only_drafts_change_and_only_finalized_invoices_are_voided() {
        assert!(InvoiceStatus::Draft.not_a_draft().is_none());
        assert!(InvoiceStatus::Finalized.not_a_draft().is_some());
        assert!(InvoiceStatus::Void.not_a_draft().is_some());
        assert!(InvoiceStatus::Finalized.not_voidable().is_none());
        assert!(InvoiceStatus::Draft.not_voidable().is_some());
        assert!(InvoiceStatus::Void.not_voidable().is_some());
    }

    #[test]
    fn marked_up_unit_prices_keep_ten_places() {
        let p = UnitPrices {
            valid_from: DateTime::UNIX_EPOCH,
            input_per_mtok: dec!(2.5),
            output_per_mtok: dec!(10),
            cached_input_per_mtok: dec!(1.25),
            per_request: dec!(0.0000000003),
        };
        let m = p.marked_up(dec!(20));
        assert_eq!(
            (
                m.input_per_mtok,
                m.output_per_mtok,
                m.cached_input_per_mtok,
                m.per_request
            ),
            (dec!(3), dec!(12), dec!(1.5), dec!(0.0000000004))
        );
    }
}
