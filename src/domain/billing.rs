//! Billing settings of an organization and billing profiles of its customers: the
//! rules their fields follow. Invoices (a later change) are made from these and from
//! the per-customer daily cost ledger (`store::customer_costs`).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{usage::bounded_text, Invalid};

/// The longest issuer or billing name, in characters.
pub const MAX_NAME_LEN: usize = 200;
/// The longest postal address (several lines), in characters.
pub const MAX_ADDRESS_LEN: usize = 1000;
/// The longest tax id (VAT number, EIN, …), in characters.
pub const MAX_TAX_ID_LEN: usize = 100;
/// The longest invoice footer, in characters.
pub const MAX_FOOTER_LEN: usize = 2000;
/// The highest tax rate, in percent.
pub const MAX_TAX_RATE: Decimal = Decimal::ONE_HUNDRED;
/// The highest markup, in percent (a hundred times the cost).
pub const MAX_MARKUP: Decimal = Decimal::from_parts(10_000, 0, 0, false, 0);
/// Decimal places a tax rate or markup may have.
pub const PERCENT_SCALE: u32 = 4;
/// The longest payment term, in days.
pub const MAX_DUE_DAYS: i32 = 365;
/// The payment term when none is set.
pub const DEFAULT_DUE_DAYS: i32 = 30;

/// The currency invoices are in. Every price is in USD, so USD is the only one for now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Currency {
    #[default]
    #[serde(rename = "USD")]
    Usd,
}

impl Currency {
    /// The ISO 4217 code; only `USD` for now.
    pub fn parse(code: &str) -> Result<Self, Invalid> {
        match code {
            "USD" => Ok(Currency::Usd),
            _ => Err(Invalid::new("only USD is supported for now (every price is in USD)")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Currency::Usd => "USD",
        }
    }
}

/// One line of text (a name, a tax id): trimmed, not blank, no control characters.
pub fn line(raw: &str, max: usize) -> Result<String, Invalid> {
    bounded_text(raw, max)
}

/// Text of several lines (an address, a footer): line breaks (`\n`, `\r\n`, `\r`)
/// are kept (stored as `\n`), every other control character is refused; trimmed, not
/// blank.
pub fn multiline(raw: &str, max: usize) -> Result<String, Invalid> {
    let normalized = raw.replace("\r\n", "\n").replace('\r', "\n");
    if normalized.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Invalid::new(
            "must not contain control characters other than line breaks",
        ));
    }
    let trimmed = normalized.trim();
    if trimmed.is_empty() {
        return Err(Invalid::new("must not be empty"));
    }
    if trimmed.chars().count() > max {
        return Err(Invalid::new(format!("must be at most {max} characters")));
    }
    Ok(trimmed.to_owned())
}

/// A percentage from 0 to `max`, with at most [`PERCENT_SCALE`] decimal places.
fn percent(value: Decimal, max: Decimal) -> Result<Decimal, Invalid> {
    if value.is_sign_negative() && !value.is_zero() {
        return Err(Invalid::new("must not be negative"));
    }
    if value > max {
        return Err(Invalid::new(format!("must be at most {max}")));
    }
    if value.normalize().scale() > PERCENT_SCALE {
        return Err(Invalid::new(format!("has more than {PERCENT_SCALE} decimal places")));
    }
    Ok(value.normalize())
}

/// The tax added to an invoice, in percent of its subtotal: 0 to 100.
pub fn tax_rate(value: Decimal) -> Result<Decimal, Invalid> {
    percent(value, MAX_TAX_RATE)
}

/// What the tenant adds on top of cost when it bills its customers, in percent of the
/// cost: 0 to 10,000.
pub fn markup(value: Decimal) -> Result<Decimal, Invalid> {
    percent(value, MAX_MARKUP)
}

/// Days from an invoice's date to its due date: 0 (due on receipt) to 365.
pub fn due_days(value: i64) -> Result<i32, Invalid> {
    match i32::try_from(value) {
        Ok(days) if (0..=MAX_DUE_DAYS).contains(&days) => Ok(days),
        _ => Err(Invalid::new(format!("must be from 0 to {MAX_DUE_DAYS}"))),
    }
}

