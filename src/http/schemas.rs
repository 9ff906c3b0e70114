//! Named OpenAPI schemas for values whose Rust type says less than the API promises:
//! money as an exact decimal string, and free-form JSON. Fields refer to them with
//! `#[schema(value_type = Money)]` and the like, so generated clients get one named
//! type with its format and pattern instead of a bare string or an empty schema.

use std::borrow::Cow;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer};
use utoipa::{
    openapi::{
        schema::{AdditionalProperties, KnownFormat, SchemaFormat, SchemaType, Type},
        ObjectBuilder, RefOr, Schema,
    },
    PartialSchema, ToSchema,
};

/// The pattern of a non-negative amount: digits with at most ten decimal places, never
/// an exponent (`rust_decimal` prints none) and never a float.
pub const MONEY_PATTERN: &str = r"^[0-9]{1,20}(\.[0-9]{1,10})?$";
/// A percentage such as a discount: 0 to 100 with at most four decimal places.
pub const PERCENT_PATTERN: &str = r"^[0-9]{1,3}(\.[0-9]{1,4})?$";

fn decimal_string(description: &str, pattern: &str, example: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::Custom("decimal".to_owned())))
        .pattern(Some(pattern))
        .description(Some(description))
        .examples([example])
        .into()
}

/// Text that is not blank and holds no control characters (what `Name::parse` and
/// the event text checks accept, before their length limits).
pub const TEXT_PATTERN: &str =
    r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$";

