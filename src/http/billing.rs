//! Billing settings of an organization and billing profiles of its customers: who
//! invoices come from and who they go to.

use actix_web::{get, put, web};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    extract::{AuthUser, JsonBody},
    paths::{CustomerPath, OrgPath},
    schemas::{self, BillingName, Email, InvoiceFooter, PostalAddress, TaxId},
    state::AppState,
    validate::Fields,
};
use crate::{
    domain::{
        billing::{self, BillingProfile, BillingSettings, Currency},
        email::EmailAddress,
        role::Access,
        Invalid,
    },
    error::{AppError, AppResult, Problem},
    store::{
        self,
        billing::{StoredProfile, StoredSettings},
    },
};

/// An organization's billing settings: the issuer block, tax, markup and payment
/// terms of the invoices it makes for its customers.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "issuerName": "Acme AI Inc.",
    "issuerAddress": "1 Main Street\nSpringfield, IL 62701\nUSA",
    "taxId": "US12-3456789",
    "taxRate": "8.25",
    "currency": "USD",
    "markup": "20",
    "dueDays": 30,
    "footer": "Thank you for your business.",
    "updatedAt": "2026-12-05T10:00:00Z"
}))]
pub struct BillingSettingsView {
    /// The name invoices are issued under; the organization's name unless one is set.
    issuer_name: String,
    issuer_address: Option<String>,
    tax_id: Option<String>,
    /// Tax added to an invoice, in percent of its subtotal.
    #[schema(value_type = schemas::TaxRate)]
    tax_rate: Decimal,
    /// Always `USD` for now: every price is in USD.
    currency: Currency,
    /// Added on top of cost when the organization bills its customers, in percent.
    #[schema(value_type = schemas::Markup)]
    markup: Decimal,
    /// Days from an invoice's date to its due date.
    due_days: i32,
    footer: Option<String>,
    /// `null` until the settings are first set (the values above are the defaults).
    updated_at: Option<DateTime<Utc>>,
}

impl From<StoredSettings> for BillingSettingsView {
    fn from(s: StoredSettings) -> Self {
        let settings = s.settings;
        Self {
            issuer_name: settings.issuer_name.unwrap_or(s.org_name),
            issuer_address: settings.issuer_address,
            tax_id: settings.tax_id,
            tax_rate: settings.tax_rate,
            currency: settings.currency,
            markup: settings.markup,
            due_days: settings.due_days,
            footer: settings.footer,
            updated_at: s.updated_at,
        }
    }
}

/// Replaces the billing settings. A field left out (or `null`) gets its default: no
/// issuer name means the organization's name, tax rate and markup 0, 30 due days.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "issuerName": "Acme AI Inc.",
    "issuerAddress": "1 Main Street\nSpringfield, IL 62701\nUSA",
    "taxId": "US12-3456789",
    "taxRate": "8.25",
    "currency": "USD",
    "markup": "20",
    "dueDays": 30,
    "footer": "Thank you for your business."
}))]
pub struct PutBillingSettings {
    #[serde(default)]
    #[schema(value_type = Option<BillingName>)]
    issuer_name: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<PostalAddress>)]
    issuer_address: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<TaxId>)]
    tax_id: Option<String>,
    /// Default 0.
    #[serde(default, deserialize_with = "schemas::optional_decimal_text")]
    #[schema(value_type = Option<schemas::TaxRate>)]
    tax_rate: Option<Decimal>,
    /// Only `USD` for now (the default).
    #[serde(default)]
    #[schema(value_type = Option<Currency>)]
    currency: Option<String>,
    /// Default 0.
    #[serde(default, deserialize_with = "schemas::optional_decimal_text")]
    #[schema(value_type = Option<schemas::Markup>)]
    markup: Option<Decimal>,
    /// Default 30.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 365)]
    due_days: Option<i64>,
    #[serde(default)]
    #[schema(value_type = Option<InvoiceFooter>)]
    footer: Option<String>,
}

