//! Named OpenAPI schemas for values whose Rust type says less than the API promises:
//! money as an exact decimal string, and free-form JSON. Fields refer to them with
//! `#[schema(value_type = Money)]` and the like, so generated clients get one named
//! type with its format and pattern instead of a bare string or an empty schema.

use std::borrow::Cow;

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
