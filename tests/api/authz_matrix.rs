//! The authorization matrix, generated from the OpenAPI document so that an endpoint
//! added later cannot skip it.
//!
//! Every operation is classified by its security requirement and path:
//! - public (no security): must be listed in `PUBLIC`;
//! - gateway (api_key): without a key → 401; with a revoked key → 401;
//! - operator (`/v1/admin/…`): anonymous → 401; a tenant owner → 403;
//! - tenant (`/v1/orgs/{orgId}/…`): anonymous → 401; another tenant's admin with
//!   the victim's ids → 404; the other tenant's own org id with the victim's child
//!   ids → 404; a viewer writing → 403; the owner reading → 2xx;
//! - user (any other bearer operation): must be listed in `USER_SCOPED`;
//!   anonymous → 401.
//!
//! Request bodies are the `example` of each request schema, so the failures observed
//! are authorization, not validation.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{budget_alert, uuid, Tenant, TestApp, TestUser};

const PUBLIC: &[&str] = &[
    "GET /healthz",
    "GET /readyz",
    "POST /v1/auth/signup",
    "POST /v1/auth/login",
    "POST /v1/auth/verify-email",
    "POST /v1/auth/password-reset",
    "POST /v1/auth/password-reset/confirm",
];
/// Tenant operations that create nothing the organization keeps and need only read
/// access (a viewer may do them).
const READS_BY_POST: &[&str] = &["POST /v1/orgs/{orgId}/stream-tickets"];
const USER_SCOPED: &[&str] = &[
    "GET /v1/me",
    "POST /v1/auth/password",
    "POST /v1/auth/verify-email/resend",
    "GET /v1/orgs",
    "POST /v1/orgs",
    "GET /v1/prices",
    "POST /v1/invitations/{invitationId}/accept",
];

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
enum Class {
    Public,
    Gateway,
    Operator,
    Tenant,
    User,
}

struct Operation {
    method: Method,
    path: String,
    body: Option<Value>,
    class: Class,
}

impl Operation {
    fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// Whether the path names objects below the organization (not only the
    /// organization and selectors such as `{scope}` or `{kind}`).
    fn has_child_ids(&self) -> bool {
        self.path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .any(|param| !["orgId", "scope", "kind", "entity"].contains(&param))
    }

    fn is_write(&self) -> bool {
        self.method != Method::GET && !READS_BY_POST.contains(&self.label().as_str())
    }

    /// The path with each `{param}` replaced from `ids`.
    fn url(&self, ids: &[(&str, String)]) -> String {
        let mut url = self.path.clone();
        for (name, value) in ids {
            url = url.replace(&format!("{{{name}}}"), value);
        }
        assert!(
            !url.contains('{'),
            "{}: no value for a path parameter in {url}",
            self.label()
        );
        url
    }
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let method: Method = method.to_uppercase().parse().expect("method");
            let label = format!("{method} {path}");
            let schemes: BTreeSet<String> = op["security"]
                .as_array()
                .map(|reqs| {
                    reqs.iter()
                        .flat_map(|r| r.as_object().into_iter().flat_map(|o| o.keys().cloned()))
                        .collect()
                })
                .unwrap_or_default();
            let class = if schemes.is_empty() {
                assert!(
                    PUBLIC.contains(&label.as_str()),
                    "{label} has no security requirement and is not listed as public"
                );
                Class::Public
            } else if schemes.contains("api_key") {
                Class::Gateway
            } else if path.starts_with("/v1/admin/") {
                Class::Operator
            } else if path.starts_with("/v1/orgs/{orgId}") {
                Class::Tenant
            } else {
                assert!(
                    USER_SCOPED.contains(&label.as_str()),
                    "{label} fits no class of the matrix; classify it"
                );
                Class::User
            };
            ops.push(Operation {
                body: example_body(doc, op, &label),
                method,
                path: path.clone(),
                class,
            });
        }
    }
    ops
}

fn example_body(doc: &Value, op: &Value, label: &str) -> Option<Value> {
    let schema = op.pointer("/requestBody/content/application~1json/schema")?;
    let name = schema["$ref"]
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .unwrap_or_else(|| panic!("{label}: inline request schema"));
    let example = doc["components"]["schemas"][name]["example"].clone();
    assert!(
        !example.is_null(),
        "{label}: request schema {name} needs an example for the matrix"
    );
    Some(example)
}

