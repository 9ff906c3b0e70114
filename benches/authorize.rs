//! Authorize speed: requests per second and latency of `POST /v1/gateway/authorize` of
//! a release build on loopback, at saturation (`wrk`) and at a fixed rate (an
//! open-loop generator in this program), beside raw Redis running the same script
//! (`redis-benchmark … EVALSHA`, same key shape, same client count) and plain
//! `PING`/`SET`, measured in the same run. See `benches/README.md`.
//!
//! `cargo bench --bench authorize` runs it; any other invocation (e.g. `cargo test
//! --all-targets`) only prints how to run it.

mod common;

use std::{
    path::Path,
    process::{Command, ExitCode, Stdio},
    str::FromStr,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context};
use chrono::Utc;
use meterplane::{
    counters::{
        keys::{minute_of, period_tag, OrgKeys, ScopeRef, MINUTE_WINDOW_MS},
        AUTHORIZE_SCRIPT,
    },
    domain::{budget::BudgetScope, micros::to_micros, period::BudgetPeriod},
};
use rust_decimal::Decimal;
use serde_json::Value;
use uuid::Uuid;

use common::{
    create_tenant, psql, psql_i64, quantile_ms, require_tool, thousands, wait_ready,
    wrk::{WrkLoad, WrkResult},
    CpuSample, Harness, Tenant,
};

/// Customers the calls cycle through; each has its own budget and rate limit.
const CUSTOMERS: usize = 50;
const PROMPT_TOKENS: i64 = 1_200;
const COMPLETION_TOKENS: i64 = 400;
/// Budgets and rate limits that never deny: the largest the schema allows.
const BUDGET_USD: i64 = 1_000_000_000;
const REQUESTS_PER_MINUTE: i64 = 10_000_000;
const TOKENS_PER_MINUTE: i64 = 10_000_000_000;
/// Targets of the issue on the 2-core project machine.
const TARGET_RPS: f64 = 8_000.0;
const TARGET_P99_MS: f64 = 5.0;

