//! Invoices for a tenant's customers: hand-computed amounts, the draft → finalized →
//! void lifecycle, gapless numbers under concurrent finalization from two server
//! processes, late usage, exports read back, email, reconciliation, tenancy.

use std::{collections::BTreeSet, str::FromStr, time::Duration};

use chrono::{DateTime, Duration as Days, NaiveDate, Utc};
use reqwest::{Method, StatusCode};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    helpers::{eventually, expect_json, expect_problem, fast_email, id_of, problem_fields, Tenant, TestApp, TestUser},
    price_helpers::{add_discount, add_price, price, today},
    server_process::ServerProcess,
    smtp_sink::SmtpSink,
};

fn invoices_path(org: Uuid) -> String {
    format!("/v1/orgs/{org}/invoices")
}

fn invoice_path(org: Uuid, id: &Value) -> String {
    format!("/v1/orgs/{org}/invoices/{}", id.as_str().unwrap())
}

fn d(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

fn money(value: &Value) -> Decimal {
    d(value
        .as_str()
        .unwrap_or_else(|| panic!("not a decimal string: {value}")))
}

/// Noon UTC `days` ago; for today, never later than now (before noon, noon today
/// is still in the future and ingest refuses it).
fn days_ago(days: i64) -> DateTime<Utc> {
    (today() - Days::days(days) + Days::hours(12)).min(Utc::now())
}

fn day(days_ago: i64) -> NaiveDate {
    (today() - Days::days(days_ago)).date_naive()
}

/// A tenant on the pro plan (90 days of events), so usage can be dated weeks back.
async fn pro_tenant(app: &TestApp) -> Tenant {
    let tenant = app.tenant().await;
    app.set_plan(tenant.org_id, "pro", 90).await;
    tenant
}

async fn event(
    app: &TestApp,
    tenant: &Tenant,
    user: &str,
    provider: &str,
    model: &str,
    tokens: (i64, i64),
    at: DateTime<Utc>,
) {
    app.record_event(
        tenant,
        json!({
            "user": user, "provider": provider, "model": model,
            "promptTokens": tokens.0, "completionTokens": tokens.1, "startedAt": at.to_rfc3339(),
        }),
    )
    .await;
}

async fn send(app: &TestApp, user: &TestUser, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
    let request = app.as_user(method, path, user);
    match body {
        Some(body) => request.json(&body),
        None => request,
    }
    .send()
    .await
    .unwrap()
}

async fn create(app: &TestApp, tenant: &Tenant, customer: Uuid, start: NaiveDate, end: NaiveDate) -> Value {
    let body = json!({"customerId": customer, "periodStart": start.to_string(), "periodEnd": end.to_string()});
    expect_json(
        send(
            app,
            &tenant.owner,
            Method::POST,
            &invoices_path(tenant.org_id),
            Some(body),
        )
        .await,
        StatusCode::CREATED,
    )
    .await
}

async fn finalize(app: &TestApp, tenant: &Tenant, invoice: &Value) -> Value {
    let path = format!("{}/finalize", invoice_path(tenant.org_id, &invoice["id"]));
    expect_json(
        send(app, &tenant.owner, Method::POST, &path, None).await,
        StatusCode::OK,
    )
    .await
}

async fn reconciliation(app: &TestApp, tenant: &Tenant, invoice: &Value) -> Value {
    let path = format!("{}/reconciliation", invoice_path(tenant.org_id, &invoice["id"]));
    app.get_json(&tenant.owner, &path).await
}

/// A model of this test's own at gpt-4o's prices ($2.50 in, $10 out, $1.25 cached
/// per million tokens), valid since 2020.
async fn priced_model(app: &TestApp) -> String {
    let model = own_model("inv-gpt");
    app.add_price("openai", &model, &model, "2.5", "10", "1.25").await;
    model
}

/// A model of its own for one test, so catalog prices added here touch no other test.
fn own_model(prefix: &str) -> String {
    format!("{prefix}-{}", &Uuid::new_v4().simple().to_string()[..8])
}

#[tokio::test]
async fn an_invoice_is_computed_by_hand_with_two_models_a_discount_markup_tax_and_a_price_change() {
    let app = TestApp::spawn().await;
    let tenant = pro_tenant(&app).await;
    let operator = app.operator().await;
    let (a, b) = (own_model("inv-a"), own_model("inv-b"));
    let long_ago: DateTime<Utc> = "2020-01-01T00:00:00Z".parse().unwrap();
    let change = today() - Days::days(15);
    add_price(&app, &operator, price("openai", &a, "2", "8", "1", long_ago)).await;
    add_price(&app, &operator, price("openai", &a, "4", "16", "2", change)).await;
    add_price(&app, &operator, price("anthropic", &b, "1", "5", "0.5", long_ago)).await;
    add_discount(
        &app,
        &operator,
        json!({"orgId": tenant.org_id, "model": b, "percent": "10", "validFrom": long_ago.to_rfc3339()}),
    )
    .await;
    let settings = json!({
        "issuerName": "Acme AI Inc.", "issuerAddress": "1 Main Street\nSpringfield", "taxId": "US12-3456789",
        "taxRate": "10", "markup": "25", "dueDays": 14, "footer": "Thank you for your business.",
    });
    let path = format!("/v1/orgs/{}/billing-settings", tenant.org_id);
    expect_json(
        send(&app, &tenant.owner, Method::PUT, &path, Some(settings)).await,
        StatusCode::OK,
    )
    .await;

    // In the period (20 to 10 days ago) for globex: A at the old price ($2.00), A at
    // the new price ($2.00 + $1.60), B ($0.20 + $0.20, 10 % off: $0.36).
    event(&app, &tenant, "globex", "openai", &a, (1_000_000, 0), days_ago(18)).await;
    event(&app, &tenant, "globex", "openai", &a, (500_000, 100_000), days_ago(14)).await;
    event(
        &app,
        &tenant,
        "globex",
        "anthropic",
        &b,
        (200_000, 40_000),
        days_ago(12),
    )
    .await;
    // Not on the invoice: after the period, and another customer.
    event(&app, &tenant, "globex", "openai", &a, (1_000_000, 0), days_ago(9)).await;
    event(&app, &tenant, "initech", "openai", &a, (1_000_000, 0), days_ago(18)).await;

    let globex = id_of(&app, "customers", tenant.org_id, "globex").await;
    let profile =
        json!({"billingName": "Globex Corporation", "email": "ap@globex.example", "address": "500 Oak Avenue"});
    let path = format!("/v1/orgs/{}/customers/{globex}/billing", tenant.org_id);
    expect_json(
        send(&app, &tenant.owner, Method::PUT, &path, Some(profile)).await,
        StatusCode::OK,
    )
    .await;

    let draft = create(&app, &tenant, globex, day(20), day(10)).await;
    assert_eq!(draft["status"], "draft");
    assert_eq!(draft["number"], Value::Null);
    let lines: Vec<Value> = draft["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            json!([
                l["provider"],
                l["model"],
                l["requests"],
                l["cost"],
                l["amountBeforeDiscount"],
                l["discount"],
                l["amount"],
                l["unitPrices"]["inputPerMtok"]
            ])
        })
        .collect();
    // Markup 25 %: each line's cost × 1.25, rounded to cents; unit prices marked up too.
    assert_eq!(
        lines,
        vec![
            json!(["anthropic", b, 1, "0.3600000000", "0.50", "0.05", "0.45", "1.25"]),
            json!(["openai", a, 1, "2.0000000000", "2.50", "0.00", "2.50", "2.5"]),
            json!(["openai", a, 1, "3.6000000000", "4.50", "0.00", "4.50", "5"]),
        ]
    );
    // Subtotal 7.45; tax 10 % = 0.745 → 0.75 (half away from zero); total 8.20.
    let totals = |v: &Value| json!([v["cost"], v["subtotal"], v["discountTotal"], v["tax"], v["total"]]);
    assert_eq!(totals(&draft), json!(["5.9600000000", "7.45", "0.05", "0.75", "8.20"]));
    assert_eq!(draft["billTo"]["name"], "Globex Corporation");
    assert_eq!(draft["issuer"]["name"], "Acme AI Inc.");

    let issued = finalize(&app, &tenant, &draft).await;
    let year = Utc::now().format("%Y");
    assert_eq!(issued["status"], "finalized");
    assert_eq!(issued["number"], format!("INV-{year}-000001"));
    assert_eq!(issued["issuedOn"], Utc::now().date_naive().to_string());
    assert_eq!(issued["dueOn"], (Utc::now().date_naive() + Days::days(14)).to_string());
    assert_eq!(totals(&issued), totals(&draft));
    assert_eq!(issued["lines"], draft["lines"]);

    // Immutable: new settings and profile do not change it.
    let path = format!("/v1/orgs/{}/billing-settings", tenant.org_id);
    expect_json(
        send(
            &app,
            &tenant.owner,
            Method::PUT,
            &path,
            Some(json!({"markup": "50", "taxRate": "20"})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let read = app
        .get_json(&tenant.owner, &invoice_path(tenant.org_id, &issued["id"]))
        .await;
    assert_eq!(read, issued);

    let r = reconciliation(&app, &tenant, &issued).await;
    assert_eq!(
        (
            &r["invoiced"],
            &r["ledger"],
            &r["events"],
            &r["unbilled"]["requests"],
            &r["reconciled"]
        ),
        (
            &json!({"requests": 3, "cost": "5.9600000000"}),
            &json!({"requests": 3, "cost": "5.9600000000"}),
            &json!({"requests": 3, "cost": "5.9600000000"}),
            &json!(0),
            &json!(true)
        ),
        "{r}"
    );
    assert_eq!(
        (money(&r["eventsSubtotal"]), money(&r["invoicedSubtotal"])),
        (d("7.45"), d("7.45"))
    );

    // CSV: one row per line, parsed back to the same numbers.
    let csv_path = format!("{}/csv", invoice_path(tenant.org_id, &issued["id"]));
    let response = send(&app, &tenant.owner, Method::GET, &csv_path, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = response.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3);
    let amounts: Decimal = rows.iter().map(|r| d(&r[column("amount")])).sum();
    assert_eq!(amounts, money(&issued["subtotal"]));
    assert!(rows
        .iter()
        .all(|r| &r[column("invoice_number")] == issued["number"].as_str().unwrap()));
    assert_eq!(&rows[0][column("description")], format!("anthropic {b}"));

    // HTML: the document a person reads, with the numbers of the JSON.
    let html_path = format!("{}/html", invoice_path(tenant.org_id, &issued["id"]));
    let response = send(&app, &tenant.owner, Method::GET, &html_path, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = response.text().await.unwrap();
    let by_id = |id: &str| -> String {
        let start = html
            .find(&format!("id=\"{id}\">"))
            .unwrap_or_else(|| panic!("no #{id}"))
            + id.len()
            + 6;
        html[start..].split('<').next().unwrap().to_owned()
    };
    assert_eq!(by_id("number"), issued["number"].as_str().unwrap());
    assert_eq!(by_id("subtotal"), "$7.45");
    assert_eq!(by_id("tax"), "$0.75");
    assert_eq!(by_id("total"), "$8.20");
    assert_eq!(by_id("due-on"), issued["dueOn"].as_str().unwrap());
    assert!(html.contains("Globex Corporation") && html.contains("Acme AI Inc.") && html.contains("@media print"));
    assert_eq!(html.matches("class=\"num amount\"").count(), 3);
}

#[tokio::test]
async fn a_draft_follows_usage_and_late_usage_is_billed_once_on_the_next_invoice() {
    let app = TestApp::spawn().await;
    let m = priced_model(&app).await;
    let tenant = pro_tenant(&app).await;
    // gpt-4o from the bundled catalog: $2.50 in, $10 out per million.
    event(&app, &tenant, "globex", "openai", &m, (1_000_000, 0), days_ago(10)).await;
    let globex = id_of(&app, "customers", tenant.org_id, "globex").await;
    let first = create(&app, &tenant, globex, day(12), day(6)).await;
    assert_eq!(first["total"], "2.50");

    // Regenerated as usage arrives.
    event(&app, &tenant, "globex", "openai", &m, (0, 100_000), days_ago(7)).await;
    let read = app
        .get_json(&tenant.owner, &invoice_path(tenant.org_id, &first["id"]))
        .await;
    assert_eq!(
        (&read["total"], &read["lines"][0]["requests"]),
        (&json!("3.50"), &json!(2))
    );
    let first = finalize(&app, &tenant, &read).await;
    assert_eq!(first["total"], "3.50");

    // Late usage for the finalized period: the invoice keeps what it had; the
    // reconciliation shows it unbilled.
    event(&app, &tenant, "globex", "openai", &m, (400_000, 0), days_ago(8)).await;
    let read = app
        .get_json(&tenant.owner, &invoice_path(tenant.org_id, &first["id"]))
        .await;
    assert_eq!(read, first);
    let r = reconciliation(&app, &tenant, &first).await;
    assert_eq!(r["unbilled"], json!({"requests": 1, "cost": "1.0000000000"}), "{r}");
    assert_eq!(r["reconciled"], true, "unbilled usage waits for the next invoice: {r}");

    // The next invoice bills it as a labelled adjustment line.
    event(&app, &tenant, "globex", "openai", &m, (200_000, 0), days_ago(3)).await;
    let second = create(&app, &tenant, globex, day(5), day(0)).await;
    let kinds: Vec<(&Value, &Value, &Value)> = second["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (&l["kind"], &l["amount"], &l["adjusts"]["number"]))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (&json!("usage"), &json!("0.50"), &Value::Null),
            (&json!("late_usage"), &json!("1.00"), &first["number"]),
        ]
    );
    let label = second["lines"][1]["description"].as_str().unwrap();
    assert!(
        label.contains("late usage for") && label.contains(first["number"].as_str().unwrap()),
        "{label}"
    );
    let second = finalize(&app, &tenant, &second).await;
    assert_eq!(second["total"], "1.50");

    let r = reconciliation(&app, &tenant, &first).await;
    assert_eq!(r["carriedLater"], json!({"requests": 1, "cost": "1.0000000000"}));
    assert_eq!(r["carriedOn"], json!([second["number"]]));
    assert_eq!(r["unbilled"]["requests"], 0);
    assert_eq!(r["reconciled"], true);

    // Billed once: a third invoice has no late line for it.
    event(&app, &tenant, "globex", "openai", &m, (0, 0), days_ago(0)).await;
    let path = invoice_path(tenant.org_id, &second["id"]);
    let third_period =
        json!({"customerId": globex, "periodStart": day(0).to_string(), "periodEnd": day(0).to_string()});
    expect_problem(
        send(
            &app,
            &tenant.owner,
            Method::POST,
            &invoices_path(tenant.org_id),
            Some(third_period),
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;

    // Voiding the second invoice gives its late usage back to the first's period.
    let voided = expect_json(
        send(
            &app,
            &tenant.owner,
            Method::POST,
            &format!("{path}/void"),
            Some(json!({"reason": "wrong period"})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (&voided["status"], &voided["number"]),
        (&json!("void"), &second["number"])
    );
    assert_eq!(voided["voidReason"], "wrong period");
    let r = reconciliation(&app, &tenant, &first).await;
    assert_eq!(r["unbilled"], json!({"requests": 1, "cost": "1.0000000000"}), "{r}");
    let again = create(&app, &tenant, globex, day(5), day(0)).await;
    assert_eq!(
        again["total"], "1.50",
        "usage plus the late line, billed again after the void"
    );

    // The command reconciles every finalized and void invoice, and fails on drift.
    let (ok, lines) = reconcile_command(&app, tenant.org_id);
    assert!(ok);
    let numbers: Vec<&Value> = lines.iter().map(|l| &l["number"]).collect();
    assert_eq!(numbers, [&first["number"], &second["number"]]);
    assert!(lines.iter().all(|l| l["reconciled"] == true), "{lines:?}");
    use diesel_async::RunQueryDsl;
    diesel::sql_query("UPDATE customer_cost_daily SET cost = cost + 0.01 WHERE org_id = $1 AND day = $2")
        .bind::<diesel::sql_types::Uuid, _>(tenant.org_id)
        .bind::<diesel::sql_types::Date, _>(day(10))
        .execute(&mut app.db().await)
        .await
        .unwrap();
    let (ok, lines) = reconcile_command(&app, tenant.org_id);
    assert!(!ok, "a ledger that drifted from the events fails the command");
    assert_eq!(lines[0]["reconciled"], false);
    assert_eq!(lines[0]["events"]["cost"], "4.5000000000");
    assert_eq!(lines[0]["ledger"]["cost"], "4.5100000000");
}

/// Runs `meterplane reconcile-invoices --org`: whether it succeeded, and its JSON lines.
fn reconcile_command(app: &TestApp, org: Uuid) -> (bool, Vec<Value>) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_meterplane"))
        .args(["reconcile-invoices", "--org", &org.to_string()])
        .env("DATABASE_URL", &app.database_url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (output.status.success(), lines)
}

#[tokio::test]
async fn the_lifecycle_refuses_what_it_does_not_allow_with_clear_problems() {
    let app = TestApp::spawn().await;
    let m = priced_model(&app).await;
    let tenant = pro_tenant(&app).await;
    event(&app, &tenant, "globex", "openai", &m, (1_000, 0), days_ago(3)).await;
    let globex = id_of(&app, "customers", tenant.org_id, "globex").await;
    let list = invoices_path(tenant.org_id);
    let post = |body: Value| send(&app, &tenant.owner, Method::POST, &list, Some(body));

    let problem = expect_problem(
        post(json!({"customerId": globex, "periodStart": "2026-11-30", "periodEnd": "2026-11-01"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(problem_fields(&problem), ["periodEnd"]);
    let problem = expect_problem(
        post(json!({"customerId": globex, "periodStart": "2026-13-01", "periodEnd": "tomorrow"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(problem_fields(&problem), ["periodStart", "periodEnd"]);
    let too_old = (today() - Days::days(500)).date_naive().to_string();
    let problem = expect_problem(
        post(json!({"customerId": globex, "periodStart": too_old, "periodEnd": day(0).to_string()})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(problem_fields(&problem), ["periodEnd"], "over 366 days: {problem}");
    let problem = expect_problem(
        post(json!({"customerId": globex, "periodStart": too_old, "periodEnd": too_old})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert!(
        problem["errors"][0]["message"].as_str().unwrap().contains("kept from"),
        "{problem}"
    );
    expect_problem(
        post(json!({"customerId": Uuid::now_v7(), "periodStart": day(5).to_string(), "periodEnd": day(0).to_string()}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // A viewer reads invoices but makes none.
    let viewer = app.member(&tenant, "viewer").await;
    let body = json!({"customerId": globex, "periodStart": day(5).to_string(), "periodEnd": day(0).to_string()});
    expect_problem(
        send(&app, &viewer, Method::POST, &list, Some(body.clone())).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    // An empty period has nothing to bill.
    let empty = create(&app, &tenant, globex, day(30), day(20)).await;
    assert_eq!((&empty["lines"], &empty["total"]), (&json!([]), &json!("0.00")));
    let path = format!("{}/finalize", invoice_path(tenant.org_id, &empty["id"]));
    expect_problem(
        send(&app, &tenant.owner, Method::POST, &path, None).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    // A draft is edited and deleted, not voided.
    let edited = expect_json(
        send(
            &app,
            &tenant.owner,
            Method::PATCH,
            &invoice_path(tenant.org_id, &empty["id"]),
            Some(json!({"memo": "PO 4711"})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(edited["memo"], "PO 4711");
    let path = format!("{}/void", invoice_path(tenant.org_id, &empty["id"]));
    expect_problem(
        send(&app, &tenant.owner, Method::POST, &path, Some(json!({}))).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    let response = send(
        &app,
        &tenant.owner,
        Method::DELETE,
        &invoice_path(tenant.org_id, &empty["id"]),
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let draft = create(&app, &tenant, globex, day(5), day(0)).await;
    // Overlapping periods of one customer are refused while the first is live.
    expect_problem(post(body.clone()).await, StatusCode::CONFLICT, "conflict").await;
    let issued = finalize(&app, &tenant, &draft).await;
    let path = invoice_path(tenant.org_id, &issued["id"]);
    for (method, suffix, body) in [
        (Method::POST, "/finalize", None),
        (Method::PATCH, "", Some(json!({"memo": "changed"}))),
        (
            Method::PATCH,
            "",
            Some(json!({"periodStart": day(4).to_string(), "periodEnd": day(0).to_string()})),
        ),
        (Method::DELETE, "", None),
    ] {
        let problem = expect_problem(
            send(&app, &tenant.owner, method.clone(), &format!("{path}{suffix}"), body).await,
            StatusCode::CONFLICT,
            "conflict",
        )
        .await;
        assert!(
            problem["detail"].as_str().unwrap().contains("finalized"),
            "{method} {suffix}: {problem}"
        );
    }
    assert_eq!(
        app.get_json(&viewer, &path).await,
        issued,
        "unchanged, and readable by a viewer"
    );
    // Sending needs a billing email.
    let problem = expect_problem(
        send(&app, &tenant.owner, Method::POST, &format!("{path}/send"), None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(problem_fields(&problem), ["email"]);
    let voided = send(
        &app,
        &tenant.owner,
        Method::POST,
        &format!("{path}/void"),
        Some(json!({})),
    )
    .await;
    assert_eq!(voided.status(), StatusCode::OK);
    expect_problem(
        send(
            &app,
            &tenant.owner,
            Method::POST,
            &format!("{path}/void"),
            Some(json!({})),
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    // The list shows both, newest first, and filters by status.
    let all = app.get_json(&tenant.owner, &list).await;
    let statuses: Vec<&Value> = all["data"].as_array().unwrap().iter().map(|i| &i["status"]).collect();
    assert_eq!(statuses, [&json!("void")]);
    let void = app.get_json(&tenant.owner, &format!("{list}?status=draft")).await;
    assert_eq!(void["data"], json!([]));
}

#[tokio::test]
async fn another_tenant_reaches_none_of_an_organizations_invoices() {
    let app = TestApp::spawn().await;
    let a = pro_tenant(&app).await;
    let b = pro_tenant(&app).await;
    let m = priced_model(&app).await;
    event(&app, &a, "globex", "openai", &m, (1_000, 0), days_ago(1)).await;
    event(&app, &b, "globex", "openai", &m, (1_000, 0), days_ago(1)).await;
    let globex_a = id_of(&app, "customers", a.org_id, "globex").await;
    let invoice = create(&app, &a, globex_a, day(2), day(0)).await;
    let issued = finalize(&app, &a, &invoice).await;
    let draft = create(&app, &a, globex_a, day(10), day(5)).await;

    for target in [&issued, &draft] {
        // B's owner, through B's organization and through A's.
        for org in [b.org_id, a.org_id] {
            let path = invoice_path(org, &target["id"]);
            for (method, suffix, body) in [
                (Method::GET, "", None),
                (Method::PATCH, "", Some(json!({"memo": "x"}))),
                (Method::DELETE, "", None),
                (Method::POST, "/finalize", None),
                (Method::POST, "/void", Some(json!({}))),
                (Method::POST, "/send", None),
                (Method::GET, "/csv", None),
                (Method::GET, "/html", None),
                (Method::GET, "/reconciliation", None),
            ] {
                let response = send(&app, &b.owner, method.clone(), &format!("{path}{suffix}"), body).await;
                assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} {path}{suffix}");
            }
        }
    }
    // B's customer ids do not reach A's customers, and A's list is not B's.
    let body = json!({"customerId": globex_a, "periodStart": day(20).to_string(), "periodEnd": day(15).to_string()});
    let response = send(
        &app,
        &b.owner,
        Method::POST,
        &invoices_path(b.org_id),
        Some(body.clone()),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = send(&app, &b.owner, Method::POST, &invoices_path(a.org_id), Some(body)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        app.get_json(&b.owner, &invoices_path(b.org_id)).await["data"],
        json!([])
    );
    let generated = app
        .post_json(
            &b.owner,
            &format!("/v1/orgs/{}/invoice-runs", b.org_id),
            json!({"periodStart": day(2).to_string(), "periodEnd": day(0).to_string()}),
        )
        .await;
    assert_eq!(generated["created"].as_array().unwrap().len(), 1);
    assert_eq!(generated["created"][0]["lines"][0]["requests"], 1, "only B's own usage");
    let response = send(&app, &b.owner, Method::GET, &invoices_path(a.org_id), None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

/// Each line's cost × (1 + markup), rounded to cents half away from zero.
fn cents(amount: Decimal) -> Decimal {
    amount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

#[tokio::test]
async fn invoices_for_every_customer_match_their_spend_logs_to_the_cent_on_a_random_workload() {
    use rand::{rngs::StdRng, Rng, SeedableRng};

    let app = TestApp::spawn().await;
    let tenant = pro_tenant(&app).await;
    let path = format!("/v1/orgs/{}/billing-settings", tenant.org_id);
    let settings = json!({"taxRate": "7.25", "markup": "12.5"});
    expect_json(
        send(&app, &tenant.owner, Method::PUT, &path, Some(settings)).await,
        StatusCode::OK,
    )
    .await;
    let seed: u64 = rand::random();
    let mut rng = StdRng::seed_from_u64(seed);
    let (m1, m2) = (priced_model(&app).await, own_model("inv-b"));
    app.add_price("anthropic", &m2, &m2, "0.37", "1.91", "0.1").await;
    let models = [
        ("openai", m1.as_str()),
        ("anthropic", m2.as_str()),
        ("openai", "unpriced-x"),
    ];
    let mut events = Vec::new();
    for i in 0..300 {
        let (provider, model) = models[rng.random_range(0..models.len())];
        events.push(json!({
            "requestId": format!("r-{i}"), "endpoint": "/chat/completions", "provider": provider, "model": model,
            "user": format!("c-{}", rng.random_range(0..8)),
            "promptTokens": rng.random_range(0..50_000), "completionTokens": rng.random_range(0..5_000),
            "cachedTokens": 0, "latencyMs": 100,
            "startedAt": (today() - Days::days(rng.random_range(0..12)) + Days::minutes(rng.random_range(0..1440))).to_rfc3339(),
        }));
    }
    let (status, body) = app.send_batch(&tenant.key_secret, json!(events)).await;
    assert!(status.is_success(), "{body}");

    let generate = format!("/v1/orgs/{}/invoice-runs", tenant.org_id);
    let period = json!({"periodStart": day(9).to_string(), "periodEnd": day(0).to_string()});
    let generated = app.post_json(&tenant.owner, &generate, period.clone()).await;
    let drafts = generated["created"].as_array().unwrap().clone();
    assert!(drafts.len() >= 6, "seed {seed}: {generated}");
    // Generating again skips everyone.
    let again = app.post_json(&tenant.owner, &generate, period).await;
    assert_eq!(
        (
            again["created"].as_array().unwrap().len(),
            again["skipped"].as_array().unwrap().len()
        ),
        (0, drafts.len())
    );

    let mut conn = app.db().await;
    for draft in drafts {
        let issued = finalize(&app, &tenant, &draft).await;
        // The spend logs of this customer and period, grouped as lines are.
        #[derive(diesel::QueryableByName)]
        struct Group {
            #[diesel(sql_type = diesel::sql_types::Numeric)]
            cost: Decimal,
        }
        use diesel_async::RunQueryDsl;
        let groups: Vec<Group> = diesel::sql_query(
            "SELECT sum(cost) AS cost FROM usage_events WHERE org_id = $1 AND customer_id = $2 \
             AND occurred_at >= $3 GROUP BY provider, canonical_model, price_id",
        )
        .bind::<diesel::sql_types::Uuid, _>(tenant.org_id)
        .bind::<diesel::sql_types::Uuid, _>(Uuid::parse_str(issued["customerId"].as_str().unwrap()).unwrap())
        .bind::<diesel::sql_types::Timestamptz, _>(today() - Days::days(9))
        .load(&mut conn)
        .await
        .unwrap();
        let subtotal: Decimal = groups.iter().map(|g| cents(g.cost * d("1.125"))).sum();
        let tax = cents(subtotal * d("0.0725"));
        assert_eq!(
            (
                money(&issued["subtotal"]),
                money(&issued["tax"]),
                money(&issued["total"])
            ),
            (subtotal, tax, subtotal + tax),
            "seed {seed}: {issued}"
        );
        let exact: Decimal = groups.iter().map(|g| g.cost).sum();
        assert_eq!(money(&issued["cost"]), exact, "seed {seed}");
        assert_eq!(
            reconciliation(&app, &tenant, &issued).await["reconciled"],
            true,
            "seed {seed}"
        );
    }
}

#[tokio::test]
async fn two_server_processes_finalizing_the_same_invoices_number_them_without_gaps() {
    let app = TestApp::spawn().await;
    let tenant = pro_tenant(&app).await;
    let m = priced_model(&app).await;
    let events: Vec<Value> = (0..24)
        .map(|i| {
            json!({
                "requestId": format!("r-{i}"), "endpoint": "/chat/completions", "provider": "openai",
                "model": m, "user": format!("customer-{i}"), "promptTokens": 1000 + i,
                "completionTokens": 10, "latencyMs": 100,
            })
        })
        .collect();
    let (status, body) = app.send_batch(&tenant.key_secret, json!(events)).await;
    assert!(status.is_success(), "{body}");
    let generated = app
        .post_json(
            &tenant.owner,
            &format!("/v1/orgs/{}/invoice-runs", tenant.org_id),
            json!({"periodStart": day(0).to_string(), "periodEnd": day(0).to_string()}),
        )
        .await;
    let ids: Vec<String> = generated["created"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 24);

    let (one, two) = tokio::join!(ServerProcess::start(&app, &[]), ServerProcess::start(&app, &[]));
    let client = reqwest::Client::new();
    // Every invoice is finalized by both processes at once.
    let attempts = ids.iter().flat_map(|id| [(&one, id), (&two, id)]).map(|(process, id)| {
        let url = format!("{}/v1/orgs/{}/invoices/{id}/finalize", process.address, tenant.org_id);
        let request = client.post(url).bearer_auth(&tenant.owner.token);
        async move {
            let response = request.send().await.unwrap();
            (id.clone(), response.status(), response.json::<Value>().await.unwrap())
        }
    });
    let results = futures_util::future::join_all(attempts).await;
    let mut numbers = BTreeSet::new();
    for id in &ids {
        let outcomes: Vec<&(String, StatusCode, Value)> = results.iter().filter(|(i, _, _)| i == id).collect();
        let won: Vec<_> = outcomes.iter().filter(|(_, s, _)| *s == StatusCode::OK).collect();
        let lost: Vec<_> = outcomes.iter().filter(|(_, s, _)| *s == StatusCode::CONFLICT).collect();
        assert_eq!((won.len(), lost.len()), (1, 1), "{outcomes:?}");
        numbers.insert(won[0].2["number"].as_str().unwrap().to_owned());
    }
    let year = Utc::now().format("%Y");
    let expected: BTreeSet<String> = (1..=24).map(|n| format!("INV-{year}-{n:06}")).collect();
    assert_eq!(numbers, expected);
}

#[tokio::test]
async fn a_finalized_invoice_is_emailed_to_the_customers_billing_address() {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let app = TestApp::spawn_with(|config| fast_email(config, &url)).await;
    let _worker = app.start_outbox_worker();
    let tenant = pro_tenant(&app).await;
    let m = priced_model(&app).await;
    event(&app, &tenant, "globex", "openai", &m, (1_000_000, 0), days_ago(1)).await;
    let globex = id_of(&app, "customers", tenant.org_id, "globex").await;
    let path = format!("/v1/orgs/{}/customers/{globex}/billing", tenant.org_id);
    let profile = json!({"billingName": "Globex Corporation", "email": "ap@globex.example"});
    expect_json(
        send(&app, &tenant.owner, Method::PUT, &path, Some(profile)).await,
        StatusCode::OK,
    )
    .await;
    let draft = create(&app, &tenant, globex, day(2), day(0)).await;
    let send_path = format!("{}/send", invoice_path(tenant.org_id, &draft["id"]));
    expect_problem(
        send(&app, &tenant.owner, Method::POST, &send_path, None).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    let issued = finalize(&app, &tenant, &draft).await;
    let queued = expect_json(
        send(&app, &tenant.owner, Method::POST, &send_path, None).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(queued["to"], "ap@globex.example");
    let number = issued["number"].as_str().unwrap().to_owned();
    let email = eventually("the invoice email", Duration::from_secs(10), || {
        let received = sink.received();
        let number = number.clone();
        async move { received.into_iter().find(|e| e.data.contains(&number)) }
    })
    .await;
    assert_eq!(email.rcpt_to, ["ap@globex.example"]);
    assert_eq!(email.subject(), format!("Invoice {number} from Acme AI"));
    let text = email.text_body().expect("a plain-text body");
    assert!(
        text.contains("Total: $2.50 USD") && text.contains("Globex Corporation"),
        "{text}"
    );
    let html = email.html_body().expect("an HTML body");
    assert!(html.contains("id=\"total\">$2.50<") && html.contains(&number), "{html}");
}
