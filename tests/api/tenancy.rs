//! The tenancy lifecycle as a tenant admin lives it.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{expect_json, expect_problem, uuid, TestApp, PASSWORD};

#[tokio::test]
async fn signup_creates_an_owned_organization_to_sign_in_to() {
    let app = TestApp::spawn().await;
    let (user, body) = app
        .signup_with(json!({"name": "Ada", "organizationName": "Acme AI, Inc."}))
        .await;
    assert_eq!(body["organization"]["slug"], "acme-ai-inc");
    assert_eq!(body["organization"]["plan"], "free");
    assert_eq!(body["organization"]["retentionDays"], 3);

    let me = app.get_json(&user, "/v1/me").await;
    assert_eq!(me["user"]["email"], user.email);
    assert_eq!(me["user"]["name"], "Ada");
    assert_eq!(me["memberships"][0]["role"], "owner");

    // The password is stored only as an argon2 hash.
    let stored: Vec<String> = {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use meterplane::store::schema::users;
        users::table
            .select(users::password_hash)
            .load(&mut app.db().await)
            .await
            .unwrap()
    };
    assert!(stored
        .iter()
        .all(|h| h.starts_with("$argon2id$") && !h.contains(PASSWORD)));
}

#[tokio::test]
async fn duplicate_slugs_are_conflicts() {
    // (A sign-up for a taken email is not a conflict: `account_emails.rs`.)
    let app = TestApp::spawn().await;
    let user = app.signup().await;
    app.post_json(&user, "/v1/orgs", json!({"name": "Taken", "slug": "taken-slug"}))
        .await;
    let clash = app
        .as_user(Method::POST, "/v1/orgs", &user)
        .json(&json!({"name": "Other", "slug": "taken-slug"}))
        .send()
        .await
        .unwrap();
    expect_problem(clash, StatusCode::CONFLICT, "conflict").await;

    // A derived slug that is taken gets a suffix instead of failing.
    let a = app.post_json(&user, "/v1/orgs", json!({"name": "Same Name"})).await;
    let b = app.post_json(&user, "/v1/orgs", json!({"name": "Same Name"})).await;
    assert_eq!(a["slug"], "same-name");
    assert!(b["slug"].as_str().unwrap().starts_with("same-name-"));
}