/// Declares a named string schema.
macro_rules! string_schema {
    ($(#[$doc:meta])* $name:ident { $($builder:tt)* }) => {
        $(#[$doc])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new().schema_type(Type::String) $($builder)* .into()
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

string_schema!(
    /// A display name (organizations, projects, keys, people).
    DisplayName {
        .min_length(Some(1))
        .max_length(Some(crate::domain::names::MAX_NAME_LEN))
        .pattern(Some(TEXT_PATTERN))
        .description(Some("1 to 200 characters after trimming, no control characters."))
        .examples(["Acme AI"])
    }
);

string_schema!(
    /// An email address, compared case-insensitively.
    Email {
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Email)))
        .max_length(Some(crate::domain::email::MAX_EMAIL_LEN))
        .examples(["ada@example.com"])
    }
);

string_schema!(
    /// A new password.
    NewPassword {
        .min_length(Some(crate::domain::password::MIN_PASSWORD_LEN))
        .max_length(Some(crate::domain::password::MAX_PASSWORD_LEN))
        .description(Some("10 to 256 characters."))
        .examples(["correct horse battery"])
    }
);

string_schema!(
    /// An organization's URL identifier.
    Slug {
        .min_length(Some(3))
        .max_length(Some(48))
        .pattern(Some("^[a-z0-9]+(-[a-z0-9]+)*$"))
        .description(Some("3 to 48 lowercase letters, digits or single hyphens."))
        .examples(["acme-ai"])
    }
);

/// Text the gateway reports about a call, bounded like `domain::usage::bounded_text`.
macro_rules! event_text {
    ($(#[$doc:meta])* $name:ident, $max:expr, $description:literal, $example:literal) => {
        string_schema!(
            $(#[$doc])*
            $name {
                .min_length(Some(1))
                .max_length(Some($max))
                .pattern(Some(TEXT_PATTERN))
                .description(Some($description))
                .examples([$example])
            }
        );
    };
}

event_text!(
    /// A call's idempotency key.
    RequestId, 255,
    "1 to 255 characters, not blank, no control characters; unique per organization.",
    "req_01J9Z3K4"
);
event_text!(
    /// The gateway endpoint a call went to.
    EndpointPath, 512,
    "1 to 512 characters, not blank, no control characters; `/a2a/{agentId}` names an agent.",
    "/chat/completions"
);
event_text!(
    /// A model provider, compared case-insensitively.
    ProviderName, 100,
    "1 to 100 characters, not blank, no control characters; compared case-insensitively.",
    "openai"
);
event_text!(
    /// A model: the catalog id or the provider's own name for it.
    ModelName, 200,
    "1 to 200 characters, not blank, no control characters.",
    "gpt-4o"
);
event_text!(
    /// A customer or agent as the tenant's own system names it.
    ExternalId, 256,
    "1 to 256 characters, not blank, no control characters.",
    "customer-42"
);
event_text!(
    /// The error code a failed call reported.
    CallErrorCode, 200,
    "1 to 200 characters, not blank, no control characters.",
    "rate_limit_exceeded"
);
event_text!(
    /// Why a customer or agent was blocked.
    BlockReason, 500,
    "1 to 500 characters, not blank, no control characters.",
    "invoice overdue"
);

/// One line of billing text (a name, a tax id), bounded like `domain::billing::line`.
macro_rules! billing_line {
    ($(#[$doc:meta])* $name:ident, $max:expr, $description:literal, $example:literal) => {
        event_text!($(#[$doc])* $name, $max, $description, $example);
    };
}

billing_line!(
    /// A name on an invoice: the issuer's or a customer's.
    BillingName, crate::domain::billing::MAX_NAME_LEN,
    "1 to 200 characters after trimming, not blank, no control characters.",
    "Acme AI Inc."
);
billing_line!(
    /// A tax id (VAT number, EIN, …) on an invoice.
    TaxId, crate::domain::billing::MAX_TAX_ID_LEN,
    "1 to 100 characters after trimming, not blank, no control characters.",
    "DE123456789"
);

/// Text of several lines: line breaks (CR, LF) allowed, no other control character,
/// not blank.
pub const MULTILINE_PATTERN: &str = r"^[^\u0000-\u0009\u000B\u000C\u000E-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u0009\u000B\u000C\u000E-\u001F\u007F-\u009F]*$";

string_schema!(
    /// A postal address of several lines.
    PostalAddress {
        .min_length(Some(1))
        .max_length(Some(crate::domain::billing::MAX_ADDRESS_LEN))
        .pattern(Some(MULTILINE_PATTERN))
        .description(Some("Up to 1,000 characters in several lines (`\\n`; `\\r\\n` and `\\r` are stored as `\\n`), not blank, no other control characters; trimmed."))
        .examples(["Acme AI Inc.\n1 Main Street\nSpringfield, IL 62701\nUSA"])
    }
);

string_schema!(
    /// The free text at the foot of an invoice.
    InvoiceFooter {
        .min_length(Some(1))
        .max_length(Some(crate::domain::billing::MAX_FOOTER_LEN))
        .pattern(Some(MULTILINE_PATTERN))
        .description(Some("Up to 2,000 characters in several lines, not blank, no other control characters; trimmed."))
        .examples(["Thank you for your business. Bank transfer to IBAN DE00 0000 0000 0000 0000 00."])
    }
);

string_schema!(
    /// A free-text filter in a query string. Empty or blank, it filters nothing.
    FilterText {
        .max_length(Some(crate::http::validate::MAX_FILTER_LEN))
        .pattern(Some(r"^[^\u0000-\u001F\u007F-\u009F]*$"))
        .description(Some("At most 256 characters, no control characters; empty means no filter."))
    }
);

/// A USD amount.
pub struct Money;

impl PartialSchema for Money {
    fn schema() -> RefOr<Schema> {
        decimal_string(
            "A USD amount as an exact decimal string (at most 10 decimal places); never a float.",
            MONEY_PATTERN,
            "0.0123",
        )
    }
}

impl ToSchema for Money {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Money")
    }
}

/// A pattern for decimals in plain notation, no leading zeros, at most `scale` decimal
/// places, below 10^`int_digits` (up to and including it when `up_to_power`), and
/// above zero when `positive`. It states exactly what the request checks accept, so a
/// value a client builds from the document is never refused for its range.
fn decimal_range_pattern(int_digits: usize, scale: usize, positive: bool, up_to_power: bool) -> String {
    let fraction = format!(r"(\.[0-9]{{1,{scale}}})?");
    let mut alternatives = vec![format!("[1-9][0-9]{{0,{}}}{fraction}", int_digits - 1)];
    if positive {
        // Zero point something: some digit of the fraction is not zero.
        let nonzero_fractions: Vec<String> = (0..scale)
            .map(|zeros| format!("0{{{zeros}}}[1-9][0-9]{{0,{}}}", scale - 1 - zeros))
            .collect();
        alternatives.push(format!(r"0\.({})", nonzero_fractions.join("|")));
    } else {
        alternatives.push(format!("0{fraction}"));
    }
    if up_to_power {
        alternatives.push(format!(r"1{}(\.0{{1,{scale}}})?", "0".repeat(int_digits)));
    }
    format!("^({})$", alternatives.join("|"))
}

/// Declares a named decimal-string schema for a request field with a range.
macro_rules! decimal_range_schema {
    ($(#[$doc:meta])* $name:ident, $description:literal, $example:literal,
     int_digits: $int:expr, scale: $scale:expr, positive: $positive:expr, up_to_power: $power:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                decimal_string($description, &decimal_range_pattern($int, $scale, $positive, $power), $example)
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

decimal_range_schema!(
    /// A budget's amount.
    BudgetAmount,
    "USD as an exact decimal string: more than 0, at most 1,000,000,000, at most 10 decimal places.",
    "100",
    int_digits: 9, scale: 10, positive: true, up_to_power: true
);
decimal_range_schema!(
    /// A catalog price.
    PriceAmount,
    "USD as an exact decimal string: 0 to 1,000,000, at most 10 decimal places.",
    "2.5",
    int_digits: 6, scale: 10, positive: false, up_to_power: true
);
decimal_range_schema!(
    /// A discount's percentage.
    DiscountPercent,
    "More than 0 and at most 100, as an exact decimal string with at most 4 decimal places.",
    "10",
    int_digits: 2, scale: 4, positive: true, up_to_power: true
);
decimal_range_schema!(
    /// An invoice's tax rate, in percent.
    TaxRate,
    "A percentage from 0 to 100 as an exact decimal string with at most 4 decimal places.",
    "8.25",
    int_digits: 2, scale: 4, positive: false, up_to_power: true
);
decimal_range_schema!(
    /// The markup a tenant adds to cost when it bills its customers, in percent.
    Markup,
    "A percentage from 0 to 10,000 as an exact decimal string with at most 4 decimal places.",
    "20",
    int_digits: 4, scale: 4, positive: false, up_to_power: true
);
decimal_range_schema!(
    /// A call's estimated cost.
    CostEstimate,
    "USD as an exact decimal string: 0 or more, below 10,000,000,000, at most 10 decimal places.",
    "0.05",
    int_digits: 10, scale: 10, positive: false, up_to_power: false
);

/// Reads a decimal written as a JSON string in plain notation (`"12.5"`, `"-1"`) and
/// nothing else: a JSON number has already lost digits in many clients' float types,
/// and exponents, `+`, `_` or leading zeros are not what the document promises.
/// Ranges and decimal places are the domain checks' business (so every broken field
/// is reported at once).
pub fn decimal_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_decimal_text(&text).ok_or_else(|| not_decimal_text(&text))
}

/// [`decimal_text`] for a field that may be left out or `null`.
pub fn optional_decimal_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Decimal>, D::Error> {
    Option::<String>::deserialize(deserializer)?
        .map(|text| parse_decimal_text(&text).ok_or_else(|| not_decimal_text(&text)))
        .transpose()
}

fn not_decimal_text<E: serde::de::Error>(text: &str) -> E {
    E::invalid_value(
        serde::de::Unexpected::Str(text),
        &"a decimal number in plain notation such as \"12.5\"",
    )
}

fn parse_decimal_text(text: &str) -> Option<Decimal> {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let plain = digits(whole) && (whole == "0" || !whole.starts_with('0')) && fraction.is_none_or(digits);
    if plain {
        Decimal::from_str_exact(text).ok()
    } else {
        None
    }
}

/// A percentage, 0 to 100.
pub struct Percent;

impl PartialSchema for Percent {
    fn schema() -> RefOr<Schema> {
        decimal_string(
            "A percentage from 0 to 100 as an exact decimal string (at most 4 decimal places).",
            PERCENT_PATTERN,
            "12.5",
        )
    }
}

impl ToSchema for Percent {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Percent")
    }
}

/// A JSON object with any members (`Record<string, unknown>` in TypeScript).
pub struct JsonObject;

impl PartialSchema for JsonObject {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(true)))
            .description(Some("A JSON object with any members."))
            .examples([serde_json::json!({"feature": "search"})])
            .into()
    }
}

impl ToSchema for JsonObject {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("JsonObject")
    }
}

/// Any JSON value: a request or response body as the gateway saw it.
pub struct JsonValue;

impl PartialSchema for JsonValue {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::AnyValue)
            .description(Some(
                "Any JSON value: an object, an array, a string (stored as it is), a number, a boolean.",
            ))
            .examples([serde_json::json!({"messages": [{"role": "user", "content": "Hi"}]})])
            .into()
    }
}

