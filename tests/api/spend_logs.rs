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
            ..Default::default()
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
        json!({"input": "0.003", "output": "0.0015", "cachedInput": "0", "cacheWrite5m": "0", "cacheWrite1h": "0",
               "reasoning": "0", "audioInput": "0", "audioOutput": "0", "request": "0", "image": "0.0875",
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

/// Makes the organization keep 90 days (the pro plan).
async fn keep_90_days(app: &TestApp, tenant: &Tenant) {
    use diesel_async::RunQueryDsl;
    diesel::sql_query("UPDATE organizations SET plan = 'pro', retention_days = 90 WHERE id = $1")
        .bind::<diesel::sql_types::Uuid, _>(tenant.org_id)
        .execute(&mut app.db().await)
        .await
        .unwrap();
}

/// Every page of the log for `query`, followed cursor by cursor: the request ids in order.
async fn all_pages(app: &TestApp, tenant: &Tenant, query: &str, limit: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let next = page(app, tenant, &format!("{query}&limit={limit}&cursor={cursor}")).await;
        let ids = request_ids(&next);
        assert!(ids.len() <= limit, "{query}: a page longer than its limit");
        seen.extend(ids);
        match next["nextCursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => return seen,
        }
        assert!(seen.len() <= 10_000, "{query}: paging does not end");
    }
}

/// The request ids of the organization's events matching `condition` (SQL over the raw
/// columns, with `$1` the organization), newest first.
async fn expected_ids(app: &TestApp, tenant: &Tenant, condition: &str) -> Vec<String> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Text)]
        request_id: String,
    }
    let rows: Vec<Id> = diesel::sql_query(format!(
        "SELECT request_id FROM usage_events WHERE org_id = $1 AND ({condition}) \
         ORDER BY occurred_at DESC, id DESC"
    ))
    .bind::<diesel::sql_types::Uuid, _>(tenant.org_id)
    .load(&mut app.db().await)
    .await
    .unwrap();
    rows.into_iter().map(|r| r.request_id).collect()
}

