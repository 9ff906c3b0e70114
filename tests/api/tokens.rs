//! Login and access-token verification, including forged and tampered tokens.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{expect_json, expect_problem, TestApp, TestUser};

const SECRET: &str = "meterplane-dev-jwt-secret-change-me-0123456789";

fn claims(user: &TestUser, adjust: impl FnOnce(&mut Value)) -> Value {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "sub": user.id, "iss": "meterplane", "aud": "meterplane-api", "iat": now, "exp": now + 300,
    });
    adjust(&mut claims);
    claims
}

fn sign(claims: &Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn me_with(app: &TestApp, token: &str) -> reqwest::Response {
    app.request(Method::GET, "/v1/me")
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn login_issues_a_token_that_works() {
    let app = TestApp::spawn().await;
    let user = app.signup().await;
    let body = expect_json(
        app.login(&user.email.to_uppercase(), &user.password).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["tokenType"], "Bearer");
    assert_eq!(body["expiresIn"], 900);
    let me = me_with(&app, body["accessToken"].as_str().unwrap()).await;
    assert_eq!(me.status(), StatusCode::OK);
}

#[tokio::test]
async fn wrong_password_and_unknown_email_look_the_same() {
    let app = TestApp::spawn().await;
    let user = app.signup().await;
    let wrong = expect_problem(
        app.login(&user.email, "not the password").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let unknown = expect_problem(
        app.login("nobody@example.com", "not the password").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_eq!(wrong["detail"], unknown["detail"]);
}

#[tokio::test]
async fn a_correctly_forged_token_is_accepted_so_the_rejections_below_mean_something() {
    let app = TestApp::spawn().await;
    let user = app.signup().await;
    let response = me_with(&app, &sign(&claims(&user, |_| {}), SECRET)).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn tampered_tokens_are_rejected() {
    let app = TestApp::spawn().await;
    let user = app.signup().await;
    let now = chrono::Utc::now().timestamp();

    let wrong_secret = sign(&claims(&user, |_| {}), "another-secret-that-is-long-enough-000000");
    let wrong_issuer = sign(&claims(&user, |c| c["iss"] = json!("evil")), SECRET);
    let wrong_audience = sign(&claims(&user, |c| c["aud"] = json!("other-api")), SECRET);
    let no_expiry = sign(
        &claims(&user, |c| {
            c.as_object_mut().unwrap().remove("exp");
        }),
        SECRET,
    );
    let unknown_user = sign(&claims(&user, |c| c["sub"] = json!(uuid::Uuid::new_v4())), SECRET);
    let not_a_uuid = sign(&claims(&user, |c| c["sub"] = json!("admin")), SECRET);

    // Signature bytes changed / payload swapped after signing.
    let valid = sign(&claims(&user, |_| {}), SECRET);
    let parts: Vec<&str> = valid.split('.').collect();
    let other = app.signup().await;
    let forged_payload = URL_SAFE_NO_PAD.encode(claims(&other, |_| {}).to_string());
    let swapped_payload = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    let mut sig = parts[2].to_owned();
    sig.replace_range(0..1, if sig.starts_with('A') { "B" } else { "A" });
    let flipped_signature = format!("{}.{}.{}", parts[0], parts[1], sig);

    // `alg: none` and an algorithm the server does not use.
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{none_header}.{}.", parts[1]);
    let hs512 = encode(
        &Header::new(Algorithm::HS512),
        &claims(&user, |_| {}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();

    for (case, token) in [
        ("wrong secret", wrong_secret),
        ("wrong issuer", wrong_issuer),
        ("wrong audience", wrong_audience),
        ("no expiry", no_expiry),
        ("unknown user", unknown_user),
        ("subject not a uuid", not_a_uuid),
        ("payload swapped", swapped_payload),
        ("signature flipped", flipped_signature),
        ("alg none", alg_none),
        ("HS512", hs512),
        ("garbage", "not.a.jwt".to_owned()),
        ("empty", String::new()),
    ] {
        let response = me_with(&app, &token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case} should be rejected");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "unauthorized", "{case}: {body}");
    }

    // Expired beyond the 5 s leeway; and a token that is only just expired still
    // passes within the leeway.
    let expired = sign(
        &claims(&user, |c| {
            c["iat"] = json!(now - 600);
            c["exp"] = json!(now - 60);
        }),
        SECRET,
    );
    expect_problem(me_with(&app, &expired).await, StatusCode::UNAUTHORIZED, "token_expired").await;
    let within_leeway = sign(&claims(&user, |c| c["exp"] = json!(now - 1)), SECRET);
    assert_eq!(me_with(&app, &within_leeway).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn missing_or_non_bearer_credentials_are_401() {
    let app = TestApp::spawn().await;
    let user = app.signup().await;
    expect_problem(
        app.request(Method::GET, "/v1/me").send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    let basic = app
        .request(Method::GET, "/v1/me")
        .header("authorization", format!("Basic {}", user.token))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.headers()["www-authenticate"], "Bearer");
    expect_problem(basic, StatusCode::UNAUTHORIZED, "unauthorized").await;
}
