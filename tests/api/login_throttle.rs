//! Login throttling as a guesser and the account's owner meet it: lock-outs shared by
//! every instance, answered 429 with `Retry-After` in the problem shape, and no limit
//! a stranger can use to keep the owner out.

use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use serde_json::json;

use crate::{
    helpers::{expect_json, expect_problem, TestApp, PASSWORD},
    server_process::ServerProcess,
};

/// Signs in at `base` as a client at `ip` (the servers under test trust
/// `X-Forwarded-For`, as they do behind the deployment's proxy).
async fn login_from(app: &TestApp, base: &str, email: &str, password: &str, ip: &str) -> Response {
    app.client
        .request(Method::POST, format!("{base}/v1/auth/login"))
        .header("x-forwarded-for", format!("203.0.113.250, {ip}"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn too_many(response: Response) -> u64 {
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    expect_problem(response, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
    retry_after
}

#[tokio::test]
async fn wrong_passwords_lock_one_address_out_of_one_account_on_every_instance_until_the_delay_passes() {
    let app = TestApp::spawn().await;
    let user = app.signup().await;
    let env = [
        ("MP_LOGIN_FREE_FAILURES", "3".to_owned()),
        ("MP_LOGIN_BASE_DELAY_MS", "2000".to_owned()),
        ("MP_CLIENT_IP_HEADER", "X-Forwarded-For".to_owned()),
    ];
    let a = ServerProcess::start(&app, &env).await;
    let b = ServerProcess::start(&app, &env).await;
    let guesser = "198.51.100.7";

    // Three free failures and the fourth, which starts a 2 s lock-out, alternating
    // between the two processes.
    for base in [&a, &b, &a, &b] {
        let wrong = login_from(&app, &base.address, &user.email, "not the password", guesser).await;
        expect_problem(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    // Locked on both: even the right password is not looked at from this address.
    let retry = too_many(login_from(&app, &a.address, &user.email, "still wrong", guesser).await).await;
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    too_many(login_from(&app, &b.address, &user.email, PASSWORD, guesser).await).await;
    // The address is counted, not the spelling of the email.
    too_many(login_from(&app, &b.address, &user.email.to_uppercase(), PASSWORD, guesser).await).await;

    // The owner elsewhere is not affected.
    let owner = login_from(&app, &a.address, &user.email, PASSWORD, "192.0.2.10").await;
    expect_json(owner, StatusCode::OK).await;

    // After the delay the right password works, and success starts the count over:
    // the next wrong password is an ordinary 401, not a lock-out.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let back = login_from(&app, &b.address, &user.email, PASSWORD, guesser).await;
    expect_json(back, StatusCode::OK).await;
    let wrong = login_from(&app, &a.address, &user.email, "not the password", guesser).await;
    expect_problem(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn the_account_limit_stops_a_distributed_guesser_but_not_the_owner_at_a_known_address() {
    let app = TestApp::spawn_with(|config| {
        config.auth.login_throttle.account_limit = 4;
        config.auth.client_ip_header = Some("x-forwarded-for".into());
    })
    .await;
    let user = app.signup().await;
    let base = app.address.clone();
    expect_json(
        login_from(&app, &base, &user.email, PASSWORD, "192.0.2.10").await,
        StatusCode::OK,
    )
    .await;

    // One wrong password from each of four addresses: no single address is locked,
    // but the account has had its fill for the window.
    for i in 1..=4 {
        let ip = format!("198.51.100.{i}");
        let wrong = login_from(&app, &base, &user.email, "guess", &ip).await;
        expect_problem(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    let retry = too_many(login_from(&app, &base, &user.email, PASSWORD, "198.51.100.99").await).await;
    assert!(retry > 0 && retry <= 3600, "Retry-After {retry}");

    // The owner signs in from the address they used before.
    expect_json(
        login_from(&app, &base, &user.email, PASSWORD, "192.0.2.10").await,
        StatusCode::OK,
    )
    .await;
    // Another account is not affected by this one's limit.
    let other = app.signup().await;
    expect_json(
        login_from(&app, &base, &other.email, PASSWORD, "198.51.100.99").await,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn one_address_guessing_many_accounts_is_stopped_and_unknown_emails_count_like_known_ones() {
    let app = TestApp::spawn_with(|config| {
        config.auth.login_throttle.address_limit = 3;
        config.auth.client_ip_header = Some("x-forwarded-for".into());
    })
    .await;
    let user = app.signup().await;
    let base = app.address.clone();
    let sprayer = "198.51.100.50";
    for email in ["nobody-1@example.com", "nobody-2@example.com", &user.email] {
        let wrong = login_from(&app, &base, email, "Summer2026!", sprayer).await;
        expect_problem(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    too_many(login_from(&app, &base, "nobody-3@example.com", "Summer2026!", sprayer).await).await;
    too_many(login_from(&app, &base, &user.email, PASSWORD, sprayer).await).await;
    expect_json(
        login_from(&app, &base, &user.email, PASSWORD, "192.0.2.1").await,
        StatusCode::OK,
    )
    .await;
}
