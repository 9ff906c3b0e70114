//! The request log: newest first, stable cursor pages, filters, tenancy, retention.

use chrono::{Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{expect_problem, Tenant, TestApp};

fn event(i: usize, minutes_ago: i64) -> Value {
    json!({
        "requestId": format!("log-{i}"), "endpoint": "/chat/completions", "provider": "openai",
        "model": if i.is_multiple_of(3) { "gpt-4o-mini" } else { "gpt-4o" },
        "user": format!("customer-{}", i % 2), "status": if i.is_multiple_of(5) { "error" } else { "success" },
        "promptTokens": 100 + i, "completionTokens": 10,
        "startedAt": (Utc::now() - Duration::minutes(minutes_ago)).to_rfc3339(),
    })
}

async fn page(app: &TestApp, tenant: &Tenant, query: &str) -> Value {
    app.get_json(&tenant.owner, &format!("/v1/orgs/{}/spend-logs?{query}", tenant.org_id))
        .await
}

fn request_ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["requestId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn pages_are_newest_first_and_stable_while_events_arrive() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    // 25 events, log-0 newest (0 minutes ago) … log-24 oldest.
    let events: Vec<Value> = (0..25).map(|i| event(i, i as i64 + 1)).collect();
    let (_, body) = app.send_batch(&tenant.key_secret, json!(events)).await;
    assert_eq!(body["accepted"], 25);

    let first = page(&app, &tenant, "limit=10").await;
    assert_eq!(request_ids(&first)[..3], ["log-0", "log-1", "log-2"]);

    // New events arrive between page fetches, newer than everything seen so far.
    let newer: Vec<Value> = (100..105).map(|i| event(i, 0)).collect();
    app.send_batch(&tenant.key_secret, json!(newer)).await;

    let mut seen = request_ids(&first);
    let mut cursor = first["nextCursor"].as_str().unwrap().to_owned();
    loop {
        let next = page(&app, &tenant, &format!("limit=10&cursor={cursor}")).await;
        seen.extend(request_ids(&next));
        match next["nextCursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("log-{i}")).collect();
    assert_eq!(
        seen, expected,
        "every original event exactly once, in order, none of the late ones"
    );

    let fresh = page(&app, &tenant, "limit=500").await;
    assert_eq!(fresh["data"].as_array().unwrap().len(), 30);
    assert!(fresh["nextCursor"].is_null());
}

#[tokio::test]
async fn filters_narrow_the_log() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let events: Vec<Value> = (0..15).map(|i| event(i, i as i64 + 1)).collect();
    app.send_batch(&tenant.key_secret, json!(events)).await;

    let count = |v: &Value| v["data"].as_array().unwrap().len();
    assert_eq!(count(&page(&app, &tenant, "model=gpt-4o-mini").await), 5);
    assert_eq!(count(&page(&app, &tenant, "status=error").await), 3);
    assert_eq!(count(&page(&app, &tenant, "customer=customer-1").await), 7);
    assert_eq!(count(&page(&app, &tenant, "customer=nobody").await), 0);
    assert_eq!(
        count(&page(&app, &tenant, "customer=&model=").await),
        15,
        "empty filters filter nothing"
    );
    assert_eq!(
        count(&page(&app, &tenant, &format!("projectId={}", tenant.project_id)).await),
        15
    );
    assert_eq!(
        count(&page(&app, &tenant, &format!("apiKeyId={}", uuid::Uuid::new_v4())).await),
        0
    );
    assert_eq!(
        count(&page(&app, &tenant, "provider=OpenAI&status=success&model=gpt-4o").await),
        8
    );
    let from = (Utc::now() - Duration::minutes(5) - Duration::seconds(30)).to_rfc3339();
    let windowed = page(&app, &tenant, &format!("from={}", urlencode(&from))).await;
    assert_eq!(request_ids(&windowed), ["log-0", "log-1", "log-2", "log-3", "log-4"]);
    assert_eq!(windowed["clamped"], false);
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn bad_queries_are_400s() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    for query in [
        "limit=0",
        "limit=501",
        "cursor=garbage",
        "status=maybe",
        "from=yesterday",
        "projectId=42",
        "nope=1",
    ] {
        let response = app
            .as_user(
                Method::GET,
                &format!("/v1/orgs/{}/spend-logs?{query}", tenant.org_id),
                &tenant.owner,
            )
            .send()
            .await
            .unwrap();
        expect_problem(response, StatusCode::BAD_REQUEST, "invalid_query_parameter").await;
    }
}

#[tokio::test]
async fn another_tenant_never_sees_the_log() {
    let app = TestApp::spawn().await;
    let victim = app.tenant().await;
    let other = app.tenant().await;
    let event_id = app.record_event(&victim, json!({"user": "victim-customer"})).await;
    app.record_event(&other, json!({})).await;

    let theirs = page(&app, &other, "limit=500").await;
    assert_eq!(theirs["data"].as_array().unwrap().len(), 1);
    assert!(!theirs.to_string().contains("victim-customer"));
    // The victim's event through the other tenant's own organization: 404.
    let response = app
        .as_user(
            Method::GET,
            &format!("/v1/orgs/{}/spend-logs/{event_id}", other.org_id),
            &other.owner,
        )
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    // A viewer of the victim reads it.
    let viewer = app.member(&victim, "viewer").await;
    let detail = app
        .get_json(&viewer, &format!("/v1/orgs/{}/spend-logs/{event_id}", victim.org_id))
        .await;
    assert_eq!(detail["user"], "victim-customer");
}

#[tokio::test]
async fn queries_reaching_past_retention_are_clamped_and_say_so() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    app.record_event(&tenant, json!({})).await;
    let long_ago = urlencode(&(Utc::now() - Duration::days(30)).to_rfc3339());
    let response = page(&app, &tenant, &format!("from={long_ago}")).await;
    assert_eq!(response["clamped"], true);
    let start = chrono::DateTime::parse_from_rfc3339(response["retentionStart"].as_str().unwrap()).unwrap();
    let expected = (Utc::now().date_naive() - Duration::days(2))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    assert_eq!(start, expected, "free plan: today and the two days before");
    assert_eq!(response["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn an_unknown_or_malformed_event_id_is_404_or_400() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    for id in [uuid::Uuid::new_v4().to_string(), uuid::Uuid::now_v7().to_string()] {
        let response = app
            .as_user(
                Method::GET,
                &format!("/v1/orgs/{}/spend-logs/{id}", tenant.org_id),
                &tenant.owner,
            )
            .send()
            .await
            .unwrap();
        expect_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    let response = app
        .as_user(
            Method::GET,
            &format!("/v1/orgs/{}/spend-logs/nope", tenant.org_id),
            &tenant.owner,
        )
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::BAD_REQUEST, "invalid_path_parameter").await;
}

#[tokio::test]
async fn the_detail_shows_what_the_gateway_reported_with_the_client_address_redacted() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    {
        let new = meterplane::store::prices::NewPrice {
            provider: "openai".into(),
            model: "gpt-image-4o".into(),
            provider_model_name: "gpt-image-4o".into(),
            input_per_mtok: "3".parse().unwrap(),
            output_per_mtok: "15".parse().unwrap(),
            cached_input_per_mtok: "0.3".parse().unwrap(),
            per_request: rust_decimal::Decimal::ZERO,
            per_image: "0.04".parse().unwrap(),
            per_input_image: "0.0025".parse().unwrap(),
            valid_from: "2020-01-01T00:00:00Z".parse().unwrap(),
        };
        let mut conn = app.state.db.get().await.unwrap();
        meterplane::store::prices::insert(&mut conn, &new).await.unwrap();
    }
    let id = app
        .record_event(
            &tenant,
            json!({
                "model": "gpt-image-4o", "promptTokens": 1000, "completionTokens": 100,
                "images": 2, "inputImages": 3, "callType": "image_generation",
                "modelId": "azure-eastus-gpt-image-1",
                "apiBase": "https://ops:pw@eastus.openai.azure.com/openai?api-key=sk-secret-1#frag",
                "clientIp": "203.0.113.77", "tags": ["prod", "search", "prod"], "gatewayOverheadMs": 7,
            }),
        )
        .await;
    let detail = app
        .get_json(&tenant.owner, &format!("/v1/orgs/{}/spend-logs/{id}", tenant.org_id))
        .await;
    let shown = |keys: &[&str]| -> Value { keys.iter().map(|k| ((*k).to_owned(), detail[*k].clone())).collect() };
    assert_eq!(
        shown(&[
            "callType",
            "modelId",
            "apiBase",
            "clientIp",
            "tags",
            "gatewayOverheadMs",
            "images",
            "inputImages"
        ]),
        json!({
            "callType": "image_generation", "modelId": "azure-eastus-gpt-image-1",
            "apiBase": "https://eastus.openai.azure.com/openai", "clientIp": "203.0.113.0",
            "tags": ["prod", "search"], "gatewayOverheadMs": 7, "images": 2, "inputImages": 3,
        })
    );
    // input 1000 × 3/M = 0.003; output 100 × 15/M = 0.0015; 2 generated images × 0.04 =
    // 0.08; 3 sent images × 0.0025 = 0.0075; total 0.092.
    assert_eq!(
        detail["costBreakdown"],
        json!({"input": "0.003", "output": "0.0015", "cachedInput": "0", "request": "0", "image": "0.0875",
               "imageInput": "0.0075", "imageOutput": "0.08", "dataStorage": "0"})
    );
    assert_eq!(detail["cost"], "0.092");

    // IPv6 is kept to its /48; without the optional fields the detail says so plainly.
    let v6 = app
        .record_event(&tenant, json!({"clientIp": "2001:db8:abcd:12:3456::1"}))
        .await;
    let v6 = app
        .get_json(&tenant.owner, &format!("/v1/orgs/{}/spend-logs/{v6}", tenant.org_id))
        .await;
    assert_eq!(v6["clientIp"], "2001:db8:abcd::");
    assert_eq!((v6["tags"].clone(), v6["callType"].clone()), (json!([]), Value::Null));

    // Neither the full address nor the credentials of the API base are stored anywhere.
    #[derive(diesel::QueryableByName)]
    struct Leaks {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    use diesel_async::RunQueryDsl;
    let leaks: Leaks = diesel::sql_query(
        "SELECT count(*) AS n FROM usage_events e WHERE org_id = $1 AND (to_jsonb(e)::text LIKE '%203.0.113.77%' \
         OR to_jsonb(e)::text LIKE '%sk-secret-1%' OR to_jsonb(e)::text LIKE '%:pw@%' \
         OR to_jsonb(e)::text LIKE '%3456::1%')",
    )
    .bind::<diesel::sql_types::Uuid, _>(tenant.org_id)
    .get_result(&mut app.db().await)
    .await
    .unwrap();
    assert_eq!(leaks.n, 0);

    // The roll-ups carry the split too.
    #[derive(diesel::QueryableByName)]
    struct Images {
        #[diesel(sql_type = diesel::sql_types::Text)]
        split: String,
    }
    let images: Images = diesel::sql_query(
        "SELECT concat_ws(' ', sum(input_images), sum(images), trim_scale(sum(image_input_cost)), \
         trim_scale(sum(image_output_cost)), trim_scale(sum(image_cost))) AS split FROM usage_daily WHERE org_id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(tenant.org_id)
    .get_result(&mut app.db().await)
    .await
    .unwrap();
    assert_eq!(images.split, "3 2 0.0075 0.08 0.0875");

    // Bad values are refused, each with its field.
    for (patch, field) in [
        (json!({"clientIp": "203.0.113.300"}), "clientIp"),
        (json!({"apiBase": "eastus.openai.azure.com"}), "apiBase"),
        (json!({"apiBase": "ftp://example.com/"}), "apiBase"),
        (json!({"tags": vec!["t"; 21]}), "tags"),
        (json!({"tags": ["ok", ""]}), "tags"),
        (json!({"callType": "x\u{7}"}), "callType"),
        (json!({"gatewayOverheadMs": -1}), "gatewayOverheadMs"),
        (json!({"inputImages": 10_001}), "inputImages"),
    ] {
        let mut body = json!({
            "requestId": format!("bad-{field}-{}", uuid::Uuid::new_v4()), "endpoint": "/chat/completions",
            "provider": "openai", "model": "gpt-image-4o",
        });
        body.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
        let response = app
            .request(Method::POST, "/v1/usage")
            .header("x-api-key", &tenant.key_secret)
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}");
    }
}
