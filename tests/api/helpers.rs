//! The test harness: a real server on a free port, backed by its own PostgreSQL
//! database (cloned from a migrated template) and its own Redis key prefix, so tests
//! run in parallel without sharing data.

use std::{net::TcpListener, sync::OnceLock};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use meterplane::{config::Config, http::state::AppState, startup::Application};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use uuid::Uuid;

/// Where the tests' databases live; `deploy/test.sh` sets it for the local role.
fn admin_url() -> String {
    std::env::var("MP_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn database_url(name: &str) -> String {
    let admin = admin_url();
    let base = admin.rsplit_once('/').map(|(base, _)| base).unwrap_or(&admin);
    format!("{base}/{name}")
}

/// A name derived from the migration files, so a changed migration gets a new template.
fn template_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<_> = walk(&dir);
        files.sort();
        let mut hasher = Sha256::new();
        for file in files {
            hasher.update(file.to_string_lossy().as_bytes());
            hasher.update(std::fs::read(&file).expect("read migration"));
        }
        format!("mp_tpl_{}", &hex::encode(hasher.finalize())[..16])
    })
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read migrations dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

async fn admin_conn() -> AsyncPgConnection {
    AsyncPgConnection::establish(&admin_url())
        .await
        .expect("connect to PostgreSQL as the test admin (is it running? see deploy/test.sh)")
}

async fn database_exists(conn: &mut AsyncPgConnection, name: &str) -> bool {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count: Count = diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
        .bind::<diesel::sql_types::Text, _>(name)
        .get_result(conn)
        .await
        .expect("query pg_database");
    count.n > 0
}

/// Migrates the template once per test run (across processes, under an advisory lock).
async fn ensure_template() -> &'static str {
    static READY: OnceCell<()> = OnceCell::const_new();
    READY
        .get_or_init(|| async {
            let name = template_name();
            let mut conn = admin_conn().await;
            diesel::sql_query("SELECT pg_advisory_lock(727274)")
                .execute(&mut conn)
                .await
                .expect("lock");
            if !database_exists(&mut conn, name).await {
                // Built under another name and renamed, so a crash never leaves a
                // half-migrated template behind.
                let building = format!("{name}_building");
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {building}"))
                    .execute(&mut conn)
                    .await
                    .expect("drop");
                diesel::sql_query(format!("CREATE DATABASE {building}"))
                    .execute(&mut conn)
                    .await
                    .expect("create");
                meterplane::store::run_migrations(&database_url(&building))
                    .await
                    .expect("migrate template");
                rename_when_idle(&mut conn, &building, name).await;
            }
            diesel::sql_query("SELECT pg_advisory_unlock(727274)")
                .execute(&mut conn)
                .await
                .expect("unlock");
        })
        .await;
    template_name()
}

/// PostgreSQL refuses to rename or copy a database for a moment after its last
/// connection closed; retry briefly.
async fn rename_when_idle(conn: &mut AsyncPgConnection, from: &str, to: &str) {
    retry_while_busy(conn, &format!("ALTER DATABASE {from} RENAME TO {to}")).await;
}

async fn retry_while_busy(conn: &mut AsyncPgConnection, sql: &str) {
    for attempt in 0..50 {
        match diesel::sql_query(sql).execute(conn).await {
            Ok(_) => return,
            Err(e) if attempt < 49 && e.to_string().contains("being accessed by other users") => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{sql}: {e}"),
        }
    }
}

/// A new per-test database name: `mp_test_<run>_<uuid>`, where `<run>` identifies the
/// `deploy/test.sh` run (`MP_TEST_RUN`), which drops its own databases when it ends and
/// leaves those of runs still going alone; `mp_test_<uuid>` outside such a run.
pub fn test_database_name() -> String {
    let id = Uuid::new_v4().simple();
    match std::env::var("MP_TEST_RUN") {
        Ok(run) if !run.is_empty() && run.bytes().all(|b| b.is_ascii_digit()) => format!("mp_test_{run}_{id}"),
        _ => format!("mp_test_{id}"),
    }
}

/// A fresh database cloned from the migrated template.
async fn fresh_database() -> String {
    let template = ensure_template().await;
    let name = test_database_name();
    let mut conn = admin_conn().await;
    retry_while_busy(&mut conn, &format!("CREATE DATABASE {name} TEMPLATE {template}")).await;
    database_url(&name)
}

pub struct TestApp {
    pub address: String,
    /// Where `/metrics` is served (apart from the API).
    pub metrics_address: String,
    pub client: reqwest::Client,
    pub database_url: String,
    pub state: AppState,
    server: actix_web::dev::ServerHandle,
    running: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// A signed-in person.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    pub password: String,
    pub token: String,
}