fn main() -> ExitCode {
    if !std::env::args().any(|a| a == "--bench") {
        println!("authorize benchmark: not run (start it with `cargo bench --bench authorize`)");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authorize benchmark FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Settings {
    /// Length of each saturation and fixed-rate measurement.
    secs: u64,
    warmup_secs: u64,
    connections: usize,
    threads: usize,
    rate: u64,
    rounds: usize,
    redis_requests: u64,
    admin_url: String,
    redis_url: String,
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        let settings = Self {
            secs: common::env_or("MP_BENCH_SECS", 20)?,
            warmup_secs: common::env_or("MP_BENCH_WARMUP_SECS", 5)?,
            connections: common::env_or("MP_BENCH_CONNECTIONS", 50)?,
            threads: common::env_or("MP_BENCH_THREADS", 2)?,
            rate: common::env_or("MP_BENCH_RATE", 2_000)?,
            rounds: common::env_or("MP_BENCH_ROUNDS", 2)?,
            redis_requests: common::env_or("MP_BENCH_REDIS_REQUESTS", 300_000)?,
            admin_url: common::admin_url()?,
            redis_url: common::redis_url()?,
        };
        if !(1..=3_600).contains(&settings.secs) {
            bail!("MP_BENCH_SECS must be 1 to 3600");
        }
        if settings.warmup_secs > 600 {
            bail!("MP_BENCH_WARMUP_SECS must be 0 to 600");
        }
        if !(1..=10_000).contains(&settings.connections) {
            bail!("MP_BENCH_CONNECTIONS must be 1 to 10000");
        }
        if !(1..=settings.connections).contains(&settings.threads) {
            bail!("MP_BENCH_THREADS must be 1 to MP_BENCH_CONNECTIONS");
        }
        if !(1..=1_000_000).contains(&settings.rate) {
            bail!("MP_BENCH_RATE must be 1 to 1000000");
        }
        if !(1..=20).contains(&settings.rounds) {
            bail!("MP_BENCH_ROUNDS must be 1 to 20");
        }
        if settings.redis_requests == 0 {
            bail!("MP_BENCH_REDIS_REQUESTS must be at least 1");
        }
        Ok(settings)
    }
}

/// One call of customer `customer` (0-based), as the gateway would ask.
fn request_body(request_id: &str, customer: usize) -> String {
    format!(
        r#"{{"requestId":"{request_id}","user":"customer-{customer:02}","endpoint":"/chat/completions","provider":"openai","model":"gpt-4o","estimatedPromptTokens":{PROMPT_TOKENS},"estimatedCompletionTokens":{COMPLETION_TOKENS}}}"#
    )
}

/// `200`, allowed, and decided on the counters: an answer with `"degraded":true` was
/// allowed by the Redis-down policy without checking anything (e.g. a Redis reply
/// slower than `MP_REDIS_TIMEOUT_MS`), and counts as a failure here.
fn allowed(status: reqwest::StatusCode, body: &[u8]) -> bool {
    let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    status == reqwest::StatusCode::OK && has(br#""allowed":true"#) && has(br#""degraded":false"#)
}

/// (answers, answers within 5 ms) of `POST /v1/gateway/authorize` so far, as the
/// server's own latency histogram counts them (`/metrics`: from the request reaching
/// the middleware to the response, so without the time in socket queues).
async fn server_side_histogram(client: &reqwest::Client, base: &str) -> anyhow::Result<(u64, u64)> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let (mut total, mut fast) = (0u64, 0u64);
    for line in text.lines() {
        if !line.contains(r#"endpoint="/v1/gateway/authorize""#) {
            continue;
        }
        let value = || -> u64 {
            line.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .map_or(0, |v| v as u64)
        };
        if line.starts_with("meterplane_http_requests_duration_seconds_count{") {
            total += value();
        } else if line.starts_with("meterplane_http_requests_duration_seconds_bucket{")
            && line.contains(r#"le="0.005""#)
        {
            fast += value();
        }
    }
    Ok((total, fast))
}

/// The 1-minute load average: how busy the machine was besides the bench.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Figures of one round.
struct Round {
    /// 1-minute load average before the saturation run and before the fixed-rate run.
    load_saturation: f64,
    load_fixed: f64,
    saturation: WrkResult,
    saturation_cpu: CpuSample,
    /// Redis's own time per authorize script (INFO commandstats), during the
    /// saturation run and during the raw EVALSHA run.
    script_us_http: f64,
    script_us_raw: f64,
    evalsha: RedisBench,
    ping: RedisBench,
    set: RedisBench,
    fixed: FixedRate,
    fixed_cpu: CpuSample,
    /// (answers, answers within 5 ms) by the server's own histogram, at the fixed rate.
    fixed_server_side: (u64, u64),
}

fn run() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    require_tool("wrk", "Debian/Ubuntu: apt-get install -y wrk")?;
    require_tool("redis-benchmark", "it comes with redis-server (Debian: redis-tools)")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut harness = Harness::new("authorize", &settings.admin_url);
    // The server-side histogram is read from `/metrics`, served on its own address.
    let metrics_base = format!("http://127.0.0.1:{}", common::free_port()?);
    let metrics_addr = metrics_base.trim_start_matches("http://").to_owned();
    let server = harness.start_server(&settings.redis_url, &[("MP_METRICS_ADDR", metrics_addr)])?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the load generator's runtime")?;
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(10))
        // Below the server's keep-alive (5 s), so the client never reuses a connection
        // the server is closing (the client idles while wrk and redis-benchmark run).
        .pool_idle_timeout(Duration::from_secs(2))
        .build()?;
    if let Err(e) = runtime.block_on(wait_ready(&client, &server, &mut harness)) {
        return Err(harness.server_failed(&server, &format!("{e:#}")));
    }
    let tenant = runtime
        .block_on(create_tenant(&client, &server))
        .context("creating the bench tenant")?;
    let url = format!("{}/v1/gateway/authorize", server.base);

    harness.step(&format!(
        "pre-warming: one usage event per customer creates the {CUSTOMERS} customers"
    ));
    // Through usage rather than authorize, so that no call caches the customers'
    // rules before their limits exist (whatever MP_BUDGET_RULES_CACHE_MS is).
    runtime
        .block_on(create_customers(&client, &server.base, &tenant.key))
        .map_err(|e| harness.server_failed(&server, &format!("{e:#}")))?;
    set_limits(&server.db_url, &tenant)?;
    harness.step("waiting for the server to see the budgets and rate limits (its rules cache lasts 1 s)");
    let (sample, checks) = match runtime.block_on(check_limits_apply(&client, &url, &tenant)) {
        Ok(found) => found,
        Err(e) => return Err(harness.server_failed(&server, &format!("{e:#}"))),
    };
    let estimated_cost: Decimal = sample["estimatedCost"]
        .as_str()
        .and_then(|s| Decimal::from_str(s).ok())
        .ok_or_else(|| anyhow!("no estimatedCost in {sample}"))?;

    let run_id = &server.tag;
    let script_path = std::env::temp_dir().join(format!("mp_bench_{run_id}.wrk.lua"));
    harness.remove_later(script_path.clone());
    std::fs::write(&script_path, wrk_script(&tenant.key, run_id)).context("writing the wrk script")?;

    // Answers seen allowed: each left a reservation in Redis.
    let mut allowed_total = checks;
    let redis = RedisTarget::from_url(&settings.redis_url)?;
    let baseline = prepare_baseline(&settings.redis_url, &server.redis_prefix, estimated_cost)?;

    if settings.warmup_secs > 0 {
        harness.step(&format!("warm-up: wrk for {} s (not reported)", settings.warmup_secs));
        let warmup = run_wrk(&settings, &url, &script_path, settings.warmup_secs, "warmup")
            .map_err(|e| harness.server_failed(&server, &format!("warm-up: {e:#}")))?;
        allowed_total += warmup.checked;
    }

    let mut rounds: Vec<Round> = Vec::with_capacity(settings.rounds);
    for round in 1..=settings.rounds {
        harness.step(&format!(
            "round {round}: saturation, wrk -t{} -c{} -d{}s (timed)",
            settings.threads, settings.connections, settings.secs
        ));
        let load_saturation = load_average();
        let before = CpuSample::take(server.pid);
        let scripts_before = evalsha_stats(&settings.redis_url)?;
        let saturation = run_wrk(&settings, &url, &script_path, settings.secs, &format!("r{round}"))
            .map_err(|e| harness.server_failed(&server, &format!("{e:#}")))?;
        let saturation_cpu = CpuSample::take(server.pid).since(&before);
        let script_us_http = per_call_us(scripts_before, evalsha_stats(&settings.redis_url)?);
        eprintln!(
            "    {} requests/s, p50 {:.2} ms, p99 {:.2} ms",
            thousands(saturation.rps()),
            saturation.p50_ms,
            saturation.p99_ms
        );

        harness.step(&format!(
            "round {round}: raw Redis, redis-benchmark -c {} -n {} (EVALSHA, SET, PING)",
            settings.connections, settings.redis_requests
        ));
        let scripts_before = evalsha_stats(&settings.redis_url)?;
        let evalsha = redis.bench(&settings, &baseline.evalsha_args, true)?;
        let script_us_raw = per_call_us(scripts_before, evalsha_stats(&settings.redis_url)?);
        let set = redis.bench(
            &settings,
            &[
                "SET".to_owned(),
                format!("{}baseline:set", server.redis_prefix),
                "xxx".to_owned(),
            ],
            false,
        )?;
        let ping = redis.bench(&settings, &["PING".to_owned()], false)?;
        eprintln!(
            "    EVALSHA {}/s, SET {}/s, PING {}/s",
            thousands(evalsha.rps),
            thousands(set.rps),
            thousands(ping.rps)
        );

        harness.step(&format!(
            "round {round}: fixed rate, {} requests/s for {} s, open loop (timed)",
            settings.rate, settings.secs
        ));
        let load_fixed = load_average();
        let histogram_before = runtime.block_on(server_side_histogram(&client, &metrics_base))?;
        let before = CpuSample::take(server.pid);
        let fixed = runtime
            .block_on(fixed_rate(
                &client,
                &url,
                &tenant.key,
                settings.rate,
                settings.secs,
                &format!("{run_id}-{round}"),
            ))
            .map_err(|e| harness.server_failed(&server, &format!("{e:#}")))?;
        let fixed_cpu = CpuSample::take(server.pid).since(&before);
        let histogram_after = runtime.block_on(server_side_histogram(&client, &metrics_base))?;
        let fixed_server_side = (
            histogram_after.0.saturating_sub(histogram_before.0),
            histogram_after.1.saturating_sub(histogram_before.1),
        );
        eprintln!(
            "    sent at {} requests/s, p50 {:.2} ms, p99 {:.2} ms (from the scheduled time)",
            thousands(fixed.achieved_rate()),
            fixed.p_ms(0.5),
            fixed.p_ms(0.99)
        );
        rounds.push(Round {
            load_saturation,
            load_fixed,
            saturation,
            saturation_cpu,
            script_us_http,
            script_us_raw,
            evalsha,
            ping,
            set,
            fixed,
            fixed_cpu,
            fixed_server_side,
        });
    }

    // Every allowed call left a reservation (none settles or expires during the run).
    let reservations = reservations(&settings.redis_url, &server.redis_prefix, tenant.org_id)?;
    let answered_allowed = allowed_total
        + rounds
            .iter()
            .map(|r| r.saturation.checked + r.fixed.allowed as u64)
            .sum::<u64>();
    let decisions = psql_i64(&server.db_url, "SELECT count(*) FROM authorize_decisions").unwrap_or(-1);
    let memory = common::read_memory(server.pid);
    let server_log_lines = harness.stop_server_and_check_log(&server);

    report(&ReportInput {
        settings: &settings,
        cores,
        sample: &sample,
        evalsha_command: &redis.command_line(&settings, &baseline.evalsha_args, true),
        rounds: &rounds,
        reservations,
        answered_allowed,
        decisions,
        memory,
    });
    if server_log_lines > 0 {
        println!(
            "server log        : {server_log_lines} lines at warn level or above in {}",
            server.log_path.display()
        );
    }
    Ok(())
}

