//! Ingest throughput: usage events per second through `POST /v1/usage/batch` of a
//! release build, against a raw PostgreSQL `COPY` of the same rows measured in the
//! same run. See `benches/README.md` for the method and the knobs.
//!
//! `cargo bench --bench ingest` runs it; any other invocation (e.g. `cargo test
//! --all-targets`) only prints how to run it.

mod common;

use std::{
    collections::HashMap,
    fs::File,
    io::{BufWriter, Write},
    process::ExitCode,
    str::FromStr,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, SecondsFormat, Utc};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use common::{create_tenant, psql, psql_i64, quantile_ms, thousands, wait_ready, CpuSample, Harness};

/// The catalog `meterplane load-prices` loads; used to price the COPY rows alike.
const PRICES: &str = include_str!("../data/prices.json");
const MAX_BATCH: usize = 1_000;

/// (provider, model, weight in percent); all six are in the bundled catalog.
const MODELS: [(&str, &str, u32); 6] = [
    ("openai", "gpt-4o", 15),
    ("openai", "gpt-4o-mini", 30),
    ("anthropic", "claude-sonnet-4-5", 20),
    ("anthropic", "claude-haiku-4-5", 15),
    ("google", "gemini-2.5-flash", 12),
    ("mistral", "mistral-small-latest", 8),
];
const CUSTOMERS: usize = 50;
const AGENTS: usize = 5;
const ERROR_CODES: [&str; 3] = ["rate_limited", "upstream_timeout", "context_length_exceeded"];

fn main() -> ExitCode {
    if !std::env::args().any(|a| a == "--bench") {
        println!("ingest benchmark: not run (start it with `cargo bench --bench ingest`)");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ingest benchmark FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Settings {
    events: usize,
    batch: usize,
    concurrency: usize,
    admin_url: String,
    redis_url: String,
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        let settings = Self {
            events: common::env_or("MP_BENCH_EVENTS", 1_000_000)?,
            batch: common::env_or("MP_BENCH_BATCH", MAX_BATCH)?,
            concurrency: common::env_or("MP_BENCH_CONCURRENCY", 4)?,
            admin_url: common::admin_url()?,
            redis_url: common::redis_url()?,
        };
        if settings.events == 0 {
            bail!("MP_BENCH_EVENTS must be at least 1");
        }
        if !(1..=MAX_BATCH).contains(&settings.batch) {
            bail!("MP_BENCH_BATCH must be 1 to {MAX_BATCH} (the endpoint's limit)");
        }
        if !(1..=256).contains(&settings.concurrency) {
            bail!("MP_BENCH_CONCURRENCY must be 1 to 256");
        }
        Ok(settings)
    }
}

fn step(message: &str) {
    eprintln!("[ingest bench] {message}");
}

/// A keep-alive client that drops connections idle for 2 s, below the server's
/// keep-alive (5 s), so a lull between batches cannot leave it holding one the server
/// is about to close.
fn http_client(connections: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .pool_idle_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(300))
        .build()?)
}