/// "An organization with an owner, a project and a key" — the usual starting point.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub owner: TestUser,
    pub org_id: Uuid,
    pub project_id: Uuid,
    pub key_id: Uuid,
    pub key_secret: String,
}

pub const PASSWORD: &str = "correct horse battery";

impl TestApp {
    /// The Prometheus text served on the metrics address.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.metrics_address))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("read /metrics")
    }

    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts a server whose configuration `adjust` may change first.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let database_url = fresh_database().await;
        let prefix = format!("test:{}:", Uuid::new_v4().simple());
        Self::start(database_url, prefix, adjust).await
    }

    /// A server on a database and Redis of the test's own (already migrated), as their
    /// URLs say: TLS settings included.
    pub async fn spawn_on(database_url: String, redis_url: String) -> Self {
        let prefix = format!("test:{}:", Uuid::new_v4().simple());
        Self::start(database_url, prefix, |c| {
            c.redis.url = meterplane::config::Secret::new(redis_url);
        })
        .await
    }

    /// Another instance of the same deployment: its own server, pools and caches, on
    /// this one's database and Redis (server, key prefix, timeout and policy).
    pub async fn another_instance(&self) -> Self {
        let redis = self.state.config.redis.clone();
        Self::start(self.database_url.clone(), redis.key_prefix.clone(), |c| c.redis = redis).await
    }

    async fn start(database_url: String, prefix: String, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::from_lookup(|name| match name {
            "DATABASE_URL" => Some(database_url.clone()),
            "MP_DB_POOL_SIZE" => Some("4".into()),
            "REDIS_URL" => std::env::var("MP_TEST_REDIS_URL").ok(),
            _ => None,
        })
        .expect("test configuration");
        config.redis.key_prefix = prefix;
        adjust(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let state = AppState::connect(config)
            .await
            .expect("connect to PostgreSQL and Redis");
        let mut app = Application::from_parts(listener, state.clone(), 1).expect("build app");
        let address = format!("http://127.0.0.1:{}", app.port());
        let metrics_port = app
            .serve_metrics(TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
            .expect("serve metrics");
        let metrics_address = format!("http://127.0.0.1:{metrics_port}");
        let server = app.handle();
        let running = tokio::spawn(app.run_until_stopped());
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("http client");
        Self {
            address,
            metrics_address,
            client,
            database_url,
            state,
            server,
            running,
        }
    }

    /// Stops the server gracefully, as SIGTERM does (live streams end first), and waits
    /// until `Application::run_until_stopped` has returned.
    pub async fn stop(self) {
        self.state.live.shutdown();
        self.server.stop(true).await;
        self.running
            .await
            .expect("server task")
            .expect("server stopped cleanly");
    }

    /// A connection of its own to the app's database, opened as the app opens its own.
    pub async fn db(&self) -> AsyncPgConnection {
        meterplane::store::PgTarget::parse(&self.database_url)
            .expect("the test database URL")
            .connect()
            .await
            .expect("connect to the test database")
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.address))
    }

    pub fn as_user(&self, method: Method, path: &str, user: &TestUser) -> RequestBuilder {
        self.request(method, path).bearer_auth(&user.token)
    }

    pub async fn signup(&self) -> TestUser {
        self.signup_with(json!({})).await.0
    }

    /// Signs up a new person with a unique email (`extra` adds fields to the request),
    /// confirms the address as the verification email would, and signs in. Returns
    /// the person and `{user, organization}` as `GET /v1/me` shows them.
    pub async fn signup_with(&self, extra: Value) -> (TestUser, Value) {
        let email = self.signup_unverified(extra).await;
        self.verify_email(&email).await;
        let user = self.sign_in(&email).await;
        let me = self.get_json(&user, "/v1/me").await;
        let body = json!({"user": me["user"], "organization": me["memberships"][0]["organization"]});
        (user, body)
    }

    /// Signs up a new person with a unique email and leaves the address unconfirmed;
    /// returns the email.
    pub async fn signup_unverified(&self, extra: Value) -> String {
        let email = format!("user-{}@example.com", Uuid::new_v4().simple());
        let mut body = json!({"email": email, "password": PASSWORD});
        merge(&mut body, extra);
        let response = self
            .request(Method::POST, "/v1/auth/signup")
            .json(&body)
            .send()
            .await
            .expect("signup");
        let answer = expect_json(response, StatusCode::ACCEPTED).await;
        assert_eq!(answer["status"], "check_email");
        email
    }

    /// Confirms an account's address directly in the store, as using the token of
    /// the verification email does (the emails themselves are tested in
    /// `account_emails.rs`), and drops that email if it is still queued, so tests
    /// that count emails see only their own.
    pub async fn verify_email(&self, email: &str) {
        let parsed = meterplane::domain::email::EmailAddress::parse(email).unwrap();
        let mut conn = self.state.db.get().await.unwrap();
        diesel_async::RunQueryDsl::execute(
            diesel::sql_query(
                "DELETE FROM email_outbox WHERE kind = 'email_verification' AND status = 'pending' \
                 AND recipients = ARRAY[$1]",
            )
            .bind::<diesel::sql_types::Text, _>(email),
            &mut conn,
        )
        .await
        .unwrap();
        let user = meterplane::store::users::find_by_email(&mut conn, &parsed)
            .await
            .unwrap()
            .expect("the account exists");
        meterplane::store::users::mark_verified(&mut conn, user.id)
            .await
            .unwrap();
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.request(Method::POST, "/v1/auth/login")
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("login")
    }

    pub async fn tenant(&self) -> Tenant {
        let (owner, body) = self.signup_with(json!({"organizationName": "Acme AI"})).await;
        let org_id = uuid(&body["organization"]["id"]);
        let (project_id, key) = self.project_with_key(&owner, org_id, "Production", "credits").await;
        Tenant {
            owner,
            org_id,
            project_id,
            key_id: uuid(&key["id"]),
            key_secret: key["secret"].as_str().expect("secret").to_owned(),
        }
    }

    /// Creates a project of `mode` in the organization and an API key in it, as `owner`;
    /// returns the project's id and the key as created (with its `secret`).
    pub async fn project_with_key(&self, owner: &TestUser, org_id: Uuid, name: &str, mode: &str) -> (Uuid, Value) {
        let project = self
            .post_json(
                owner,
                &format!("/v1/orgs/{org_id}/projects"),
                json!({"name": name, "mode": mode}),
            )
            .await;
        let project_id = uuid(&project["id"]);
        let key = self
            .post_json(
                owner,
                &format!("/v1/orgs/{org_id}/projects/{project_id}/keys"),
                json!({"name": name.to_lowercase()}),
            )
            .await;
        (project_id, key)
    }

    /// Adds a brand-new person to the tenant with `role` and signs them in.
    pub async fn member(&self, tenant: &Tenant, role: &str) -> TestUser {
        let email = format!("member-{}@example.com", Uuid::new_v4().simple());
        self.post_json(
            &tenant.owner,
            &format!("/v1/orgs/{}/members", tenant.org_id),
            json!({"email": email, "role": role, "password": PASSWORD}),
        )
        .await;
        self.verify_email(&email).await;
        self.sign_in(&email).await
    }

    pub async fn sign_in(&self, email: &str) -> TestUser {
        let body = expect_json(self.login(email, PASSWORD).await, StatusCode::OK).await;
        let token = body["accessToken"].as_str().expect("token").to_owned();
        let me = expect_json(
            self.request(Method::GET, "/v1/me")
                .bearer_auth(&token)
                .send()
                .await
                .expect("me"),
            StatusCode::OK,
        )
        .await;
        TestUser {
            id: uuid(&me["user"]["id"]),
            email: email.into(),
            password: PASSWORD.into(),
            token,
        }
    }

    /// A platform operator, made the only way operators are made: directly in the store.
    pub async fn operator(&self) -> TestUser {
        let email = format!("operator-{}@example.com", Uuid::new_v4().simple());
        let hash = meterplane::domain::password::Password::parse(PASSWORD)
            .unwrap()
            .hash()
            .unwrap();
        let parsed = meterplane::domain::email::EmailAddress::parse(&email).unwrap();
        let mut conn = self.state.db.get().await.unwrap();
        meterplane::store::users::upsert_operator(&mut conn, &parsed, &hash)
            .await
            .unwrap();
        self.sign_in(&email).await
    }

    /// Adds a price version straight to the catalog (USD per million tokens), valid
    /// from long ago.
    pub async fn add_price(
        &self,
        provider: &str,
        model: &str,
        provider_model_name: &str,
        input: &str,
        output: &str,
        cached: &str,
    ) {
        let new = meterplane::store::prices::NewPrice {
            provider: provider.into(),
            model: model.into(),
            provider_model_name: provider_model_name.into(),
            input_per_mtok: input.parse().unwrap(),
            output_per_mtok: output.parse().unwrap(),
            cached_input_per_mtok: cached.parse().unwrap(),
            per_request: rust_decimal::Decimal::ZERO,
            per_image: rust_decimal::Decimal::ZERO,
            per_input_image: rust_decimal::Decimal::ZERO,
            valid_from: "2020-01-01T00:00:00Z".parse().unwrap(),
            ..Default::default()
        };
        let mut conn = self.state.db.get().await.unwrap();
        meterplane::store::prices::insert(&mut conn, &new).await.unwrap();
    }

    /// Moves an organization to `plan` with `retention_days`, as an operator would.
    pub async fn set_plan(&self, org_id: Uuid, plan: &str, retention_days: i32) {
        diesel::sql_query("UPDATE organizations SET plan = $2, retention_days = $3 WHERE id = $1")
            .bind::<diesel::sql_types::Uuid, _>(org_id)
            .bind::<diesel::sql_types::Text, _>(plan)
            .bind::<diesel::sql_types::Integer, _>(retention_days)
            .execute(&mut self.db().await)
            .await
            .unwrap();
    }

    /// Sends a usage batch with the key and returns the status and body.
    pub async fn send_batch(&self, key: &str, events: Value) -> (StatusCode, Value) {
        let response = self
            .request(Method::POST, "/v1/usage/batch")
            .header("x-api-key", key)
            .json(&json!({ "events": events }))
            .send()
            .await
            .expect("batch");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Counts rows of `table` belonging to `org_id`.
    pub async fn count_rows(&self, table: &str, org_id: Uuid) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let count: Count = diesel::sql_query(format!("SELECT count(*) AS n FROM {table} WHERE org_id = $1"))
            .bind::<diesel::sql_types::Uuid, _>(org_id)
            .get_result(&mut self.db().await)
            .await
            .unwrap();
        count.n
    }

    /// Records one usage event with the tenant's key and returns its event id.
    /// `fields` override the defaults (a priced gpt-4o call by `customer-1`).
    pub async fn record_event(&self, tenant: &Tenant, fields: Value) -> Uuid {
        let mut event = json!({
            "requestId": format!("req-{}", Uuid::new_v4().simple()),
            "endpoint": "/chat/completions", "provider": "openai", "model": "gpt-4o",
            "user": "customer-1", "promptTokens": 1000, "completionTokens": 100, "latencyMs": 300,
        });
        merge(&mut event, fields);
        let response = self
            .request(Method::POST, "/v1/usage")
            .header("x-api-key", &tenant.key_secret)
            .json(&event)
            .send()
            .await
            .expect("record usage");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "recording usage answered {status}: {body}");
        uuid(&body["eventId"])
    }

    /// POSTs as `user` and expects 201 Created (or 200 OK).
    pub async fn post_json(&self, user: &TestUser, path: &str, body: Value) -> Value {
        let response = self
            .as_user(Method::POST, path, user)
            .json(&body)
            .send()
            .await
            .expect("post");
        let status = response.status();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "POST {path} answered {status}: {body}");
        body
    }

    pub async fn get_json(&self, user: &TestUser, path: &str) -> Value {
        let response = self.as_user(Method::GET, path, user).send().await.expect("get");
        expect_json(response, StatusCode::OK).await
    }
}