async fn post_authorize(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body: &str,
) -> anyhow::Result<(reqwest::StatusCode, Vec<u8>)> {
    let response = client
        .post(url)
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    Ok((status, response.bytes().await?.to_vec()))
}

/// Records one small usage event per customer (`POST /v1/usage/batch`), which creates
/// the customers.
async fn create_customers(client: &reqwest::Client, base: &str, key: &str) -> anyhow::Result<()> {
    let events: Vec<Value> = (0..CUSTOMERS)
        .map(|customer| {
            serde_json::json!({
                "requestId": format!("warm-{customer}"),
                "user": format!("customer-{customer:02}"),
                "endpoint": "/chat/completions",
                "provider": "openai",
                "model": "gpt-4o",
                "promptTokens": 10,
                "completionTokens": 10,
            })
        })
        .collect();
    let url = format!("{base}/v1/usage/batch");
    let response = client
        .post(&url)
        .header("x-api-key", key)
        .json(&serde_json::json!({ "events": events }))
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let answer: Value = response.json().await.with_context(|| format!("POST {url}: not JSON"))?;
    if status != reqwest::StatusCode::OK || answer["accepted"] != CUSTOMERS {
        bail!("POST {url} answered {status}: {answer}");
    }
    Ok(())
}

/// A hard monthly budget and a requests-per-minute limit for every customer, a hard
/// monthly budget for the organization, and a requests- and tokens-per-minute limit
/// for the API key, all too large to deny anything. Straight into the tables.
fn set_limits(db_url: &str, tenant: &Tenant) -> anyhow::Result<()> {
    let (org, key) = (tenant.org_id, tenant.key_id);
    let customers = psql_i64(
        db_url,
        &format!("SELECT count(*) FROM customers WHERE org_id = '{org}'"),
    )?;
    if customers != CUSTOMERS as i64 {
        bail!("expected {CUSTOMERS} customers after the pre-warm, found {customers}");
    }
    psql(
        db_url,
        &format!(
            "INSERT INTO budgets (id, org_id, scope, scope_id, amount, period, hard_limit) \
               SELECT gen_random_uuid(), org_id, 'customer', id, {BUDGET_USD}, 'monthly', true \
                 FROM customers WHERE org_id = '{org}' \
             UNION ALL \
               SELECT gen_random_uuid(), '{org}', 'organization', '{org}', {BUDGET_USD}, 'monthly', true"
        ),
    )?;
    psql(
        db_url,
        &format!(
            "INSERT INTO rate_limits (id, org_id, scope, scope_id, requests_per_minute, tokens_per_minute) \
               SELECT gen_random_uuid(), org_id, 'customer', id, {REQUESTS_PER_MINUTE}, NULL \
                 FROM customers WHERE org_id = '{org}' \
             UNION ALL \
               SELECT gen_random_uuid(), '{org}', 'apiKey', '{key}', {REQUESTS_PER_MINUTE}, {TOKENS_PER_MINUTE}"
        ),
    )?;
    Ok(())
}

