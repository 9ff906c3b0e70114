//! What the benchmarks share: a throw-away database, a release `meterplane serve` on a
//! free port, a tenant created through the API, cleanup however a run ends, and the
//! CPU and memory readings from `/proc`. See `benches/README.md`.
//!
//! Each bench compiles this module on its own (`mod common;`), and not every bench
//! uses every helper.
#![allow(dead_code)]

pub mod wrk;

use std::{
    fs::File,
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    str::FromStr,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use uuid::Uuid;

pub const SERVER_BIN: &str = env!("CARGO_BIN_EXE_meterplane");
/// Linux reports process CPU time in USER_HZ ticks, 100 per second on every arch.
const TICKS_PER_SEC: f64 = 100.0;

pub fn env_or<T: FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(raw) if !raw.trim().is_empty() => raw.trim().parse().map_err(|e| anyhow!("{name}={raw:?}: {e}")),
        _ => Ok(default),
    }
}

/// The role that may `CREATE DATABASE` (`MP_BENCH_ADMIN_URL`) and the Redis the server
/// uses (`REDIS_URL`).
pub fn admin_url() -> anyhow::Result<String> {
    env_or(
        "MP_BENCH_ADMIN_URL",
        "postgres://postgres@127.0.0.1:5432/postgres".to_owned(),
    )
}

pub fn redis_url() -> anyhow::Result<String> {
    env_or("REDIS_URL", "redis://127.0.0.1:6379".to_owned())
}

/// `postgres://u:p@h:5432/postgres?x=y` with its database replaced by `name`.
pub fn database_url(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = &base[scheme_end..];
    let without_db = match host_part.find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    if without_db.len() <= scheme_end {
        bail!("MP_BENCH_ADMIN_URL is not a postgres:// URL: {admin_url}");
    }
    Ok(match query {
        Some(q) => format!("{without_db}/{name}?{q}"),
        None => format!("{without_db}/{name}"),
    })
}

/// A loopback port nobody listens on now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free port")?
        .port())
}

