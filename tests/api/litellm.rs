//! `POST /v1/integrations/litellm/logs`: LiteLLM's generic_api logger payloads, as a
//! real proxy posted them (integrations/litellm/tests/fixtures/payloads.json), recorded
//! through the real stack.

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{expect_json, expect_problem, Tenant, TestApp};

const PAYLOADS: &str = include_str!("../../integrations/litellm/tests/fixtures/payloads.json");
const PATH: &str = "/v1/integrations/litellm/logs";

/// The fixture payloads by name, moved in time so the batch happened a minute ago (the
/// organization's retention keeps only recent events).
fn payloads() -> Vec<(String, Value)> {
    let fixtures: Vec<Value> = serde_json::from_str(PAYLOADS).unwrap();
    let earliest = fixtures
        .iter()
        .filter_map(|f| f["payload"]["startTime"].as_f64())
        .fold(f64::INFINITY, f64::min);
    let shift = (Utc::now().timestamp() - 60) as f64 - earliest.floor();
    fixtures
        .into_iter()
        .map(|f| {
            let mut p = f["payload"].clone();
            for key in ["startTime", "endTime", "completionStartTime"] {
                if let Some(t) = p[key].as_f64() {
                    p[key] = json!(t + shift);
                }
            }
            (f["name"].as_str().unwrap().to_owned(), p)
        })
        .collect()
}

fn payload(name: &str) -> Value {
    payloads().into_iter().find(|(n, _)| n == name).unwrap().1
}

async fn priced_app() -> (TestApp, Tenant) {
    let app = TestApp::spawn().await;
    app.add_price("openai", "gpt-4o", "gpt-4o-2024-08-06", "2.5", "10", "1.25")
        .await;
    app.add_price(
        "openai",
        "gpt-4o-mini",
        "gpt-4o-mini-2024-07-18",
        "0.15",
        "0.6",
        "0.075",
    )
    .await;
    let tenant = app.tenant().await;
    (app, tenant)
}

async fn post_logs(app: &TestApp, key: &str, query: &str, body: &Value) -> reqwest::Response {
    app.request(Method::POST, &format!("{PATH}{query}"))
        .header("x-api-key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn spend_log(app: &TestApp, tenant: &Tenant, request_id: &str) -> Value {
    let page = app
        .get_json(
            &tenant.owner,
            &format!("/v1/orgs/{}/spend-logs?limit=100", tenant.org_id),
        )
        .await;
    let entry = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["requestId"] == request_id)
        .unwrap_or_else(|| panic!("no event {request_id} in {page}"))
        .clone();
    app.get_json(
        &tenant.owner,
        &format!(
            "/v1/orgs/{}/spend-logs/{}",
            tenant.org_id,
            entry["id"].as_str().unwrap()
        ),
    )
    .await
}

#[tokio::test]
async fn a_batch_from_the_generic_logger_is_recorded_mapped_and_priced_exactly() {
    let (app, tenant) = priced_app().await;
    let all = payloads();
    let batch = Value::Array(all.iter().map(|(_, p)| p.clone()).collect());
    let body = expect_json(post_logs(&app, &tenant.key_secret, "", &batch).await, StatusCode::OK).await;
    let statuses: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    // chat, stream, cached, error, failed attempt, its success, denial, A2A model call, A2A call.
    assert_eq!(
        statuses,
        ["accepted", "accepted", "accepted", "accepted", "ignored", "accepted", "ignored", "accepted", "ignored"],
        "{body}"
    );
    assert_eq!(
        (
            &body["accepted"],
            &body["ignored"],
            &body["rejected"],
            &body["duplicates"]
        ),
        (&json!(6), &json!(3), &json!(0), &json!(0))
    );
    assert!(body["results"][6]["reason"]
        .as_str()
        .unwrap()
        .contains("Meterplane callback"));

    // Cached tokens: (2000 − 1500) × 2.5/M + 1500 × 1.25/M + 100 × 10/M = 0.004125.
    let cached = payload("cached");
    let d = spend_log(&app, &tenant, cached["litellm_call_id"].as_str().unwrap()).await;
    assert_eq!(
        (d["provider"].as_str(), d["model"].as_str()),
        (Some("openai"), Some("gpt-4o"))
    );
    assert_eq!(
        (d["promptTokens"].as_i64(), d["cachedTokens"].as_i64()),
        (Some(2000), Some(1500))
    );
    assert_eq!(d["cost"], "0.004125");
    assert_eq!(d["user"], "cust-2");
    assert_eq!(d["metadata"]["litellm"]["modelGroup"], "cached");
    assert!(d["requestBody"].is_null(), "bodies only with storeBodies=true");

    let stream = spend_log(&app, &tenant, payload("stream")["litellm_call_id"].as_str().unwrap()).await;
    assert!(stream["timeToFirstTokenMs"].as_i64().unwrap() > 0);

    let error = spend_log(&app, &tenant, payload("error")["litellm_call_id"].as_str().unwrap()).await;
    assert_eq!(
        (error["status"].as_str(), error["errorCode"].as_str()),
        (Some("error"), Some("InternalServerError"))
    );

    // The fallback: one successful event under the call id, not an error.
    let fallback = spend_log(
        &app,
        &tenant,
        payload("fallback_success")["litellm_call_id"].as_str().unwrap(),
    )
    .await;
    assert_eq!(fallback["status"], "success");
    assert_eq!(fallback["metadata"]["litellm"]["attemptedFallbacks"], 1);

    // The A2A call: one request for the agent and the customer, with the model's tokens.
    let a2a = payload("a2a_call");
    let d = spend_log(&app, &tenant, a2a["litellm_call_id"].as_str().unwrap()).await;
    assert_eq!(
        (d["endpoint"].as_str(), d["agentId"].as_str(), d["user"].as_str()),
        (Some("/a2a/planner"), Some("planner"), Some("cust-a2a"))
    );
    assert_eq!(
        (d["model"].as_str(), d["promptTokens"].as_i64()),
        (Some("gpt-4o-mini"), Some(10))
    );
    // 10 × 0.15/M + 20 × 0.6/M
    assert_eq!(d["cost"], "0.0000135");
    assert_eq!(app.count_rows("usage_events", tenant.org_id).await, 6);
}