fn run() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut harness = Harness::new("ingest", &settings.admin_url);
    let server = harness.start_server(&settings.redis_url, &[])?;
    let csv_path = std::env::temp_dir().join(format!("mp_bench_{}.csv", server.tag));
    harness.remove_later(csv_path.clone());
    let server_pid = server.pid;
    let db_url = server.db_url.clone();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the load generator's runtime")?;
    // Only for setting up: the load gets a client of its own, made after the bodies
    // are generated, so no connection of the setup waits through the generation (the
    // server closes connections idle for 5 s, actix's keep-alive; generating a million
    // events takes longer than that, and a request sent on a connection the server has
    // just closed fails with "connection closed before message completed").
    let setup_client = http_client(1)?;

    // The log is kept on failure; its end goes into the error.
    if let Err(e) = runtime.block_on(wait_ready(&setup_client, &server, &mut harness)) {
        return Err(harness.server_failed(&server, &format!("{e:#}")));
    }
    let tenant = runtime
        .block_on(create_tenant(&setup_client, &server))
        .context("creating the bench tenant")?;
    drop(setup_client);

    step(&format!(
        "generating {} events in batches of {} (not timed)",
        settings.events, settings.batch
    ));
    let generated = Instant::now();
    let bodies = generate(&settings, tenant.org_id, &csv_path)?;
    step(&format!(
        "generated {} request bodies, {:.1} MB, in {:.1} s",
        bodies.len(),
        bodies.iter().map(|b| b.1.len()).sum::<usize>() as f64 / 1e6,
        generated.elapsed().as_secs_f64()
    ));
    let client = http_client(settings.concurrency)?;

    step(&format!(
        "sending {} events with {} requests in flight (timed)",
        settings.events, settings.concurrency
    ));
    let cpu_before = CpuSample::take(server_pid);
    let load = match runtime.block_on(send_all(
        &client,
        &server.base,
        &tenant.key,
        bodies,
        settings.concurrency,
        settings.events,
    )) {
        Ok(load) => load,
        Err(e) => return Err(harness.server_failed(&server, &format!("{e:#}"))),
    };
    let cpu = CpuSample::take(server_pid).since(&cpu_before);
    let memory = common::read_memory(server_pid);

    let stored = psql_i64(&db_url, "SELECT count(*) FROM usage_events")?;
    let rolled_up = psql_i64(&db_url, "SELECT coalesce(sum(requests), 0)::bigint FROM usage_daily")?;
    let rollup_rows = psql_i64(&db_url, "SELECT count(*) FROM usage_daily")?;
    let hourly = psql_i64(&db_url, "SELECT coalesce(sum(requests), 0)::bigint FROM usage_hourly")?;
    let hourly_rows = psql_i64(&db_url, "SELECT count(*) FROM usage_hourly")?;
    println!("SELECT count(*) FROM usage_events      -> {stored}");
    println!("SELECT sum(requests) FROM usage_daily  -> {rolled_up} (over {rollup_rows} roll-up rows)");
    println!("SELECT sum(requests) FROM usage_hourly -> {hourly} (over {hourly_rows} roll-up rows)");
    let sent = settings.events as i64;
    if stored != sent || rolled_up != sent || hourly != sent {
        bail!(
            "{sent} events were accepted but usage_events holds {stored}, usage_daily sums to {rolled_up} \
             and usage_hourly to {hourly}"
        );
    }

    let server_log_lines = harness.stop_server_and_check_log(&server);

    step("COPY baseline: loading the same rows into an unindexed table (timed: the \\copy only)");
    psql(
        &db_url,
        // Every column of a stored event, without its partitioning, indexes or checks.
        "CREATE TABLE bench_copy (LIKE usage_events)",
    )?;
    let copy_command = format!("\\copy bench_copy FROM '{}' WITH (FORMAT csv)", csv_path.display());
    let copy_started = Instant::now();
    psql(&db_url, &copy_command)?;
    let copy_secs = copy_started.elapsed().as_secs_f64();
    let copied = psql_i64(&db_url, "SELECT count(*) FROM bench_copy")?;
    if copied != sent {
        bail!("COPY loaded {copied} rows, expected {sent}");
    }

    let http_rate = settings.events as f64 / load.elapsed.as_secs_f64();
    let copy_rate = settings.events as f64 / copy_secs;
    let latency =
        |q: f64| -> String { quantile_ms(&load.latencies, q).map_or("-".to_owned(), |ms| format!("{ms:.0} ms")) };
    let wall = load.elapsed.as_secs_f64();
    println!();
    println!(
        "ingest benchmark: {} events, batch {}, concurrency {}, {} cores",
        settings.events, settings.batch, settings.concurrency, cores
    );
    println!(
        "HTTP batch ingest : {} events in {:.1} s = {} events/s",
        settings.events,
        wall,
        thousands(http_rate)
    );
    println!(
        "  batch latency   : p50 {}, p90 {}, p99 {}, max {}",
        latency(0.5),
        latency(0.9),
        latency(0.99),
        latency(1.0)
    );
    println!(
        "  CPU while timed : server {:.1} s, postgres {:.1} s, load generator {:.1} s (of {:.1} s = {:.1} s wall x {} cores)",
        cpu.server,
        cpu.postgres,
        cpu.client,
        wall * cores as f64,
        wall,
        cores
    );
    println!(
        "PostgreSQL COPY   : {} rows   in {:.1} s = {} rows/s (unindexed table, same rows)",
        settings.events,
        copy_secs,
        thousands(copy_rate)
    );
    println!(
        "ratio             : HTTP = {:.1} % of COPY",
        100.0 * http_rate / copy_rate
    );
    match memory {
        Some((hwm_kb, rss_kb)) => println!(
            "server peak RSS   : {:.0} MB (VmHWM; VmRSS after the load {:.0} MB)",
            hwm_kb as f64 / 1024.0,
            rss_kb as f64 / 1024.0
        ),
        None => println!("server peak RSS   : unknown (no /proc/{server_pid}/status)"),
    }
    if server_log_lines > 0 {
        println!(
            "server log        : {server_log_lines} lines at warn level or above in {}",
            server.log_path.display()
        );
    }
    Ok(())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    request_id: &'a str,
    endpoint: &'a str,
    provider: &'static str,
    model: &'static str,
    user: &'a str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'static str>,
    prompt_tokens: i64,
    completion_tokens: i64,
    cached_tokens: i64,
    latency_ms: i64,
    time_to_first_token_ms: i64,
    cache_hit: bool,
    started_at: &'a str,
}

