//! Single usage events: one event per request through `POST /v1/usage` of a release
//! build (`wrk`, a Lua script giving every request a unique `requestId`), at 50 and at
//! 8 connections, beside `pgbench` inserting one event-shaped row per transaction into
//! a table with a unique `(org_id, request_id)` index with the same number of clients,
//! measured in the same run. See `benches/README.md` for the method and the knobs.
//!
//! `cargo bench --bench single` runs it; any other invocation (e.g. `cargo test
//! --all-targets`) only prints how to run it.

mod common;

use std::{
    path::Path,
    process::{Command, ExitCode, Stdio},
    time::Duration,
};

use anyhow::{anyhow, bail, Context};
use uuid::Uuid;

use common::{
    create_tenant, psql, psql_i64, require_tool, thousands, wait_ready,
    wrk::{WrkLoad, WrkResult},
    CpuSample, Harness,
};

const CUSTOMERS: usize = 50;

fn main() -> ExitCode {
    if !std::env::args().any(|a| a == "--bench") {
        println!("single-event benchmark: not run (start it with `cargo bench --bench single`)");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("single-event benchmark FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Settings {
    /// Connections (wrk) and clients (pgbench), one measurement each, in this order.
    connections: Vec<usize>,
    /// Paced runs after those: (connections, events/s in all), each connection waiting
    /// between an answer and its next request, so the server is not saturated and
    /// the latency is a call's own.
    paced: Vec<(usize, u64)>,
    secs: u64,
    warmup_secs: u64,
    admin_url: String,
    redis_url: String,
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        let list: String = common::env_or("MP_BENCH_CONNECTIONS", "50,8".to_owned())?;
        let connections = list
            .split(',')
            .map(|c| {
                c.trim()
                    .parse::<usize>()
                    .map_err(|e| anyhow!("MP_BENCH_CONNECTIONS={list:?}: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if connections.is_empty() || connections.iter().any(|c| !(1..=200).contains(c)) {
            bail!("MP_BENCH_CONNECTIONS must list 1 to 200 connections per run, e.g. 50,8");
        }
        let list: String = common::env_or("MP_BENCH_PACED", "8@200".to_owned())?;
        let paced = list
            .split(',')
            .filter(|p| !p.trim().is_empty() && p.trim() != "off")
            .map(|p| {
                let (c, rate) = p
                    .trim()
                    .split_once('@')
                    .ok_or_else(|| anyhow!("MP_BENCH_PACED={list:?}: CONNECTIONS@EVENTS_PER_S, e.g. 8@200"))?;
                let c: usize = c.parse().map_err(|e| anyhow!("MP_BENCH_PACED={list:?}: {e}"))?;
                let rate: u64 = rate.parse().map_err(|e| anyhow!("MP_BENCH_PACED={list:?}: {e}"))?;
                if !(1..=200).contains(&c) || rate == 0 {
                    bail!("MP_BENCH_PACED={list:?}: 1 to 200 connections and a rate above 0");
                }
                Ok((c, rate))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            connections,
            paced,
            secs: common::env_or("MP_BENCH_SECS", 20)?,
            warmup_secs: common::env_or("MP_BENCH_WARMUP_SECS", 5)?,
            admin_url: common::admin_url()?,
            redis_url: common::redis_url()?,
        })
    }
}

fn run() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    require_tool("wrk", "Debian/Ubuntu: apt-get install -y wrk")?;
    require_tool("pgbench", "Debian/Ubuntu: it comes with the postgresql server package")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut harness = Harness::new("single", &settings.admin_url);
    let server = harness.start_server(&settings.redis_url, &[])?;
    let run_id = server.tag.clone();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the setup runtime")?;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    if let Err(e) = runtime.block_on(wait_ready(&client, &server, &mut harness)) {
        return Err(harness.server_failed(&server, &format!("{e:#}")));
    }
    let tenant = runtime
        .block_on(create_tenant(&client, &server))
        .context("creating the bench tenant")?;
    drop(client);

    let script_path = std::env::temp_dir().join(format!("mp_bench_{run_id}.single.lua"));
    harness.remove_later(script_path.clone());
    std::fs::write(&script_path, wrk_script(&tenant.key, &run_id, false)).context("writing the wrk script")?;
    let paced_path = std::env::temp_dir().join(format!("mp_bench_{run_id}.paced.lua"));
    harness.remove_later(paced_path.clone());
    std::fs::write(&paced_path, wrk_script(&tenant.key, &run_id, true)).context("writing the paced wrk script")?;
    let pgbench_path = std::env::temp_dir().join(format!("mp_bench_{run_id}.pgbench.sql"));
    harness.remove_later(pgbench_path.clone());
    std::fs::write(&pgbench_path, pgbench_script(tenant.org_id)).context("writing the pgbench script")?;
    psql(&server.db_url, BASELINE_TABLE)?;
    let url = format!("{}/v1/usage", server.base);

    let mut rows = Vec::new();
    let mut accepted_total = 0u64;
    harness.step(&format!(
        "warm-up: wrk -c8 for {} s (not reported)",
        settings.warmup_secs
    ));
    let warmup = run_wrk(8, &url, &script_path, settings.warmup_secs, "warmup", 0)
        .map_err(|e| harness.server_failed(&server, &format!("warm-up: {e:#}")))?;
    accepted_total += warmup.checked;
    for &connections in &settings.connections {
        harness.step(&format!(
            "wrk -t{} -c{connections} -d{}s, one event per request (timed)",
            threads(connections),
            settings.secs
        ));
        let before = CpuSample::take(server.pid);
        let http = run_wrk(
            connections,
            &url,
            &script_path,
            settings.secs,
            &format!("c{connections}"),
            0,
        )
        .map_err(|e| harness.server_failed(&server, &format!("{connections} connections: {e:#}")))?;
        let cpu = CpuSample::take(server.pid).since(&before);
        accepted_total += http.checked;
        harness.step(&format!(
            "pgbench -c{connections} -j{} -T{} -M prepared, one row per transaction (timed)",
            threads(connections),
            settings.secs
        ));
        let pg = run_pgbench(connections, &server.db_url, &pgbench_path, settings.secs)?;
        rows.push((connections, http, cpu, pg));
    }
    let mut paced_rows = Vec::new();
    for &(connections, rate) in &settings.paced {
        // Each connection sends one request per `think` plus its answer's latency.
        let think_ms = (connections as u64 * 1000 / rate).max(1);
        harness.step(&format!(
            "wrk -t{} -c{connections} -d{}s paced to about {rate} events/s ({think_ms} ms between an answer and the next request)",
            threads(connections),
            settings.secs
        ));
        let http = run_wrk(
            connections,
            &url,
            &paced_path,
            settings.secs,
            &format!("p{connections}-{rate}"),
            think_ms,
        )
        .map_err(|e| harness.server_failed(&server, &format!("paced {connections} connections: {e:#}")))?;
        accepted_total += http.checked;
        paced_rows.push((connections, rate, http));
    }
    let memory = common::read_memory(server.pid);

    let stored = psql_i64(&server.db_url, "SELECT count(*) FROM usage_events")?;
    let rolled_up = psql_i64(
        &server.db_url,
        "SELECT coalesce(sum(requests), 0)::bigint FROM usage_daily",
    )?;
    println!("SELECT count(*) FROM usage_events     -> {stored} ({accepted_total} answered 201)");
    println!("SELECT sum(requests) FROM usage_daily -> {rolled_up}");
    // wrk does not count the requests it cuts off at the end of a run: those may be
    // stored without their answer having been seen.
    let stored_u = u64::try_from(stored).unwrap_or(0);
    if stored_u < accepted_total || rolled_up != stored {
        bail!("{accepted_total} events were answered 201 but usage_events holds {stored} and usage_daily sums to {rolled_up}");
    }
    let log_lines = harness.stop_server_and_check_log(&server);

    println!();
    println!(
        "single-event benchmark: POST /v1/usage, one event per request, {} s per run, {cores} cores",
        settings.secs
    );
    println!(
        "{:>5}  {:>10}  {:>8}  {:>8}  {:>8}  {:>8}  {:>11}  {:>10}  {:>7}  {:>22}",
        "conns",
        "events/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "pgbench tps",
        "pg avg ms",
        "ratio",
        "CPU-s server/pg/wrk"
    );
    for (connections, http, cpu, pg) in &rows {
        println!(
            "{:>5}  {:>10}  {:>8.1}  {:>8.1}  {:>8.1}  {:>8.1}  {:>11}  {:>10.2}  {:>6.1}%  {:>22}",
            connections,
            thousands(http.rps()),
            http.p50_ms,
            http.p90_ms,
            http.p99_ms,
            http.max_ms,
            thousands(pg.tps),
            pg.latency_avg_ms,
            100.0 * http.rps() / pg.tps,
            format!("{:.1}/{:.1}/{:.1}", cpu.server, cpu.postgres, cpu.children),
        );
    }
    if !paced_rows.is_empty() {
        println!();
        println!("paced (not saturated):");
        println!(
            "{:>5}  {:>11}  {:>10}  {:>8}  {:>8}  {:>8}  {:>8}",
            "conns", "asked/s", "events/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        for (connections, rate, http) in &paced_rows {
            println!(
                "{:>5}  {:>11}  {:>10}  {:>8.1}  {:>8.1}  {:>8.1}  {:>8.1}",
                connections,
                thousands(*rate as f64),
                thousands(http.rps()),
                http.p50_ms,
                http.p90_ms,
                http.p99_ms,
                http.max_ms,
            );
        }
    }
    match memory {
        Some((hwm_kb, rss_kb)) => println!(
            "server peak RSS: {:.0} MB (VmHWM; VmRSS after the load {:.0} MB)",
            hwm_kb as f64 / 1024.0,
            rss_kb as f64 / 1024.0
        ),
        None => println!("server peak RSS: unknown"),
    }
    if log_lines > 0 {
        println!(
            "server log: {log_lines} lines at warn level or above in {}",
            server.log_path.display()
        );
    }
    Ok(())
}

fn threads(connections: usize) -> usize {
    connections.min(2)
}

/// The pgbench baseline's table: the columns a raw event row needs, one unique
/// `(org_id, request_id)` index, as the server's idempotency claim has.
const BASELINE_TABLE: &str = "CREATE TABLE bench_single (
    org_id uuid NOT NULL,
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    occurred_at timestamptz NOT NULL,
    request_id text NOT NULL,
    customer text,
    endpoint text NOT NULL,
    provider text NOT NULL,
    model text NOT NULL,
    status text NOT NULL,
    prompt_tokens bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    cached_tokens bigint NOT NULL,
    latency_ms integer,
    cache_hit boolean NOT NULL,
    cost numeric(20, 10) NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX bench_single_request ON bench_single (org_id, request_id);";

/// One event-shaped row per transaction, unique per transaction (`txid_current()`).
fn pgbench_script(org_id: Uuid) -> String {
    format!(
        "\\set c random(0, {last})
\\set p random(50, 8000)
\\set q random(10, 2000)
INSERT INTO bench_single (org_id, occurred_at, request_id, customer, endpoint, provider, model, status, \
prompt_tokens, completion_tokens, cached_tokens, latency_ms, cache_hit, cost) VALUES ('{org_id}', now(), \
'pg-' || :client_id || '-' || txid_current(), 'customer-' || :c, '/chat/completions', 'openai', 'gpt-4o', \
'success', :p, :q, 0, 840, false, :p * 0.0000025 + :q * 0.00001);
",
        last = CUSTOMERS - 1
    )
}

/// Unique `requestId`s (run, invocation, thread, counter); customers, models and
/// endpoints in turn; a check that every answer is `201`. `done` prints one `MPBENCH`
/// line of figures, and a sample of the first other answer.
fn wrk_script(key: &str, run_id: &str, paced: bool) -> String {
    let body = format!(
        r#"models = {{ {{"openai","gpt-4o"}}, {{"openai","gpt-4o-mini"}}, {{"anthropic","claude-sonnet-4-5"}},
  {{"anthropic","claude-haiku-4-5"}}, {{"google","gemini-2.5-flash"}}, {{"mistral","mistral-small-latest"}} }}

function request()
  counter = counter + 1
  local m = models[(counter % #models) + 1]
  local endpoint = "/chat/completions"
  if counter % 10 < 3 then endpoint = "/a2a/agent-" .. (counter % 5) end
  local prompt = 50 + (counter * 7919) % 7950
  local completion = 10 + (counter * 104729) % 1990
  local body = string.format('{{"requestId":"%s%d","endpoint":"%s","provider":"%s","model":"%s","user":"customer-%02d","promptTokens":%d,"completionTokens":%d,"latencyMs":%d}}',
    prefix, counter, endpoint, m[1], m[2], (counter * 31) % {CUSTOMERS}, prompt, completion, 150 + counter % 9000)
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  checked = checked + 1
  if status ~= 201 then
    refused = refused + 1
    if sample == "" then
      sample = status .. " " .. string.gsub(string.sub(body, 1, 400), "%s", " ")
    end
  end
end"#
    );
    common::wrk::script("benches/single.rs", key, &format!("single-{run_id}-"), paced, &body)
}

/// One wrk run of single events; every answer must be `201`, with no socket error.
fn run_wrk(
    connections: usize,
    url: &str,
    script: &Path,
    secs: u64,
    label: &str,
    think_ms: u64,
) -> anyhow::Result<WrkResult> {
    let result = common::wrk::run_wrk(&WrkLoad {
        threads: threads(connections),
        connections,
        timeout: "10s",
        url,
        script,
        secs,
        label,
        think_ms,
    })?;
    if result.refused > 0 || result.socket_errors > 0 {
        bail!(
            "{} of {} answers were not 201, {} socket errors; the first other answer: {}",
            result.refused,
            result.checked,
            result.socket_errors,
            result.sample
        );
    }
    Ok(result)
}

struct PgBench {
    tps: f64,
    latency_avg_ms: f64,
}

fn run_pgbench(clients: usize, db_url: &str, script: &Path, secs: u64) -> anyhow::Result<PgBench> {
    let out = Command::new("pgbench")
        .args(["-n", "-M", "prepared"])
        .arg(format!("-c{clients}"))
        .arg(format!("-j{}", threads(clients)))
        .arg(format!("-T{secs}"))
        .arg("-f")
        .arg(script)
        .arg(db_url)
        .stdin(Stdio::null())
        .output()
        .context("running pgbench")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "pgbench failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let number_after = |prefix: &str| -> anyhow::Result<f64> {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .ok_or_else(|| anyhow!("pgbench printed no {prefix:?}: {stdout}"))?
            .parse()
            .with_context(|| format!("{prefix} in {stdout}"))
    };
    Ok(PgBench {
        tps: number_after("tps = ")?,
        latency_avg_ms: number_after("latency average = ")?,
    })
}