/// Runs one SQL command (or psql meta-command) and returns its unaligned output.
pub fn psql(url: &str, command: &str) -> anyhow::Result<String> {
    let out = Command::new("psql")
        .arg(url)
        .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", command])
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .output()
        .context("running psql (is the PostgreSQL client installed?)")?;
    if !out.status.success() {
        bail!(
            "psql -c {command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub fn psql_i64(url: &str, query: &str) -> anyhow::Result<i64> {
    let text = psql(url, query)?;
    text.parse()
        .with_context(|| format!("{query}: expected a number, got {text:?}"))
}

/// A running bench server and what it was started with.
pub struct Server {
    /// Random, names the database, the log and the Redis key prefix of this run.
    pub tag: String,
    pub db_url: String,
    pub base: String,
    pub pid: u32,
    pub log_path: PathBuf,
    /// Every Redis key of this run starts with it.
    pub redis_prefix: String,
}

/// Everything a run creates, removed again however the run ends: the server
/// (SIGTERM), the database (`DROP … WITH (FORCE)`), temporary files, and the run's
/// Redis keys.
pub struct Harness {
    label: &'static str,
    admin_url: String,
    database: Option<String>,
    server: Option<Child>,
    files: Vec<PathBuf>,
    /// (Redis URL, key prefix) of the keys to delete.
    redis_keys: Option<(String, String)>,
}

impl Harness {
    /// `label` prefixes the progress lines (`[<label> bench] …`).
    pub fn new(label: &'static str, admin_url: &str) -> Self {
        Self {
            label,
            admin_url: admin_url.to_owned(),
            database: None,
            server: None,
            files: Vec::new(),
            redis_keys: None,
        }
    }

    pub fn step(&self, message: &str) {
        eprintln!("[{} bench] {message}", self.label);
    }

    /// Deleted when the run ends.
    pub fn remove_later(&mut self, path: PathBuf) {
        self.files.push(path);
    }

    /// Creates `mp_bench_<random>`, runs `meterplane migrate` and `load-prices`, and
    /// starts `meterplane serve` on a free port with JSON logs at `warn` and a Redis
    /// key prefix of its own. `extra_env` is added to the server's environment. Does
    /// not wait for readiness (see [`wait_ready`]).
    pub fn start_server(&mut self, redis_url: &str, extra_env: &[(&str, String)]) -> anyhow::Result<Server> {
        let tag = Uuid::new_v4().simple().to_string()[..10].to_owned();
        let db_name = format!("mp_bench_{tag}");
        let db_url = database_url(&self.admin_url, &db_name)?;
        let log_path = std::env::temp_dir().join(format!("{db_name}.server.log"));
        let redis_prefix = format!("mpbench:{tag}:");

        self.step(&format!("creating database {db_name}"));
        psql(&self.admin_url, &format!("CREATE DATABASE {db_name}"))
            .context("creating the bench database (set MP_BENCH_ADMIN_URL to a role that may CREATE DATABASE)")?;
        self.database = Some(db_name);
        self.redis_keys = Some((redis_url.to_owned(), redis_prefix.clone()));

        let port = free_port()?;
        let mut server_env: Vec<(&str, String)> = vec![
            ("DATABASE_URL", db_url.clone()),
            ("REDIS_URL", redis_url.to_owned()),
            ("MP_REDIS_PREFIX", redis_prefix.clone()),
            ("MP_BIND", format!("127.0.0.1:{port}")),
            ("MP_METRICS_ADDR", "off".to_owned()),
            ("MP_LOG_FORMAT", "json".to_owned()),
            ("RUST_LOG", "warn".to_owned()),
        ];
        server_env.extend(extra_env.iter().cloned());
        for job in ["migrate", "load-prices"] {
            self.step(&format!("meterplane {job}"));
            let out = Command::new(SERVER_BIN)
                .arg(job)
                .envs(server_env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("starting {SERVER_BIN} {job}"))?;
            if !out.status.success() {
                bail!(
                    "meterplane {job} failed ({}): {}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout).trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }

        self.step(&format!("starting meterplane serve on 127.0.0.1:{port}"));
        let log = File::create(&log_path).context("creating the server log")?;
        let child = Command::new(SERVER_BIN)
            .arg("serve")
            .envs(server_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting meterplane serve")?;
        let pid = child.id();
        self.server = Some(child);
        Ok(Server {
            tag,
            db_url,
            base: format!("http://127.0.0.1:{port}"),
            pid,
            log_path,
            redis_prefix,
        })
    }

    pub fn server_exited(&mut self) -> Option<std::process::ExitStatus> {
        self.server.as_mut().and_then(|child| child.try_wait().ok().flatten())
    }

    /// An error that carries whether the server exited and the end of its log (which
    /// is then kept).
    pub fn server_failed(&mut self, server: &Server, what: &str) -> anyhow::Error {
        let exited = self
            .server_exited()
            .map_or(String::new(), |status| format!(" (the server exited: {status})"));
        anyhow!(
            "{what}{exited}; the end of the server log {}:\n{}",
            server.log_path.display(),
            tail(&server.log_path, 40)
        )
    }

    pub fn stop_server(&mut self) {
        let Some(mut child) = self.server.take() else {
            return;
        };
        // SIGTERM first so actix shuts down its workers; SIGKILL if it takes too long.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Stops the server, then deletes its log when it has nothing to say; otherwise
    /// returns how many lines (at `warn` and above) it has. The start-up warning that
    /// no SMTP server is configured (the bench needs none) does not count.
    pub fn stop_server_and_check_log(&mut self, server: &Server) -> usize {
        self.stop_server();
        let lines = std::fs::read_to_string(&server.log_path)
            .map(|s| s.lines().filter(|l| !l.contains("MP_SMTP_URL is not set")).count())
            .unwrap_or(0);
        if lines == 0 {
            let _ = std::fs::remove_file(&server.log_path);
        }
        lines
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop_server();
        // MP_BENCH_KEEP_DB=1 keeps the database for a closer look (EXPLAIN ANALYZE).
        let keep = std::env::var("MP_BENCH_KEEP_DB").is_ok_and(|v| v == "1");
        if let Some(db) = self.database.take().filter(|db| {
            if keep {
                eprintln!("kept the bench database {db} (MP_BENCH_KEEP_DB=1)");
            }
            !keep
        }) {
            if let Err(e) = psql(&self.admin_url, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")) {
                eprintln!("could not drop the bench database {db}: {e:#}");
            }
        }
        if let Some((url, prefix)) = self.redis_keys.take() {
            if let Err(e) = delete_redis_keys(&url, &prefix) {
                eprintln!("could not delete the bench's Redis keys {prefix}*: {e:#}");
            }
        }
        for file in self.files.drain(..) {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Deletes every key that starts with `prefix` (SCAN + UNLINK).
fn delete_redis_keys(url: &str, prefix: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(5))?;
    let pattern = format!("{prefix}*");
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1_000)
            .query(&mut conn)?;
        if !keys.is_empty() {
            redis::cmd("UNLINK").arg(&keys).exec(&mut conn)?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

pub async fn wait_ready(client: &reqwest::Client, server: &Server, harness: &mut Harness) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        if harness.server_exited().is_some() {
            bail!("meterplane serve exited before it was ready");
        }
        match client
            .get(format!("{}/readyz", server.base))
            .timeout(Duration::from_secs(2))
            .send()
            .await
        {
            Ok(r) if r.status() == reqwest::StatusCode::OK => return Ok(()),
            Ok(r) => last = format!("GET /readyz answered {}", r.status()),
            Err(e) => last = format!("GET /readyz: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the server was not ready within 60 s ({last})")
}

pub struct Tenant {
    pub org_id: Uuid,
    pub project_id: Uuid,
    pub key_id: Uuid,
    /// The API key's secret.
    pub key: String,
    /// The owner's access token.
    pub token: String,
}

/// POSTs JSON and expects a success (201 for what it creates, 202 for a sign-up, 200
/// for a sign-in) with a JSON answer.
pub async fn post_json(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> anyhow::Result<Value> {
    let mut request = client.post(&url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        bail!("POST {url} answered {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("POST {url}: not JSON: {text}"))
}

pub fn string_at<'a>(value: &'a Value, pointer: &str) -> anyhow::Result<&'a str> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("no {pointer} in {value}"))
}

/// The bench user's sign-in (see [`create_tenant`]).
fn credentials(server: &Server) -> Value {
    json!({
        "email": format!("bench-{}@example.com", server.tag),
        "password": "bench-password-0123",
    })
}

/// A fresh access token for the bench user: a long load outlives the first one.
pub async fn login(client: &reqwest::Client, server: &Server) -> anyhow::Result<String> {
    let login = post_json(
        client,
        format!("{}/v1/auth/login", server.base),
        None,
        credentials(server),
    )
    .await?;
    Ok(string_at(&login, "/accessToken")?.to_owned())
}

/// Signs up and in, creates the organization (on the free plan; an unconfirmed
/// account may act on the organizations it creates), then a `credits` project and an
/// API key.
pub async fn create_tenant(client: &reqwest::Client, server: &Server) -> anyhow::Result<Tenant> {
    let base = &server.base;
    post_json(client, format!("{base}/v1/auth/signup"), None, credentials(server)).await?;
    let token = login(client, server).await?;
    let org = post_json(
        client,
        format!("{base}/v1/orgs"),
        Some(&token),
        json!({"name": "Bench"}),
    )
    .await?;
    let org_id: Uuid = string_at(&org, "/id")?.parse()?;
    let project = post_json(
        client,
        format!("{base}/v1/orgs/{org_id}/projects"),
        Some(&token),
        json!({"name": "bench", "mode": "credits"}),
    )
    .await?;
    let project_id: Uuid = string_at(&project, "/id")?.parse()?;
    let key = post_json(
        client,
        format!("{base}/v1/orgs/{org_id}/projects/{project_id}/keys"),
        Some(&token),
        json!({"name": "bench"}),
    )
    .await?;
    Ok(Tenant {
        org_id,
        project_id,
        key_id: string_at(&key, "/id")?.parse()?,
        key: string_at(&key, "/secret")?.to_owned(),
        token,
    })
}

/// CPU seconds (user + system) used so far.
#[derive(Default, Clone, Copy)]
pub struct CpuSample {
    pub server: f64,
    /// All `postgres` processes (those that exit in between are not counted).
    pub postgres: f64,
    /// All `redis-server` processes.
    pub redis: f64,
    /// This process (the bench, when it is the load generator).
    pub client: f64,
    /// Child processes of this bench that have exited and been waited for (e.g. `wrk`).
    pub children: f64,
}

impl CpuSample {
    pub fn take(server_pid: u32) -> Self {
        let (mut postgres, mut redis) = (0.0, 0.0);
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let name = entry.file_name();
                let Some(pid) = name.to_str().filter(|s| s.bytes().all(|b| b.is_ascii_digit())) else {
                    continue;
                };
                match proc_cpu(pid) {
                    Some(cpu) if cpu.comm == "postgres" => postgres += cpu.secs,
                    Some(cpu) if cpu.comm == "redis-server" => redis += cpu.secs,
                    _ => {}
                }
            }
        }
        let own = proc_cpu("self");
        Self {
            server: proc_cpu(&server_pid.to_string()).map_or(0.0, |c| c.secs),
            postgres,
            redis,
            client: own.as_ref().map_or(0.0, |c| c.secs),
            children: own.as_ref().map_or(0.0, |c| c.children_secs),
        }
    }

    pub fn since(&self, before: &Self) -> Self {
        Self {
            server: self.server - before.server,
            postgres: self.postgres - before.postgres,
            redis: self.redis - before.redis,
            client: self.client - before.client,
            children: self.children - before.children,
        }
    }
}

struct ProcCpu {
    comm: String,
    /// utime + stime
    secs: f64,
    /// cutime + cstime: children waited for
    children_secs: f64,
}

/// From /proc/<pid>/stat.
fn proc_cpu(pid: &str) -> Option<ProcCpu> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    // After the command: state is field 3; utime, stime, cutime and cstime are
    // fields 14 to 17.
    let fields: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    let tick = |i: usize| -> Option<f64> { fields.get(i)?.parse::<f64>().ok() };
    Some(ProcCpu {
        comm,
        secs: (tick(11)? + tick(12)?) / TICKS_PER_SEC,
        children_secs: (tick(13)? + tick(14)?) / TICKS_PER_SEC,
    })
}

/// (VmHWM, VmRSS) in kB.
pub fn read_memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

pub fn tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// 39812.4 -> "39,800": three significant digits, grouped by thousands.
pub fn thousands(value: f64) -> String {
    if !value.is_finite() || value <= 0.0 {
        return "0".to_owned();
    }
    let digits = value.log10().floor() as i32 + 1;
    let scale = 10f64.powi((digits - 3).max(0));
    let rounded = ((value / scale).round() * scale) as u64;
    let text = rounded.to_string();
    let mut out = String::with_capacity(text.len() + text.len() / 3);
    for (i, c) in text.chars().enumerate() {
        if i > 0 && (text.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Sorted durations → the value at quantile `q` (0 to 1), in milliseconds.
pub fn quantile_ms(sorted: &[Duration], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(index).map(|d| d.as_secs_f64() * 1e3)
}

/// Fails with how to install `program` when it is not on the machine.
pub fn require_tool(program: &str, install: &str) -> anyhow::Result<()> {
    match Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("{program} is not installed ({install})"),
        Err(e) => Err(e).with_context(|| format!("running {program}")),
        Ok(_) => Ok(()),
    }
}