fn merge(into: &mut Value, extra: Value) {
    if let (Some(into), Value::Object(extra)) = (into.as_object_mut(), extra) {
        into.extend(extra);
    }
}

/// Asks `POST /v1/gateway/authorize` with the tenant's key; the status, headers and body.
pub async fn authorize(app: &TestApp, tenant: &Tenant, body: Value) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let response = app
        .request(Method::POST, "/v1/gateway/authorize")
        .header("x-api-key", &tenant.key_secret)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.json().await.unwrap_or(Value::Null))
}

/// The id of a customer or agent (`table`) known to the gateway as `external`.
pub async fn id_of(app: &TestApp, table: &str, org: Uuid, external: &str) -> Uuid {
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
    }
    let row: Id = diesel::sql_query(format!("SELECT id FROM {table} WHERE org_id = $1 AND external_id = $2"))
        .bind::<diesel::sql_types::Uuid, _>(org)
        .bind::<diesel::sql_types::Text, _>(external)
        .get_result(&mut app.db().await)
        .await
        .unwrap();
    row.id
}

/// The `field` of each error of a validation problem, in order.
pub fn problem_fields(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .expect("a validation problem lists its errors")
        .iter()
        .map(|e| e["field"].as_str().expect("each error names its field"))
        .collect()
}

