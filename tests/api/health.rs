//! Probes and metrics an operator relies on.

use reqwest::{Method, StatusCode};

use crate::helpers::{expect_json, TestApp};

#[tokio::test]
async fn probes_answer() {
    let app = TestApp::spawn().await;
    let live = expect_json(
        app.request(Method::GET, "/healthz").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(live["status"], "ok");
    let ready = expect_json(
        app.request(Method::GET, "/readyz").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(ready["status"], "ok");
    assert_eq!(ready["redis"], "up");
}

#[tokio::test]
async fn an_instance_without_redis_stays_in_service_as_degraded_and_still_records_usage() {
    let app = TestApp::spawn_with(|c| {
        c.redis.url = meterplane::config::Secret::new("redis://127.0.0.1:1");
        c.redis.timeout = std::time::Duration::from_millis(200);
    })
    .await;
    let ready = expect_json(
        app.request(Method::GET, "/readyz").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(ready["status"], "degraded");
    assert_eq!(
        (ready["postgres"].as_str(), ready["redis"].as_str()),
        (Some("up"), Some("down"))
    );
    let tenant = app.tenant().await;
    let event = serde_json::json!({
        "requestId": "without-redis", "endpoint": "/chat/completions", "provider": "openai",
        "model": "gpt-4o", "user": "customer-1", "promptTokens": 10, "completionTokens": 5
    });
    let recorded = app
        .request(Method::POST, "/v1/usage")
        .header("x-api-key", &tenant.key_secret)
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(recorded.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn readiness_fails_when_postgres_is_unreachable() {
    let app = TestApp::spawn_with(|c| {
        c.database.url = meterplane::config::Secret::new("postgres://postgres@127.0.0.1:1/none");
        c.database.acquire_timeout = std::time::Duration::from_millis(500);
    })
    .await;
    let response = app.request(Method::GET, "/readyz").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "service_unavailable");
    assert!(
        !body.to_string().contains("127.0.0.1:1"),
        "connection details stay in the logs"
    );
}

#[tokio::test]
async fn metrics_count_requests_per_route_pattern_on_their_own_address_only() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    for _ in 0..3 {
        app.get_json(&tenant.owner, &format!("/v1/orgs/{}/projects", tenant.org_id))
            .await;
    }
    // Not on the API's address: whoever reaches the API does not read the metrics.
    let on_api = app.request(Method::GET, "/metrics").send().await.unwrap();
    crate::helpers::expect_problem(on_api, StatusCode::NOT_FOUND, "route_not_found").await;
    let text = app.metrics().await;
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("meterplane_http_requests_total")
                && l.contains("endpoint=\"/v1/orgs/{orgId}/projects\"")
                && l.contains("method=\"GET\"")
        })
        .unwrap_or_else(|| panic!("no counter for the route pattern in:\n{text}"));
    assert!(line.ends_with(" 3"), "{line}");
    assert!(text.contains("meterplane_http_requests_duration_seconds_bucket"));
    assert!(
        !text.contains(&tenant.org_id.to_string()),
        "ids must not become label values"
    );
}
