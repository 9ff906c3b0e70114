//! Per-organization price overrides through HTTP: an operator sets an organization's
//! negotiated price for a model; that organization's calls are charged it instead of
//! the catalog's (discounts on top), other organizations keep the catalog's; versions
//! apply from their instant and recorded events keep what they were charged; the
//! authorize estimate and the unpriced-model policy follow the override; only
//! operators write overrides and only the organization's owners and admins read them.
//!
//! Test databases start with an empty catalog; every model name here is this file's.

use chrono::{DateTime, Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    helpers::{authorize, expect_json, expect_problem, uuid, Tenant, TestApp, TestUser},
    price_helpers::{add_discount, add_price, detail, ids, money, price, today, with},
};

async fn post(app: &TestApp, user: &TestUser, path: &str, body: &Value) -> reqwest::Response {
    app.as_user(Method::POST, path, user).json(body).send().await.unwrap()
}

fn overrides_path(org_id: Uuid) -> String {
    format!("/v1/admin/orgs/{org_id}/prices")
}

async fn add_override(app: &TestApp, operator: &TestUser, org_id: Uuid, body: Value) -> Value {
    expect_json(
        post(app, operator, &overrides_path(org_id), &body).await,
        StatusCode::CREATED,
    )
    .await
}

/// Sets the organization's unpriced-model policy as its owner.
async fn set_unpriced_policy(app: &TestApp, tenant: &Tenant, policy: &str) {
    let response = app
        .as_user(Method::PATCH, &format!("/v1/orgs/{}", tenant.org_id), &tenant.owner)
        .json(&json!({"unpricedModels": policy}))
        .send()
        .await
        .unwrap();
    expect_json(response, StatusCode::OK).await;
}

/// A call of 1,000 input and 500 output tokens.
fn call(request_id: &str, provider: &str, model: &str) -> Value {
    json!({
        "requestId": request_id, "endpoint": "/chat/completions", "provider": provider, "model": model,
        "estimatedPromptTokens": 1000, "estimatedCompletionTokens": 500
    })
}

#[tokio::test]
async fn an_org_override_beside_a_global_price_with_a_discount_on_top() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let acme = app.tenant().await;
    let other = app.tenant().await;
    let from = today() - Duration::days(2);

    // The catalog: USD 3 in, 15 out, 0.30 cached per million; no cache-write price
    // (a cache write is then charged as input).
    let global = add_price(
        &app,
        &operator,
        with(
            price("po-ai", "po-model", "3", "15", "0.30", from),
            json!({"providerModelName": "po-model-2026-01"}),
        ),
    )
    .await;
    // Acme's negotiated price, named by the provider's name in another case: stored
    // under the catalog id. 2 in, 10 out, 0.20 cached, 2.50 per million cache writes.
    let negotiated = add_override(
        &app,
        &operator,
        acme.org_id,
        with(
            price("PO-AI", "PO-Model-2026-01", "2", "10", "0.20", from),
            json!({"cacheWrite5mPerMtok": "2.50"}),
        ),
    )
    .await;
    assert_eq!(
        (
            &negotiated["provider"],
            &negotiated["model"],
            &negotiated["providerModelName"]
        ),
        (&json!("po-ai"), &json!("po-model"), &json!("po-model-2026-01"))
    );
    assert_eq!(
        (&negotiated["inputPerMtok"], &negotiated["cacheWrite5mPerMtok"]),
        (&json!("2"), &json!("2.5"))
    );
    assert!(negotiated["validUntil"].is_null(), "{negotiated}");
    // Acme's own discount (10 % on the provider) outranks the global one (5 % on the
    // model), which is what the other organization gets.
    let acme_discount = add_discount(
        &app,
        &operator,
        json!({"orgId": acme.org_id, "provider": "po-ai", "percent": "10", "validFrom": from.to_rfc3339()}),
    )
    .await;
    let global_discount = add_discount(
        &app,
        &operator,
        json!({"model": "po-model", "percent": "5", "validFrom": from.to_rfc3339()}),
    )
    .await;

    // 10,000 prompt tokens (2,000 cache reads, 1,000 cache writes) and 1,000 completion.
    let event = json!({
        "provider": "po-ai", "model": "po-model-2026-01", "promptTokens": 10_000, "cachedTokens": 2_000,
        "cacheWrite5mTokens": 1_000, "completionTokens": 1_000,
    });
    let at_acme = app.record_event(&acme, event.clone()).await;
    let at_other = app.record_event(&other, event).await;

    let acme_detail = detail(&app, &acme, at_acme).await;
    // Acme, at its override: plain input 7,000 × 2 / 1e6 = 0.014; cached 2,000 × 0.2 / 1e6
    // = 0.0004; cache writes 1,000 × 2.5 / 1e6 = 0.0025; output 1,000 × 10 / 1e6 = 0.01;
    // before discount 0.0269; its 10 % discount saves 0.00269; cost 0.02421.
    assert_eq!(
        acme_detail["costBreakdown"],
        json!({"input": "0.014", "output": "0.01", "cachedInput": "0.0004", "cacheWrite5m": "0.0025",
               "cacheWrite1h": "0", "reasoning": "0", "audioInput": "0", "audioOutput": "0", "request": "0",
               "image": "0", "imageInput": "0", "imageOutput": "0", "dataStorage": "0"})
    );
    assert_eq!(
        money(&acme_detail),
        json!({"costBeforeDiscount": "0.0269", "discountPercent": "10", "discountSavings": "0.00269", "cost": "0.02421"})
    );
    assert_eq!(uuid(&acme_detail["priceId"]), uuid(&negotiated["id"]));
    assert_eq!(acme_detail["priceSource"], "organization");
    assert_eq!(uuid(&acme_detail["discountId"]), uuid(&acme_discount["id"]));
    assert_eq!(acme_detail["unpriced"], false);

    let other_detail = detail(&app, &other, at_other).await;
    // The other organization, at the catalog's price: plain input 7,000 × 3 / 1e6 = 0.021;
    // cached 2,000 × 0.3 / 1e6 = 0.0006; cache writes at the input price 1,000 × 3 / 1e6
    // = 0.003; output 1,000 × 15 / 1e6 = 0.015; before discount 0.0396; the global 5 %
    // saves 0.00198; cost 0.03762.
    assert_eq!(
        money(&other_detail),
        json!({"costBeforeDiscount": "0.0396", "discountPercent": "5", "discountSavings": "0.00198", "cost": "0.03762"})
    );
    assert_eq!(uuid(&other_detail["priceId"]), uuid(&global["id"]));
    assert_eq!(other_detail["priceSource"], "catalog");
    assert_eq!(uuid(&other_detail["discountId"]), uuid(&global_discount["id"]));

    // The roll-ups agree with the events: today's activity of each organization.
    for (tenant, cost, savings) in [(&acme, "0.02421", "0.00269"), (&other, "0.03762", "0.00198")] {
        let activity = app
            .get_json(&tenant.owner, &format!("/v1/orgs/{}/activity?days=1", tenant.org_id))
            .await;
        let day = &activity["activity"][0];
        assert_eq!(
            (&day["requestCount"], &day["cost"], &day["discountSavings"]),
            (&json!(1), &json!(cost), &json!(savings)),
            "{day}"
        );
    }
}