/// Asks until an answer shows every rule set above (the server caches rules for a
/// second), and returns that answer and how many calls it took (each one allowed).
async fn check_limits_apply(client: &reqwest::Client, url: &str, tenant: &Tenant) -> anyhow::Result<(Value, u64)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (status, body) =
            post_authorize(client, url, &tenant.key, &request_body(&format!("check-{attempt}"), 7)).await?;
        let answer: Value = serde_json::from_slice(&body)
            .with_context(|| format!("authorize answered {status}: {}", String::from_utf8_lossy(&body)))?;
        if !allowed(status, &body) {
            bail!("authorize answered {status}: {answer}");
        }
        let scope = |i: usize| &answer["scopes"][i];
        let applied = answer["scopes"].as_array().map_or(0, Vec::len) == 4
            && scope(0)["scope"] == "organization"
            && scope(0)["budget"]["hardLimit"] == true
            && scope(1)["scope"] == "project"
            && scope(2)["scope"] == "apiKey"
            && scope(2)["requestsPerMinute"]["limit"] == REQUESTS_PER_MINUTE
            && scope(2)["tokensPerMinute"]["limit"] == TOKENS_PER_MINUTE
            && scope(3)["scope"] == "customer"
            && scope(3)["budget"]["hardLimit"] == true
            && scope(3)["requestsPerMinute"]["limit"] == REQUESTS_PER_MINUTE;
        if applied {
            return Ok((answer, attempt));
        }
        if Instant::now() > deadline {
            bail!("after 10 s the authorize answer still does not show the budgets and rate limits: {answer}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A wrk script: unique `requestId`s (run, invocation, thread, counter), customers in
/// turn, and a check of every answer (200 with `"allowed":true` and
/// `"degraded":false`). `done` prints one `MPBENCH` line of figures, and a sample of
/// the first refused answer.
fn wrk_script(key: &str, run_id: &str) -> String {
    let body = format!(
        r#"function request()
  counter = counter + 1
  local body = string.format('{{"requestId":"%s%d","user":"customer-%02d","endpoint":"/chat/completions","provider":"openai","model":"gpt-4o","estimatedPromptTokens":{PROMPT_TOKENS},"estimatedCompletionTokens":{COMPLETION_TOKENS}}}', prefix, counter, counter % {CUSTOMERS})
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  checked = checked + 1
  if status ~= 200 or not string.find(body, '"allowed":true', 1, true)
      or not string.find(body, '"degraded":false', 1, true) then
    refused = refused + 1
    if sample == "" then
      sample = status .. " " .. string.gsub(string.sub(body, 1, 400), "%s", " ")
    end
  end
end"#
    );
    common::wrk::script("benches/authorize.rs", key, &format!("wrk-{run_id}-"), false, &body)
}

/// Saturation from wrk; every answer must be 200 with `"allowed":true` and
/// `"degraded":false`.
fn run_wrk(settings: &Settings, url: &str, script: &Path, secs: u64, label: &str) -> anyhow::Result<WrkResult> {
    let result = common::wrk::run_wrk(&WrkLoad {
        threads: settings.threads,
        connections: settings.connections,
        timeout: "5s",
        url,
        script,
        secs,
        label,
        think_ms: 0,
    })?;
    if result.refused > 0 || result.non_2xx > 0 {
        bail!(
            "{} of {} answers were not 200 with \"allowed\":true and \"degraded\":false ({} non-2xx); the first: {}",
            result.refused,
            result.checked,
            result.non_2xx,
            result.sample
        );
    }
    Ok(result)
}

/// Open-loop load at a fixed rate, so that a slow answer does not delay the requests
/// behind it (no coordinated omission).
struct FixedRate {
    sent: usize,
    allowed: usize,
    /// Answers that were not 200, allowed and not degraded, and transport errors.
    refused: usize,
    errors: usize,
    first_failure: Option<String>,
    /// From each request's scheduled time to its answer, sorted.
    from_schedule: Vec<Duration>,
    /// From each request's actual send to its answer, sorted.
    service: Vec<Duration>,
    /// How late the generator sent, sorted.
    lag: Vec<Duration>,
    /// First to last scheduled send.
    span: Duration,
}

impl FixedRate {
    fn achieved_rate(&self) -> f64 {
        self.sent as f64 / self.span.as_secs_f64().max(1e-9)
    }

    fn p_ms(&self, q: f64) -> f64 {
        quantile_ms(&self.from_schedule, q).unwrap_or(f64::NAN)
    }
}

enum Outcome {
    Allowed,
    Refused(String),
    Failed(String),
}

/// Request `i` is due at `i / rate` seconds after the start. A pacing thread sleeps
/// until each due time and hands the request to the runtime, which sends it at once;
/// latency counts from the due time. (tokio's own timer has a 1 ms grain: sleeping on
/// it made the generator itself about a millisecond late.)
async fn fixed_rate(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    rate: u64,
    secs: u64,
    run_id: &str,
) -> anyhow::Result<FixedRate> {
    let total = rate * secs;
    let start = Instant::now() + Duration::from_millis(20);
    let (due_tx, mut due_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let pacer = std::thread::spawn(move || {
        for i in 0..total {
            let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if due_tx.send((i, due)).is_err() {
                break;
            }
        }
    });
    let mut handles = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    while let Some((i, due)) = due_rx.recv().await {
        let customer = usize::try_from(i % CUSTOMERS as u64).unwrap_or(0);
        let body = request_body(&format!("fixed-{run_id}-{i}"), customer);
        let (client, url, key) = (client.clone(), url.to_owned(), key.to_owned());
        handles.push(tokio::spawn(async move {
            let sent = Instant::now();
            let answer = async {
                let response = client
                    .post(&url)
                    .header("x-api-key", key)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                let status = response.status();
                Ok::<_, reqwest::Error>((status, response.bytes().await?))
            }
            .await;
            let done = Instant::now();
            let outcome = match answer {
                Ok((status, bytes)) if allowed(status, &bytes) => Outcome::Allowed,
                Ok((status, bytes)) => Outcome::Refused(format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(400)])
                )),
                Err(e) => Outcome::Failed(e.to_string()),
            };
            (done - due, done - sent, sent.saturating_duration_since(due), outcome)
        }));
    }
    pacer.join().map_err(|_| anyhow!("the pacing thread panicked"))?;
    let span = Duration::from_nanos(total.saturating_sub(1) * 1_000_000_000 / rate).max(Duration::from_millis(1));
    let mut result = FixedRate {
        sent: handles.len(),
        allowed: 0,
        refused: 0,
        errors: 0,
        first_failure: None,
        from_schedule: Vec::with_capacity(handles.len()),
        service: Vec::with_capacity(handles.len()),
        lag: Vec::with_capacity(handles.len()),
        span,
    };
    for handle in handles {
        let (from_schedule, service, lag, outcome) = handle.await.map_err(|e| anyhow!("a sender task failed: {e}"))?;
        result.from_schedule.push(from_schedule);
        result.service.push(service);
        result.lag.push(lag);
        match outcome {
            Outcome::Allowed => result.allowed += 1,
            Outcome::Refused(text) => {
                result.refused += 1;
                result.first_failure.get_or_insert(text);
            }
            Outcome::Failed(text) => {
                result.errors += 1;
                result.first_failure.get_or_insert(text);
            }
        }
    }
    result.from_schedule.sort();
    result.service.sort();
    result.lag.sort();
    if result.refused + result.errors > 0 {
        bail!(
            "fixed rate: {} answers refused and {} requests failed of {}; the first: {}",
            result.refused,
            result.errors,
            result.sent,
            result.first_failure.as_deref().unwrap_or("-")
        );
    }
    Ok(result)
}

