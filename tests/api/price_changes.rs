//! Each instance caches prices, overrides and discounts (`meterplane::price_book`); a
//! change made through one instance applies on every other within
//! `MP_PRICES_CHECK_MS`. Two real server processes on one database: an operator
//! changes prices and discounts through one, and events recorded through the other
//! after that delay are charged the new way.

use std::time::Duration;

use chrono::Utc;
use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::{
    helpers::{expect_json, Tenant, TestApp, TestUser},
    price_helpers::{price, today},
    server_process::ServerProcess,
};

/// The check interval the processes run with: short, so the test is quick.
const CHECK_MS: u64 = 200;

/// Long enough for a check to have run after a change, with room for a busy machine.
async fn wait_for_the_check() {
    tokio::time::sleep(Duration::from_millis(CHECK_MS * 5)).await;
}

/// What `user` sends to `base` (the operator's change), expecting `expected`.
async fn operator_call(
    app: &TestApp,
    base: &str,
    user: &TestUser,
    method: Method,
    path: &str,
    body: Option<Value>,
    expected: StatusCode,
) -> Value {
    let mut request = app
        .client
        .request(method, format!("{base}{path}"))
        .bearer_auth(&user.token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    if expected == StatusCode::NO_CONTENT {
        assert_eq!(response.status(), expected);
        return Value::Null;
    }
    expect_json(response, expected).await
}

/// Records a call of a million input tokens through `base`; returns what it cost.
async fn cost_through(app: &TestApp, base: &str, tenant: &Tenant, request_id: &str) -> Decimal {
    let event = json!({
        "requestId": request_id, "endpoint": "/chat/completions", "provider": "openai",
        "model": "cache-model", "user": "customer-1", "promptTokens": 1_000_000, "completionTokens": 0,
    });
    let response = app
        .client
        .post(format!("{base}/v1/usage"))
        .header("x-api-key", &tenant.key_secret)
        .json(&event)
        .send()
        .await
        .unwrap();
    let recorded = expect_json(response, StatusCode::CREATED).await;
    recorded["cost"]
        .as_str()
        .unwrap_or_else(|| panic!("no cost in {recorded}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn prices_and_discounts_changed_through_one_instance_apply_on_another_within_the_check_interval() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let operator = app.operator().await;
    // USD 1 per million input tokens, from ten days ago.
    operator_call(
        &app,
        &app.address,
        &operator,
        Method::POST,
        "/v1/admin/prices",
        Some(price(
            "openai",
            "cache-model",
            "1",
            "2",
            "0.5",
            today() - chrono::Duration::days(10),
        )),
        StatusCode::CREATED,
    )
    .await;
    let env = [("MP_PRICES_CHECK_MS", CHECK_MS.to_string())];
    let changer = ServerProcess::start(&app, &env).await;
    let pricer = ServerProcess::start(&app, &env).await;
    let one = |text: &str| -> Decimal { text.parse().unwrap() };

    // Both have read the price and keep it.
    assert_eq!(cost_through(&app, &pricer.address, &tenant, "before").await, one("1"));
    assert_eq!(
        cost_through(&app, &changer.address, &tenant, "before-changer").await,
        one("1")
    );

    // A discount of 25 % for the organization, made through the other instance.
    let discount = operator_call(
        &app,
        &changer.address,
        &operator,
        Method::POST,
        "/v1/admin/discounts",
        Some(json!({"orgId": tenant.org_id, "provider": "openai", "percent": "25"})),
        StatusCode::CREATED,
    )
    .await;
    // The instance that made the change applies it at once.
    assert_eq!(
        cost_through(&app, &changer.address, &tenant, "discounted-changer").await,
        one("0.75")
    );
    wait_for_the_check().await;
    assert_eq!(
        cost_through(&app, &pricer.address, &tenant, "discounted").await,
        one("0.75")
    );

    // A new catalog price version in force from a moment ago: USD 3 per million.
    operator_call(
        &app,
        &changer.address,
        &operator,
        Method::POST,
        "/v1/admin/prices",
        Some(price(
            "openai",
            "cache-model",
            "3",
            "6",
            "1.5",
            Utc::now() - chrono::Duration::seconds(1),
        )),
        StatusCode::CREATED,
    )
    .await;
    wait_for_the_check().await;
    assert_eq!(
        cost_through(&app, &pricer.address, &tenant, "repriced").await,
        one("2.25")
    );

    // The organization's own price (an override), then the discount removed.
    operator_call(
        &app,
        &changer.address,
        &operator,
        Method::POST,
        &format!("/v1/admin/orgs/{}/prices", tenant.org_id),
        Some(price(
            "openai",
            "cache-model",
            "2",
            "4",
            "1",
            Utc::now() - chrono::Duration::seconds(1),
        )),
        StatusCode::CREATED,
    )
    .await;
    let discount_id = discount["id"].as_str().unwrap();
    operator_call(
        &app,
        &changer.address,
        &operator,
        Method::DELETE,
        &format!("/v1/admin/discounts/{discount_id}"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    wait_for_the_check().await;
    assert_eq!(
        cost_through(&app, &pricer.address, &tenant, "overridden").await,
        one("2")
    );
    assert_eq!(
        cost_through(&app, &changer.address, &tenant, "overridden-changer").await,
        one("2")
    );
}