#[tokio::test]
async fn a_new_override_version_applies_from_its_instant_and_recorded_events_keep_theirs() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let tenant = app.tenant().await;
    let now = Utc::now();
    // The catalog since two days ago: 4 in, 8 out.
    let global = add_price(
        &app,
        &operator,
        price("pv-ai", "pv-model", "4", "8", "0", today() - Duration::days(2)),
    )
    .await;
    // The first negotiated version from yesterday midnight: 2 in, 4 out.
    let v1 = add_override(
        &app,
        &operator,
        tenant.org_id,
        price("pv-ai", "pv-model", "2", "4", "0", today() - Duration::days(1)),
    )
    .await;
    // 1,000 prompt and 500 completion tokens at `at`.
    let event = |at: DateTime<Utc>| {
        json!({"provider": "pv-ai", "model": "pv-model", "promptTokens": 1000, "completionTokens": 500,
               "startedAt": at.to_rfc3339()})
    };
    let before_override = app
        .record_event(&tenant, event(today() - Duration::days(2) + Duration::hours(1)))
        .await;
    let three_hours_ago = app.record_event(&tenant, event(now - Duration::hours(3))).await;
    // Recorded an hour ago's call before the next version exists: it is charged v1.
    let an_hour_ago_early = app.record_event(&tenant, event(now - Duration::hours(1))).await;

    // The next version, from two hours ago: 1 in, 2 out.
    let v2 = add_override(
        &app,
        &operator,
        tenant.org_id,
        price("pv-ai", "pv-model", "1", "2", "0", now - Duration::hours(2)),
    )
    .await;
    let an_hour_ago_late = app.record_event(&tenant, event(now - Duration::hours(1))).await;

    // (event, expected cost, expected price version):
    // catalog 1,000 × 4 / 1e6 + 500 × 8 / 1e6 = 0.004 + 0.004 = 0.008;
    // v1 1,000 × 2 / 1e6 + 500 × 4 / 1e6 = 0.002 + 0.002 = 0.004;
    // v2 1,000 × 1 / 1e6 + 500 × 2 / 1e6 = 0.001 + 0.001 = 0.002.
    for (event_id, cost, price_id, source) in [
        (before_override, "0.008", &global["id"], "catalog"),
        (three_hours_ago, "0.004", &v1["id"], "organization"),
        (an_hour_ago_early, "0.004", &v1["id"], "organization"),
        (an_hour_ago_late, "0.002", &v2["id"], "organization"),
    ] {
        let d = detail(&app, &tenant, event_id).await;
        assert_eq!(
            (&d["cost"], &d["priceId"], &d["priceSource"]),
            (&json!(cost), price_id, &json!(source)),
            "{d}"
        );
    }

    // The chain as the operator and the tenant's owner see it: v1 ends where v2 begins.
    let as_operator = app.get_json(&operator, &overrides_path(tenant.org_id)).await;
    assert_eq!(ids(&as_operator), [uuid(&v1["id"]), uuid(&v2["id"])]);
    assert_eq!(as_operator[0]["validUntil"], v2["validFrom"]);
    assert!(as_operator[1]["validUntil"].is_null());
    let as_tenant = app
        .get_json(&tenant.owner, &format!("/v1/orgs/{}/prices", tenant.org_id))
        .await;
    assert_eq!(as_tenant, as_operator);
    // The catalog itself is unchanged by overrides.
    let catalog = app.get_json(&tenant.owner, "/v1/prices?provider=pv-ai").await;
    assert_eq!(ids(&catalog), [uuid(&global["id"])]);
}