struct Rates {
    input: Decimal,
    output: Decimal,
    cached: Decimal,
}

/// Per-million-token prices of the bench's models, from the bundled catalog.
fn catalog() -> anyhow::Result<HashMap<(&'static str, &'static str), Rates>> {
    let entries: Vec<Value> = serde_json::from_str(PRICES).context("parsing data/prices.json")?;
    let decimal = |entry: &Value, field: &str| -> anyhow::Result<Decimal> {
        let text = entry
            .get(field)
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("price entry without {field}: {entry}"))?;
        Decimal::from_str(text).with_context(|| format!("{field}: {text}"))
    };
    let mut rates = HashMap::new();
    for (provider, model, _) in MODELS {
        // The newest version of the model's price.
        let entry = entries
            .iter()
            .filter(|e| e["provider"] == provider && e["model"] == model)
            .max_by_key(|e| e["validFrom"].as_str().unwrap_or("").to_owned())
            .ok_or_else(|| anyhow!("{provider}/{model} is not in data/prices.json"))?;
        rates.insert(
            (provider, model),
            Rates {
                input: decimal(entry, "inputPerMtok")?,
                output: decimal(entry, "outputPerMtok")?,
                cached: decimal(entry, "cachedInputPerMtok")?,
            },
        );
    }
    Ok(rates)
}

fn money(tokens: i64, per_mtok: Decimal) -> Decimal {
    (Decimal::from(tokens) * per_mtok / Decimal::from(1_000_000))
        .round_dp_with_strategy(10, RoundingStrategy::MidpointAwayFromZero)
}

