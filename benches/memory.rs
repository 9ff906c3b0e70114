//! Server memory under large batches: `MP_BENCH_BATCHES` (100) requests to
//! `POST /v1/usage/batch` of a release build, each 1,000 events carrying request and
//! response bodies of about 15 KB together (about 15 MB per request, under the 16 MiB
//! limit), `MP_BENCH_CONCURRENCY` (4) in flight. Reports the server's resident memory
//! during the load (sampled every 50 ms, and `VmHWM`), right after it, and after
//! `MP_BENCH_IDLE_SECS` (10) idle. See `benches/README.md`.
//!
//! `cargo bench --bench memory` runs it; any other invocation only prints how to run it.

mod common;

use std::{
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use common::{create_tenant, psql_i64, wait_ready, Harness};

const EVENTS_PER_BATCH: usize = 1_000;
const LIMIT_MB: f64 = 200.0;

fn main() -> ExitCode {
    if !std::env::args().any(|a| a == "--bench") {
        println!("memory benchmark: not run (start it with `cargo bench --bench memory`)");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memory benchmark FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// (VmRSS kB) of `pid`.
fn rss_kb(pid: u32) -> Option<u64> {
    common::read_memory(pid).map(|(_, rss)| rss)
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// About `bytes` of chat-like JSON: a request body with messages, or a response body.
fn chat_body(bytes: usize, seed: usize, response: bool) -> Value {
    let sentence = "The quick brown fox jumps over the lazy dog while the gateway counts tokens. ";
    let mut text = String::with_capacity(bytes + sentence.len());
    let mut n = seed;
    while text.len() < bytes.saturating_sub(200) {
        text.push_str(sentence);
        n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        text.push_str(&format!("({}) ", n >> 40));
    }
    if response {
        json!({"id": format!("chatcmpl-{seed}"), "object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})
    } else {
        let half = text.len() / 2;
        let cut = (half..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        json!({"model": "gpt-4o", "messages": [
            {"role": "system", "content": &text[..cut]}, {"role": "user", "content": &text[cut..]}]})
    }
}

fn batch_body(run: &str, batch: usize) -> anyhow::Result<Vec<u8>> {
    let events: Vec<Value> = (0..EVENTS_PER_BATCH)
        .map(|i| {
            let seed = batch * EVENTS_PER_BATCH + i;
            json!({
                "requestId": format!("mem-{run}-{batch}-{i}"),
                "endpoint": "/chat/completions", "provider": "openai", "model": "gpt-4o",
                "user": format!("customer-{:02}", seed % 50),
                "promptTokens": 3000 + seed % 1000, "completionTokens": 800, "latencyMs": 900,
                "requestBody": chat_body(10_000, seed, false),
                "responseBody": chat_body(5_000, seed, true),
            })
        })
        .collect();
    Ok(serde_json::to_vec(&json!({ "events": events }))?)
}

fn run() -> anyhow::Result<()> {
    let batches: usize = common::env_or("MP_BENCH_BATCHES", 100)?;
    let concurrency: usize = common::env_or("MP_BENCH_CONCURRENCY", 4)?;
    let idle_secs: u64 = common::env_or("MP_BENCH_IDLE_SECS", 10)?;
    if batches == 0 || !(1..=64).contains(&concurrency) {
        bail!("MP_BENCH_BATCHES must be at least 1 and MP_BENCH_CONCURRENCY 1 to 64");
    }
    let admin_url = common::admin_url()?;
    let mut harness = Harness::new("memory", &admin_url);
    let server = harness.start_server(&common::redis_url()?, &[])?;
    let pid = server.pid;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(300))
        .build()?;
    if let Err(e) = runtime.block_on(wait_ready(&client, &server, &mut harness)) {
        return Err(harness.server_failed(&server, &format!("{e:#}")));
    }
    let tenant = runtime.block_on(create_tenant(&client, &server))?;
    let started_rss = rss_kb(pid).unwrap_or(0);
    let sample = batch_body(&server.tag, 0)?;
    harness.step(&format!(
        "server RSS before the load: {:.0} MB; sending {batches} batches of {EVENTS_PER_BATCH} events, {:.1} MB each, {concurrency} in flight",
        mb(started_rss),
        sample.len() as f64 / 1e6
    ));
    drop(sample);

    // Sampled from a thread of its own, so a busy load generator cannot miss a peak.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(kb) = rss_kb(pid) {
                    peak.fetch_max(kb, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let url = format!("{}/v1/usage/batch", server.base);
    let results: Vec<anyhow::Result<()>> = runtime.block_on(async {
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let (client, url, key, next, run_tag) = (
                    client.clone(),
                    url.clone(),
                    tenant.key.clone(),
                    next.clone(),
                    server.tag.clone(),
                );
                tokio::spawn(async move {
                    loop {
                        let batch = next.fetch_add(1, Ordering::Relaxed);
                        if batch >= batches {
                            return Ok(());
                        }
                        let tag = run_tag.clone();
                        let body = tokio::task::spawn_blocking(move || batch_body(&tag, batch)).await??;
                        let response = client
                            .post(&url)
                            .header("x-api-key", &key)
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await
                            .with_context(|| format!("batch {batch}"))?;
                        let status = response.status();
                        let text = response.text().await?;
                        let accepted = serde_json::from_str::<Value>(&text)
                            .ok()
                            .and_then(|v| v["accepted"].as_u64());
                        if status != reqwest::StatusCode::OK || accepted != Some(EVENTS_PER_BATCH as u64) {
                            bail!("batch {batch}: {status} {}", &text[..text.len().min(500)]);
                        }
                        if batch % 10 == 9 {
                            eprintln!("[memory bench]   {} batches sent", batch + 1);
                        }
                    }
                })
            })
            .collect();
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await.map_err(|e| anyhow!("sender: {e}")).and_then(|r| r));
        }
        out
    });
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    for result in results {
        if let Err(e) = result {
            return Err(harness.server_failed(&server, &format!("{e:#}")));
        }
    }
    let (hwm, after) = common::read_memory(pid).ok_or_else(|| anyhow!("no /proc/{pid}/status"))?;
    harness.step(&format!("idle for {idle_secs} s"));
    std::thread::sleep(Duration::from_secs(idle_secs));
    let idle = rss_kb(pid).unwrap_or(0);
    let stored = psql_i64(&server.db_url, "SELECT count(*) FROM usage_events")?;
    let expected = (batches * EVENTS_PER_BATCH) as i64;
    if stored != expected {
        bail!("{expected} events were accepted but usage_events holds {stored}");
    }
    let log_lines = harness.stop_server_and_check_log(&server);
    let during = mb(peak.load(Ordering::Relaxed)).max(mb(hwm));
    println!();
    println!(
        "memory benchmark: {batches} batches x {EVENTS_PER_BATCH} events (~15 KB of bodies each), {concurrency} in flight, {:.0} s",
        elapsed.as_secs_f64()
    );
    println!("server RSS before      : {:.0} MB", mb(started_rss));
    println!("server RSS peak (VmHWM): {during:.0} MB");
    println!("server RSS right after : {:.0} MB", mb(after));
    println!("server RSS after {idle_secs} s idle: {:.0} MB", mb(idle));
    let met = during < LIMIT_MB && mb(after) < LIMIT_MB && mb(idle) < LIMIT_MB;
    println!(
        "target (< {LIMIT_MB:.0} MB during and after): {}",
        if met { "met" } else { "NOT met" }
    );
    if log_lines > 0 {
        println!(
            "server log: {log_lines} lines at warn level or above in {}",
            server.log_path.display()
        );
    }
    Ok(())
}