#[tokio::test]
async fn the_authorize_estimate_and_the_unpriced_policy_follow_the_override() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let acme = app.tenant().await;
    let other = app.tenant().await;
    set_unpriced_policy(&app, &acme, "deny").await;
    set_unpriced_policy(&app, &other, "deny").await;
    let from = today() - Duration::days(1);

    // A model only Acme has a price for: denied until its override exists.
    let (_, _, denied) = authorize(&app, &acme, call("house-0", "pa-ai", "house-model")).await;
    assert_eq!(denied["reason"], "unpriced_model", "{denied}");
    add_override(
        &app,
        &operator,
        acme.org_id,
        price("pa-ai", "house-model", "1", "2", "0", from),
    )
    .await;
    // 1,000 × 1 / 1e6 + 500 × 2 / 1e6 = 0.002.
    let (_, _, allowed) = authorize(&app, &acme, call("house-1", "pa-ai", "house-model")).await;
    assert_eq!(
        (&allowed["allowed"], &allowed["reason"], &allowed["estimatedCost"]),
        (&json!(true), &json!("allowed"), &json!("0.002")),
        "{allowed}"
    );
    let (_, _, still_denied) = authorize(&app, &other, call("house-2", "pa-ai", "house-model")).await;
    assert_eq!(still_denied["reason"], "unpriced_model", "{still_denied}");
    // Its usage is priced for Acme, unpriced for the other organization.
    let acme_event = app
        .record_event(
            &acme,
            json!({"requestId": "house-1", "provider": "pa-ai", "model": "house-model",
                   "promptTokens": 1000, "completionTokens": 500}),
        )
        .await;
    let d = detail(&app, &acme, acme_event).await;
    assert_eq!((&d["cost"], &d["unpriced"]), (&json!("0.002"), &json!(false)));
    let other_event = app
        .record_event(
            &other,
            json!({"requestId": "house-2", "provider": "pa-ai", "model": "house-model",
                   "promptTokens": 1000, "completionTokens": 500}),
        )
        .await;
    let d = detail(&app, &other, other_event).await;
    assert_eq!((&d["cost"], &d["unpriced"]), (&json!("0"), &json!(true)));
    assert!(d["priceSource"].is_null() && d["priceId"].is_null(), "{d}");

    // A catalog model (of another provider: the instance keeps a provider's catalog for
    // a minute, and pa-ai's was read above): the list price is 4 in, 8 out (estimate 0.004 + 0.004 = 0.008);
    // a third organization, without usage yet, has an override of 1 in, 2 out (0.002).
    let thrifty = app.tenant().await;
    add_price(&app, &operator, price("pl-ai", "list-model", "4", "8", "0", from)).await;
    add_override(
        &app,
        &operator,
        thrifty.org_id,
        price("pl-ai", "list-model", "1", "2", "0", from),
    )
    .await;
    let (_, _, theirs) = authorize(&app, &other, call("list-0", "pl-ai", "list-model")).await;
    assert_eq!(theirs["estimatedCost"], "0.008", "{theirs}");

    // A hard organization budget of 0.005 reserves at the override's price: two calls of
    // 0.002 fit (0.004), a third would make 0.006. At the list price not even one would.
    let mut conn = app.db().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(
            "INSERT INTO budgets (id, org_id, scope, scope_id, amount, period, hard_limit) \
             VALUES ($1, $2, 'organization', $2, 0.005, 'monthly', true)",
        )
        .bind::<diesel::sql_types::Uuid, _>(Uuid::new_v4())
        .bind::<diesel::sql_types::Uuid, _>(thrifty.org_id),
        &mut conn,
    )
    .await
    .unwrap();
    app.state.enforcer.forget_rules(thrifty.org_id);
    let mut reasons = Vec::new();
    for n in 0..3 {
        let (_, _, decision) = authorize(&app, &thrifty, call(&format!("list-{}", n + 1), "pl-ai", "list-model")).await;
        assert_eq!(decision["estimatedCost"], "0.002", "{decision}");
        reasons.push(decision["reason"].as_str().unwrap().to_owned());
    }
    assert_eq!(reasons, ["allowed", "allowed", "budget_exceeded"]);
}