#[tokio::test]
async fn owner_manages_organization_projects_and_members() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let owner = &tenant.owner;
    let org = format!("/v1/orgs/{}", tenant.org_id);

    // Settings.
    let updated = expect_json(
        app.as_user(Method::PATCH, &org, owner)
            .json(&json!({"name": "Acme Labs", "alertEmails": ["Ops@Acme.example", "cfo@acme.example"]}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(updated["name"], "Acme Labs");
    assert_eq!(updated["alertEmails"], json!(["ops@acme.example", "cfo@acme.example"]));

    // Projects: list, rename, change mode; names are unique per organization.
    let second = app
        .post_json(
            owner,
            &format!("{org}/projects"),
            json!({"name": "Staging", "mode": "api-keys"}),
        )
        .await;
    let projects = app.get_json(owner, &format!("{org}/projects")).await;
    assert_eq!(projects.as_array().unwrap().len(), 2);
    let renamed = expect_json(
        app.as_user(
            Method::PATCH,
            &format!("{org}/projects/{}", second["id"].as_str().unwrap()),
            owner,
        )
        .json(&json!({"mode": "hybrid"}))
        .send()
        .await
        .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(renamed["mode"], "hybrid");
    assert_eq!(renamed["name"], "Staging");
    let duplicate = app
        .as_user(Method::POST, &format!("{org}/projects"), owner)
        .json(&json!({"name": "production", "mode": "credits"}))
        .send()
        .await
        .unwrap();
    expect_problem(duplicate, StatusCode::CONFLICT, "conflict").await;

    // Members: a viewer reads but cannot write; promotion and removal work.
    let viewer = app.member(&tenant, "viewer").await;
    assert_eq!(
        app.get_json(&viewer, &format!("{org}/projects"))
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let denied = app
        .as_user(Method::POST, &format!("{org}/projects"), &viewer)
        .json(&json!({"name": "Nope", "mode": "credits"}))
        .send()
        .await
        .unwrap();
    expect_problem(denied, StatusCode::FORBIDDEN, "forbidden").await;

    let promoted = expect_json(
        app.as_user(Method::PATCH, &format!("{org}/members/{}", viewer.id), owner)
            .json(&json!({"role": "admin"}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(promoted["role"], "admin");
    app.post_json(
        &viewer,
        &format!("{org}/projects"),
        json!({"name": "By admin", "mode": "credits"}),
    )
    .await;

    let members = app.get_json(owner, &format!("{org}/members")).await;
    assert_eq!(members.as_array().unwrap().len(), 2);
    let removed = app
        .as_user(Method::DELETE, &format!("{org}/members/{}", viewer.id), owner)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    // A former member is an outsider: 404, not 403.
    let gone = app.as_user(Method::GET, &org, &viewer).send().await.unwrap();
    expect_problem(gone, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn admins_cannot_touch_owners_and_the_last_owner_stays() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let org = format!("/v1/orgs/{}", tenant.org_id);
    let admin = app.member(&tenant, "admin").await;

    let make_owner = app
        .as_user(Method::PATCH, &format!("{org}/members/{}", admin.id), &admin)
        .json(&json!({"role": "owner"}))
        .send()
        .await
        .unwrap();
    expect_problem(make_owner, StatusCode::FORBIDDEN, "forbidden").await;
    let demote_owner = app
        .as_user(Method::PATCH, &format!("{org}/members/{}", tenant.owner.id), &admin)
        .json(&json!({"role": "viewer"}))
        .send()
        .await
        .unwrap();
    expect_problem(demote_owner, StatusCode::FORBIDDEN, "forbidden").await;

    let last_owner = app
        .as_user(
            Method::DELETE,
            &format!("{org}/members/{}", tenant.owner.id),
            &tenant.owner,
        )
        .send()
        .await
        .unwrap();
    expect_problem(last_owner, StatusCode::CONFLICT, "conflict").await;

    // With a second owner, the first may step down.
    app.as_user(Method::PATCH, &format!("{org}/members/{}", admin.id), &tenant.owner)
        .json(&json!({"role": "owner"}))
        .send()
        .await
        .unwrap();
    let step_down = app
        .as_user(
            Method::PATCH,
            &format!("{org}/members/{}", tenant.owner.id),
            &tenant.owner,
        )
        .json(&json!({"role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(step_down.status(), StatusCode::OK);

    // Adding an existing member again is a conflict; a new email needs a password.
    let again = app
        .as_user(Method::POST, &format!("{org}/members"), &admin)
        .json(&json!({"email": tenant.owner.email, "role": "viewer"}))
        .send()
        .await
        .unwrap();
    expect_problem(again, StatusCode::CONFLICT, "conflict").await;
    // A new email without a password is invited, not refused.
    let invited = app
        .as_user(Method::POST, &format!("{org}/members"), &admin)
        .json(&json!({"email": "nobody-yet@example.com", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(invited.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn existing_accounts_join_only_by_accepting_an_invitation() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let org = format!("/v1/orgs/{}", tenant.org_id);
    let elsewhere = app.tenant().await; // someone with an account and an organization of their own
    let stranger = app.signup().await;

    // Inviting an existing account and an unknown email answer alike: nothing tells
    // the inviter whether an account exists, and no profile data comes back.
    let add = |email: String, role: &'static str| {
        app.as_user(Method::POST, &format!("{org}/members"), &tenant.owner)
            .json(&json!({"email": email, "role": role}))
            .send()
    };
    let existing = expect_json(
        add(elsewhere.owner.email.clone(), "admin").await.unwrap(),
        StatusCode::ACCEPTED,
    )
    .await;
    let unknown = expect_json(
        add("no-account@example.com".into(), "admin").await.unwrap(),
        StatusCode::ACCEPTED,
    )
    .await;
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&existing), keys(&unknown));
    assert!(!existing.to_string().contains(&elsewhere.owner.id.to_string()));

    // Not a member until accepted.
    let members = app.get_json(&tenant.owner, &format!("{org}/members")).await;
    assert_eq!(members.as_array().unwrap().len(), 1);
    let not_yet = app.as_user(Method::GET, &org, &elsewhere.owner).send().await.unwrap();
    expect_problem(not_yet, StatusCode::NOT_FOUND, "not_found").await;

    // The invitee sees it; nobody else can accept it.
    let me = app.get_json(&elsewhere.owner, "/v1/me").await;
    assert_eq!(me["invitations"][0]["orgId"], tenant.org_id.to_string());
    assert_eq!(me["invitations"][0]["organizationName"], "Acme AI");
    let accept = |user| {
        app.as_user(
            Method::POST,
            &format!("/v1/invitations/{}/accept", existing["id"].as_str().unwrap()),
            user,
        )
        .send()
    };
    expect_problem(accept(&stranger).await.unwrap(), StatusCode::NOT_FOUND, "not_found").await;
    let accepted = expect_json(accept(&elsewhere.owner).await.unwrap(), StatusCode::OK).await;
    assert_eq!(accepted["role"], "admin");
    assert_eq!(
        app.get_json(&elsewhere.owner, &org).await["id"],
        tenant.org_id.to_string()
    );
    expect_problem(
        accept(&elsewhere.owner).await.unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // Withdrawn invitations cannot be accepted; a viewer cannot withdraw.
    let viewer = app.member(&tenant, "viewer").await;
    let pending = app.get_json(&tenant.owner, &format!("{org}/invitations")).await;
    assert_eq!(
        pending.as_array().unwrap().len(),
        1,
        "only the unknown email is still pending"
    );
    let withdraw_path = format!("{org}/invitations/{}", pending[0]["id"].as_str().unwrap());
    let by_viewer = app
        .as_user(Method::DELETE, &withdraw_path, &viewer)
        .send()
        .await
        .unwrap();
    expect_problem(by_viewer, StatusCode::FORBIDDEN, "forbidden").await;
    let withdrawn = app
        .as_user(Method::DELETE, &withdraw_path, &tenant.owner)
        .send()
        .await
        .unwrap();
    assert_eq!(withdrawn.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_json(&tenant.owner, &format!("{org}/invitations")).await,
        json!([])
    );

    // Only owners invite owners.
    let admin = app.member(&tenant, "admin").await;
    let owner_invite = app
        .as_user(Method::POST, &format!("{org}/members"), &admin)
        .json(&json!({"email": stranger.email, "role": "owner"}))
        .send()
        .await
        .unwrap();
    expect_problem(owner_invite, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn operators_set_plans_and_nobody_else_can() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let operator = app.operator().await;
    let path = format!("/v1/admin/orgs/{}/plan", tenant.org_id);

    let as_owner = app
        .as_user(Method::PUT, &path, &tenant.owner)
        .json(&json!({"plan": "enterprise"}))
        .send()
        .await
        .unwrap();
    expect_problem(as_owner, StatusCode::FORBIDDEN, "forbidden").await;

    let pro = expect_json(
        app.as_user(Method::PUT, &path, &operator)
            .json(&json!({"plan": "pro"}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (pro["plan"].as_str(), pro["retentionDays"].as_i64()),
        (Some("pro"), Some(90))
    );

    let enterprise = expect_json(
        app.as_user(Method::PUT, &path, &operator)
            .json(&json!({"plan": "enterprise", "retentionDays": 180}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(enterprise["retentionDays"], 180);

    for bad in [
        json!({"plan": "pro", "retentionDays": 30}),
        json!({"plan": "enterprise", "retentionDays": 366}),
    ] {
        let response = app
            .as_user(Method::PUT, &path, &operator)
            .json(&bad)
            .send()
            .await
            .unwrap();
        expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
    let org = app
        .get_json(&tenant.owner, &format!("/v1/orgs/{}", tenant.org_id))
        .await;
    assert_eq!(org["retentionDays"], 180, "rejected changes leave the plan as it was");

    let unknown = app
        .as_user(
            Method::PUT,
            &format!("/v1/admin/orgs/{}/plan", uuid::Uuid::new_v4()),
            &operator,
        )
        .json(&json!({"plan": "pro"}))
        .send()
        .await
        .unwrap();
    expect_problem(unknown, StatusCode::NOT_FOUND, "not_found").await;

    let all = app.get_json(&operator, "/v1/admin/orgs").await;
    assert!(all.as_array().unwrap().iter().any(|o| uuid(&o["id"]) == tenant.org_id));
}

#[tokio::test]
async fn signup_can_be_disabled() {
    let app = TestApp::spawn_with(|c| c.auth.signup_enabled = false).await;
    let response = app
        .request(Method::POST, "/v1/auth/signup")
        .json(&json!({"email": "x@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::FORBIDDEN, "disabled").await;
}