/// The same script, key shape and arguments the server sends for one of the bench's
/// calls, for `redis-benchmark`.
struct Baseline {
    /// `EVALSHA <sha> <numkeys> <keys…> <args…>`
    evalsha_args: Vec<String>,
}

/// Loads the authorize script (`SCRIPT LOAD`, as the server's first call does) and
/// builds an EVALSHA of one call of the bench: 4 scopes (organization and customer
/// with a hard monthly budget, the API key with both rate limits, the customer with
/// a requests-per-minute limit), 3 + 4 × 4 keys under the run's prefix and a hash tag
/// of their own (an organization id that exists only here, so the baseline's
/// reservations stay apart from the server's), and a new random request id per call
/// (`__rand_int__`), so every call adds a reservation as a real call does.
fn prepare_baseline(redis_url: &str, prefix: &str, estimated_cost: Decimal) -> anyhow::Result<Baseline> {
    let client = redis::Client::open(redis_url)?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(5))?;
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(AUTHORIZE_SCRIPT)
        .query(&mut conn)
        .context("SCRIPT LOAD")?;
    let expected = redis::Script::new(AUTHORIZE_SCRIPT).get_hash().to_owned();
    if sha != expected {
        bail!("SCRIPT LOAD answered {sha}, the server's script hashes to {expected}");
    }

    let now = Utc::now();
    let org = Uuid::new_v4();
    let keys = OrgKeys::new(prefix, org);
    redis::cmd("SET").arg(keys.ready()).arg(1).exec(&mut conn)?;
    let monthly = period_tag(BudgetPeriod::Monthly, now);
    let budget = to_micros(Decimal::from(BUDGET_USD)).ok_or_else(|| anyhow!("budget out of range"))?;
    // (scope, its spend counter's period tag, budget micro-USD, hard, rpm, tpm), as
    // `Counters::authorize` sends them; -1: none.
    let scopes = [
        (BudgetScope::Organization, monthly.clone(), budget, 1, -1, -1),
        (BudgetScope::Project, "t".to_owned(), -1, 0, -1, -1),
        (
            BudgetScope::ApiKey,
            "t".to_owned(),
            -1,
            0,
            REQUESTS_PER_MINUTE,
            TOKENS_PER_MINUTE,
        ),
        (BudgetScope::Customer, monthly, budget, 1, REQUESTS_PER_MINUTE, -1),
    ];
    let minute = minute_of(now);
    let mut key_list = vec![keys.ready(), keys.reservations_by_expiry(), keys.reservations()];
    let mut arg_list: Vec<String> = vec![
        now.timestamp_millis().to_string(),
        "redis-bench-__rand_int__".to_owned(),
        to_micros(estimated_cost)
            .ok_or_else(|| anyhow!("estimate out of range"))?
            .to_string(),
        (PROMPT_TOKENS + COMPLETION_TOKENS).to_string(),
        (now.timestamp_millis() + 600_000).to_string(),
        MINUTE_WINDOW_MS.to_string(),
    ];
    for (kind, period, amount, hard, rpm, tpm) in scopes {
        let scope = ScopeRef {
            kind,
            id: if kind == BudgetScope::Organization {
                org
            } else {
                Uuid::new_v4()
            },
        };
        key_list.extend([
            keys.spend(scope, &period),
            keys.reserved(scope),
            keys.requests_in_minute(scope, minute),
            keys.tokens_in_minute(scope, minute),
        ]);
        arg_list.extend([amount.to_string(), hard.to_string(), rpm.to_string(), tpm.to_string()]);
    }
    let mut evalsha_args = vec!["EVALSHA".to_owned(), sha, key_list.len().to_string()];
    evalsha_args.extend(key_list);
    evalsha_args.extend(arg_list);

    // One call by hand: the script must allow it, as it allows the server's calls.
    let reply: Vec<redis::Value> = redis::cmd(&evalsha_args[0])
        .arg(&evalsha_args[1..])
        .query(&mut conn)
        .context("trying the baseline EVALSHA")?;
    let verdict: String = reply
        .first()
        .map(redis::from_redis_value_ref)
        .transpose()?
        .unwrap_or_default();
    if verdict != "allow" || reply.len() != 3 + 4 * 4 {
        bail!("the baseline EVALSHA answered {reply:?}");
    }
    Ok(Baseline { evalsha_args })
}