/// Builds every request body (serialized JSON) and writes the same events as CSV rows
/// for the COPY baseline. Deterministic for a given event count and start time.
/// Returns (events in the body, body) per batch.
fn generate(settings: &Settings, org_id: Uuid, csv_path: &std::path::Path) -> anyhow::Result<Vec<(usize, Vec<u8>)>> {
    let rates = catalog()?;
    let mut rng = StdRng::seed_from_u64(0x6d65_7465_7270_6c61);
    let now: DateTime<Utc> = Utc::now();
    let run = Uuid::new_v4().simple().to_string();
    let customers: Vec<String> = (0..CUSTOMERS).map(|i| format!("customer-{i:02}")).collect();
    let agent_endpoints: Vec<String> = (1..=AGENTS).map(|i| format!("/a2a/agent-{i}")).collect();
    let weight_total: u32 = MODELS.iter().map(|m| m.2).sum();

    let mut csv = BufWriter::with_capacity(
        1 << 20,
        File::create(csv_path).with_context(|| format!("creating {}", csv_path.display()))?,
    );
    let mut bodies = Vec::with_capacity(settings.events.div_ceil(settings.batch));
    let mut body = Vec::new();
    let mut in_body = 0usize;
    for i in 0..settings.events {
        let request_id = format!("bench-{run}-{i:08}");
        // Skewed towards the first customers, as real tenants are.
        let customer = &customers[((rng.random::<f64>().powi(2)) * CUSTOMERS as f64) as usize];
        let agent = rng.random_bool(0.3).then(|| rng.random_range(0..AGENTS));
        let endpoint = agent.map_or("/chat/completions", |a| agent_endpoints[a].as_str());
        let mut pick = rng.random_range(0..weight_total);
        let (provider, model, _) = MODELS
            .iter()
            .copied()
            .find(|m| {
                if pick < m.2 {
                    true
                } else {
                    pick -= m.2;
                    false
                }
            })
            .unwrap_or(MODELS[0]);
        let failed = rng.random_bool(0.03);
        let cache_hit = rng.random_bool(0.10);
        let prompt_tokens: i64 = rng.random_range(50..8_000);
        let completion_tokens: i64 = if failed { 0 } else { rng.random_range(10..2_000) };
        let cached_tokens = if cache_hit || rng.random_bool(0.2) {
            rng.random_range(0..=prompt_tokens)
        } else {
            0
        };
        let latency_ms: i64 = if cache_hit {
            rng.random_range(5..80)
        } else {
            rng.random_range(150..9_000)
        };
        let ttft_ms = rng.random_range(0..=latency_ms.min(1_500));
        let started = now - chrono::Duration::milliseconds(rng.random_range(0..3_600_000));
        let started_at = started.to_rfc3339_opts(SecondsFormat::Millis, true);
        let error_code = failed.then(|| ERROR_CODES[rng.random_range(0..ERROR_CODES.len())]);
        let event = Event {
            request_id: &request_id,
            endpoint,
            provider,
            model,
            user: customer,
            status: if failed { "error" } else { "success" },
            error_code,
            prompt_tokens,
            completion_tokens,
            cached_tokens,
            latency_ms,
            time_to_first_token_ms: ttft_ms,
            cache_hit,
            started_at: &started_at,
        };

        if in_body == 0 {
            body = Vec::with_capacity(settings.batch * 420);
            body.extend_from_slice(b"{\"events\":[");
        } else {
            body.push(b',');
        }
        serde_json::to_writer(&mut body, &event)?;
        in_body += 1;
        if in_body == settings.batch || i + 1 == settings.events {
            body.extend_from_slice(b"]}");
            bodies.push((in_body, std::mem::take(&mut body)));
            in_body = 0;
        }

        // The row as `usage_events` stores it, column for column (the last ten: cache
        // writes, reasoning and audio, tokens then cost, none in this workload).
        let (input, cached, output) =
            rates
                .get(&(provider, model))
                .map_or((Decimal::ZERO, Decimal::ZERO, Decimal::ZERO), |r| {
                    (
                        money(prompt_tokens - cached_tokens, r.input),
                        money(cached_tokens, r.cached),
                        money(completion_tokens, r.output),
                    )
                });
        let cost = input + cached + output;
        writeln!(
            csv,
            "{org_id},{},{started_at},{request_id},{org_id},{org_id},{},{},{endpoint},{provider},{model},{},{},\
             {prompt_tokens},{completion_tokens},{cached_tokens},0,{latency_ms},{ttft_ms},{cache_hit},0,{started_at},,\
             \"{{\"\"bench\"\":true}}\",,,false,credits,false,{},{input},{output},{cached},0,0,0,{cost},,0,0,{cost},{started_at},\
             {model},,,,,,,0,0,0,0,0,0,0,0,0,0,0,0,0",
            Uuid::now_v7(),
            Uuid::now_v7(),
            agent.map_or(String::new(), |_| Uuid::now_v7().to_string()),
            event.status,
            error_code.unwrap_or(""),
            Uuid::now_v7(),
        )?;
    }
    // On disk before the timed part, so its write-back does not compete with the load.
    csv.into_inner()
        .map_err(|e| anyhow!("writing the CSV: {e}"))?
        .sync_all()?;
    Ok(bodies)
}

#[derive(Deserialize)]
struct BatchReply {
    accepted: usize,
    duplicates: usize,
    conflicts: usize,
    rejected: usize,
}

struct Load {
    elapsed: Duration,
    /// Per request, sorted.
    latencies: Vec<Duration>,
}

