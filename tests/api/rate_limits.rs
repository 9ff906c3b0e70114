//! Requests- and tokens-per-minute limits hold across instances sharing one Redis:
//! the minute's window is one counter whatever instance answers, and a denial says
//! when to come back (`Retry-After`, the end of the minute).
//!
//! The window is the wall-clock minute; a scenario that straddles a minute boundary
//! proves nothing, so it is run again with a fresh customer (it takes well under a
//! second, so a second straddle is all but impossible).

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use reqwest::{header::HeaderMap, Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{authorize, expect_json, Tenant, TestApp};

/// Three instances of one deployment, and a tenant whose customers get `limits` as
/// their default rate limits from their first request.
async fn three_instances_with_default_limits(limits: Value) -> ([TestApp; 3], Tenant) {
    let a = TestApp::spawn().await;
    let tenant = a.tenant().await;
    let response = a
        .as_user(
            Method::PUT,
            &format!("/v1/orgs/{}/defaults/customer", tenant.org_id),
            &tenant.owner,
        )
        .json(&json!({ "rateLimits": limits }))
        .send()
        .await
        .unwrap();
    expect_json(response, StatusCode::OK).await;
    let b = a.another_instance().await;
    let c = a.another_instance().await;
    ([a, b, c], tenant)
}

fn minute_end(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp((at.timestamp().div_euclid(60) + 1) * 60, 0).unwrap()
}

/// Runs `scenario` for a fresh customer until one run stays inside one minute; the
/// scenario gets the customer's name and the instant it started.
async fn within_one_minute<F, Fut>(mut scenario: F)
where
    F: FnMut(String, DateTime<Utc>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use futures_util::FutureExt;
    for attempt in 0..3 {
        let started = Utc::now();
        let run = std::panic::AssertUnwindSafe(scenario(format!("customer-{attempt}"), started))
            .catch_unwind()
            .await;
        if minute_end(started) == minute_end(Utc::now()) {
            if let Err(panic) = run {
                std::panic::resume_unwind(panic);
            }
            return;
        }
    }
    panic!("three runs in a row straddled a minute boundary");
}

/// Checks a rate-limit denial: its reason, the deciding scope, and a `Retry-After`
/// that matches the body and points at the end of the minute the call was made in.
fn assert_rate_limited(headers: &HeaderMap, answer: &Value, reason: &str, started: DateTime<Utc>) {
    assert_eq!(
        (
            answer["allowed"].as_bool(),
            answer["reason"].as_str(),
            answer["decidingScope"].as_str()
        ),
        (Some(false), Some(reason), Some("customer")),
        "{answer}"
    );
    let retry_after: i64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert_eq!(answer["retryAfterSeconds"], retry_after);
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let until_minute_end = (minute_end(started) - started).num_seconds();
    // Answered at or after `started`, so no later than the minute's end; the count is
    // in whole seconds, and the answer came within a second or two of the start.
    assert!(
        (until_minute_end - 3..=until_minute_end.max(1)).contains(&retry_after),
        "Retry-After {retry_after}, {until_minute_end} s were left in the minute at the start"
    );
}

#[tokio::test]
async fn requests_per_minute_hold_across_three_instances_with_retry_after() {
    let (instances, tenant) = three_instances_with_default_limits(json!({"requestsPerMinute": 4})).await;
    let [a, b, c] = &instances;
    within_one_minute(|customer, started| {
        let tenant = &tenant;
        async move {
            // A usage event that was never authorized is a request of its minute too.
            c.record_event(
                tenant,
                json!({"user": customer, "promptTokens": 10, "completionTokens": 0}),
            )
            .await;
            // Nine calls at once, three on each instance: three more fit in the window.
            let asks = (0..9).map(|i| {
                let app = [a, b, c][i % 3];
                let body = json!({"requestId": format!("{customer}-{i}"), "user": customer});
                async move { authorize(app, tenant, body).await }
            });
            let answers = join_all(asks).await;
            let allowed = answers
                .iter()
                .filter(|(_, _, answer)| answer["allowed"] == true)
                .count();
            assert_eq!(allowed, 3, "{answers:?}");
            for (status, headers, answer) in answers.iter().filter(|(_, _, answer)| answer["allowed"] == false) {
                assert_eq!(*status, StatusCode::OK);
                assert_rate_limited(headers, answer, "rate_limited_requests", started);
                assert_eq!(headers["ratelimit-limit"], "4");
                assert_eq!(headers["ratelimit-remaining"], "0");
                let window = &answer["scopes"][3]["requestsPerMinute"];
                assert_eq!((window["limit"].as_i64(), window["used"].as_i64()), (Some(4), Some(4)));
            }
        }
    })
    .await;
}

#[tokio::test]
async fn tokens_per_minute_hold_across_instances_counting_reported_usage() {
    let (instances, tenant) = three_instances_with_default_limits(json!({"tokensPerMinute": 1000})).await;
    let [a, b, c] = &instances;
    within_one_minute(|customer, started| {
        let tenant = &tenant;
        async move {
            let ask = |id: &str, tokens: i64| {
                json!({"requestId": format!("{customer}-{id}"), "user": customer, "estimatedPromptTokens": tokens})
            };
            // 700 tokens reported through A.
            a.record_event(tenant, json!({"user": customer, "promptTokens": 600, "completionTokens": 100}))
                .await;
            // B: a call estimated at 301 tokens would pass 1,000; C: 300 fit.
            let (_, headers, over) = authorize(b, tenant, ask("over", 301)).await;
            assert_rate_limited(&headers, &over, "rate_limited_tokens", started);
            let window = &over["scopes"][3]["tokensPerMinute"];
            assert_eq!((window["limit"].as_i64(), window["used"].as_i64()), (Some(1000), Some(700)));
            let (_, _, fits) = authorize(c, tenant, ask("fits", 300)).await;
            assert_eq!(fits["allowed"], true, "{fits}");
            // The call reports its 300 tokens through C; now the minute is full for
            // everyone, even a call of one token on A.
            c.record_event(
                tenant,
                json!({"requestId": format!("{customer}-fits"), "user": customer, "promptTokens": 300, "completionTokens": 0}),
            )
            .await;
            let (_, headers, full) = authorize(a, tenant, ask("one-more", 1)).await;
            assert_rate_limited(&headers, &full, "rate_limited_tokens", started);
            assert_eq!(full["scopes"][3]["tokensPerMinute"]["remaining"], 0);
        }
    })
    .await;
}