#[tokio::test]
async fn only_operators_write_overrides_and_only_the_organization_reads_them() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let acme = app.tenant().await;
    let other = app.tenant().await;
    let viewer = app.member(&acme, "viewer").await;
    let admin = app.member(&acme, "admin").await;
    let body = price("px-ai", "px-model", "1", "2", "0", today());

    // No tenant writes an override, not even for its own organization.
    for who in [&acme.owner, &admin, &other.owner] {
        let response = post(&app, who, &overrides_path(acme.org_id), &body).await;
        expect_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    }
    let anonymous = app
        .request(Method::POST, &overrides_path(acme.org_id))
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_problem(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // An organization that does not exist: 404, for writes and reads.
    let nowhere = Uuid::now_v7();
    let response = post(&app, &operator, &overrides_path(nowhere), &body).await;
    expect_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    let response = app
        .as_user(Method::GET, &overrides_path(nowhere), &operator)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::NOT_FOUND, "not_found").await;

    let created = add_override(&app, &operator, acme.org_id, body).await;
    let own = format!("/v1/orgs/{}/prices", acme.org_id);
    // The owner and admins read them; a viewer may not; another tenant learns nothing.
    for who in [&acme.owner, &admin] {
        assert_eq!(ids(&app.get_json(who, &own).await), [uuid(&created["id"])]);
    }
    let response = app.as_user(Method::GET, &own, &viewer).send().await.unwrap();
    expect_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app.as_user(Method::GET, &own, &other.owner).send().await.unwrap();
    expect_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    // Nor through the operator's path.
    let response = app
        .as_user(Method::GET, &overrides_path(acme.org_id), &other.owner)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    // The other organization has none of its own.
    assert_eq!(
        app.get_json(&other.owner, &format!("/v1/orgs/{}/prices", other.org_id))
            .await,
        json!([])
    );
    assert_eq!(app.get_json(&operator, &overrides_path(other.org_id)).await, json!([]));
}

#[tokio::test]
async fn bad_override_input_is_refused_with_a_problem() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let tenant = app.tenant().await;
    let path = overrides_path(tenant.org_id);
    let at = today();

    // The catalog's rules: a negative amount, more than 10 decimal places, a
    // long-context threshold of 0 — each named.
    let bad = with(
        price("pb-ai", "pb-model", "-1", "0.12345678901", "0", at),
        json!({"longContext": {"aboveTokens": 0, "inputPerMtok": "1", "outputPerMtok": "1", "cachedInputPerMtok": "1"}}),
    );
    let problem = expect_problem(
        post(&app, &operator, &path, &bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["inputPerMtok", "longContext.aboveTokens", "outputPerMtok"]);
    // An unknown field, a missing one, a wrong type, a path that is no id: 400.
    let unknown = with(price("pb-ai", "pb-model", "1", "1", "0", at), json!({"discount": "5"}));
    expect_problem(
        post(&app, &operator, &path, &unknown).await,
        StatusCode::BAD_REQUEST,
        "unknown_field",
    )
    .await;
    let missing = json!({"provider": "pb-ai", "model": "pb-model", "inputPerMtok": "1", "outputPerMtok": "1",
                         "cachedInputPerMtok": "0"});
    expect_problem(
        post(&app, &operator, &path, &missing).await,
        StatusCode::BAD_REQUEST,
        "missing_field",
    )
    .await;
    expect_problem(
        post(&app, &operator, "/v1/admin/orgs/not-an-id/prices", &unknown).await,
        StatusCode::BAD_REQUEST,
        "invalid_path_parameter",
    )
    .await;
    assert_eq!(app.get_json(&operator, &path).await, json!([]), "nothing was added");

    // Two versions of one model starting at the same instant, in any spelling: 409.
    add_override(
        &app,
        &operator,
        tenant.org_id,
        price("pb-ai", "pb-model", "1", "1", "0", at),
    )
    .await;
    expect_problem(
        post(&app, &operator, &path, &price("pb-ai", "PB-Model", "2", "2", "0", at)).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    assert_eq!(app.get_json(&operator, &path).await.as_array().unwrap().len(), 1);
}