/// (calls, microseconds) Redis spent in EVALSHA since its start (`INFO commandstats`),
/// every client's together.
fn evalsha_stats(redis_url: &str) -> anyhow::Result<(u64, u64)> {
    let client = redis::Client::open(redis_url)?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(5))?;
    let info: String = redis::cmd("INFO").arg("commandstats").query(&mut conn)?;
    let Some(line) = info.lines().find_map(|l| l.strip_prefix("cmdstat_evalsha:")) else {
        return Ok((0, 0));
    };
    let field = |name: &str| -> u64 {
        line.split(',')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("calls"), field("usec")))
}

/// Microseconds per EVALSHA between two [`evalsha_stats`] readings.
fn per_call_us(before: (u64, u64), after: (u64, u64)) -> f64 {
    let calls = after.0.saturating_sub(before.0);
    after.1.saturating_sub(before.1) as f64 / calls.max(1) as f64
}

/// How many reservations the organization holds, and the bytes Redis uses for them
/// (`MEMORY USAGE` of the hash of records and the sorted set of expiries, estimated
/// from 1,000 elements: counting all of them blocks a shared Redis for a while).
fn reservations(redis_url: &str, prefix: &str, org: Uuid) -> anyhow::Result<(u64, u64)> {
    let client = redis::Client::open(redis_url)?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(5))?;
    let keys = OrgKeys::new(prefix, org);
    let count: u64 = redis::cmd("HLEN").arg(keys.reservations()).query(&mut conn)?;
    let mut bytes = 0;
    for key in [keys.reservations(), keys.reservations_by_expiry()] {
        let used: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .arg("SAMPLES")
            .arg(1_000)
            .query(&mut conn)?;
        bytes += used.unwrap_or(0);
    }
    Ok((count, bytes))
}

