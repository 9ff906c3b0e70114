//! API keys from the gateway's side: the secret is shown once, and revoked, expired
//! or rotated keys stop working.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use meterplane::store::schema::api_keys;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{expect_json, expect_problem, uuid, Tenant, TestApp};

async fn whoami(app: &TestApp, secret: &str) -> reqwest::Response {
    app.request(Method::GET, "/v1/gateway/whoami")
        .header("x-api-key", secret)
        .send()
        .await
        .unwrap()
}

fn keys_path(tenant: &Tenant) -> String {
    format!("/v1/orgs/{}/projects/{}/keys", tenant.org_id, tenant.project_id)
}

#[tokio::test]
async fn a_key_identifies_its_project_and_organization() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let body = expect_json(whoami(&app, &tenant.key_secret).await, StatusCode::OK).await;
    assert_eq!(uuid(&body["orgId"]), tenant.org_id);
    assert_eq!(uuid(&body["projectId"]), tenant.project_id);
    assert_eq!(uuid(&body["keyId"]), tenant.key_id);
    // The Authorization header works too.
    let bearer = app
        .request(Method::GET, "/v1/gateway/whoami")
        .bearer_auth(&tenant.key_secret)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_secret_is_shown_once_and_stored_only_as_a_hash() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let listed = app.get_json(&tenant.owner, &keys_path(&tenant)).await;
    let key = &listed[0];
    assert!(key.get("secret").is_none(), "listing must not reveal the secret: {key}");
    assert_eq!(key["prefix"].as_str().unwrap(), &tenant.key_secret[..11]);
    assert_eq!(key["status"], "active");
    let single = app
        .get_json(&tenant.owner, &format!("{}/{}", keys_path(&tenant), tenant.key_id))
        .await;
    assert!(single.get("secret").is_none());

    let (prefix, hash): (String, Vec<u8>) = api_keys::table
        .find(tenant.key_id)
        .select((api_keys::prefix, api_keys::secret_hash))
        .first(&mut app.db().await)
        .await
        .unwrap();
    assert_eq!(hash.len(), 32);
    assert!(!tenant
        .key_secret
        .as_bytes()
        .windows(hash.len())
        .any(|w| w == hash.as_slice()));
    assert_eq!(prefix.len(), 11, "only the visible prefix is kept in clear");
}

#[tokio::test]
async fn unknown_and_malformed_keys_are_rejected() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let mut wrong = tenant.key_secret.clone();
    wrong.pop();
    wrong.push(if tenant.key_secret.ends_with('a') { 'b' } else { 'a' });
    for secret in [wrong.as_str(), "mp_short", "sk-not-ours", ""] {
        expect_problem(whoami(&app, secret).await, StatusCode::UNAUTHORIZED, "invalid_api_key").await;
    }
    let none = app.request(Method::GET, "/v1/gateway/whoami").send().await.unwrap();
    expect_problem(none, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn a_revoked_key_stops_working_at_once() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    assert_eq!(whoami(&app, &tenant.key_secret).await.status(), StatusCode::OK); // now cached
    let revoked = app
        .post_json(
            &tenant.owner,
            &format!("{}/{}/revoke", keys_path(&tenant), tenant.key_id),
            json!(null),
        )
        .await;
    assert_eq!(revoked["status"], "revoked");
    expect_problem(
        whoami(&app, &tenant.key_secret).await,
        StatusCode::UNAUTHORIZED,
        "api_key_revoked",
    )
    .await;

    // Revoking again keeps the first revocation time.
    let again = app
        .post_json(
            &tenant.owner,
            &format!("{}/{}/revoke", keys_path(&tenant), tenant.key_id),
            json!(null),
        )
        .await;
    assert_eq!(again["revokedAt"], revoked["revokedAt"]);
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let expires_at = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let created = app
        .post_json(
            &tenant.owner,
            &keys_path(&tenant),
            json!({"name": "short-lived", "expiresAt": expires_at}),
        )
        .await;
    let secret = created["secret"].as_str().unwrap();
    assert_eq!(whoami(&app, secret).await.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    expect_problem(whoami(&app, secret).await, StatusCode::UNAUTHORIZED, "api_key_expired").await;
    let listed = app
        .get_json(
            &tenant.owner,
            &format!("{}/{}", keys_path(&tenant), created["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(listed["status"], "expired");

    let past = app
        .as_user(Method::POST, &keys_path(&tenant), &tenant.owner)
        .json(&json!({"name": "already expired", "expiresAt": "2020-01-01T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    expect_problem(past, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[tokio::test]
async fn rotation_issues_a_new_secret_and_retires_the_old_one() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let rotate = |key_id: String, grace: i64| {
        app.as_user(
            Method::POST,
            &format!("{}/{key_id}/rotate", keys_path(&tenant)),
            &tenant.owner,
        )
        .json(&json!({"gracePeriodSeconds": grace}))
        .send()
    };

    // With a grace period, both secrets work for now.
    let rotated = expect_json(
        rotate(tenant.key_id.to_string(), 3600).await.unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, tenant.key_secret);
    assert_eq!(whoami(&app, &new_secret).await.status(), StatusCode::OK);
    assert_eq!(whoami(&app, &tenant.key_secret).await.status(), StatusCode::OK);
    let old = app
        .get_json(&tenant.owner, &format!("{}/{}", keys_path(&tenant), tenant.key_id))
        .await;
    assert_eq!(old["replacedBy"], rotated["id"]);
    assert_eq!(old["status"], "active");

    // A key already rotated cannot be rotated again.
    let twice = rotate(tenant.key_id.to_string(), 0).await.unwrap();
    expect_problem(twice, StatusCode::CONFLICT, "conflict").await;

    // Without a grace period, the old secret stops at once.
    let newer = expect_json(
        rotate(rotated["id"].as_str().unwrap().to_owned(), 0).await.unwrap(),
        StatusCode::CREATED,
    )
    .await;
    expect_problem(
        whoami(&app, &new_secret).await,
        StatusCode::UNAUTHORIZED,
        "api_key_revoked",
    )
    .await;
    assert_eq!(
        whoami(&app, newer["secret"].as_str().unwrap()).await.status(),
        StatusCode::OK
    );

    let bad_grace = rotate(newer["id"].as_str().unwrap().to_owned(), -5).await.unwrap();
    expect_problem(bad_grace, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[tokio::test]
async fn last_used_is_recorded() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let path = format!("{}/{}", keys_path(&tenant), tenant.key_id);
    assert_eq!(app.get_json(&tenant.owner, &path).await["lastUsedAt"], Value::Null);
    assert_eq!(whoami(&app, &tenant.key_secret).await.status(), StatusCode::OK);
    // Written off the request path: poll briefly.
    for _ in 0..50 {
        if app.get_json(&tenant.owner, &path).await["lastUsedAt"].is_string() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("lastUsedAt was never recorded");
}
