//! Prices that match the providers' bills, as a tenant reads them in the spend log:
//! cache writes by duration, reasoning tokens and audio tokens, each priced apart and
//! shown apart, with hand-computed amounts; and the rules the token counts follow
//! (`promptTokens` counts every input token, `completionTokens` every output token).

use chrono::{Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    helpers::{expect_json, expect_problem, TestApp, TestUser},
    price_helpers::detail,
};

/// Adds a price version from yesterday on, through the operator API.
async fn add_price(app: &TestApp, operator: &TestUser, body: Value) -> Value {
    let mut body = body;
    body["validFrom"] = json!((Utc::now() - Duration::days(1)).to_rfc3339());
    let response = app
        .as_user(Method::POST, "/v1/admin/prices", operator)
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_json(response, StatusCode::CREATED).await
}

/// The named fields of a JSON object, as strings or numbers, in order.
fn pick(value: &Value, keys: &[&str]) -> Vec<Value> {
    keys.iter().map(|k| value[*k].clone()).collect()
}

/// Every part of the breakdown adds up to the cost before discount.
fn assert_parts_add_up(logged: &Value) {
    let parts: rust_decimal::Decimal = logged["costBreakdown"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "image") // the sum of imageInput and imageOutput
        .map(|(_, v)| v.as_str().unwrap().parse::<rust_decimal::Decimal>().unwrap())
        .sum();
    assert_eq!(
        parts.normalize().to_string(),
        logged["costBeforeDiscount"].as_str().unwrap(),
        "{logged}"
    );
}

/// A Claude Sonnet 4.5 call with cache reads and cache writes of both durations.
fn claude_cache_call() -> Value {
    json!({"provider": "anthropic", "model": "claude-sonnet-4-5", "promptTokens": 50_000,
           "completionTokens": 1_000, "cachedTokens": 30_000, "cacheWrite5mTokens": 8_000,
           "cacheWrite1hTokens": 2_000})
}

/// What [`claude_cache_call`] costs at Claude Sonnet 4.5's list prices (3 / 15, reads
/// 0.30, 5-minute writes 3.75, 1-hour writes 6).
fn assert_claude_cache_call_costs(logged: &Value) {
    // Plain input 50,000 − 30,000 − 8,000 − 2,000 = 10,000 × 3/M = 0.03; reads 30,000 ×
    // 0.30/M = 0.009; 5-minute writes 8,000 × 3.75/M = 0.03; 1-hour writes 2,000 × 6/M =
    // 0.012; output 1,000 × 15/M = 0.015. Total 0.096.
    assert_eq!(
        pick(
            &logged["costBreakdown"],
            &[
                "input",
                "cachedInput",
                "cacheWrite5m",
                "cacheWrite1h",
                "output",
                "reasoning"
            ]
        ),
        [
            json!("0.03"),
            json!("0.009"),
            json!("0.03"),
            json!("0.012"),
            json!("0.015"),
            json!("0")
        ]
    );
    assert_eq!(logged["cost"], "0.096");
    assert_parts_add_up(logged);
}

#[tokio::test]
async fn a_claude_call_with_cache_writes_of_both_durations_and_cache_reads() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    // Claude Sonnet 4.5's list prices: reads 0.1×, 5-minute writes 1.25×, 1-hour writes 2×.
    let view = add_price(
        &app,
        &operator,
        json!({"provider": "anthropic", "model": "claude-sonnet-4-5", "inputPerMtok": "3", "outputPerMtok": "15",
               "cachedInputPerMtok": "0.30", "cacheWrite5mPerMtok": "3.75", "cacheWrite1hPerMtok": "6"}),
    )
    .await;
    assert_eq!(
        pick(
            &view,
            &[
                "cacheWrite5mPerMtok",
                "cacheWrite1hPerMtok",
                "reasoningPerMtok",
                "audioInputPerMtok"
            ]
        ),
        [json!("3.75"), json!("6"), Value::Null, Value::Null]
    );
    let tenant = app.tenant().await;
    let id = app.record_event(&tenant, claude_cache_call()).await;
    let logged = detail(&app, &tenant, id).await;
    assert_claude_cache_call_costs(&logged);
    // The list shows the token parts too.
    let page = app
        .get_json(&tenant.owner, &format!("/v1/orgs/{}/spend-logs", tenant.org_id))
        .await;
    assert_eq!(
        pick(
            &page["data"][0],
            &[
                "promptTokens",
                "cachedTokens",
                "cacheWrite5mTokens",
                "cacheWrite1hTokens",
                "cost"
            ]
        ),
        [json!(50_000), json!(30_000), json!(8_000), json!(2_000), json!("0.096")]
    );
    // So does the day's activity.
    let activity = app
        .get_json(&tenant.owner, &format!("/v1/orgs/{}/activity?days=1", tenant.org_id))
        .await;
    let today = &activity["activity"][0];
    assert_eq!(
        pick(
            today,
            &[
                "cacheWrite5mTokens",
                "cacheWrite1hTokens",
                "cacheWrite5mCost",
                "cacheWrite1hCost",
                "cost"
            ]
        ),
        [
            json!(8_000),
            json!(2_000),
            json!("0.03"),
            json!("0.012"),
            json!("0.096")
        ]
    );
}

