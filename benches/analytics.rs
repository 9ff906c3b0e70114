//! Analytics and spend-log reads at scale: a year of generated history for one large
//! organization (plus noise from 100 others) written straight into PostgreSQL with its
//! roll-ups, then the reads timed through HTTP on a release build, each beside the
//! equivalent GROUP BY over the raw events measured in the same run. See
//! `benches/README.md` for the method and the knobs.
//!
//! `cargo bench --bench analytics` runs it; any other invocation (e.g. `cargo test
//! --all-targets`) only prints how to run it.

mod common;

use std::{
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::{json, Value};
use uuid::Uuid;

use meterplane::store::{
    entity_rollups,
    usage::{coarse_from_daily_sql, DailyModels, COARSE_DAILY_TABLES},
};

use common::{create_tenant, post_json, psql, psql_i64, string_at, wait_ready, Harness, SERVER_BIN};

const CUSTOMERS: usize = 5_000;
const AGENTS: usize = 40;
const PROJECTS: usize = 3;
const KEYS_PER_PROJECT: usize = 4;
const NOISE_ORGS: usize = 100;
/// Activity targets of the issue: under this median, and this many times faster than
/// the GROUP BY over raw events.
const TARGET_MS: f64 = 50.0;
const TARGET_RATIO: f64 = 20.0;

fn main() -> ExitCode {
    if !std::env::args().any(|a| a == "--bench") {
        println!("analytics benchmark: not run (start it with `cargo bench --bench analytics`)");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("analytics benchmark FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn step(message: &str) {
    eprintln!("[analytics bench] {message}");
}

fn run() -> anyhow::Result<()> {
    let events: usize = common::env_or("MP_BENCH_EVENTS", 1_000_000)?;
    let runs: usize = common::env_or("MP_BENCH_RUNS", 7)?;
    if events == 0 || runs == 0 {
        bail!("MP_BENCH_EVENTS and MP_BENCH_RUNS must be at least 1");
    }
    let admin_url = common::admin_url()?;
    let redis_url = common::redis_url()?;
    let mut harness = Harness::new("analytics", &admin_url);
    // The bench loads the year itself; the server's purge must not run meanwhile.
    let server = harness.start_server(&redis_url, &[("MP_PURGE_INTERVAL_SECS", "0".to_owned())])?;
    let db_url = server.db_url.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    let client = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(600))
        .build()?;
    if let Err(e) = runtime.block_on(wait_ready(&client, &server, &mut harness)) {
        return Err(harness.server_failed(&server, &format!("{e:#}")));
    }
    let tenant = runtime
        .block_on(create_tenant(&client, &server))
        .context("creating the bench tenant")?;
    let org = tenant.org_id;
    let mut keys = vec![tenant.key_id];
    runtime.block_on(async {
        for p in 0..PROJECTS {
            let project_id = if p == 0 {
                tenant.project_id
            } else {
                let project = post_json(
                    &client,
                    format!("{}/v1/orgs/{org}/projects", server.base),
                    Some(&tenant.token),
                    json!({"name": format!("bench-{p}"), "mode": "credits"}),
                )
                .await?;
                string_at(&project, "/id")?.parse()?
            };
            for k in 0..KEYS_PER_PROJECT {
                if p == 0 && k == 0 {
                    continue;
                }
                let key = post_json(
                    &client,
                    format!("{}/v1/orgs/{org}/projects/{project_id}/keys", server.base),
                    Some(&tenant.token),
                    json!({"name": format!("key-{p}-{k}")}),
                )
                .await?;
                keys.push(string_at(&key, "/id")?.parse::<Uuid>()?);
            }
        }
        anyhow::Ok(())
    })?;

    let loaded = Instant::now();
    step(&format!(
        "loading {events} events over 365 days for one organization, {} for {NOISE_ORGS} others, and their roll-ups (not timed)",
        events / 5
    ));
    load(&db_url, org, events)?;
    step(&format!("loaded in {:.0} s", loaded.elapsed().as_secs_f64()));
    // The statistics as the scheduled purge leaves them (it analyzes stale partitions).
    let out = Command::new(SERVER_BIN)
        .arg("purge")
        .env("DATABASE_URL", &db_url)
        .env("REDIS_URL", &redis_url)
        .env("MP_REDIS_PREFIX", &server.redis_prefix)
        .stdin(Stdio::null())
        .output()
        .context("meterplane purge")?;
    if !out.status.success() {
        bail!("meterplane purge failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    // Roll-ups are not partitioned; the purge vacuums and analyzes them when their
    // statistics are stale, but only after a day's writes: here they were just loaded.
    psql(
        &db_url,
        "VACUUM (ANALYZE) usage_daily, usage_daily_models, usage_entity_rollups",
    )?;

    let org_events = psql_i64(
        &db_url,
        &format!("SELECT count(*) FROM usage_events WHERE org_id = '{org}'"),
    )?;
    let rollup_rows = psql_i64(
        &db_url,
        &format!("SELECT count(*) FROM usage_daily WHERE org_id = '{org}'"),
    )?;
    let ratio_rows = rollup_rows as f64 / org_events as f64;
    for table in COARSE_DAILY_TABLES.into_iter().chain([entity_rollups::TABLE]) {
        let rows = psql_i64(&db_url, &format!("SELECT count(*) FROM {table} WHERE org_id = '{org}'"))?;
        step(&format!("{table} holds {rows} rows for the organization"));
    }
    step(&format!(
        "usage_daily holds {rollup_rows} rows for the organization's {org_events} events ({:.1} %)",
        ratio_rows * 100.0
    ));

    let token = runtime.block_on(common::login(&client, &server))?;
    let base = format!("{}/v1/orgs/{org}", server.base);
    let customer = "cust-00042";
    let agent = "agent-007";
    let model = "gpt-4o-mini";
    let key = keys[keys.len() / 2];
    let mut http_cases: Vec<(String, String)> = vec![
        ("activity, 90 days".into(), format!("{base}/activity?days=90")),
        (
            "customer breakdown, 90 days".into(),
            format!("{base}/activity/customers?days=90"),
        ),
        (
            "agent breakdown, 90 days".into(),
            format!("{base}/activity/agents?days=90"),
        ),
        (
            "endpoint breakdown, 90 days".into(),
            format!("{base}/activity/endpoints?days=90"),
        ),
        (
            "activity summary, 30 days".into(),
            format!("{base}/activity/summary?window=30d"),
        ),
        ("spend log, first page".into(), format!("{base}/spend-logs?limit=50")),
    ];
    for (name, filter) in [
        ("customer", format!("customer={customer}")),
        ("agent", format!("agent={agent}")),
        ("model", format!("model={model}")),
        ("provider", "provider=anthropic".to_owned()),
        ("status=error", "status=error".to_owned()),
        ("apiKeyId", format!("apiKeyId={key}")),
        ("projectId", format!("projectId={}", tenant.project_id)),
    ] {
        http_cases.push((
            format!("spend log, {name}"),
            format!("{base}/spend-logs?limit=50&{filter}"),
        ));
    }
    let baselines: Vec<(&str, String)> = vec![
        (
            "activity, 90 days",
            format!(
                "SELECT (occurred_at AT TIME ZONE 'UTC')::date, canonical_model, count(*), sum(prompt_tokens), \
                 sum(completion_tokens), sum(cached_tokens), sum(cost), sum(input_cost), sum(output_cost), \
                 count(*) FILTER (WHERE status = 'error'), count(*) FILTER (WHERE cache_hit) \
                 FROM usage_events WHERE org_id = '{org}' AND occurred_at >= date_trunc('day', now()) - interval '89 days' \
                 GROUP BY 1, 2"
            ),
        ),
        (
            "customer breakdown, 90 days",
            format!(
                "SELECT customer_id, count(*), sum(prompt_tokens + completion_tokens), sum(cost) FROM usage_events \
                 WHERE org_id = '{org}' AND occurred_at >= date_trunc('day', now()) - interval '89 days' \
                 GROUP BY 1 ORDER BY 4 DESC"
            ),
        ),
        (
            "agent breakdown, 90 days",
            format!(
                "SELECT agent_id, count(*), sum(prompt_tokens + completion_tokens), sum(cost) FROM usage_events \
                 WHERE org_id = '{org}' AND occurred_at >= date_trunc('day', now()) - interval '89 days' \
                 GROUP BY 1 ORDER BY 4 DESC"
            ),
        ),
        (
            "endpoint breakdown, 90 days",
            format!(
                "SELECT CASE WHEN endpoint LIKE '/a2a/%' THEN '/a2a/{{agentId}}' ELSE endpoint END, count(*), \
                 sum(prompt_tokens + completion_tokens), sum(cost) FROM usage_events \
                 WHERE org_id = '{org}' AND occurred_at >= date_trunc('day', now()) - interval '89 days' \
                 GROUP BY 1 ORDER BY 4 DESC"
            ),
        ),
        (
            "activity summary, 30 days",
            format!(
                "SELECT count(*), sum(prompt_tokens), sum(completion_tokens), sum(cost), \
                 percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) FROM usage_events \
                 WHERE org_id = '{org}' AND occurred_at >= date_trunc('day', now()) - interval '29 days'"
            ),
        ),
    ];

    let results = runtime.block_on(async {
        let mut results: Vec<(String, f64, Option<f64>)> = Vec::new();
        for (name, url) in &http_cases {
            results.push((name.clone(), time_get(&client, url, &token, runs).await?, None));
        }
        // A cursor 100 pages deep (pages of 50), reached without timing.
        let mut cursor = String::new();
        for _ in 0..100 {
            let page = get_json(&client, &format!("{base}/spend-logs?limit=50&cursor={cursor}"), &token).await?;
            cursor = string_at(&page, "/nextCursor")?.to_owned();
        }
        let deep = format!("{base}/spend-logs?limit=50&cursor={cursor}");
        results.push((
            "spend log, page 101".into(),
            time_get(&client, &deep, &token, runs).await?,
            None,
        ));
        let mut conn = AsyncPgConnection::establish(&db_url).await?;
        for (name, sql) in &baselines {
            let mut times = Vec::with_capacity(runs);
            diesel::sql_query(sql.as_str()).execute(&mut conn).await?;
            for _ in 0..runs {
                let start = Instant::now();
                diesel::sql_query(sql.as_str()).execute(&mut conn).await?;
                times.push(start.elapsed().as_secs_f64() * 1e3);
            }
            if let Some(row) = results.iter_mut().find(|r| r.0 == *name) {
                row.2 = Some(median(&mut times));
            }
        }
        anyhow::Ok(results)
    })?;

    println!();
    println!(
        "analytics bench: {org_events} events of one organization over 365 days (+{} noise), median of {runs} runs",
        events / 5
    );
    println!(
        "usage_daily rows / events of the organization: {rollup_rows} / {org_events} = {:.1} %",
        ratio_rows * 100.0
    );
    println!(
        "{:<32} {:>10} {:>16} {:>8}  target",
        "read", "median ms", "raw GROUP BY ms", "ratio"
    );
    for (name, http, raw) in &results {
        let http = *http;
        let (raw_text, ratio_text, met) = match raw {
            Some(raw) => (
                format!("{raw:.1}"),
                format!("{:.1}x", raw / http),
                http < TARGET_MS && raw / http >= TARGET_RATIO,
            ),
            None => ("-".into(), "-".into(), http < TARGET_MS),
        };
        println!(
            "{name:<32} {http:>10.1} {raw_text:>16} {ratio_text:>8}  {}",
            if met { "met" } else { "NOT met" }
        );
    }
    let log_lines = harness.stop_server_and_check_log(&server);
    if log_lines > 0 {
        step(&format!(
            "the server logged {log_lines} lines: {}",
            server.log_path.display()
        ));
    }
    Ok(())
}

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

async fn get_json(client: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<Value> {
    let response = client.get(url).bearer_auth(token).send().await?;
    let status = response.status();
    let text = response.text().await?;
    if status != reqwest::StatusCode::OK {
        bail!("GET {url} answered {status}: {text}");
    }
    Ok(serde_json::from_str(&text)?)
}

/// The median time of `runs` GETs after one untimed warm-up.
async fn time_get(client: &reqwest::Client, url: &str, token: &str, runs: usize) -> anyhow::Result<f64> {
    let warm = client.get(url).bearer_auth(token).send().await?;
    let status = warm.status();
    let text = warm.text().await?;
    if status != reqwest::StatusCode::OK {
        bail!("GET {url} answered {status}: {text}");
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let response = client.get(url).bearer_auth(token).send().await?;
        if response.status() != reqwest::StatusCode::OK {
            bail!("GET {url} answered {}", response.status());
        }
        response.bytes().await?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(&mut times))
}

/// Writes the year: daily partitions, the organization's customers and agents, the
/// other organizations, the events (`INSERT … SELECT` from `generate_series`, inside
/// PostgreSQL) and the roll-ups computed from them with the grain and columns ingest
/// writes.
fn load(db_url: &str, org: Uuid, events: usize) -> anyhow::Result<()> {
    let noise = events / 5;
    psql(
        db_url,
        &format!(
            "UPDATE organizations SET plan = 'enterprise', retention_days = 365 WHERE id = '{org}';
             INSERT INTO organizations (id, name, slug, plan, retention_days)
               SELECT gen_random_uuid(), 'noise ' || i, 'noise-' || i, 'enterprise', 365 FROM generate_series(1, {NOISE_ORGS}) i;
             INSERT INTO customers (id, org_id, external_id)
               SELECT gen_random_uuid(), '{org}', 'cust-' || lpad(i::text, 5, '0') FROM generate_series(1, {CUSTOMERS}) i;
             INSERT INTO agents (id, org_id, external_id)
               SELECT gen_random_uuid(), '{org}', 'agent-' || lpad(i::text, 3, '0') FROM generate_series(1, {AGENTS}) i;
             DO $$
             DECLARE d date;
             BEGIN
               FOR d IN SELECT generate_series(current_date - 366, current_date + 2, interval '1 day')::date LOOP
                 IF to_regclass('usage_events_p' || to_char(d, 'YYYYMMDD')) IS NULL THEN
                   EXECUTE format('CREATE TABLE %I PARTITION OF usage_events FOR VALUES FROM (%L) TO (%L)',
                     'usage_events_p' || to_char(d, 'YYYYMMDD'), d::text || ' 00:00:00+00', (d + 1)::text || ' 00:00:00+00');
                 END IF;
               END LOOP;
             END $$;"
        ),
    )?;
    // Bulk loading is far faster with the spend-log indexes built afterwards.
    psql(
        db_url,
        "CREATE TABLE bench_index_defs AS SELECT indexname, indexdef FROM pg_indexes
           WHERE schemaname = current_schema() AND tablename = 'usage_events' AND indexname LIKE '%\\_log\\_idx';
         DO $$ DECLARE r record; BEGIN
           FOR r IN SELECT indexname FROM bench_index_defs LOOP EXECUTE format('DROP INDEX %I', r.indexname); END LOOP;
         END $$;",
    )?;
    step("partitions, customers, agents and organizations created; writing the events");
    // Skewed choices: power(random(), k) favors the first entries (a few customers
    // and models carry most of the traffic, as in real logs).
    let columns = "org_id, id, occurred_at, request_id, project_id, api_key_id, customer_id, agent_id, endpoint, \
        provider, model, canonical_model, status, error_code, prompt_tokens, completion_tokens, cached_tokens, images, \
        latency_ms, ttft_ms, cache_hit, retries, bodies_truncated, billing_source, unpriced, input_cost, output_cost, \
        cached_input_cost, request_cost, image_cost, data_storage_cost, cost_before_discount, discount_percent, \
        discount_savings, cost";
    let values = "x.t, 'r-' || x.g, x.project_id, x.api_key_id, x.customer_id, x.agent_id, x.endpoint, x.provider, \
        x.model, x.model, CASE WHEN x.err THEN 'error' ELSE 'success' END, CASE WHEN x.err THEN 'rate_limited' END, \
        x.pt, x.ct, x.pt / 5, 0, x.lat, x.lat / 4, x.hit, 0, false, 'credits', false, round(x.pt * 0.0000025, 10), \
        round(x.ct * 0.00001, 10), 0, 0, 0, 0, round(x.pt * 0.0000025, 10) + round(x.ct * 0.00001, 10), 0, 0, \
        round(x.pt * 0.0000025, 10) + round(x.ct * 0.00001, 10)";
    let endpoints = "ARRAY['/chat/completions', '/responses', '/embeddings', '/completions', '/images/generations', \
        '/audio/transcriptions', '/moderations', '/rerank', '/a2a/planner', '/a2a/researcher', '/a2a/writer', '/batches']";
    psql(
        db_url,
        &format!(
            "WITH c AS (SELECT array_agg(id ORDER BY external_id) a FROM customers WHERE org_id = '{org}'),
                  ag AS (SELECT array_agg(id ORDER BY external_id) a FROM agents WHERE org_id = '{org}'),
                  k AS (SELECT array_agg(id ORDER BY id) ids, array_agg(project_id ORDER BY id) ps FROM api_keys WHERE org_id = '{org}'),
                  m AS (SELECT array_agg(provider ORDER BY provider, model) p, array_agg(model ORDER BY provider, model) mo
                        FROM (SELECT DISTINCT provider, model FROM model_prices
                              UNION SELECT 'openai', 'ft-gpt-4o-mini-' || i FROM generate_series(1, 6) i) names)
             INSERT INTO usage_events ({columns})
             SELECT '{org}', gen_random_uuid(), {values}
             FROM (SELECT g, t, k.ps[1 + floor(rk * array_length(k.ids, 1))::int] AS project_id,
                          k.ids[1 + floor(rk * array_length(k.ids, 1))::int] AS api_key_id,
                          CASE WHEN rc < 0.9 THEN c.a[1 + floor(power(random(), 2) * array_length(c.a, 1))::int] END AS customer_id,
                          CASE WHEN ra < 0.3 THEN ag.a[1 + floor(random() * array_length(ag.a, 1))::int] END AS agent_id,
                          ({endpoints})[1 + floor(power(random(), 2) * 12)::int] AS endpoint,
                          m.p[1 + floor(power(rm, 1.5) * array_length(m.mo, 1))::int] AS provider,
                          m.mo[1 + floor(power(rm, 1.5) * array_length(m.mo, 1))::int] AS model, err, pt, ct, lat, hit
                   FROM (SELECT g, now() - random() * (now() - (current_date - 364)::timestamptz) AS t,
                                random() AS rk, random() AS rc, random() AS ra,
                                random() AS rm, random() < 0.03 AS err,
                                50 + floor(random() * 4000)::bigint AS pt, 10 + floor(random() * 1000)::bigint AS ct,
                                100 + floor(random() * 3000)::int AS lat, random() < 0.1 AS hit
                         FROM generate_series(1, {events}) g) r
                   CROSS JOIN c CROSS JOIN ag CROSS JOIN k CROSS JOIN m) x",
        ),
    )?;
    step("the organization's events written; the other organizations' next");
    psql(
        db_url,
        &format!(
            "WITH o AS (SELECT array_agg(id) a FROM organizations WHERE slug LIKE 'noise-%')
             INSERT INTO usage_events ({columns})
             SELECT x.org, gen_random_uuid(), {values}
             FROM (SELECT g, t, org, org AS project_id, org AS api_key_id, NULL::uuid AS customer_id,
                          NULL::uuid AS agent_id, '/chat/completions' AS endpoint, 'openai' AS provider,
                          'gpt-4o-mini' AS model, err, pt, ct, lat, hit
                   FROM (SELECT g, now() - random() * (now() - (current_date - 364)::timestamptz) AS t, o.a[1 + floor(random() * {NOISE_ORGS})::int] AS org,
                                random() < 0.03 AS err, 50 + floor(random() * 4000)::bigint AS pt,
                                10 + floor(random() * 1000)::bigint AS ct, 100 + floor(random() * 3000)::int AS lat,
                                random() < 0.1 AS hit
                         FROM generate_series(1, {noise}) g CROSS JOIN o) r) x"
        ),
    )?;
    step("building the spend-log indexes");
    psql(
        db_url,
        "DO $$ DECLARE r record; BEGIN
           FOR r IN SELECT indexdef FROM bench_index_defs LOOP EXECUTE r.indexdef; END LOOP;
         END $$;
         DROP TABLE bench_index_defs;",
    )?;
    step("computing the roll-ups from the events");
    psql(db_url, ROLLUPS)?;
    psql(db_url, &coarse_from_daily_sql::<DailyModels>())?;
    psql(db_url, entity_rollups::FILL_FROM_DAILY)?;
    Ok(())
}

/// The roll-ups ingest would have written for these events (one shard per grain).
const ROLLUPS: &str = "INSERT INTO usage_daily (
    org_id, day, project_id, api_key_id, customer_id, agent_id, endpoint, provider, model, shard,
    requests, errors, cache_hits, unpriced, prompt_tokens, completion_tokens, cached_tokens, images,
    input_cost, output_cost, cached_input_cost, request_cost, image_cost, data_storage_cost,
    cost_before_discount, discount_savings, cost, credits_cost, api_keys_cost,
    credits_requests, api_keys_requests, credits_data_storage_cost, api_keys_data_storage_cost,
    input_images, image_input_cost, image_output_cost,
    latency_ms_sum, latency_count,
    latency_b00, latency_b01, latency_b02, latency_b03, latency_b04, latency_b05, latency_b06, latency_b07,
    latency_b08, latency_b09, latency_b10, latency_b11, latency_b12, latency_b13, latency_b14, latency_b15,
    latency_b16)
SELECT
    org_id, (occurred_at AT TIME ZONE 'UTC')::date, project_id, api_key_id, customer_id, agent_id,
    endpoint, provider, canonical_model, 0,
    count(*), count(*) FILTER (WHERE status = 'error'), count(*) FILTER (WHERE cache_hit),
    count(*) FILTER (WHERE unpriced), sum(prompt_tokens), sum(completion_tokens), sum(cached_tokens), sum(images),
    sum(input_cost), sum(output_cost), sum(cached_input_cost), sum(request_cost), sum(image_cost),
    sum(data_storage_cost), sum(cost_before_discount), sum(discount_savings), sum(cost),
    coalesce(sum(cost) FILTER (WHERE billing_source = 'credits'), 0),
    coalesce(sum(cost) FILTER (WHERE billing_source = 'api-keys'), 0),
    count(*) FILTER (WHERE billing_source = 'credits'), count(*) FILTER (WHERE billing_source = 'api-keys'),
    coalesce(sum(data_storage_cost) FILTER (WHERE billing_source = 'credits'), 0),
    coalesce(sum(data_storage_cost) FILTER (WHERE billing_source = 'api-keys'), 0),
    sum(input_images), sum(image_input_cost), sum(image_output_cost),
    coalesce(sum(latency_ms), 0), count(latency_ms),
    count(*) FILTER (WHERE latency_ms <= 25),
    count(*) FILTER (WHERE latency_ms > 25 AND latency_ms <= 50),
    count(*) FILTER (WHERE latency_ms > 50 AND latency_ms <= 100),
    count(*) FILTER (WHERE latency_ms > 100 AND latency_ms <= 200),
    count(*) FILTER (WHERE latency_ms > 200 AND latency_ms <= 300),
    count(*) FILTER (WHERE latency_ms > 300 AND latency_ms <= 500),
    count(*) FILTER (WHERE latency_ms > 500 AND latency_ms <= 750),
    count(*) FILTER (WHERE latency_ms > 750 AND latency_ms <= 1000),
    count(*) FILTER (WHERE latency_ms > 1000 AND latency_ms <= 1500),
    count(*) FILTER (WHERE latency_ms > 1500 AND latency_ms <= 2000),
    count(*) FILTER (WHERE latency_ms > 2000 AND latency_ms <= 3000),
    count(*) FILTER (WHERE latency_ms > 3000 AND latency_ms <= 5000),
    count(*) FILTER (WHERE latency_ms > 5000 AND latency_ms <= 7500),
    count(*) FILTER (WHERE latency_ms > 7500 AND latency_ms <= 10000),
    count(*) FILTER (WHERE latency_ms > 10000 AND latency_ms <= 20000),
    count(*) FILTER (WHERE latency_ms > 20000 AND latency_ms <= 60000),
    count(*) FILTER (WHERE latency_ms > 60000)
FROM usage_events
GROUP BY org_id, (occurred_at AT TIME ZONE 'UTC')::date, project_id, api_key_id, customer_id, agent_id,
    endpoint, provider, canonical_model";
