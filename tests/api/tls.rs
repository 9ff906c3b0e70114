//! TLS to PostgreSQL and Redis, configured through the URLs (`deploy/README.md`):
//! a private CA and server certificate made by `openssl`, a private PostgreSQL that
//! accepts only TLS connections (`hostssl`, SCRAM) and a private Redis with only a TLS
//! port, each started by the test on a free port, in a temporary directory.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use diesel_async::RunQueryDsl;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{
    helpers::{authorize, eventually, expect_json, TestApp},
    pg_server::{as_postgres, pg_bin, postgres_account},
};

/// Everything the test's servers and clients need, in one temporary directory.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("mp-tls-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: could not run it ({e})"));
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    run(
        Command::new("openssl").current_dir(dir).args(args),
        "openssl (is it on PATH?)",
    );
}

/// A CA (`ca.pem`), a server certificate it signed for `127.0.0.1` and `localhost`
/// (`server.pem`, `server.key`), and a second CA that signed nothing (`other-ca.pem`).
fn make_certificates(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    for (name, subject) in [("ca", "/CN=Meterplane test CA"), ("other-ca", "/CN=Some other CA")] {
        let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", subject]);
        args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
        args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        openssl(dir, &args);
    }
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("write server.ext");
    let mut args = vec!["req", "-new"];
    args.extend(ec);
    args.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]);
    openssl(dir, &args);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "server.pem",
            "-extfile",
            "server.ext",
        ],
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}

const APP_ROLE: &str = "meterplane";
const APP_PASSWORD: &str = "tls-test-password";

/// A private PostgreSQL that accepts TCP connections only over TLS, with a password
/// (SCRAM), on 127.0.0.1 and 127.0.0.2; the superuser connects over its socket.
struct PrivatePostgres {
    port: u16,
    socket_dir: PathBuf,
    child: Child,
}