#[tokio::test]
async fn a_reasoning_call_is_charged_as_output_unless_the_price_says_otherwise() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    add_price(
        &app,
        &operator,
        json!({"provider": "openai", "model": "o3", "inputPerMtok": "2", "outputPerMtok": "8",
               "cachedInputPerMtok": "0.5"}),
    )
    .await;
    add_price(
        &app,
        &operator,
        json!({"provider": "acme", "model": "thinker-1", "inputPerMtok": "2", "outputPerMtok": "8",
               "cachedInputPerMtok": "0.5", "reasoningPerMtok": "3.5"}),
    )
    .await;
    let tenant = app.tenant().await;
    let call = |provider: &str, model: &str| {
        json!({"provider": provider, "model": model, "promptTokens": 2_000, "completionTokens": 5_000,
               "reasoningTokens": 4_200})
    };
    let o3 = detail(&app, &tenant, app.record_event(&tenant, call("openai", "o3")).await).await;
    // Input 2,000 × 2/M = 0.004; output 800 × 8/M = 0.0064; reasoning 4,200 × 8/M = 0.0336.
    assert_eq!(
        pick(&o3["costBreakdown"], &["input", "output", "reasoning"]),
        [json!("0.004"), json!("0.0064"), json!("0.0336")]
    );
    assert_eq!(
        (o3["reasoningTokens"].as_i64(), o3["cost"].as_str()),
        (Some(4_200), Some("0.044"))
    );
    assert_parts_add_up(&o3);
    let own = detail(
        &app,
        &tenant,
        app.record_event(&tenant, call("acme", "thinker-1")).await,
    )
    .await;
    // Reasoning 4,200 × 3.5/M = 0.0147.
    assert_eq!(
        (own["costBreakdown"]["reasoning"].as_str(), own["cost"].as_str()),
        (Some("0.0147"), Some("0.0251"))
    );
}

#[tokio::test]
async fn an_audio_call_charges_audio_tokens_at_their_own_prices() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    add_price(
        &app,
        &operator,
        json!({"provider": "openai", "model": "gpt-4o-audio-preview", "inputPerMtok": "2.5", "outputPerMtok": "10",
               "cachedInputPerMtok": "1.25", "audioInputPerMtok": "40", "audioOutputPerMtok": "80"}),
    )
    .await;
    let tenant = app.tenant().await;
    let id = app
        .record_event(
            &tenant,
            json!({"model": "gpt-4o-audio-preview", "promptTokens": 1_500, "completionTokens": 900,
                   "audioInputTokens": 1_200, "audioOutputTokens": 700}),
        )
        .await;
    let logged = detail(&app, &tenant, id).await;
    // Text in 300 × 2.5/M = 0.00075; audio in 1,200 × 40/M = 0.048; text out 200 × 10/M =
    // 0.002; audio out 700 × 80/M = 0.056. Total 0.10675.
    assert_eq!(
        pick(
            &logged["costBreakdown"],
            &["input", "audioInput", "output", "audioOutput"]
        ),
        [json!("0.00075"), json!("0.048"), json!("0.002"), json!("0.056")]
    );
    assert_eq!(
        pick(&logged, &["audioInputTokens", "audioOutputTokens", "cost"]),
        [json!(1_200), json!(700), json!("0.10675")]
    );
    assert_parts_add_up(&logged);
}