/// An organization's billing settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingSettings {
    /// `None`: the organization's name.
    pub issuer_name: Option<String>,
    pub issuer_address: Option<String>,
    pub tax_id: Option<String>,
    pub tax_rate: Decimal,
    pub currency: Currency,
    pub markup: Decimal,
    pub due_days: i32,
    pub footer: Option<String>,
}

impl Default for BillingSettings {
    /// What an organization that never set its billing settings has.
    fn default() -> Self {
        Self {
            issuer_name: None,
            issuer_address: None,
            tax_id: None,
            tax_rate: Decimal::ZERO,
            currency: Currency::Usd,
            markup: Decimal::ZERO,
            due_days: DEFAULT_DUE_DAYS,
            footer: None,
        }
    }
}

/// Who a customer's invoices are addressed to, checked; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BillingProfile {
    pub billing_name: Option<String>,
    pub email: Option<super::email::EmailAddress>,
    pub address: Option<String>,
    pub tax_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn tax_rates_run_from_zero_to_a_hundred_with_four_decimals() {
        assert_eq!(tax_rate(d("0")), Ok(d("0")));
        assert_eq!(tax_rate(d("19.5000")).unwrap().to_string(), "19.5");
        assert_eq!(tax_rate(d("100")), Ok(d("100")));
        assert!(tax_rate(d("100.0001")).is_err());
        assert!(tax_rate(d("101")).is_err());
        assert!(tax_rate(d("-0.0001")).is_err());
        assert_eq!(tax_rate(d("-0")), Ok(d("0")));
        assert_eq!(tax_rate(d("7.1234")), Ok(d("7.1234")));
        assert!(tax_rate(d("7.12345")).is_err());
    }

    #[test]
    fn markups_are_not_negative_and_at_most_ten_thousand_percent() {
        assert_eq!(markup(d("0")), Ok(d("0")));
        assert_eq!(markup(d("250")), Ok(d("250")));
        assert_eq!(markup(d("10000")), Ok(d("10000")));
        assert!(markup(d("10000.0001")).is_err());
        assert!(markup(d("-1")).is_err());
        assert_eq!(markup(d("12.50")).unwrap().to_string(), "12.5");
    }

    #[test]
    fn payment_terms_run_from_zero_to_a_year() {
        assert_eq!(due_days(0), Ok(0));
        assert_eq!(due_days(365), Ok(365));
        assert!(due_days(366).is_err());
        assert!(due_days(-1).is_err());
        assert!(due_days(i64::MAX).is_err());
    }

    #[test]
    fn addresses_keep_their_lines_and_refuse_other_control_characters() {
        assert_eq!(
            multiline("  Acme AI\r\n1 Main St\nSpringfield  ", 100).unwrap(),
            "Acme AI\n1 Main St\nSpringfield"
        );
        assert_eq!(multiline("a\rb", 100).unwrap(), "a\nb");
        assert!(multiline("Acme\tAI", 100).is_err());
        assert!(multiline("Acme\u{0}", 100).is_err());
        assert!(multiline(" \n ", 100).is_err());
        assert!(multiline(&"a".repeat(101), 100).is_err());
        assert_eq!(multiline(&"é".repeat(100), 100).unwrap().chars().count(), 100);
    }

    #[test]
    fn names_are_one_line() {
        assert_eq!(line(" Acme AI ", 200).unwrap(), "Acme AI");
        assert!(line("Acme\nAI", 200).is_err());
        assert!(line("  ", 200).is_err());
    }

    #[test]
    fn the_defaults_bill_in_usd_without_tax_or_markup_due_in_thirty_days() {
        let s = BillingSettings::default();
        assert_eq!((s.tax_rate, s.markup, s.due_days), (Decimal::ZERO, Decimal::ZERO, 30));
        assert_eq!(s.currency.as_str(), "USD");
        assert_eq!(serde_json::from_str::<Currency>("\"USD\"").unwrap(), Currency::Usd);
        assert!(serde_json::from_str::<Currency>("\"EUR\"").is_err());
        assert_eq!(Currency::parse("USD"), Ok(Currency::Usd));
        assert!(Currency::parse("EUR").is_err());
        assert!(Currency::parse("usd").is_err());
    }
}