#[tokio::test]
async fn a_batch_sent_again_is_stored_once() {
    let (app, tenant) = priced_app().await;
    let batch = Value::Array(payloads().into_iter().map(|(_, p)| p).collect());
    expect_json(post_logs(&app, &tenant.key_secret, "", &batch).await, StatusCode::OK).await;
    let again = expect_json(post_logs(&app, &tenant.key_secret, "", &batch).await, StatusCode::OK).await;
    assert_eq!((&again["accepted"], &again["duplicates"]), (&json!(0), &json!(6)));
    assert_eq!(app.count_rows("usage_events", tenant.org_id).await, 6);
}

#[tokio::test]
async fn one_payload_alone_and_bodies_on_request() {
    let (app, tenant) = priced_app().await;
    let chat = payload("chat");
    let body = expect_json(
        post_logs(&app, &tenant.key_secret, "?storeBodies=true", &chat).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["results"][0]["status"], "accepted", "{body}");
    assert_eq!(body["results"][0]["requestId"], chat["litellm_call_id"]);
    let d = spend_log(&app, &tenant, chat["litellm_call_id"].as_str().unwrap()).await;
    assert!(d["responseBody"].as_str().unwrap().contains("Hello from the mock"));
    assert_eq!(d["metadata"]["feature"], "search");
}

#[tokio::test]
async fn events_land_in_the_organization_of_the_key() {
    let (app, tenant) = priced_app().await;
    let other = app.tenant().await;
    let chat = payload("chat");
    expect_json(
        post_logs(&app, &other.key_secret, "", &json!([chat])).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(app.count_rows("usage_events", other.org_id).await, 1);
    assert_eq!(app.count_rows("usage_events", tenant.org_id).await, 0);
}

#[tokio::test]
async fn bad_input_is_refused_or_rejected_per_payload() {
    let (app, tenant) = priced_app().await;
    let response = app
        .request(Method::POST, PATH)
        .json(&json!([payload("chat")]))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let response = post_logs(&app, "mp_nottherightkey0000000000000000000000000000", "", &json!([])).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    for body in [json!([]), json!("text"), json!(7), Value::Array(vec![json!({}); 1001])] {
        let response = post_logs(&app, &tenant.key_secret, "", &body).await;
        expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
    let response = post_logs(
        &app,
        &tenant.key_secret,
        "?storeBodies=maybe",
        &json!([payload("chat")]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // One good payload, one that is not an object, one with no call id: each on its own.
    let body = expect_json(
        post_logs(
            &app,
            &tenant.key_secret,
            "",
            &json!([payload("chat"), 42, {"status": "success"}]),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let results = body["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], "accepted");
    assert_eq!(
        (results[1]["status"].as_str(), results[1]["errors"][0]["field"].as_str()),
        (Some("rejected"), Some("payload"))
    );
    assert_eq!(results[2]["status"], "rejected");
    assert!(
        results[2]["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["field"] == "requestId"),
        "{body}"
    );
    assert_eq!(app.count_rows("usage_events", tenant.org_id).await, 1);
}

#[tokio::test]
async fn usage_from_the_logger_settles_the_calls_reservation() {
    let (app, tenant) = priced_app().await;
    let chat = payload("chat");
    let call_id = chat["litellm_call_id"].as_str().unwrap();
    let decision = expect_json(
        app.request(Method::POST, "/v1/gateway/authorize")
            .header("x-api-key", &tenant.key_secret)
            .json(
                &json!({"requestId": call_id, "user": "cust-1", "provider": "openai", "model": "gpt-4o-mini",
                          "estimatedPromptTokens": 1000000, "estimatedCompletionTokens": 0}),
            )
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(decision["allowed"], true);
    let reserved = |d: &Value| d["scopes"][0]["budget"]["reserved"].clone();
    expect_json(
        post_logs(&app, &tenant.key_secret, "", &json!([chat])).await,
        StatusCode::OK,
    )
    .await;
    // Another call's check shows the organization's reservation released and the spend settled.
    let budget = json!({"amount": "100", "period": "monthly"});
    app.as_user(
        Method::PUT,
        &format!("/v1/orgs/{0}/budgets/organization/{0}", tenant.org_id),
        &tenant.owner,
    )
    .json(&budget)
    .send()
    .await
    .unwrap();
    let after = expect_json(
        app.request(Method::POST, "/v1/gateway/authorize")
            .header("x-api-key", &tenant.key_secret)
            .json(&json!({"requestId": "next-call"}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(reserved(&after), "0", "{after}");
    assert_eq!(after["scopes"][0]["budget"]["spent"], "0.000014", "{after}");
}