#[tokio::test]
async fn parts_that_exceed_their_total_are_refused_with_the_field_named() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let event = |fields: Value| {
        let mut event = json!({"requestId": format!("req-{}", Uuid::new_v4().simple()),
            "endpoint": "/chat/completions", "provider": "anthropic", "model": "claude-sonnet-4-5",
            "promptTokens": 1_000, "completionTokens": 100});
        event
            .as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        event
    };
    for (fields, field) in [
        // Cached reads and writes together exceed the prompt that counts them.
        (
            json!({"cachedTokens": 600, "cacheWrite5mTokens": 300, "cacheWrite1hTokens": 101}),
            "promptTokens",
        ),
        (json!({"audioInputTokens": 1_001}), "promptTokens"),
        (
            json!({"reasoningTokens": 80, "audioOutputTokens": 21}),
            "completionTokens",
        ),
        (json!({"cachedTokens": 1_001}), "cachedTokens"),
        (json!({"reasoningTokens": -1}), "reasoningTokens"),
        (json!({"cacheWrite1hTokens": 100_000_001}), "cacheWrite1hTokens"),
    ] {
        let response = app
            .request(Method::POST, "/v1/usage")
            .header("x-api-key", &tenant.key_secret)
            .json(&event(fields.clone()))
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], field, "{fields}: {problem}");
    }
    // Exactly filling the totals is fine; in a batch, only the bad event is refused.
    let (status, body) = app
        .send_batch(
            &tenant.key_secret,
            json!([
                event(
                    json!({"cachedTokens": 600, "cacheWrite5mTokens": 300, "cacheWrite1hTokens": 50,
                             "audioInputTokens": 50, "reasoningTokens": 70, "audioOutputTokens": 30})
                ),
                event(json!({"reasoningTokens": 101})),
            ]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["accepted"].as_i64(), body["rejected"].as_i64()),
        (Some(1), Some(1)),
        "{body}"
    );
    assert_eq!(body["results"][1]["errors"][0]["field"], "completionTokens");
}

#[tokio::test]
async fn optional_prices_are_checked_like_the_others() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let response = app
        .as_user(Method::POST, "/v1/admin/prices", &operator)
        .json(
            &json!({"provider": "acme", "model": "m-1", "inputPerMtok": "1", "outputPerMtok": "2",
                      "cachedInputPerMtok": "0.5", "cacheWrite5mPerMtok": "-1", "audioOutputPerMtok": "0.00000000001",
                      "validFrom": Utc::now().to_rfc3339()}),
        )
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let fields = crate::helpers::problem_fields(&problem);
    assert_eq!(fields, ["cacheWrite5mPerMtok", "audioOutputPerMtok"]);
}

#[tokio::test]
async fn a_gemini_pro_call_just_below_and_just_above_the_long_context_threshold() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    // Gemini 2.5 Pro: 1.25/10 up to 200,000 prompt tokens, 2.50/15 above; cache reads
    // 0.31/0.625.
    let view = add_price(
        &app,
        &operator,
        json!({"provider": "google", "model": "gemini-2.5-pro", "inputPerMtok": "1.25", "outputPerMtok": "10",
               "cachedInputPerMtok": "0.31",
               "longContext": {"aboveTokens": 200_000, "inputPerMtok": "2.50", "outputPerMtok": "15",
                               "cachedInputPerMtok": "0.625"}}),
    )
    .await;
    assert_eq!(
        view["longContext"],
        json!({"aboveTokens": 200_000, "inputPerMtok": "2.5", "outputPerMtok": "15", "cachedInputPerMtok": "0.625"})
    );
    let tenant = app.tenant().await;
    let call = |prompt: i64| {
        json!({"provider": "google", "model": "gemini-2.5-pro", "promptTokens": prompt, "completionTokens": 2_000,
               "cachedTokens": 50_000, "reasoningTokens": 500})
    };
    let below = detail(&app, &tenant, app.record_event(&tenant, call(200_000)).await).await;
    // 200,000 is not above the threshold: input 150,000 × 1.25/M = 0.1875; cached 50,000
    // × 0.31/M = 0.0155; output 1,500 × 10/M = 0.015; reasoning 500 × 10/M = 0.005.
    assert_eq!(
        pick(
            &below["costBreakdown"],
            &["input", "cachedInput", "output", "reasoning"]
        ),
        [json!("0.1875"), json!("0.0155"), json!("0.015"), json!("0.005")]
    );
    assert_eq!(below["cost"], "0.223");
    // One token more: every token at the long-context prices. Input 150,001 × 2.5/M =
    // 0.3750025; cached 50,000 × 0.625/M = 0.03125; output 1,500 × 15/M = 0.0225;
    // reasoning 500 × 15/M = 0.0075.
    let above = detail(&app, &tenant, app.record_event(&tenant, call(200_001)).await).await;
    assert_eq!(
        pick(
            &above["costBreakdown"],
            &["input", "cachedInput", "output", "reasoning"]
        ),
        [json!("0.3750025"), json!("0.03125"), json!("0.0225"), json!("0.0075")]
    );
    assert_eq!(above["cost"], "0.4362525");
    assert_parts_add_up(&above);
    assert_eq!(below["priceId"], above["priceId"], "one price version, two tiers");

    let response = app
        .as_user(Method::POST, "/v1/admin/prices", &operator)
        .json(
            &json!({"provider": "google", "model": "gemini-x", "inputPerMtok": "1", "outputPerMtok": "2",
                      "cachedInputPerMtok": "0.5", "validFrom": Utc::now().to_rfc3339(),
                      "longContext": {"aboveTokens": 0, "inputPerMtok": "-2", "outputPerMtok": "4",
                                      "cachedInputPerMtok": "1"}}),
        )
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let fields = crate::helpers::problem_fields(&problem);
    assert_eq!(fields, ["longContext.inputPerMtok", "longContext.aboveTokens"]);
}