/// The Redis of `REDIS_URL`, as `redis-benchmark` options.
struct RedisTarget {
    options: Vec<String>,
}

struct RedisBench {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl RedisTarget {
    fn from_url(redis_url: &str) -> anyhow::Result<Self> {
        let url = url::Url::parse(redis_url).with_context(|| format!("REDIS_URL {redis_url}"))?;
        if url.scheme() != "redis" {
            bail!("the bench drives redis-benchmark over TCP: REDIS_URL must be redis://…, not {redis_url}");
        }
        let mut options = vec![
            "-h".to_owned(),
            url.host_str().unwrap_or("127.0.0.1").to_owned(),
            "-p".to_owned(),
            url.port().unwrap_or(6379).to_string(),
        ];
        if let Some(password) = url.password() {
            if !url.username().is_empty() {
                options.extend(["--user".to_owned(), url.username().to_owned()]);
            }
            options.extend(["-a".to_owned(), password.to_owned()]);
        }
        if let Some(db) = url
            .path()
            .trim_start_matches('/')
            .parse::<u32>()
            .ok()
            .filter(|db| *db != 0)
        {
            options.extend(["--dbnum".to_owned(), db.to_string()]);
        }
        Ok(Self { options })
    }

    fn args(&self, settings: &Settings, command: &[String], random: bool) -> Vec<String> {
        let mut args = self.options.clone();
        args.extend([
            "-c".to_owned(),
            settings.connections.to_string(),
            "-n".to_owned(),
            settings.redis_requests.to_string(),
        ]);
        if random {
            args.extend(["-r".to_owned(), "1000000000".to_owned()]);
        }
        args.push("--csv".to_owned());
        args.extend(command.iter().cloned());
        args
    }

    /// The command as it can be pasted into a shell (passwords masked).
    fn command_line(&self, settings: &Settings, command: &[String], random: bool) -> String {
        let mut masked = false;
        let words: Vec<String> = self
            .args(settings, command, random)
            .into_iter()
            .map(|w| {
                let word = if masked { "***".to_owned() } else { w };
                masked = word == "-a";
                if word.contains(['{', '}']) {
                    format!("'{word}'")
                } else {
                    word
                }
            })
            .collect();
        format!("redis-benchmark {}", words.join(" "))
    }

    fn bench(&self, settings: &Settings, command: &[String], random: bool) -> anyhow::Result<RedisBench> {
        let out = Command::new("redis-benchmark")
            .args(self.args(settings, command, random))
            .stdin(Stdio::null())
            .output()
            .context("running redis-benchmark")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "redis-benchmark {} failed ({}): {stdout}{}",
                command[0],
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",
        // "p95_latency_ms","p99_latency_ms","max_latency_ms"; the test name (the
        // command) may hold anything, so the numbers are read from the right.
        let line = stdout
            .lines()
            .rfind(|l| !l.starts_with("\"test\"") && l.contains(','))
            .ok_or_else(|| anyhow!("redis-benchmark printed no figures: {stdout}"))?;
        let numbers: Vec<f64> = line
            .rsplitn(8, ',')
            .take(7)
            .map(|f| f.trim().trim_matches('"').parse::<f64>())
            .collect::<Result<_, _>>()
            .with_context(|| format!("redis-benchmark figures: {line}"))?;
        // Reversed: max, p99, p95, p50, min, avg, rps.
        if numbers.len() != 7 {
            bail!("redis-benchmark figures: {line}");
        }
        if stdout.contains("ERR") || String::from_utf8_lossy(&out.stderr).contains("ERR") {
            bail!("redis-benchmark {} reported an error: {stdout}", command[0]);
        }
        Ok(RedisBench {
            rps: numbers[6],
            p50_ms: numbers[3],
            p99_ms: numbers[1],
        })
    }
}

struct ReportInput<'a> {
    settings: &'a Settings,
    cores: usize,
    sample: &'a Value,
    evalsha_command: &'a str,
    rounds: &'a [Round],
    /// (count, bytes)
    reservations: (u64, u64),
    answered_allowed: u64,
    decisions: i64,
    memory: Option<(u64, u64)>,
}

