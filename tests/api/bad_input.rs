//! Every class of bad input answers 4xx in the problem shape, never 500, and writes
//! nothing.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use meterplane::store::schema::projects;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{expect_problem, TestApp};

#[tokio::test]
async fn malformed_bodies_get_precise_codes() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let path = format!("/v1/orgs/{}/projects", tenant.org_id);
    let send = |body: String, content_type: &'static str| {
        app.as_user(Method::POST, &path, &tenant.owner)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let cases: Vec<(String, &str, StatusCode, &str)> = vec![
        (
            "{\"name\": ".into(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "not json".into(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            json!({"name": "x", "mode": "credits", "extra": 1}).to_string(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "unknown_field",
        ),
        (
            json!({"name": "x"}).to_string(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "missing_field",
        ),
        (
            json!({"name": 42, "mode": "credits"}).to_string(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid_type",
        ),
        (
            json!({"name": "x", "mode": "prepaid"}).to_string(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid_type",
        ),
        (
            json!([1, 2]).to_string(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid_type",
        ),
        (
            json!({"name": "x", "mode": "credits"}).to_string(),
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            json!({"name": "   ", "mode": "credits"}).to_string(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"name": "x".repeat(201), "mode": "credits"}).to_string(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"name": "x".repeat(300_000), "mode": "credits"}).to_string(),
            "application/json",
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (body, content_type, status, code) in cases {
        let preview: String = body.chars().take(60).collect();
        let response = send(body, content_type).await.unwrap();
        assert_eq!(response.status(), status, "{preview}");
        expect_problem(response, status, code).await;
    }
    let stored: i64 = projects::table
        .filter(projects::org_id.eq(tenant.org_id))
        .count()
        .get_result(&mut app.db().await)
        .await
        .unwrap();
    assert_eq!(stored, 1, "only the tenant's original project exists");
}

#[tokio::test]
async fn validation_reports_every_broken_field() {
    let app = TestApp::spawn().await;
    let response = app
        .request(Method::POST, "/v1/auth/signup")
        .json(&json!({"email": "not-an-email", "password": "short", "organizationName": ""}))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let fields = crate::helpers::problem_fields(&problem);
    assert_eq!(fields, ["email", "password", "organizationName"]);

    let user = app.signup().await;
    let bad_emails = app
        .as_user(Method::POST, "/v1/orgs", &user)
        .json(&json!({"name": "Acme", "alertEmails": ["ok@example.com", "nope"]}))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(bad_emails, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "alertEmails[1]");
}

#[tokio::test]
async fn bad_paths_and_unknown_routes() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let bad_uuid = app
        .as_user(Method::GET, "/v1/orgs/not-a-uuid/projects", &tenant.owner)
        .send()
        .await
        .unwrap();
    expect_problem(bad_uuid, StatusCode::BAD_REQUEST, "invalid_path_parameter").await;
    let half_uuid = app
        .as_user(
            Method::GET,
            &format!("/v1/orgs/{}/projects/1234", tenant.org_id),
            &tenant.owner,
        )
        .send()
        .await
        .unwrap();
    expect_problem(half_uuid, StatusCode::BAD_REQUEST, "invalid_path_parameter").await;
    let unknown = app.request(Method::GET, "/v1/nothing-here").send().await.unwrap();
    expect_problem(unknown, StatusCode::NOT_FOUND, "route_not_found").await;
}

#[tokio::test]
async fn a_known_path_asked_with_another_method_is_405_with_allow() {
    let app = TestApp::spawn().await;
    let wrong_method = app.request(Method::DELETE, "/v1/auth/login").send().await.unwrap();
    assert_eq!(wrong_method.headers()["allow"], "POST");
    expect_problem(wrong_method, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    // Paths with parameters are matched as patterns; every method the path answers is listed.
    let org = format!("/v1/orgs/{}", uuid::Uuid::new_v4());
    let put = app.request(Method::PUT, &org).send().await.unwrap();
    assert_eq!(put.headers()["allow"], "GET, PATCH");
    expect_problem(put, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    let collection = app.request(Method::DELETE, "/v1/orgs").send().await.unwrap();
    assert_eq!(collection.headers()["allow"], "GET, POST");
    expect_problem(collection, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    // A path that is not a route stays a 404, whatever the method.
    let nowhere = app.request(Method::POST, "/v1/orgs/x/y/z/w").send().await.unwrap();
    expect_problem(nowhere, StatusCode::NOT_FOUND, "route_not_found").await;
}

#[tokio::test]
async fn a_body_written_as_an_array_is_not_an_object() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let org = format!("/v1/orgs/{}", tenant.org_id);
    let rename = app
        .as_user(Method::PATCH, &org, &tenant.owner)
        .json(&json!(["Renamed via array"]))
        .send()
        .await
        .unwrap();
    expect_problem(rename, StatusCode::BAD_REQUEST, "invalid_type").await;
    assert_eq!(
        app.get_json(&tenant.owner, &org).await["name"],
        "Acme AI",
        "nothing changed"
    );

    let login = app
        .request(Method::POST, "/v1/auth/login")
        .json(&json!([tenant.owner.email, "correct horse battery"]))
        .send()
        .await
        .unwrap();
    expect_problem(login, StatusCode::BAD_REQUEST, "invalid_type").await;
    for path in ["/v1/usage", "/v1/usage/batch"] {
        let usage = app
            .request(Method::POST, path)
            .header("x-api-key", &tenant.key_secret)
            .json(&json!([["r-1", "/chat/completions", "openai", "gpt-4o"]]))
            .send()
            .await
            .unwrap();
        expect_problem(usage, StatusCode::BAD_REQUEST, "invalid_type").await;
    }
    // Inside a batch, an event written as an array is rejected on its own.
    let (status, body) = app
        .send_batch(
            &tenant.key_secret,
            json!([["r-2", "/chat/completions", "openai", "gpt-4o"]]),
        )
        .await;
    assert_eq!((status, body["rejected"].as_i64()), (StatusCode::OK, Some(1)), "{body}");
    assert_eq!(body["results"][0]["errors"][0]["field"], "event");

    // Objects still report their own mistakes precisely.
    let unknown = app
        .as_user(Method::PATCH, &org, &tenant.owner)
        .json(&json!({"nme": "x"}))
        .send()
        .await
        .unwrap();
    expect_problem(unknown, StatusCode::BAD_REQUEST, "unknown_field").await;
}

#[tokio::test]
async fn numbers_are_read_as_the_document_types_them() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let org = format!("/v1/orgs/{}", tenant.org_id);

    // JSON Schema's `integer` admits a whole number written with a fraction; clients
    // whose numbers are all floats send those.
    let event_id = app
        .record_event(&tenant, json!({"promptTokens": 1200.0, "completionTokens": 3e2}))
        .await;
    let detail = app
        .get_json(&tenant.owner, &format!("{org}/spend-logs/{event_id}"))
        .await;
    assert_eq!(
        (detail["promptTokens"].as_i64(), detail["completionTokens"].as_i64()),
        (Some(1200), Some(300))
    );
    // A fraction is still not an integer, in a single event and inside a batch.
    let fractional = json!({"requestId": "frac-1", "endpoint": "/chat/completions", "provider": "openai",
        "model": "gpt-4o", "promptTokens": 1200.5});
    let single = app
        .request(Method::POST, "/v1/usage")
        .header("x-api-key", &tenant.key_secret)
        .json(&fractional)
        .send()
        .await
        .unwrap();
    expect_problem(single, StatusCode::BAD_REQUEST, "invalid_type").await;
    let (status, body) = app.send_batch(&tenant.key_secret, json!([fractional])).await;
    assert_eq!((status, body["rejected"].as_i64()), (StatusCode::OK, Some(1)), "{body}");
    assert_eq!(app.count_rows("usage_events", tenant.org_id).await, 1);

    // Money is a decimal string in plain notation, never a JSON number.
    let budget = format!("{org}/budgets/project/{}", tenant.project_id);
    for (amount, status, code) in [
        (json!(100), StatusCode::BAD_REQUEST, "invalid_type"),
        (json!(0.5), StatusCode::BAD_REQUEST, "invalid_type"),
        (json!("1e3"), StatusCode::BAD_REQUEST, "invalid_type"),
        (json!("+5"), StatusCode::BAD_REQUEST, "invalid_type"),
        (json!("007"), StatusCode::BAD_REQUEST, "invalid_type"),
        (json!("0"), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        (
            json!("1.00000000000"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!("1000000000.5"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
    ] {
        let r = app
            .as_user(Method::PUT, &budget, &tenant.owner)
            .json(&json!({"amount": amount, "period": "monthly"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{amount}");
        expect_problem(r, status, code).await;
    }
    assert_eq!(app.count_rows("budgets", tenant.org_id).await, 0);
    let r = app
        .as_user(Method::PUT, &budget, &tenant.owner)
        .json(&json!({"amount": "1000000000", "period": "monthly"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    let authorize = |cost: serde_json::Value| {
        app.request(Method::POST, "/v1/gateway/authorize")
            .header("x-api-key", &tenant.key_secret)
            .json(&json!({"requestId": "auth-1", "user": "alice", "estimatedCost": cost}))
            .send()
    };
    expect_problem(
        authorize(json!(0.5)).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_type",
    )
    .await;
    expect_problem(
        authorize(json!("0.12345678901")).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn query_filters_are_bounded_and_refuse_control_characters() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let logs = format!("/v1/orgs/{}/spend-logs", tenant.org_id);
    for query in [
        format!("customer={}", "x".repeat(257)),
        "model=gpt%01".to_owned(),
        "customer=%0A".to_owned(),
    ] {
        let r = app
            .as_user(Method::GET, &format!("{logs}?{query}"), &tenant.owner)
            .send()
            .await
            .unwrap();
        expect_problem(r, StatusCode::BAD_REQUEST, "invalid_query_parameter").await;
    }
    // At the limit, and left empty, a filter is fine.
    for query in [format!("customer={}", "x".repeat(256)), "customer=".to_owned()] {
        let r = app
            .as_user(Method::GET, &format!("{logs}?{query}"), &tenant.owner)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{query}");
    }
}

#[tokio::test]
async fn a_rate_limit_given_is_a_number_and_an_empty_cursor_is_the_first_page() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let org = format!("/v1/orgs/{}", tenant.org_id);
    let limits = format!("{org}/rate-limits/project/{}", tenant.project_id);
    let put = |body: serde_json::Value| app.as_user(Method::PUT, &limits, &tenant.owner).json(&body).send();
    // `null` is not "no limit": the document says each limit given is an integer.
    expect_problem(
        put(json!({"requestsPerMinute": null, "tokensPerMinute": 5}))
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_type",
    )
    .await;
    expect_problem(
        put(json!({})).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(app.count_rows("rate_limits", tenant.org_id).await, 0);
    assert!(put(json!({"tokensPerMinute": 5})).await.unwrap().status().is_success());

    for list in ["alerts", "decisions", "spend-logs", "budgets", "rate-limits"] {
        let first = app.get_json(&tenant.owner, &format!("{org}/{list}?cursor=")).await;
        assert!(first["data"].is_array(), "{list}: {first}");
        let r = app
            .as_user(Method::GET, &format!("{org}/{list}?cursor=garbage"), &tenant.owner)
            .send()
            .await
            .unwrap();
        expect_problem(r, StatusCode::BAD_REQUEST, "invalid_query_parameter").await;
    }
}

/// Sends `request` as raw bytes (a client library would refuse to) and reads the
/// answer until the server closes: status and body.
async fn raw_exchange(app: &TestApp, request: String) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn overlong_request_heads_answer_in_the_problem_shape_where_the_server_can() {
    let app = TestApp::spawn().await;
    let host = app.address.trim_start_matches("http://").to_owned();
    let problem = |body: &str| serde_json::from_str::<serde_json::Value>(body).expect("a problem document");

    // A 20,000-byte target reaches the server's own limit (16 KiB): 414, problem.
    let target = format!("/{}", "a".repeat(19_999));
    let (status, head, body) = raw_exchange(
        &app,
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 414);
    assert!(head.contains("content-type: application/problem+json"), "{head}");
    let body = problem(&body);
    assert_eq!(
        (body["code"].as_str(), body["status"].as_u64()),
        (Some("uri_too_long"), Some(414))
    );
    assert_eq!(
        body["detail"],
        "the request target is 20000 bytes long; at most 16384 are accepted"
    );

    // A 100,000-byte header: 431, problem. Counted as sent: `name: value\r\n`.
    let filler = "b".repeat(100_000);
    let (status, head, body) = raw_exchange(
        &app,
        format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nX-Filler: {filler}\r\n\r\n"),
    )
    .await;
    let counted =
        ("host".len() + host.len() + 4) + ("connection".len() + "close".len() + 4) + ("x-filler".len() + 100_000 + 4);
    assert_eq!(status, 431);
    assert!(head.contains("content-type: application/problem+json"), "{head}");
    let body = problem(&body);
    assert_eq!(
        (body["code"].as_str(), body["status"].as_u64()),
        (Some("headers_too_large"), Some(431))
    );
    assert_eq!(
        body["detail"],
        format!("the request headers take {counted} bytes; at most 32768 are accepted")
    );

    // A 100,000-character request line: its target is past the longest URI the HTTP
    // library represents (65,534 bytes), so actix-web's decoder refuses it before any
    // application code, with a bare 400 (docs/api.md says so).
    let target = format!("/{}", "c".repeat(99_986));
    let line = format!("GET {target} HTTP/1.1");
    assert_eq!(line.len(), 100_000);
    let (status, head, body) = raw_exchange(&app, format!("{line}\r\nHost: {host}\r\n\r\n")).await;
    assert_eq!(status, 400);
    assert!(head.contains("content-length: 0"), "{head}");
    assert_eq!(body, "");

    // Ordinary requests are untouched.
    let ok = app.request(Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}