async fn call(app: &TestApp, op: &Operation, url: &str, auth: Auth<'_>) -> (StatusCode, Value) {
    let mut request = app.request(op.method.clone(), url);
    request = match auth {
        Auth::None => request,
        Auth::User(user) => request.bearer_auth(&user.token),
        Auth::Key(secret) => request.header("x-api-key", secret),
    };
    if let Some(body) = &op.body {
        request = request.json(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    // A live stream answers with its headers and then goes on: its status is the answer,
    // and dropping the response closes it.
    let streaming = response
        .headers()
        .get("content-type")
        .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
    if streaming {
        return (status, Value::Null);
    }
    (status, response.json().await.unwrap_or(Value::Null))
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    User(&'a TestUser),
    Key(&'a str),
}

/// Values for every path parameter of the document. `org` is the organization in the
/// path; every other id belongs to the victim.
fn ids(org: Uuid, victim: &Victim) -> Vec<(&'static str, String)> {
    vec![
        ("orgId", org.to_string()),
        ("projectId", victim.tenant.project_id.to_string()),
        ("keyId", victim.tenant.key_id.to_string()),
        ("userId", victim.member.to_string()),
        ("eventId", victim.event_id.to_string()),
        ("invitationId", victim.invitation_id.to_string()),
        ("customerId", victim.customer_id.to_string()),
        ("agentId", victim.agent_id.to_string()),
        ("invoiceId", victim.invoice_id.to_string()),
        // Budgets and rate limits: the victim's customer, which has both.
        ("scope", "customer".to_owned()),
        ("scopeId", victim.customer_id.to_string()),
        ("kind", "customer".to_owned()),
        ("entity", "customers".to_owned()),
        // Operator-only paths refuse before looking anything up.
        ("discountId", Uuid::new_v4().to_string()),
    ]
}

struct Victim {
    tenant: Tenant,
    member: Uuid,
    event_id: Uuid,
    /// An open invitation of the victim's organization, to someone else.
    invitation_id: Uuid,
    customer_id: Uuid,
    agent_id: Uuid,
    /// A budget alert queued for the victim's organization (`GET …/alerts`).
    alert_id: Uuid,
    /// A draft invoice of the victim's customer.
    invoice_id: Uuid,
}

/// The victim's ids must never appear in what another tenant gets back.
fn assert_no_leak(label: &str, body: &Value, victim: &Victim) {
    let text = body.to_string();
    for id in [
        victim.tenant.org_id,
        victim.tenant.project_id,
        victim.tenant.key_id,
        victim.event_id,
        victim.customer_id,
        victim.agent_id,
        victim.alert_id,
        victim.invoice_id,
    ] {
        assert!(!text.contains(&id.to_string()), "{label} leaked {id}: {text}");
    }
}

#[tokio::test]
async fn every_operation_enforces_authentication_tenancy_and_roles() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let viewer = app.member(&tenant, "viewer").await;
    let event_id = app
        .record_event(
            &tenant,
            serde_json::json!({"requestId": "matrix-1", "agentId": "agent-1"}),
        )
        .await;
    let org_path = format!("/v1/orgs/{}", tenant.org_id);
    let customer_id = uuid(&app.get_json(&tenant.owner, &format!("{org_path}/customers")).await["data"][0]["id"]);
    let agent_id = uuid(&app.get_json(&tenant.owner, &format!("{org_path}/agents")).await["data"][0]["id"]);
    // Something to read (and to fail to change) at every budget and rate-limit path.
    let set = |path: String, body: Value| app.as_user(Method::PUT, &path, &tenant.owner).json(&body).send();
    for (path, body) in [
        (
            format!("{org_path}/budgets/customer/{customer_id}"),
            json!({"amount": "10", "period": "monthly"}),
        ),
        (
            format!("{org_path}/rate-limits/customer/{customer_id}"),
            json!({"requestsPerMinute": 10}),
        ),
    ] {
        assert_eq!(set(path, body).await.unwrap().status(), StatusCode::CREATED);
    }
    let invitation = app
        .post_json(
            &tenant.owner,
            &format!("/v1/orgs/{}/members", tenant.org_id),
            json!({"email": "invitee@example.com", "role": "admin"}),
        )
        .await;
    let alert_id = app
        .enqueue_alert(tenant.org_id, &budget_alert(Uuid::now_v7(), 80))
        .await
        .id()
        .expect("a new alert");
    let today = chrono::Utc::now().date_naive().to_string();
    let invoice = app
        .post_json(
            &tenant.owner,
            &format!("{org_path}/invoices"),
            json!({"customerId": customer_id, "periodStart": today, "periodEnd": today}),
        )
        .await;
    let victim = Victim {
        tenant: tenant.clone(),
        member: viewer.id,
        event_id,
        invitation_id: uuid(&invitation["id"]),
        customer_id,
        agent_id,
        alert_id,
        invoice_id: uuid(&invoice["id"]),
    };
    let victim_owner = &tenant.owner;
    let intruder = app.tenant().await;
    let doc = serde_json::to_value(meterplane::http::openapi::document()).unwrap();
    let ops = operations(&doc);

    let mut checked = BTreeSet::new();
    for op in &ops {
        let label = op.label();
        let victim_ids = ids(victim.tenant.org_id, &victim);
        match op.class {
            Class::Public => {}
            Class::User => {
                let url = op.url(&victim_ids);
                let (status, _) = call(&app, op, &url, Auth::None).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{label} anonymous");
                if op.path.contains('{') {
                    // A person-scoped object of someone else (an invitation): 404.
                    let (status, body) = call(&app, op, &url, Auth::User(&intruder.owner)).await;
                    assert_eq!(status, StatusCode::NOT_FOUND, "{label} by someone else: {body}");
                    assert_no_leak(&label, &body, &victim);
                }
            }
            Class::Gateway => {
                let (status, _) = call(&app, op, &op.url(&victim_ids), Auth::None).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{label} without a key");
                let (status, _) = call(
                    &app,
                    op,
                    &op.url(&victim_ids),
                    Auth::Key("mp_0000000000000000000000000000000000000000"),
                )
                .await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{label} with an unknown key");
            }
            Class::Operator => {
                let url = op.url(&victim_ids);
                let (status, _) = call(&app, op, &url, Auth::None).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{label} anonymous");
                let (status, body) = call(&app, op, &url, Auth::User(victim_owner)).await;
                assert_eq!(status, StatusCode::FORBIDDEN, "{label} as a tenant owner: {body}");
            }
            Class::Tenant => {
                let url = op.url(&victim_ids);
                let (status, _) = call(&app, op, &url, Auth::None).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{label} anonymous");

                let (status, body) = call(&app, op, &url, Auth::User(&intruder.owner)).await;
                assert_eq!(status, StatusCode::NOT_FOUND, "{label} from another tenant: {body}");
                assert_no_leak(&label, &body, &victim);

                if op.has_child_ids() {
                    let mixed = op.url(&ids(intruder.org_id, &victim));
                    let (status, body) = call(&app, op, &mixed, Auth::User(&intruder.owner)).await;
                    assert_eq!(
                        status,
                        StatusCode::NOT_FOUND,
                        "{label} with own org id and another tenant's ids: {body}"
                    );
                    assert_no_leak(&label, &body, &victim);
                }

                if op.is_write() {
                    let (status, body) = call(&app, op, &url, Auth::User(&viewer)).await;
                    assert_eq!(status, StatusCode::FORBIDDEN, "{label} as a viewer: {body}");
                } else {
                    // The ids are real: the owner can read them, so the 404s above are
                    // tenancy at work and not a typo in the matrix.
                    let (status, body) = call(&app, op, &url, Auth::User(victim_owner)).await;
                    assert!(status.is_success(), "{label} as the owner answered {status}: {body}");
                }
            }
        }
        checked.insert((op.class, label));
    }

    // Coverage: the matrix saw every operation, and every class is exercised.
    assert_eq!(checked.len(), ops.len());
    for class in [
        Class::Public,
        Class::Gateway,
        Class::Operator,
        Class::Tenant,
        Class::User,
    ] {
        assert!(
            checked.iter().any(|(c, _)| *c == class),
            "no operation of class {class:?}"
        );
    }
    for listed in PUBLIC.iter().chain(USER_SCOPED).chain(READS_BY_POST) {
        assert!(
            checked.iter().any(|(_, l)| l == listed),
            "{listed} is allow-listed but no longer exists"
        );
    }

    // Nothing the intruder or the viewer tried changed the victim's data.
    let keys = app
        .get_json(
            victim_owner,
            &format!("/v1/orgs/{}/projects/{}/keys", tenant.org_id, tenant.project_id),
        )
        .await;
    assert_eq!(keys.as_array().unwrap().len(), 1);
    assert_eq!(keys[0]["status"], "active");
    let org = app.get_json(victim_owner, &format!("/v1/orgs/{}", tenant.org_id)).await;
    assert_eq!(
        (org["name"].clone(), org["plan"].clone()),
        (json!("Acme AI"), json!("free"))
    );
    let members = app
        .get_json(victim_owner, &format!("/v1/orgs/{}/members", tenant.org_id))
        .await;
    assert_eq!(members.as_array().unwrap().len(), 2);
    let budget = app
        .get_json(victim_owner, &format!("{org_path}/budgets/customer/{customer_id}"))
        .await;
    assert_eq!(budget["amount"], "10");
    let customer = app
        .get_json(victim_owner, &format!("{org_path}/customers/{customer_id}"))
        .await;
    assert_eq!(customer["status"], "active");
    assert_eq!(customer["rateLimits"]["requestsPerMinute"], 10);
    let still = app
        .get_json(victim_owner, &format!("{org_path}/invoices/{}", victim.invoice_id))
        .await;
    assert_eq!((&still["status"], &still["memo"]), (&json!("draft"), &Value::Null));
}
