//! The organization's `unpricedModels` setting through HTTP: by default the authorize
//! check lets calls to models without a price through; set to `deny`, it refuses them
//! (reason `unpriced_model`) and still allows priced ones; their usage is recorded
//! either way; only the organization's own owners and admins can change it.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{authorize, expect_json, expect_problem, Tenant, TestApp, TestUser};

/// A call of 1,000 input and 500 output tokens of `model` (provider `openai`).
fn call(request_id: &str, model: &str) -> Value {
    json!({
        "requestId": request_id, "endpoint": "/chat/completions", "provider": "openai", "model": model,
        "estimatedPromptTokens": 1000, "estimatedCompletionTokens": 500
    })
}

async fn set_policy(app: &TestApp, user: &TestUser, tenant: &Tenant, policy: &str) -> reqwest::Response {
    app.as_user(Method::PATCH, &format!("/v1/orgs/{}", tenant.org_id), user)
        .json(&json!({"unpricedModels": policy}))
        .send()
        .await
        .unwrap()
}

async fn policy_of(app: &TestApp, tenant: &Tenant) -> Value {
    app.get_json(&tenant.owner, &format!("/v1/orgs/{}", tenant.org_id))
        .await["unpricedModels"]
        .clone()
}

#[tokio::test]
async fn by_default_a_call_to_an_unpriced_model_is_allowed_at_zero_estimate() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    assert_eq!(policy_of(&app, &tenant).await, "allow");

    let (status, _, decision) = authorize(&app, &tenant, call("free-1", "mystery-model")).await;
    assert_eq!(status, StatusCode::OK, "{decision}");
    assert_eq!(
        (&decision["allowed"], &decision["reason"], &decision["estimatedCost"]),
        (&json!(true), &json!("allowed"), &json!("0"))
    );
}

#[tokio::test]
async fn deny_refuses_an_unpriced_model_allows_a_priced_one_and_still_records_usage() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    // USD 1 per million input tokens, 2 per million output: 1,000 in + 500 out = 0.002.
    app.add_price("openai", "priced-model", "priced-model", "1", "2", "0.5")
        .await;
    let changed = expect_json(set_policy(&app, &tenant.owner, &tenant, "deny").await, StatusCode::OK).await;
    assert_eq!(changed["unpricedModels"], "deny");
    assert_eq!(policy_of(&app, &tenant).await, "deny");

    let (status, _, denied) = authorize(&app, &tenant, call("paid-0", "mystery-model")).await;
    assert_eq!(status, StatusCode::OK, "{denied}");
    assert_eq!(
        (&denied["allowed"], &denied["reason"], &denied["decidingScope"]),
        (&json!(false), &json!("unpriced_model"), &json!("organization"))
    );
    assert_eq!(denied["decidingScopeId"], tenant.org_id.to_string());
    // The gateway's own estimate does not make the model priced.
    let mut with_estimate = call("paid-0b", "mystery-model");
    with_estimate["estimatedCost"] = json!("0.01");
    let (_, _, denied) = authorize(&app, &tenant, with_estimate).await;
    assert_eq!(denied["reason"], "unpriced_model");

    let (_, _, allowed) = authorize(&app, &tenant, call("paid-1", "priced-model")).await;
    assert_eq!(
        (&allowed["allowed"], &allowed["reason"], &allowed["estimatedCost"]),
        (&json!(true), &json!("allowed"), &json!("0.002"))
    );
    // A call naming no model cannot be known to be unpriced.
    let (_, _, unnamed) = authorize(&app, &tenant, json!({"requestId": "paid-2"})).await;
    assert_eq!(unnamed["reason"], "allowed");

    // The denial is in the decision log (written in batches).
    let mut logged = Vec::new();
    for _ in 0..50 {
        let page = app
            .get_json(
                &tenant.owner,
                &format!("/v1/orgs/{}/decisions?allowed=false", tenant.org_id),
            )
            .await;
        logged = page["data"].as_array().cloned().unwrap_or_default();
        if logged.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reasons: Vec<&Value> = logged.iter().map(|d| &d["reason"]).collect();
    assert_eq!(
        reasons,
        [&json!("unpriced_model"), &json!("unpriced_model")],
        "{logged:?}"
    );

    // A call that happened anyway is still recorded, at zero cost and flagged.
    let response = app
        .request(Method::POST, "/v1/usage")
        .header("x-api-key", &tenant.key_secret)
        .json(&json!({
            "requestId": "paid-0", "endpoint": "/chat/completions", "provider": "openai",
            "model": "mystery-model", "promptTokens": 1000, "completionTokens": 500
        }))
        .send()
        .await
        .unwrap();
    let recorded = expect_json(response, StatusCode::CREATED).await;
    assert_eq!(
        (&recorded["status"], &recorded["cost"], &recorded["unpriced"]),
        (&json!("accepted"), &json!("0"), &json!(true)),
        "{recorded}"
    );

    // Back to allow: the same model goes through at once on this instance.
    expect_json(set_policy(&app, &tenant.owner, &tenant, "allow").await, StatusCode::OK).await;
    let (_, _, again) = authorize(&app, &tenant, call("paid-3", "mystery-model")).await;
    assert_eq!(again["reason"], "allowed");
}

#[tokio::test]
async fn only_the_organizations_own_owners_and_admins_can_change_the_policy() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let other = app.tenant().await;

    // Another organization's owner cannot even see it.
    expect_problem(
        set_policy(&app, &other.owner, &tenant, "deny").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // A viewer (no admin role) may not change it.
    let viewer = app.member(&tenant, "viewer").await;
    expect_problem(
        set_policy(&app, &viewer, &tenant, "deny").await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(policy_of(&app, &tenant).await, "allow");
    let (_, _, decision) = authorize(&app, &tenant, call("still-1", "mystery-model")).await;
    assert_eq!(decision["reason"], "allowed");

    // An admin may; it applies to that organization only.
    let admin = app.member(&tenant, "admin").await;
    expect_json(set_policy(&app, &admin, &tenant, "deny").await, StatusCode::OK).await;
    let (_, _, denied) = authorize(&app, &tenant, call("still-2", "mystery-model")).await;
    assert_eq!(denied["reason"], "unpriced_model");
    assert_eq!(policy_of(&app, &other).await, "allow");
    let (_, _, elsewhere) = authorize(&app, &other, call("still-3", "mystery-model")).await;
    assert_eq!(elsewhere["reason"], "allowed");

    // Not a policy: the one problem shape, naming the choices.
    let problem = expect_problem(
        set_policy(&app, &tenant.owner, &tenant, "maybe").await,
        StatusCode::BAD_REQUEST,
        "invalid_type",
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("`allow` or `deny`"),
        "{problem}"
    );
    assert_eq!(policy_of(&app, &tenant).await, "deny");
}
