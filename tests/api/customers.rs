//! Customers and agents: listed with their spend (sorted, paginated), read one by
//! one, blocked and unblocked.

use chrono::Utc;
use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::{
    budgets::{customer_id, priced_app, send, spend},
    helpers::{expect_json, expect_problem, uuid, TestApp},
};

fn external_ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["externalId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn customers_are_listed_by_spend_page_by_page() {
    let (app, tenant) = priced_app().await;
    let org = format!("/v1/orgs/{}", tenant.org_id);
    // c-0 spends least, c-4 most; c-5 twice, adding up to the most of all.
    for i in 0..5 {
        spend(&app, &tenant, &format!("c-{i}"), 100_000 * (i + 1), Utc::now()).await;
    }
    spend(&app, &tenant, "c-5", 300_000, Utc::now()).await;
    spend(&app, &tenant, "c-5", 300_000, Utc::now()).await;

    let mut seen = Vec::new();
    let mut offset = Some(0);
    while let Some(o) = offset {
        let page = app
            .get_json(&tenant.owner, &format!("{org}/customers?limit=4&offset={o}"))
            .await;
        seen.extend(external_ids(&page));
        offset = page["nextOffset"].as_i64();
    }
    assert_eq!(seen, ["c-5", "c-4", "c-3", "c-2", "c-1", "c-0"]);
    let ascending = app
        .get_json(&tenant.owner, &format!("{org}/customers?sort=spendAsc&limit=2"))
        .await;
    assert_eq!(external_ids(&ascending), ["c-0", "c-1"]);
    assert_eq!(ascending["nextOffset"], 2);
    let by_name = app
        .get_json(&tenant.owner, &format!("{org}/customers?sort=externalId"))
        .await;
    assert_eq!(external_ids(&by_name)[0], "c-0");

    let top = app.get_json(&tenant.owner, &format!("{org}/customers?limit=1")).await;
    let c5 = &top["data"][0];
    assert_eq!(
        money(c5),
        Decimal::new(15, 1),
        "two calls of 300k input tokens at $2.50/M"
    );
    assert_eq!(
        (c5["status"].as_str(), c5["budget"].clone()),
        (Some("active"), Value::Null)
    );
    assert_eq!(c5["period"], "monthly");

    for bad in [
        "limit=0",
        "limit=501",
        "offset=-1",
        "sort=cheapest",
        "status=paused",
        "colour=red",
    ] {
        let r = send(
            &app,
            &tenant.owner,
            Method::GET,
            &format!("{org}/customers?{bad}"),
            None,
        )
        .await;
        expect_problem(r, StatusCode::BAD_REQUEST, "invalid_query_parameter").await;
    }
    let r = send(
        &app,
        &tenant.owner,
        Method::GET,
        &format!("{org}/customers/not-a-uuid"),
        None,
    )
    .await;
    expect_problem(r, StatusCode::BAD_REQUEST, "invalid_path_parameter").await;
}

fn money(customer: &Value) -> Decimal {
    customer["spent"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn customers_and_agents_are_blocked_and_unblocked() {
    let (app, tenant) = priced_app().await;
    let org = format!("/v1/orgs/{}", tenant.org_id);
    spend(&app, &tenant, "dana", 1000, Utc::now()).await;
    app.record_event(&tenant, json!({"endpoint": "/a2a/planner", "user": "dana"}))
        .await;
    let dana = customer_id(&app, &tenant, "dana").await;

    let blocked = expect_json(
        send(
            &app,
            &tenant.owner,
            Method::POST,
            &format!("{org}/customers/{dana}/block"),
            Some(json!({"reason": "invoice overdue"})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(blocked["status"], "blocked");
    assert_eq!(blocked["blockReason"], "invoice overdue");
    assert_eq!(uuid(&blocked["blockedBy"]), tenant.owner.id);
    let blocked_at = blocked["blockedAt"].clone();
    // Blocking again keeps when and by whom, and takes the new reason.
    let again = expect_json(
        send(
            &app,
            &tenant.owner,
            Method::POST,
            &format!("{org}/customers/{dana}/block"),
            Some(json!({})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (again["blockedAt"].clone(), again["blockReason"].clone()),
        (blocked_at, Value::Null)
    );

    let only_blocked = app
        .get_json(&tenant.owner, &format!("{org}/customers?status=blocked"))
        .await;
    assert_eq!(external_ids(&only_blocked), ["dana"]);
    let active = app
        .get_json(&tenant.owner, &format!("{org}/customers?status=active"))
        .await;
    assert_eq!(active["data"], json!([]));

    let unblocked = send(
        &app,
        &tenant.owner,
        Method::POST,
        &format!("{org}/customers/{dana}/unblock"),
        None,
    )
    .await;
    let unblocked = expect_json(unblocked, StatusCode::OK).await;
    assert_eq!(
        (
            unblocked["status"].as_str(),
            unblocked["blockedAt"].clone(),
            unblocked["blockedBy"].clone()
        ),
        (Some("active"), Value::Null, Value::Null)
    );

    let agents = app.get_json(&tenant.owner, &format!("{org}/agents")).await;
    assert_eq!(external_ids(&agents), ["planner"]);
    let planner = uuid(&agents["data"][0]["id"]);
    let r = send(
        &app,
        &tenant.owner,
        Method::POST,
        &format!("{org}/agents/{planner}/block"),
        Some(json!({"reason": "loops"})),
    )
    .await;
    assert_eq!(expect_json(r, StatusCode::OK).await["status"], "blocked");
    assert_eq!(
        app.get_json(&tenant.owner, &format!("{org}/agents/{planner}")).await["status"],
        "blocked"
    );

    let r = send(
        &app,
        &tenant.owner,
        Method::POST,
        &format!("{org}/customers/{dana}/block"),
        Some(json!({"reason": "x".repeat(501)})),
    )
    .await;
    let problem = expect_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "reason");
    // An agent's id is not a customer's.
    let r = send(
        &app,
        &tenant.owner,
        Method::POST,
        &format!("{org}/customers/{planner}/block"),
        Some(json!({})),
    )
    .await;
    expect_problem(r, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn an_offset_past_every_row_is_an_empty_last_page_even_at_the_largest_integer() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    app.record_event(
        &tenant,
        json!({"provider": "openai", "model": "gpt-4o", "user": "cust-1"}),
    )
    .await;
    let far = i64::MAX - 1;
    // (The activity reports bound `offset` to 1,000,000; these lists do not.)
    for path in ["customers", "agents"] {
        let page = app
            .get_json(
                &tenant.owner,
                &format!("/v1/orgs/{}/{path}?limit=50&offset={far}", tenant.org_id),
            )
            .await;
        assert_eq!(page["data"], json!([]), "{path}: {page}");
        assert!(page["nextOffset"].is_null(), "{path}: {page}");
    }
}