impl PrivatePostgres {
    fn start(scratch: &Scratch) -> Self {
        let account = postgres_account();
        let root = scratch.path("pg");
        let data = root.join("data");
        std::fs::create_dir_all(&root).expect("create the PostgreSQL directory");
        if account.is_some() {
            run(
                Command::new("chown").args(["-R", "postgres:postgres"]).arg(&root),
                "chown",
            );
        }
        run(
            as_postgres(
                Command::new(pg_bin("initdb")).arg("-D").arg(&data).args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--no-locale",
                ]),
                account,
            ),
            "initdb",
        );
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostssl all all 127.0.0.2/32 scram-sha-256\n",
        )
        .expect("write pg_hba.conf");
        for file in ["server.pem", "server.key"] {
            std::fs::copy(scratch.path(file), data.join(file)).expect("copy the server certificate");
        }
        run(Command::new("chmod").arg("600").arg(data.join("server.key")), "chmod");
        if account.is_some() {
            run(
                Command::new("chown").args(["-R", "postgres:postgres"]).arg(&root),
                "chown",
            );
        }
        let port = free_port();
        let child = as_postgres(
            Command::new(pg_bin("postgres"))
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1,127.0.0.2"])
                .arg("-c")
                .arg(format!("unix_socket_directories={}", root.display()))
                .args([
                    "-c",
                    "ssl=on",
                    "-c",
                    "ssl_cert_file=server.pem",
                    "-c",
                    "ssl_key_file=server.key",
                ])
                .args(["-c", "fsync=off", "-c", "max_connections=50"])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            account,
        )
        .spawn()
        .expect("run postgres");
        let server = Self {
            port,
            socket_dir: root,
            child,
        };
        for _ in 0..100 {
            let ready = Command::new(pg_bin("pg_isready"))
                .arg("-h")
                .arg(&server.socket_dir)
                .args(["-p", &port.to_string(), "-q"])
                .status();
            if ready.is_ok_and(|s| s.success()) {
                server.psql(&format!("CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{APP_PASSWORD}'"));
                server.psql(&format!("CREATE DATABASE meterplane OWNER {APP_ROLE}"));
                return server;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the private PostgreSQL did not start on port {port}");
    }

    /// Runs SQL as the superuser over the socket; returns what it printed.
    fn psql(&self, sql: &str) -> String {
        let output = Command::new(pg_bin("psql"))
            .arg("-h")
            .arg(&self.socket_dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-qtAX",
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn url(&self, host: &str, params: &str) -> String {
        format!(
            "postgres://{APP_ROLE}:{APP_PASSWORD}@{host}:{}/meterplane?{params}",
            self.port
        )
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // Immediate shutdown: the postmaster ends its backends and exits.
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// A private Redis with a TLS port only.
struct PrivateTlsRedis {
    port: u16,
    child: Child,
}

impl PrivateTlsRedis {
    async fn start(scratch: &Scratch) -> Self {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--tls-cert-file")
            .arg(scratch.path("server.pem"))
            .arg("--tls-key-file")
            .arg(scratch.path("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(scratch.path("ca.pem"))
            .args(["--tls-auth-clients", "no", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run redis-server (is it on PATH?)");
        let server = Self { port, child };
        let client = meterplane::counters::connect::client(&server.url(&scratch.path("ca.pem"))).unwrap();
        let up = eventually("the private Redis to answer over TLS", Duration::from_secs(10), || {
            let client = client.clone();
            async move { ping(&client).await.ok().map(|pong| pong == "PONG") }
        })
        .await;
        assert!(up, "the private Redis did not answer PONG");
        server
    }

    fn url(&self, ca: &Path) -> String {
        format!("rediss://127.0.0.1:{}?sslrootcert={}", self.port, ca.display())
    }
}

impl Drop for PrivateTlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn ping(client: &redis::Client) -> Result<String, redis::RedisError> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd("PING").query_async(&mut conn).await
}

async fn connection_error(url: &str) -> String {
    match meterplane::store::PgTarget::parse(url) {
        Err(e) => format!("{e:#}"),
        Ok(target) => match target.connect().await {
            Ok(_) => "connected".to_owned(),
            Err(e) => e.to_string(),
        },
    }
}

#[derive(diesel::QueryableByName)]
struct Encrypted {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    ssl: bool,
}

/// The slow setup (initdb, two servers) once; everything TLS is checked against it.
#[tokio::test]
async fn postgres_and_redis_over_tls_from_the_urls() {
    let scratch = Scratch::new();
    make_certificates(&scratch.dir);
    let ca = scratch.path("ca.pem");
    let other_ca = scratch.path("other-ca.pem");
    let postgres = PrivatePostgres::start(&scratch);
    let redis_server = PrivateTlsRedis::start(&scratch).await;
    let verified =
        |host: &str, root: &Path| postgres.url(host, &format!("sslmode=verify-full&sslrootcert={}", root.display()));

    // The server takes nothing but TLS: a plain connection is turned away.
    let plain = connection_error(&postgres.url("127.0.0.1", "sslmode=disable")).await;
    assert!(plain.contains("no encryption"), "{plain}");

    // A certificate from a CA the URL does not trust is refused, clearly, and so is
    // one for another name under verify-full; verify-ca checks only the chain, and
    // require and prefer (without a CA) check nothing, yet encrypt (the server takes
    // nothing else).
    let wrong_ca = connection_error(&verified("127.0.0.1", &other_ca)).await;
    assert!(
        wrong_ca.contains("invalid peer certificate: UnknownIssuer"),
        "{wrong_ca}"
    );
    let other_name = connection_error(&verified("127.0.0.2", &ca)).await;
    assert!(other_name.contains("invalid peer certificate"), "{other_name}");
    assert!(
        other_name.contains("certificate not valid for name \"127.0.0.2\""),
        "{other_name}"
    );
    let chain_only = postgres.url("127.0.0.2", &format!("sslmode=verify-ca&sslrootcert={}", ca.display()));
    assert_eq!(connection_error(&chain_only).await, "connected");
    for unchecked in ["sslmode=require", "sslmode=prefer"] {
        assert_eq!(
            connection_error(&postgres.url("127.0.0.1", unchecked)).await,
            "connected",
            "{unchecked}"
        );
    }
    // The bundled public roots do not know the test's CA.
    let bundled = connection_error(&postgres.url("127.0.0.1", "sslmode=verify-full")).await;
    assert!(bundled.contains("UnknownIssuer"), "{bundled}");

    // The binary stops at start with the reason when the CA is wrong, and migrates
    // when it is right.
    let migrate = |database_url: String| {
        Command::new(env!("CARGO_BIN_EXE_meterplane"))
            .arg("migrate")
            .env_clear()
            .env("DATABASE_URL", database_url)
            .env("RUST_LOG", "error")
            .output()
            .expect("run meterplane migrate")
    };
    let refused = migrate(verified("127.0.0.1", &other_ca));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("connecting to PostgreSQL to migrate"), "{stderr}");
    assert!(stderr.contains("invalid peer certificate: UnknownIssuer"), "{stderr}");
    assert!(!stderr.contains(APP_PASSWORD), "{stderr}");
    let database_url = verified("127.0.0.1", &ca);
    let migrated = migrate(database_url.clone());
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    // The library's migration run connects the same way and finds nothing left to do.
    assert_eq!(
        meterplane::store::run_migrations(&database_url).await.unwrap(),
        Vec::<String>::new()
    );

    // `serve` opens connections when requests need them: it starts, and readiness
    // says PostgreSQL cannot be reached.
    let misconfigured = TestApp::spawn_on(verified("127.0.0.1", &other_ca), redis_server.url(&other_ca)).await;
    let not_ready = misconfigured.request(Method::GET, "/readyz").send().await.unwrap();
    crate::helpers::expect_problem(not_ready, StatusCode::SERVICE_UNAVAILABLE, "service_unavailable").await;
    misconfigured.stop().await;

    // Redis: a plain client finds no plain port, one trusting another CA is refused.
    let wrong = meterplane::counters::connect::client(&redis_server.url(&other_ca)).unwrap();
    let refused = eventually(
        "the private Redis to refuse the other CA",
        Duration::from_secs(10),
        || {
            let wrong = wrong.clone();
            async move {
                match ping(&wrong).await {
                    Err(e) if e.to_string().contains("UnknownIssuer") => Some(e.to_string()),
                    _ => None,
                }
            }
        },
    )
    .await;
    assert!(refused.contains("invalid peer certificate"), "{refused}");
    let plain_redis = redis::Client::open(format!("redis://127.0.0.1:{}", redis_server.port)).unwrap();
    assert!(ping(&plain_redis).await.is_err());

    // A Redis whose certificate does not check out counts as Redis down: the service
    // runs, degraded.
    let redis_refused = TestApp::spawn_on(database_url.clone(), redis_server.url(&other_ca)).await;
    let degraded = expect_json(
        redis_refused.request(Method::GET, "/readyz").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (
            degraded["status"].as_str(),
            degraded["postgres"].as_str(),
            degraded["redis"].as_str()
        ),
        (Some("degraded"), Some("up"), Some("down"))
    );
    redis_refused.stop().await;

    // The whole service over verified TLS to both.
    let app = TestApp::spawn_on(database_url, redis_server.url(&ca)).await;
    let ready = expect_json(
        app.request(Method::GET, "/readyz").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (ready["postgres"].as_str(), ready["redis"].as_str()),
        (Some("up"), Some("up"))
    );

    // Sign-up, a priced call authorized against the Redis counters, its usage recorded.
    let tenant = app.tenant().await;
    app.add_price(
        "anthropic",
        "claude-sonnet-4-5",
        "claude-sonnet-4-5-20250929",
        "3",
        "15",
        "0.30",
    )
    .await;
    let (status, _, decision) = authorize(
        &app,
        &tenant,
        json!({"requestId": "tls-1", "user": "customer-7", "provider": "anthropic", "model": "claude-sonnet-4-5"}),
    )
    .await;
    assert_eq!(
        (status, decision["allowed"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{decision}"
    );
    assert_eq!(decision["degraded"], false, "Redis answered: {decision}");
    let recorded = expect_json(
        app.request(Method::POST, "/v1/usage")
            .header("x-api-key", &tenant.key_secret)
            .json(&json!({
                "requestId": "tls-1", "endpoint": "/chat/completions", "provider": "anthropic",
                "model": "claude-sonnet-4-5", "user": "customer-7", "promptTokens": 1200,
                "completionTokens": 300, "cachedTokens": 200, "latencyMs": 840,
            }))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    // input (1200 − 200) × 3/M = 0.003; cached 200 × 0.30/M = 0.00006; output 300 × 15/M = 0.0045.
    assert_eq!(recorded["cost"], "0.00756");
    let log = app
        .get_json(&tenant.owner, &format!("/v1/orgs/{}/spend-logs", tenant.org_id))
        .await;
    assert_eq!(log["data"].as_array().map(Vec::len), Some(1), "{log}");
    assert_eq!(log["data"][0]["cost"], "0.00756");

    // The connections really are encrypted: the app's own, as PostgreSQL sees it, and
    // every backend of the app's role.
    let mine: Encrypted = diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result(&mut app.db().await)
        .await
        .unwrap();
    assert!(mine.ssl);
    let backends = postgres.psql(&format!(
        "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
         FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = '{APP_ROLE}'"
    ));
    let (with_tls, without) = backends.split_once('|').expect("two counts");
    assert!(with_tls.parse::<u32>().unwrap() >= 2, "{backends}");
    assert_eq!(without, "0");

    // Pub/sub (the live stream's connection) goes through the same TLS client.
    let client = meterplane::counters::connect::client(&redis_server.url(&ca)).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("tls-test").await.unwrap();
    let mut publisher = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("PUBLISH")
        .arg("tls-test")
        .arg("hello")
        .query_async(&mut publisher)
        .await
        .unwrap();
    let message = tokio::time::timeout(
        Duration::from_secs(5),
        futures_util::StreamExt::next(&mut pubsub.on_message()),
    )
    .await
    .expect("a message within 5 s")
    .expect("the subscription is open");
    assert_eq!(message.get_payload::<String>().unwrap(), "hello");
    app.stop().await;
}
