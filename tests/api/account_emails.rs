//! Account security as people meet it: sign-up that does not reveal who has an
//! account, the verification email and its single-use token, what an unverified
//! account may not do, password reset by email, and changing the password (which
//! signs out every other session). Emails go over a real SMTP server.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    helpers::{eventually, expect_json, expect_problem, fast_email, TestApp, TestUser, PASSWORD},
    smtp_sink::{ReceivedEmail, SmtpSink},
};

const WAIT: Duration = Duration::from_secs(10);

async fn app_sending_to(sink: &SmtpSink) -> (TestApp, meterplane::jobs::JobHandle) {
    let url = sink.url();
    let app = TestApp::spawn_with(|config| fast_email(config, &url)).await;
    let worker = app.start_outbox_worker();
    (app, worker)
}

/// The single-use token in an account email, from its text part.
fn token_in(mail: &ReceivedEmail) -> String {
    let text = mail.text_body().expect("a text part");
    let token = text
        .lines()
        .find_map(|line| line.strip_prefix("Token: "))
        .unwrap_or_else(|| panic!("no token in {text}"));
    assert_eq!(token.len(), 64, "{token}");
    token.to_owned()
}

/// Waits for an email to `to` with `subject` and returns it (the newest such).
async fn email_to(sink: &SmtpSink, to: &str, subject: &str) -> ReceivedEmail {
    eventually(&format!("an email to {to}: {subject}"), WAIT, || async {
        sink.received()
            .into_iter()
            .rev()
            .find(|m| m.rcpt_to == [to] && m.subject() == subject)
    })
    .await
}

const VERIFY: &str = "Confirm your email address for Meterplane";
const ALREADY: &str = "You already have a Meterplane account";
const RESET: &str = "Reset your Meterplane password";

async fn post(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.request(Method::POST, path).json(&body).send().await.unwrap()
}

async fn signup(app: &TestApp, email: &str, extra: Value) -> Value {
    let mut body = json!({"email": email, "password": PASSWORD});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    expect_json(post(app, "/v1/auth/signup", body).await, StatusCode::ACCEPTED).await
}

#[tokio::test]
async fn signup_answers_alike_for_new_and_taken_addresses_and_tells_the_owner_by_email() {
    let sink = SmtpSink::start().await;
    let (app, _worker) = app_sending_to(&sink).await;

    let fresh = signup(&app, "ada@example.com", json!({"organizationName": "Acme"})).await;
    email_to(&sink, "ada@example.com", VERIFY).await;

    // The same address again, spelled differently: the same answer, no account made,
    // and the owner learns of it by email.
    let taken = signup(&app, "Ada@Example.com", json!({"organizationName": "Other"})).await;
    assert_eq!(fresh, taken);
    let mail = email_to(&sink, "ada@example.com", ALREADY).await;
    assert_eq!(sink.received().len(), 2, "one email each");
    assert!(mail.text_body().unwrap().contains("/v1/auth/password-reset/confirm"));

    // The first sign-up's password still stands, and only its organization exists.
    let user = app.sign_in("ada@example.com").await;
    let me = app.get_json(&user, "/v1/me").await;
    assert_eq!(me["user"]["emailVerified"], false);
    assert_eq!(me["memberships"].as_array().unwrap().len(), 1);
    assert_eq!(me["memberships"][0]["organization"]["name"], "Acme");

    // An unverified account works on the organization it created.
    let org = me["memberships"][0]["organization"]["id"].as_str().unwrap();
    let project = app
        .as_user(Method::POST, &format!("/v1/orgs/{org}/projects"), &user)
        .json(&json!({"name": "Prod", "mode": "credits"}))
        .send()
        .await
        .unwrap();
    expect_json(project, StatusCode::CREATED).await;
}