#[tokio::test]
async fn filters_match_only_the_organizations_own_customers_agents_keys_and_models() {
    let app = TestApp::spawn().await;
    app.add_price("openai", "gpt-4o", "gpt-4o-2024-08-06", "2.5", "10", "1.25")
        .await;
    let mine = app.tenant().await;
    let theirs = app.tenant().await;
    for tenant in [&mine, &theirs] {
        app.record_event(
            tenant,
            json!({"user": "shared", "agentId": "planner", "model": "gpt-4o"}),
        )
        .await;
    }
    app.record_event(&mine, json!({"user": "only-mine", "model": "GPT-4o-2024-08-06"}))
        .await;
    app.record_event(&theirs, json!({"user": "only-theirs", "agentId": "their-agent"}))
        .await;
    app.record_event(&mine, json!({"provider": "anthropic", "model": "My-Tune"}))
        .await;

    let count = |v: &Value| v["data"].as_array().map_or(usize::MAX, Vec::len);
    // The same external ids in both organizations: each sees its own event.
    assert_eq!(count(&page(&app, &mine, "customer=shared").await), 1);
    assert_eq!(count(&page(&app, &mine, "agent=planner").await), 1);
    // Another organization's customer, agent, project or key: an empty page, not theirs.
    for query in [
        "customer=only-theirs".to_owned(),
        "agent=their-agent".to_owned(),
        "customer=nobody-at-all".to_owned(),
        format!("projectId={}", theirs.project_id),
        format!("apiKeyId={}", theirs.key_id),
    ] {
        let empty = page(&app, &mine, &query).await;
        assert_eq!(count(&empty), 0, "{query}: {empty}");
        assert!(empty["nextCursor"].is_null(), "{query}");
    }
    assert_eq!(count(&page(&app, &mine, &format!("apiKeyId={}", mine.key_id)).await), 3);
    // The model by either name, in any case: both gpt-4o calls, not the other model.
    for model in ["gpt-4o", "GPT-4O", "gpt-4o-2024-08-06"] {
        let both = page(&app, &mine, &format!("model={model}")).await;
        assert_eq!(request_ids(&both).len(), 2, "model={model}: {both}");
        assert!(both["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["user"] != Value::Null));
    }
    // The log still shows the names as reported.
    let reported: Vec<String> = page(&app, &mine, "model=gpt-4o").await["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["model"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(reported, ["GPT-4o-2024-08-06", "gpt-4o"]);
    assert_eq!(count(&page(&app, &mine, "model=my-tune").await), 1);
    assert_eq!(count(&page(&app, &mine, "model=my-tune&provider=openai").await), 0);
}

#[tokio::test]
async fn every_filter_pages_through_exactly_the_matching_events_at_any_age() {
    use rand::{rngs::StdRng, seq::IndexedRandom, Rng, SeedableRng};
    let seed: u64 = rand::random();
    eprintln!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let app = TestApp::spawn().await;
    app.add_price("openai", "gpt-4o", "gpt-4o-2024-08-06", "2.5", "10", "1.25")
        .await;
    let tenant = app.tenant().await;
    let other = app.tenant().await;
    keep_90_days(&app, &tenant).await;
    let second_key = app
        .post_json(
            &tenant.owner,
            &format!("/v1/orgs/{}/projects/{}/keys", tenant.org_id, tenant.project_id),
            json!({"name": "batch"}),
        )
        .await;
    let second_key_id = second_key["id"].as_str().unwrap().to_owned();
    let second_secret = second_key["secret"].as_str().unwrap().to_owned();

    // Events from today back to 80 days ago: every span a page is read in (a day, a
    // week, a month, the rest) holds some. Minutes are drawn from a small set, so some
    // events share their instant and the id breaks the tie.
    // In microseconds, as PostgreSQL keeps time: the bounds below compare exactly.
    let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
    let (mut first_key, mut second) = (Vec::new(), Vec::new());
    for i in 0..240 {
        let ago = match rng.random_range(0..4) {
            0 => Duration::minutes(rng.random_range(1..1440) / 7 * 7),
            1 => Duration::days(rng.random_range(1..7)) + Duration::minutes(rng.random_range(0..4) * 60),
            2 => Duration::days(rng.random_range(7..31)),
            _ => Duration::days(rng.random_range(31..80)),
        };
        let mut event = json!({
            "requestId": format!("paged-{i}"), "endpoint": "/chat/completions",
            "provider": *["openai", "openai", "anthropic"].choose(&mut rng).unwrap(),
            "model": *["gpt-4o", "GPT-4o-2024-08-06", "gpt-4o-mini", "My-Tune"].choose(&mut rng).unwrap(),
            "status": if rng.random_bool(0.2) { "error" } else { "success" },
            "promptTokens": rng.random_range(1..500), "completionTokens": 5,
            "startedAt": (now - ago).to_rfc3339(),
        });
        if let Some(user) = ["c0", "c1", "c2", "c3"]
            .choose(&mut rng)
            .filter(|_| rng.random_bool(0.8))
        {
            event["user"] = json!(user);
        }
        if rng.random_bool(0.5) {
            event["agentId"] = json!(*["a0", "a1"].choose(&mut rng).unwrap());
        }
        if rng.random_bool(0.3) {
            second.push(event);
        } else {
            first_key.push(event);
        }
    }
    for (secret, events) in [(&tenant.key_secret, &first_key), (&second_secret, &second)] {
        let (status, body) = app.send_batch(secret, json!(events)).await;
        assert_eq!(
            (status, body["accepted"].as_u64()),
            (StatusCode::OK, Some(events.len() as u64)),
            "{body}"
        );
    }
    // Another organization with the same names: never in these pages.
    app.record_event(&other, json!({"user": "c1", "agentId": "a1"})).await;

    let party = |table: &str, external: &str| {
        format!("{table}_id IN (SELECT id FROM {table}s WHERE org_id = $1 AND external_id = '{external}')")
    };
    let from = (now - Duration::days(40)).to_rfc3339();
    let to = (now - Duration::days(3)).to_rfc3339();
    let cases: Vec<(String, String)> = vec![
        (String::new(), "true".into()),
        ("customer=c1".into(), party("customer", "c1")),
        ("agent=a0".into(), party("agent", "a0")),
        // The catalog knows gpt-4o for openai under both names; other providers' calls
        // count under the reported name.
        (
            "model=gpt-4o".into(),
            "(provider = 'openai' AND lower(model) IN ('gpt-4o', 'gpt-4o-2024-08-06')) \
             OR (provider <> 'openai' AND lower(model) = 'gpt-4o')"
                .into(),
        ),
        ("model=my-tune".into(), "lower(model) = 'my-tune'".into()),
        ("provider=anthropic".into(), "provider = 'anthropic'".into()),
        ("status=error".into(), "status = 'error'".into()),
        ("status=success".into(), "status = 'success'".into()),
        (format!("projectId={}", tenant.project_id), "true".into()),
        (
            format!("apiKeyId={second_key_id}"),
            format!("api_key_id = '{second_key_id}'"),
        ),
        (
            format!("customer=c2&from={}&to={}", urlencode(&from), urlencode(&to)),
            format!(
                "{} AND occurred_at >= '{from}' AND occurred_at <= '{to}'",
                party("customer", "c2")
            ),
        ),
        (format!("from={}", urlencode(&from)), format!("occurred_at >= '{from}'")),
    ];
    for (query, condition) in cases {
        let expected = expected_ids(&app, &tenant, &condition).await;
        assert!(!expected.is_empty(), "{query}: the workload should hold matches");
        let limit = rng.random_range(1..=13);
        let paged = all_pages(&app, &tenant, &query, limit).await;
        assert_eq!(paged, expected, "{query} in pages of {limit} (seed {seed})");
    }
}