fn report(input: &ReportInput) {
    let s = input.settings;
    println!();
    println!(
        "authorize benchmark: {CUSTOMERS} customers, 4 scopes per call (organization, project, API key, customer), {} cores",
        input.cores
    );
    println!(
        "  sample answer: {}",
        serde_json::to_string(input.sample).unwrap_or_default()
    );
    println!(
        "  saturation: wrk -t{} -c{} -d{}s --timeout 5s -s <script> (after a {} s warm-up)",
        s.threads, s.connections, s.secs, s.warmup_secs
    );
    println!(
        "  fixed rate: {} requests/s for {} s, open loop, latency from the scheduled send",
        s.rate, s.secs
    );
    println!("  raw Redis : {}", input.evalsha_command);
    println!();
    println!(
        "| round | load avg | authorize req/s | p50 | p99 | EVALSHA/s | authorize / EVALSHA | SET/s | PING/s | at {}/s: p50 | p99 | max |",
        s.rate
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (i, r) in input.rounds.iter().enumerate() {
        println!(
            "| {} | {:.1} | {} | {:.2} ms | {:.2} ms | {} | {:.1} % | {} | {} | {:.2} ms | {:.2} ms | {:.1} ms |",
            i + 1,
            r.load_saturation,
            thousands(r.saturation.rps()),
            r.saturation.p50_ms,
            r.saturation.p99_ms,
            thousands(r.evalsha.rps),
            100.0 * r.saturation.rps() / r.evalsha.rps,
            thousands(r.set.rps),
            thousands(r.ping.rps),
            r.fixed.p_ms(0.5),
            r.fixed.p_ms(0.99),
            r.fixed.p_ms(1.0),
        );
    }
    println!();
    for (i, r) in input.rounds.iter().enumerate() {
        let sat = &r.saturation;
        let c = &r.saturation_cpu;
        println!(
            "round {}: saturation {} requests in {:.1} s, p90 {:.2} ms, max {:.1} ms, {} non-2xx, {} refused, {} socket errors",
            i + 1,
            sat.requests,
            sat.duration_s,
            sat.p90_ms,
            sat.max_ms,
            sat.non_2xx,
            sat.refused,
            sat.socket_errors
        );
        println!(
            "         CPU while saturated: server {:.1} s, redis {:.1} s, postgres {:.1} s, wrk {:.1} s (of {:.1} s = {:.1} s wall x {} cores); per call: server {:.0} µs, redis {:.0} µs, wrk {:.0} µs",
            c.server,
            c.redis,
            c.postgres,
            c.children,
            sat.duration_s * input.cores as f64,
            sat.duration_s,
            input.cores,
            1e6 * c.server / sat.requests.max(1) as f64,
            1e6 * c.redis / sat.requests.max(1) as f64,
            1e6 * c.children / sat.requests.max(1) as f64
        );
        println!(
            "         raw Redis: EVALSHA p50 {:.3} ms p99 {:.3} ms, SET p50 {:.3} ms, PING p50 {:.3} ms",
            r.evalsha.p50_ms, r.evalsha.p99_ms, r.set.p50_ms, r.ping.p50_ms
        );
        println!(
            "         Redis time per authorize script (INFO commandstats): {:.1} µs during the saturation run, {:.1} µs during the raw EVALSHA run",
            r.script_us_http, r.script_us_raw
        );
        let f = &r.fixed;
        let q = |v: &[Duration], p: f64| quantile_ms(v, p).unwrap_or(f64::NAN);
        let c = &r.fixed_cpu;
        println!(
            "         fixed rate: {} sent at {} requests/s, {} allowed; from schedule p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.1} ms; from actual send p50 {:.2} p99 {:.2} ms; generator lag p99 {:.2} ms",
            f.sent,
            thousands(f.achieved_rate()),
            f.allowed,
            f.p_ms(0.5),
            f.p_ms(0.9),
            f.p_ms(0.99),
            f.p_ms(0.999),
            f.p_ms(1.0),
            q(&f.service, 0.5),
            q(&f.service, 0.99),
            q(&f.lag, 0.99),
        );
        let (answered, fast) = r.fixed_server_side;
        println!(
            "         server-side (its /metrics histogram): {} of {answered} answers over 5 ms ({:.2} %)",
            answered.saturating_sub(fast),
            100.0 * answered.saturating_sub(fast) as f64 / answered.max(1) as f64
        );
        println!(
            "         CPU at the fixed rate: server {:.1} s, redis {:.1} s, postgres {:.1} s, bench {:.1} s; load average {:.1} before it",
            c.server, c.redis, c.postgres, c.client, r.load_fixed
        );
    }
    println!();
    let best_rps = input.rounds.iter().map(|r| r.saturation.rps()).fold(0.0, f64::max);
    let worst_p99 = input.rounds.iter().map(|r| r.fixed.p_ms(0.99)).fold(0.0, f64::max);
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    println!(
        "target ≥ {} requests/s at saturation: {} (best round {})",
        thousands(TARGET_RPS),
        verdict(best_rps >= TARGET_RPS),
        thousands(best_rps)
    );
    println!(
        "target p99 < {TARGET_P99_MS} ms at {}/s: {} (worst round {:.2} ms)",
        s.rate,
        verdict(worst_p99 < TARGET_P99_MS),
        worst_p99
    );
    let (held, bytes) = input.reservations;
    println!(
        "reservations held in Redis: {held} (allowed answers counted by the bench: {}; wrk does not count calls cut off at its end), {:.0} MB = {:.0} bytes each",
        input.answered_allowed,
        bytes as f64 / 1e6,
        bytes as f64 / held.max(1) as f64
    );
    println!(
        "decision log rows: {} (every denial and 1 in 100 allowed calls by default)",
        input.decisions
    );
    match input.memory {
        Some((hwm_kb, rss_kb)) => println!(
            "server peak RSS: {:.0} MB (VmHWM; VmRSS after the load {:.0} MB)",
            hwm_kb as f64 / 1024.0,
            rss_kb as f64 / 1024.0
        ),
        None => println!("server peak RSS: unknown"),
    }
}