impl PutBillingSettings {
    fn parse(self) -> AppResult<BillingSettings> {
        let mut f = Fields::default();
        let defaults = BillingSettings::default();
        let issuer_name = optional_text(&mut f, "issuerName", self.issuer_name, |r| {
            billing::line(r, billing::MAX_NAME_LEN)
        });
        let issuer_address = optional_text(&mut f, "issuerAddress", self.issuer_address, |r| {
            billing::multiline(r, billing::MAX_ADDRESS_LEN)
        });
        let tax_id = optional_text(&mut f, "taxId", self.tax_id, |r| {
            billing::line(r, billing::MAX_TAX_ID_LEN)
        });
        let footer = optional_text(&mut f, "footer", self.footer, |r| {
            billing::multiline(r, billing::MAX_FOOTER_LEN)
        });
        let currency = optional_text(&mut f, "currency", self.currency, Currency::parse);
        let tax_rate = f.take("taxRate", billing::tax_rate(self.tax_rate.unwrap_or(defaults.tax_rate)));
        let markup = f.take("markup", billing::markup(self.markup.unwrap_or(defaults.markup)));
        let due_days = f.take(
            "dueDays",
            billing::due_days(self.due_days.unwrap_or(i64::from(defaults.due_days))),
        );
        let (
            Some(issuer_name),
            Some(issuer_address),
            Some(tax_id),
            Some(footer),
            Some(currency),
            Some(tax_rate),
            Some(markup),
            Some(due_days),
        ) = (
            issuer_name,
            issuer_address,
            tax_id,
            footer,
            currency,
            tax_rate,
            markup,
            due_days,
        )
        else {
            return Err(AppError::validation(f.into_errors()));
        };
        Ok(BillingSettings {
            issuer_name,
            issuer_address,
            tax_id,
            tax_rate,
            currency: currency.unwrap_or_default(),
            markup,
            due_days,
            footer,
        })
    }
}

/// Parses a field the client may leave out: `Some(None)` when it did, `Some(Some(v))`
/// when it parses, `None` (the error noted in `f`) when it does not.
fn optional_text<T>(
    f: &mut Fields,
    name: &str,
    raw: Option<String>,
    parse: impl Fn(&str) -> Result<T, Invalid>,
) -> Option<Option<T>> {
    match raw {
        Some(raw) => f.take(name, parse(&raw)).map(Some),
        None => Some(None),
    }
}

/// The organization's billing settings, or the defaults until they are set.
#[utoipa::path(
    tag = "billing",
    security(("bearer" = [])),
    params(OrgPath),
    responses(
        (status = 200, description = "The billing settings", body = BillingSettingsView),
        (status = 401, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[get("/orgs/{orgId}/billing-settings")]
pub async fn get_billing_settings(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
) -> AppResult<web::Json<BillingSettingsView>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Read).await?;
    Ok(web::Json(store::billing::settings(&mut conn, &access).await?.into()))
}

/// Replaces the organization's billing settings (owners and admins).
///
/// A field left out gets its default. `taxRate` is 0 to 100 and `markup` 0 to 10,000
/// (percent, at most 4 decimal places), `dueDays` 0 to 365, `currency` only `USD`.
#[utoipa::path(
    tag = "billing",
    security(("bearer" = [])),
    params(OrgPath),
    request_body = PutBillingSettings,
    responses(
        (status = 200, description = "The billing settings as now set", body = BillingSettingsView),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 422, body = Problem),
    )
)]
#[put("/orgs/{orgId}/billing-settings")]
pub async fn put_billing_settings(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
    body: JsonBody<PutBillingSettings>,
) -> AppResult<web::Json<BillingSettingsView>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    let settings = body.into_inner().parse()?;
    Ok(web::Json(
        store::billing::set_settings(&mut conn, &access, &settings)
            .await?
            .into(),
    ))
}