/// A price map in LiteLLM's shape, written for this test: per-token numbers, a provider
/// prefix on a key, an entry priced per second (not importable), the spec entry.
const LITELLM_SAMPLE: &str = r#"{
  "sample_spec": {"max_tokens": "LEGACY parameter", "input_cost_per_token": 0.0, "output_cost_per_token": 0.0,
                  "litellm_provider": "one of https://docs.litellm.ai/docs/providers", "mode": "one of: chat"},
  "claude-sonnet-4-5": {"max_input_tokens": 1000000, "litellm_provider": "anthropic", "mode": "chat",
                        "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
                        "cache_read_input_token_cost": 3e-07, "cache_creation_input_token_cost": 3.75e-06,
                        "cache_creation_input_token_cost_above_1hr": 6e-06,
                        "input_cost_per_token_above_200k_tokens": 6e-06, "output_cost_per_token_above_200k_tokens": 2.25e-05,
                        "cache_read_input_token_cost_above_200k_tokens": 6e-07,
                        "cache_creation_input_token_cost_above_200k_tokens": 7.5e-06,
                        "supports_prompt_caching": true},
  "gemini/gemini-2.5-pro": {"litellm_provider": "gemini", "mode": "chat",
                            "input_cost_per_token": 1.25e-06, "output_cost_per_token": 1e-05,
                            "cache_read_input_token_cost": 1.25e-07,
                            "input_cost_per_token_above_200k_tokens": 2.5e-06,
                            "output_cost_per_token_above_200k_tokens": 1.5e-05,
                            "cache_read_input_token_cost_above_200k_tokens": 2.5e-07},
  "whisper-1": {"litellm_provider": "openai", "mode": "audio_transcription", "input_cost_per_second": 0.0001}
}"#;

#[tokio::test]
async fn a_litellm_price_map_is_imported_and_prices_calls_as_the_providers_bill_them() {
    let app = TestApp::spawn().await;
    let file = meterplane::cli::from_litellm(LITELLM_SAMPLE, Utc::now() - Duration::days(1), None)
        .expect("the sample converts");
    let loaded = meterplane::cli::load_price_file(&app.state.db, &file)
        .await
        .expect("the converted file loads");
    assert_eq!(loaded, 2, "claude and gemini; whisper is priced per second: {file}");
    let tenant = app.tenant().await;

    let claude = app.record_event(&tenant, claude_cache_call()).await;
    assert_claude_cache_call_costs(&detail(&app, &tenant, claude).await);

    // LiteLLM's `gemini` is the catalog's `google`. Above 200,000 prompt tokens every token
    // is at the long-context prices: input 200,000 × 2.5/M = 0.5, cached 50,000 × 0.25/M =
    // 0.0125, output 1,000 × 15/M = 0.015: 0.5275.
    let gemini = app
        .record_event(
            &tenant,
            json!({"provider": "google", "model": "gemini-2.5-pro", "promptTokens": 250_000,
                   "completionTokens": 1_000, "cachedTokens": 50_000}),
        )
        .await;
    let gemini = detail(&app, &tenant, gemini).await;
    assert_eq!(
        pick(&gemini["costBreakdown"], &["input", "cachedInput", "output"]),
        [json!("0.5"), json!("0.0125"), json!("0.015")]
    );
    assert_eq!(gemini["cost"], "0.5275");
    assert_parts_add_up(&gemini);

    let bundled = meterplane::cli::load_price_file(&app.state.db, meterplane::cli::BUNDLED_PRICES)
        .await
        .expect("the bundled catalog loads with the API's rules");
    assert_eq!(bundled, 31);
}
