//! What the pricing tests share: price and discount bodies, adding them as the
//! operator, and reading back what an event was charged.

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{expect_json, uuid, Tenant, TestApp, TestUser};

/// Midnight UTC today.
pub fn today() -> DateTime<Utc> {
    Utc::now().date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc()
}

/// A price version body (USD per million tokens), for the catalog or an override.
pub fn price(provider: &str, model: &str, input: &str, output: &str, cached: &str, valid_from: DateTime<Utc>) -> Value {
    json!({
        "provider": provider, "model": model, "inputPerMtok": input, "outputPerMtok": output,
        "cachedInputPerMtok": cached, "validFrom": valid_from.to_rfc3339(),
    })
}

/// `body` with the fields of `extra` added (or replaced).
pub fn with(mut body: Value, extra: Value) -> Value {
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    body
}

/// POSTs as `user` and expects 201 Created.
pub async fn created(app: &TestApp, user: &TestUser, path: &str, body: &Value) -> Value {
    let response = app.as_user(Method::POST, path, user).json(body).send().await.unwrap();
    expect_json(response, StatusCode::CREATED).await
}

/// Adds a catalog price version as the operator.
pub async fn add_price(app: &TestApp, operator: &TestUser, body: Value) -> Value {
    created(app, operator, "/v1/admin/prices", &body).await
}

/// Adds a discount as the operator.
pub async fn add_discount(app: &TestApp, operator: &TestUser, body: Value) -> Value {
    created(app, operator, "/v1/admin/discounts", &body).await
}

/// The spend-log detail of one event, as the tenant's owner reads it.
pub async fn detail(app: &TestApp, tenant: &Tenant, event_id: Uuid) -> Value {
    app.get_json(
        &tenant.owner,
        &format!("/v1/orgs/{}/spend-logs/{event_id}", tenant.org_id),
    )
    .await
}

/// What a tenant checks about an event's money, in one value.
pub fn money(detail: &Value) -> Value {
    json!({
        "costBeforeDiscount": detail["costBeforeDiscount"],
        "discountPercent": detail["discountPercent"],
        "discountSavings": detail["discountSavings"],
        "cost": detail["cost"],
    })
}

/// The `id`s of a JSON list.
pub fn ids(list: &Value) -> Vec<Uuid> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|v| uuid(&v["id"]))
        .collect()
}