#[tokio::test]
async fn the_verification_token_works_once_and_only_a_verified_account_accepts_an_invitation() {
    let sink = SmtpSink::start().await;
    let (app, _worker) = app_sending_to(&sink).await;
    let tenant = app.tenant().await;
    let invited = "grace@example.com";
    let invitation = app
        .post_json(
            &tenant.owner,
            &format!("/v1/orgs/{}/members", tenant.org_id),
            json!({"email": invited, "role": "admin"}),
        )
        .await;

    // Whoever signs up with the invited address sees the invitation but cannot take
    // it before proving the address.
    signup(&app, invited, json!({})).await;
    let person = app.sign_in(invited).await;
    let me = app.get_json(&person, "/v1/me").await;
    assert_eq!(me["invitations"][0]["id"], invitation["id"]);
    let accept = || {
        app.as_user(
            Method::POST,
            &format!("/v1/invitations/{}/accept", invitation["id"].as_str().unwrap()),
            &person,
        )
        .send()
    };
    expect_problem(accept().await.unwrap(), StatusCode::FORBIDDEN, "email_not_verified").await;

    // The token from the email confirms the address, once.
    let token = token_in(&email_to(&sink, invited, VERIFY).await);
    let verified = expect_json(
        post(&app, "/v1/auth/verify-email", json!({"token": token})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(verified["email"], invited);
    assert_eq!(verified["emailVerified"], true);
    let again = post(&app, "/v1/auth/verify-email", json!({"token": token})).await;
    expect_problem(again, StatusCode::BAD_REQUEST, "invalid_token").await;
    let made_up = post(&app, "/v1/auth/verify-email", json!({"token": "0".repeat(64)})).await;
    expect_problem(made_up, StatusCode::BAD_REQUEST, "invalid_token").await;

    let accepted = expect_json(accept().await.unwrap(), StatusCode::OK).await;
    assert_eq!(accepted["role"], "admin");
    // The delivered email no longer holds the token at rest.
    let bodies: Vec<String> = {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use meterplane::store::schema::email_outbox;
        email_outbox::table
            .filter(email_outbox::status.eq("sent"))
            .select(email_outbox::text_body)
            .load(&mut app.db().await)
            .await
            .unwrap()
    };
    assert!(!bodies.is_empty() && bodies.iter().all(|b| !b.contains(&token)));
}

#[tokio::test]
async fn a_provisioned_account_acts_on_the_organization_only_after_confirming_its_address() {
    let sink = SmtpSink::start().await;
    let (app, _worker) = app_sending_to(&sink).await;
    let tenant = app.tenant().await;
    let org = format!("/v1/orgs/{}", tenant.org_id);
    app.post_json(
        &tenant.owner,
        &format!("{org}/members"),
        json!({"email": "lin@example.com", "role": "viewer", "password": PASSWORD}),
    )
    .await;
    let member = app.sign_in("lin@example.com").await;
    let refused = app.as_user(Method::GET, &org, &member).send().await.unwrap();
    expect_problem(refused, StatusCode::FORBIDDEN, "email_not_verified").await;

    let token = token_in(&email_to(&sink, "lin@example.com", VERIFY).await);
    expect_json(
        post(&app, "/v1/auth/verify-email", json!({"token": token})).await,
        StatusCode::OK,
    )
    .await;
    expect_json(
        app.as_user(Method::GET, &org, &member).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
}

async fn status_with(app: &TestApp, token: &str) -> StatusCode {
    app.request(Method::GET, "/v1/me")
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn a_password_reset_by_email_works_once_and_signs_out_every_session() {
    let sink = SmtpSink::start().await;
    let (app, _worker) = app_sending_to(&sink).await;
    let user = app.signup().await;

    // Known and unknown addresses get the same answer; only the known one gets mail.
    let known = expect_json(
        post(&app, "/v1/auth/password-reset", json!({"email": user.email})).await,
        StatusCode::ACCEPTED,
    )
    .await;
    let unknown = expect_json(
        post(&app, "/v1/auth/password-reset", json!({"email": "nobody@example.com"})).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(known, unknown);
    let token = token_in(&email_to(&sink, &user.email, RESET).await);
    assert!(
        !sink.received().iter().any(|m| m.rcpt_to == ["nobody@example.com"]),
        "no email for an address without an account"
    );

    // A password that breaks the rules does not use the token up.
    let short = post(
        &app,
        "/v1/auth/password-reset/confirm",
        json!({"token": token, "password": "short"}),
    )
    .await;
    expect_problem(short, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let confirm = || {
        post(
            &app,
            "/v1/auth/password-reset/confirm",
            json!({"token": token, "password": "a brand new passphrase"}),
        )
    };
    assert_eq!(confirm().await.status(), StatusCode::NO_CONTENT);
    expect_problem(confirm().await, StatusCode::BAD_REQUEST, "invalid_token").await;
    // A verification token is not a reset token.
    let wrong_kind = post(&app, "/v1/auth/verify-email", json!({"token": token})).await;
    expect_problem(wrong_kind, StatusCode::BAD_REQUEST, "invalid_token").await;

    assert_eq!(status_with(&app, &user.token).await, StatusCode::UNAUTHORIZED);
    expect_problem(
        app.login(&user.email, PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let fresh = expect_json(app.login(&user.email, "a brand new passphrase").await, StatusCode::OK).await;
    assert_eq!(
        status_with(&app, fresh["accessToken"].as_str().unwrap()).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn changing_the_password_retires_every_token_issued_before() {
    let app = TestApp::spawn().await;
    let user = app.signup().await;
    let other_session = app.sign_in(&user.email).await;
    let change = |current: &str, user: &TestUser| {
        app.as_user(Method::POST, "/v1/auth/password", user)
            .json(&json!({"currentPassword": current, "newPassword": "another long passphrase"}))
            .send()
    };
    let wrong = change("not the password", &user).await.unwrap();
    let problem = expect_problem(wrong, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "currentPassword");

    let changed = expect_json(change(PASSWORD, &user).await.unwrap(), StatusCode::OK).await;
    let new_token = changed["accessToken"].as_str().unwrap();
    assert_eq!(status_with(&app, &user.token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status_with(&app, &other_session.token).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status_with(&app, new_token).await, StatusCode::OK);
    expect_json(app.login(&user.email, "another long passphrase").await, StatusCode::OK).await;
}

#[tokio::test]
async fn a_signed_in_unverified_account_can_have_the_verification_email_sent_again() {
    let sink = SmtpSink::start().await;
    let (app, _worker) = app_sending_to(&sink).await;
    let email = "lin@example.com";
    signup(&app, email, json!({})).await;
    let first = token_in(&email_to(&sink, email, VERIFY).await);
    let person = app.sign_in(email).await;
    let resend = || {
        app.as_user(Method::POST, "/v1/auth/verify-email/resend", &person)
            .send()
    };

    // Resends are throttled per clock-aligned five minutes; the test notes whether it
    // straddled a boundary (then the repeat below may be sent).
    let window = || chrono::Utc::now().timestamp().div_euclid(300);
    let started_in = window();

    // Right after sign-up: a second email, with a new token.
    let answer = expect_json(resend().await.unwrap(), StatusCode::ACCEPTED).await;
    assert_eq!(answer["status"], "check_email");
    let second = eventually("a second verification email", WAIT, || async {
        let tokens: Vec<String> = sink
            .received()
            .iter()
            .filter(|m| m.rcpt_to == [email] && m.subject() == VERIFY)
            .map(token_in)
            .collect();
        (tokens.len() == 2).then(|| tokens[1].clone())
    })
    .await;
    assert_ne!(first, second);

    // Asked again at once: the same answer, no third email (one resend per five
    // minutes), even after the worker had time to send it.
    expect_json(resend().await.unwrap(), StatusCode::ACCEPTED).await;
    let one_window = window() == started_in;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = sink.received().iter().filter(|m| m.rcpt_to == [email]).count();
    assert!(sent == 2 || (!one_window && sent == 3), "{sent} emails");

    // The resent token verifies; then there is nothing to resend, and without a
    // session nothing is sent at all.
    let verified = expect_json(
        post(&app, "/v1/auth/verify-email", json!({"token": second})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(verified["emailVerified"], true);
    expect_problem(resend().await.unwrap(), StatusCode::CONFLICT, "conflict").await;
    let anonymous = app
        .request(Method::POST, "/v1/auth/verify-email/resend")
        .send()
        .await
        .unwrap();
    expect_problem(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
}
