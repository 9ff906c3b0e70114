//! Billing settings (one row per organization) and customer billing profiles (one row
//! per customer that has one).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{
    access::OrgAccess,
    schema::{billing_settings, customer_billing_profiles, customers, organizations},
    DbConn,
};
use crate::{
    domain::{
        billing::{BillingProfile, BillingSettings, Currency},
        role::Access,
    },
    error::{AppError, AppResult},
};

/// An organization's billing settings as stored, or the defaults.
#[derive(Debug, Clone)]
pub struct StoredSettings {
    pub settings: BillingSettings,
    /// The organization's name: the issuer when no issuer name is set.
    pub org_name: String,
    /// `None` until they are first set.
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Queryable)]
struct SettingsRow {
    issuer_name: Option<String>,
    issuer_address: Option<String>,
    tax_id: Option<String>,
    tax_rate: Decimal,
    currency: String,
    markup: Decimal,
    due_days: i32,
    footer: Option<String>,
    updated_at: DateTime<Utc>,
}

fn currency(stored: &str) -> AppResult<Currency> {
    match stored {
        "USD" => Ok(Currency::Usd),
        other => Err(AppError::internal(anyhow::anyhow!("unknown stored currency {other}"))),
    }
}

/// The caller's organization's billing settings (any member reads them).
pub async fn settings(conn: &mut DbConn, access: &OrgAccess) -> AppResult<StoredSettings> {
    access.require(Access::Read)?;
    let (org_name, row): (String, Option<SettingsRow>) = organizations::table
        .left_join(billing_settings::table.on(billing_settings::org_id.eq(organizations::id)))
        .filter(organizations::id.eq(access.org_id()))
        .select((
            organizations::name,
            (
                billing_settings::issuer_name,
                billing_settings::issuer_address,
                billing_settings::tax_id,
                billing_settings::tax_rate,
                billing_settings::currency,
                billing_settings::markup,
                billing_settings::due_days,
                billing_settings::footer,
                billing_settings::updated_at,
            )
                .nullable(),
        ))
        .first(conn)
        .await?;
    let Some(row) = row else {
        return Ok(StoredSettings {
            settings: BillingSettings::default(),
            org_name,
            updated_at: None,
        });
    };
    Ok(StoredSettings {
        settings: BillingSettings {
            issuer_name: row.issuer_name,
            issuer_address: row.issuer_address,
            tax_id: row.tax_id,
            tax_rate: row.tax_rate.normalize(),
            currency: currency(&row.currency)?,
            markup: row.markup.normalize(),
            due_days: row.due_days,
            footer: row.footer,
        },
        org_name,
        updated_at: Some(row.updated_at),
    })
}

/// Replaces the organization's billing settings (owners and admins).
pub async fn set_settings(conn: &mut DbConn, access: &OrgAccess, new: &BillingSettings) -> AppResult<StoredSettings> {
    access.require(Access::Manage)?;
    let values = (
        billing_settings::issuer_name.eq(new.issuer_name.as_deref()),
        billing_settings::issuer_address.eq(new.issuer_address.as_deref()),
        billing_settings::tax_id.eq(new.tax_id.as_deref()),
        billing_settings::tax_rate.eq(new.tax_rate),
        billing_settings::currency.eq(new.currency.as_str()),
        billing_settings::markup.eq(new.markup),
        billing_settings::due_days.eq(new.due_days),
        billing_settings::footer.eq(new.footer.as_deref()),
        billing_settings::updated_at.eq(diesel::dsl::now),
        billing_settings::updated_by.eq(access.user_id()),
    );
    diesel::insert_into(billing_settings::table)
        .values((billing_settings::org_id.eq(access.org_id()), values))
        .on_conflict(billing_settings::org_id)
        .do_update()
        .set(values)
        .execute(conn)
        .await?;
    settings(conn, access).await
}

/// A customer's billing profile as stored (every field `None` when it has none).
#[derive(Debug, Clone)]
pub struct StoredProfile {
    pub customer_id: Uuid,
    /// The `user` the gateway reports for the customer.
    pub external_id: String,
    pub billing_name: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
    pub tax_id: Option<String>,
    /// `None` until it is first set.
    pub updated_at: Option<DateTime<Utc>>,
}

type ProfileColumns = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    DateTime<Utc>,
);

/// The billing profile of one customer of the caller's organization; 404 for a
/// customer the organization does not have.
pub async fn profile(conn: &mut DbConn, access: &OrgAccess, customer_id: Uuid) -> AppResult<StoredProfile> {
    access.require(Access::Read)?;
    let (external_id, row): (String, Option<ProfileColumns>) = customers::table
        .left_join(
            customer_billing_profiles::table.on(customer_billing_profiles::org_id
                .eq(customers::org_id)
                .and(customer_billing_profiles::customer_id.eq(customers::id))),
        )
        .filter(customers::org_id.eq(access.org_id()))
        .filter(customers::id.eq(customer_id))
        .select((
            customers::external_id,
            (
                customer_billing_profiles::billing_name,
                customer_billing_profiles::email,
                customer_billing_profiles::address,
                customer_billing_profiles::tax_id,
                customer_billing_profiles::updated_at,
            )
                .nullable(),
        ))
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::not_found("customer"))?;
    let (billing_name, email, address, tax_id, updated_at) = match row {
        Some((n, e, a, t, u)) => (n, e, a, t, Some(u)),
        None => (None, None, None, None, None),
    };
    Ok(StoredProfile {
        customer_id,
        external_id,
        billing_name,
        email,
        address,
        tax_id,
        updated_at,
    })
}

/// Replaces a customer's billing profile (owners and admins); 404 for a customer the
/// organization does not have.
pub async fn set_profile(
    conn: &mut DbConn,
    access: &OrgAccess,
    customer_id: Uuid,
    new: &BillingProfile,
) -> AppResult<StoredProfile> {
    access.require(Access::Manage)?;
    let known: bool = diesel::select(diesel::dsl::exists(
        customers::table
            .filter(customers::org_id.eq(access.org_id()))
            .filter(customers::id.eq(customer_id)),
    ))
    .get_result(conn)
    .await?;
    if !known {
        return Err(AppError::not_found("customer"));
    }
    let values = (
        customer_billing_profiles::billing_name.eq(new.billing_name.as_deref()),
        customer_billing_profiles::email.eq(new.email.as_ref().map(|e| e.as_str())),
        customer_billing_profiles::address.eq(new.address.as_deref()),
        customer_billing_profiles::tax_id.eq(new.tax_id.as_deref()),
        customer_billing_profiles::updated_at.eq(diesel::dsl::now),
    );
    // A customer deleted in between fails the composite foreign key: an internal
    // error for a race no client can provoke on purpose (customers are never deleted
    // on their own, only with their organization).
    diesel::insert_into(customer_billing_profiles::table)
        .values((
            customer_billing_profiles::org_id.eq(access.org_id()),
            customer_billing_profiles::customer_id.eq(customer_id),
            values,
        ))
        .on_conflict((
            customer_billing_profiles::org_id,
            customer_billing_profiles::customer_id,
        ))
        .do_update()
        .set(values)
        .execute(conn)
        .await?;
    profile(conn, access, customer_id).await
}