/// Who a customer's invoices are addressed to. Every field is optional: an invoice
/// falls back to the customer's `externalId`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "customerId": "0193a1b2-7c3d-7e4f-8a5b-6c7d8e9f0a1b",
    "externalId": "customer-42",
    "billingName": "Globex Corporation",
    "email": "ap@globex.example",
    "address": "Globex Corporation\n500 Oak Avenue\nCypress Creek",
    "taxId": "GB123456789",
    "updatedAt": "2026-12-05T10:00:00Z"
}))]
pub struct BillingProfileView {
    customer_id: Uuid,
    /// The `user` the gateway reports for this customer.
    external_id: String,
    billing_name: Option<String>,
    email: Option<String>,
    address: Option<String>,
    tax_id: Option<String>,
    /// `null` until the profile is first set.
    updated_at: Option<DateTime<Utc>>,
}

impl From<StoredProfile> for BillingProfileView {
    fn from(p: StoredProfile) -> Self {
        Self {
            customer_id: p.customer_id,
            external_id: p.external_id,
            billing_name: p.billing_name,
            email: p.email,
            address: p.address,
            tax_id: p.tax_id,
            updated_at: p.updated_at,
        }
    }
}

/// Replaces a customer's billing profile; a field left out (or `null`) is cleared.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "billingName": "Globex Corporation",
    "email": "ap@globex.example",
    "address": "Globex Corporation\n500 Oak Avenue\nCypress Creek",
    "taxId": "GB123456789"
}))]
pub struct PutBillingProfile {
    #[serde(default)]
    #[schema(value_type = Option<BillingName>)]
    billing_name: Option<String>,
    /// Where invoices are emailed.
    #[serde(default)]
    #[schema(value_type = Option<Email>)]
    email: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<PostalAddress>)]
    address: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<TaxId>)]
    tax_id: Option<String>,
}

impl PutBillingProfile {
    fn parse(self) -> AppResult<BillingProfile> {
        let mut f = Fields::default();
        let billing_name = optional_text(&mut f, "billingName", self.billing_name, |r| {
            billing::line(r, billing::MAX_NAME_LEN)
        });
        let email = optional_text(&mut f, "email", self.email, EmailAddress::parse);
        let address = optional_text(&mut f, "address", self.address, |r| {
            billing::multiline(r, billing::MAX_ADDRESS_LEN)
        });
        let tax_id = optional_text(&mut f, "taxId", self.tax_id, |r| {
            billing::line(r, billing::MAX_TAX_ID_LEN)
        });
        let (Some(billing_name), Some(email), Some(address), Some(tax_id)) = (billing_name, email, address, tax_id)
        else {
            return Err(AppError::validation(f.into_errors()));
        };
        Ok(BillingProfile {
            billing_name,
            email,
            address,
            tax_id,
        })
    }
}

/// A customer's billing profile (every field `null` until it is set).
#[utoipa::path(
    tag = "billing",
    security(("bearer" = [])),
    params(CustomerPath),
    responses(
        (status = 200, description = "The customer's billing profile", body = BillingProfileView),
        (status = 401, body = Problem),
        (status = 404, description = "No such organization, or no such customer in it", body = Problem),
    )
)]
#[get("/orgs/{orgId}/customers/{customerId}/billing")]
pub async fn get_customer_billing(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<CustomerPath>,
) -> AppResult<web::Json<BillingProfileView>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Read).await?;
    Ok(web::Json(
        store::billing::profile(&mut conn, &access, path.customer_id)
            .await?
            .into(),
    ))
}

/// Replaces a customer's billing profile (owners and admins).
#[utoipa::path(
    tag = "billing",
    security(("bearer" = [])),
    params(CustomerPath),
    request_body = PutBillingProfile,
    responses(
        (status = 200, description = "The billing profile as now set", body = BillingProfileView),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, description = "No such organization, or no such customer in it", body = Problem),
        (status = 422, body = Problem),
    )
)]
#[put("/orgs/{orgId}/customers/{customerId}/billing")]
pub async fn put_customer_billing(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<CustomerPath>,
    body: JsonBody<PutBillingProfile>,
) -> AppResult<web::Json<BillingProfileView>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Manage).await?;
    let profile = body.into_inner().parse()?;
    Ok(web::Json(
        store::billing::set_profile(&mut conn, &access, path.customer_id, &profile)
            .await?
            .into(),
    ))
}