impl ToSchema for JsonValue {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("JsonValue")
    }
}

/// An alert threshold: a whole percentage of a budget's amount.
pub struct ThresholdPercent;

impl PartialSchema for ThresholdPercent {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(100))
            .description(Some("A whole percentage of the budget's amount, 1 to 100."))
            .examples([80])
            .into()
    }
}

impl ToSchema for ThresholdPercent {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ThresholdPercent")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, text: &str) -> bool {
        regex_lite::Regex::new(pattern).expect("valid pattern").is_match(text)
    }

    #[test]
    fn plain_decimal_strings_only() {
        for ok in ["0", "12.5", "-1", "1000000", "0.0000000001"] {
            assert!(parse_decimal_text(ok).is_some(), "{ok}");
        }
        for bad in ["", "-", "1.", ".5", "01", "+1", "1e3", "1_000", " 1", "1.5.0", "NaN"] {
            assert!(parse_decimal_text(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn range_patterns_admit_exactly_the_range() {
        let budget = decimal_range_pattern(9, 10, true, true);
        for ok in [
            "1",
            "0.5",
            "0.0000000001",
            "999999999.9999999999",
            "1000000000",
            "1000000000.0",
        ] {
            assert!(matches(&budget, ok), "{ok}");
        }
        for bad in [
            "0",
            "0.0",
            "0.00000000001",
            "1000000000.1",
            "1000000001",
            "-1",
            "01",
            "1.12345678901",
        ] {
            assert!(!matches(&budget, bad), "{bad}");
        }
        let price = decimal_range_pattern(6, 10, false, true);
        for ok in ["0", "0.0", "2.5", "1000000", "999999.1234567891"] {
            assert!(matches(&price, ok), "{ok}");
        }
        for bad in ["1000000.5", "1000001", "-0.5", "00"] {
            assert!(!matches(&price, bad), "{bad}");
        }
        let percent = decimal_range_pattern(2, 4, true, true);
        for ok in ["100", "100.0000", "0.0001", "12.5", "99.9999"] {
            assert!(matches(&percent, ok), "{ok}");
        }
        for bad in ["0", "100.0001", "101", "0.00001", "12.34567"] {
            assert!(!matches(&percent, bad), "{bad}");
        }
        let estimate = decimal_range_pattern(10, 10, false, false);
        assert!(matches(&estimate, "9999999999.9999999999"));
        assert!(!matches(&estimate, "10000000000"));
    }
}