pub fn uuid(value: &Value) -> Uuid {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a uuid: {value}"))
}

pub async fn expect_json(response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let text = response.text().await.unwrap_or_default();
    assert_eq!(actual, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Asserts the response is a problem document with this status and code.
pub async fn expect_problem(response: Response, status: StatusCode, code: &str) -> Value {
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = expect_json(response, status).await;
    assert_eq!(content_type, "application/problem+json", "body: {body}");
    assert_eq!(body["code"], code, "body: {body}");
    assert_eq!(body["status"], status.as_u16(), "body: {body}");
    assert!(
        body["title"].is_string() && body["detail"].is_string() && body["type"].is_string(),
        "body: {body}"
    );
    body
}

// ---- email: the outbox worker against a real SMTP server ------------------------

/// Points the configuration at `smtp_url` with intervals short enough for tests:
/// the worker polls every 50 ms and retries after 50–100 ms, doubling up to 400 ms.
pub fn fast_email(config: &mut Config, smtp_url: &str) {
    use std::time::Duration;
    config.email.smtp =
        Some(meterplane::config::SmtpConfig::parse(smtp_url, Duration::from_secs(5)).expect("test SMTP URL"));
    config.email.from = "Meterplane Alerts <alerts@meterplane.test>".into();
    config.email.poll_interval = Duration::from_millis(50);
    config.email.retry =
        meterplane::domain::outbox::RetryPolicy::new(Duration::from_millis(100), Duration::from_millis(400), 50)
            .expect("retry policy");
}

impl TestApp {
    /// Starts this instance's outbox worker, as `serve` does.
    pub fn start_outbox_worker(&self) -> meterplane::jobs::JobHandle {
        meterplane::jobs::outbox::OutboxWorker::from_config(
            self.state.db.clone(),
            &self.state.config.email,
            self.state.outbox.clone(),
        )
        .expect("outbox worker")
        .expect("SMTP is configured")
        .spawn()
    }

    /// An outbox worker of another instance: same database and settings, its own
    /// connection pool.
    pub fn start_other_instance_worker(&self) -> meterplane::jobs::JobHandle {
        let pool = meterplane::store::connect(&self.database_url, 2, std::time::Duration::from_secs(5)).unwrap();
        meterplane::jobs::outbox::OutboxWorker::from_config(pool, &self.state.config.email, Default::default())
            .expect("outbox worker")
            .expect("SMTP is configured")
            .spawn()
    }

    pub async fn set_alert_emails(&self, tenant: &Tenant, emails: &[&str]) {
        let response = self
            .as_user(Method::PATCH, &format!("/v1/orgs/{}", tenant.org_id), &tenant.owner)
            .json(&json!({ "alertEmails": emails }))
            .send()
            .await
            .expect("patch org");
        expect_json(response, StatusCode::OK).await;
    }

    /// Queues a budget alert the way the budgets code does: in a transaction of its own.
    pub async fn enqueue_alert(
        &self,
        org_id: Uuid,
        alert: &meterplane::domain::alert_email::BudgetAlert,
    ) -> meterplane::store::outbox::Enqueued {
        let mut conn = self.state.db.get().await.unwrap();
        conn.transaction(async |conn| meterplane::store::outbox::enqueue_budget_alert(conn, org_id, alert).await)
            .await
            .expect("enqueue alert")
    }

    /// The organization's alert history as `user` sees it.
    pub async fn alerts(&self, user: &TestUser, org_id: Uuid, query: &str) -> Value {
        self.get_json(user, &format!("/v1/orgs/{org_id}/alerts{query}")).await
    }
}

/// A hard monthly budget alert for customer `alice`: 81.20 of 100 USD, 80 % crossed.
pub fn budget_alert(budget_id: Uuid, threshold: u8) -> meterplane::domain::alert_email::BudgetAlert {
    use meterplane::domain::{alert_email::*, budget::BudgetScope, period::BudgetPeriod};
    BudgetAlert {
        budget_id,
        subject_id: Uuid::from_u128(0xa11ce),
        scope: BudgetScope::Customer,
        scope_id: "alice".into(),
        scope_name: None,
        spend: "81.2".parse().unwrap(),
        amount: "100".parse().unwrap(),
        threshold_percent: threshold,
        period: BudgetPeriod::Monthly,
        period_start: "2026-12-01T00:00:00Z".parse().unwrap(),
        period_end: Some("2027-01-01T00:00:00Z".parse().unwrap()),
        enforcement: Enforcement::Hard,
    }
}

/// Polls `check` until it returns `Some`, or fails the test after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