/// Sends the bodies with `concurrency` requests in flight over kept-alive connections.
async fn send_all(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    bodies: Vec<(usize, Vec<u8>)>,
    concurrency: usize,
    events: usize,
) -> anyhow::Result<Load> {
    let total_batches = bodies.len();
    let queue = Arc::new(Mutex::new(bodies.into_iter().enumerate()));
    let stop = Arc::new(AtomicBool::new(false));
    let done_events = Arc::new(AtomicUsize::new(0));
    let url = format!("{base}/v1/usage/batch");
    let started = Instant::now();

    let progress = {
        let done = done_events.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            tick.tick().await;
            loop {
                tick.tick().await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let n = done.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                step(&format!(
                    "  {n}/{events} events after {secs:.0} s ({} events/s so far)",
                    thousands(n as f64 / secs)
                ));
            }
        })
    };

    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (client, url, key) = (client.clone(), url.clone(), key.to_owned());
        let (queue, stop, done) = (queue.clone(), stop.clone(), done_events.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(total_batches / concurrency + 1);
            loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let next = queue.lock().map_err(|_| anyhow!("poisoned queue"))?.next();
                let Some((index, (count, body))) = next else {
                    break;
                };
                let sent = Instant::now();
                let result = send_batch(&client, &url, &key, index, count, body).await;
                latencies.push(sent.elapsed());
                match result {
                    Ok(n) => {
                        done.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(total_batches);
    let mut failure = None;
    for task in tasks {
        match task.await {
            Ok(Ok(mut l)) => latencies.append(&mut l),
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(e) => failure = failure.or(Some(anyhow!("a sender task failed: {e}"))),
        }
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    progress.abort();
    if let Some(e) = failure {
        return Err(e);
    }
    let sent = done_events.load(Ordering::Relaxed);
    if sent != events {
        bail!("{sent} of {events} events were accepted");
    }
    latencies.sort();
    Ok(Load { elapsed, latencies })
}

/// One batch; fails unless every event in it was stored.
///
/// A request that failed before any answer came (the connection was refused, reset or
/// closed under it) is sent once more on a fresh connection. That is safe: the server
/// stores an event once per `requestId`, so if the first attempt was in fact committed
/// the retry answers its events as duplicates (without conflict), and they count as
/// stored. A request that got an answer is never retried.
async fn send_batch(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    index: usize,
    expected: usize,
    body: Vec<u8>,
) -> anyhow::Result<usize> {
    // Shared, not copied, between the attempts (actix's `Bytes` is the `bytes` crate's).
    let body = actix_web::web::Bytes::from(body);
    let mut retried = false;
    let response = loop {
        let attempt = client
            .post(url)
            .header("x-api-key", key)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        match attempt {
            Ok(response) => break response,
            Err(e) if !retried && !e.is_timeout() && (e.is_connect() || e.is_request()) => {
                step(&format!("  batch {index}: {e:#}; sending it again once"));
                retried = true;
            }
            Err(e) => return Err(anyhow!(e).context(format!("batch {index}: POST /v1/usage/batch"))),
        }
    };
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .with_context(|| format!("batch {index}: reading the answer"))?;
    if status != reqwest::StatusCode::OK {
        bail!(
            "batch {index}: POST /v1/usage/batch answered {status}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(2_000)])
        );
    }
    let reply: BatchReply =
        serde_json::from_slice(&bytes).with_context(|| format!("batch {index}: unexpected answer"))?;
    // Duplicates are this batch's own events only after a retry.
    let stored = reply.accepted + if retried { reply.duplicates } else { 0 };
    if stored != expected || reply.conflicts > 0 {
        let first_refused = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| {
                v["results"]
                    .as_array()?
                    .iter()
                    .find(|r| r["status"] != "accepted")
                    .cloned()
            })
            .map_or_else(|| "-".to_owned(), |r| r.to_string());
        bail!(
            "batch {index}: {} of {expected} events accepted ({} duplicates, {} conflicts, {} rejected{}); first not accepted: {first_refused}",
            reply.accepted,
            reply.duplicates,
            reply.conflicts,
            reply.rejected,
            if retried { ", after a retry" } else { "" }
        );
    }
    Ok(expected)
}
