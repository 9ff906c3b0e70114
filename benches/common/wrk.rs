//! Load from `wrk` (Debian package) with a generated Lua script: the script's
//! `response` counts every answer it checked and those it refused, keeping the first
//! refused one as a sample; [`REPORT_LUA`] is its `done`, which prints one `MPBENCH`
//! line of figures; [`run_wrk`] runs it and reads that line back.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{anyhow, bail, Context};

/// The scripts' `done`: sums what each thread checked and refused and prints the
/// figures (microseconds) on one `MPBENCH` line, and the first refused answer on an
/// `MPBENCH-SAMPLE` line. Needs the global `threads` list the scripts' `setup` fills.
pub const REPORT_LUA: &str = r#"function done(summary, latency, requests)
  local c, r, s = 0, 0, ""
  for _, t in ipairs(threads) do
    c = c + t:get("checked")
    r = r + t:get("refused")
    if s == "" then s = t:get("sample") end
  end
  local e = summary.errors
  io.write(string.format("MPBENCH requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d connect=%d read=%d write=%d status=%d timeout=%d checked=%d refused=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout, c, r))
  if s ~= "" then io.write("MPBENCH-SAMPLE " .. s .. "\n") end
end
"#;

/// What one wrk run measured.
#[derive(Debug, Default)]
pub struct WrkResult {
    pub requests: u64,
    pub duration_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// connect + read + write + timeout errors
    pub socket_errors: u64,
    pub non_2xx: u64,
    /// Answers the script checked, and those it refused.
    pub checked: u64,
    pub refused: u64,
    /// The first refused answer (status and the start of the body), or "-".
    pub sample: String,
}

impl WrkResult {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.duration_s
    }
}

/// How one wrk run is made.
pub struct WrkLoad<'a> {
    pub threads: usize,
    pub connections: usize,
    /// wrk's `--timeout`, e.g. `5s`.
    pub timeout: &'a str,
    pub url: &'a str,
    pub script: &'a Path,
    pub secs: u64,
    /// Passed to the script's `init` after `--`, to keep request ids unique per run.
    pub label: &'a str,
    /// Passed after the label: milliseconds each connection waits between an answer
    /// and its next request, for scripts whose `delay` reads it (0: none).
    pub think_ms: u64,
}

/// Runs wrk and reads its figures; fails when wrk fails or completed no request. What
/// counts as a failed run beyond that (refused answers, socket errors) is the bench's.
pub fn run_wrk(load: &WrkLoad) -> anyhow::Result<WrkResult> {
    let out = Command::new("wrk")
        .arg(format!("-t{}", load.threads))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{}s", load.secs))
        .args(["--timeout", load.timeout, "-s"])
        .arg(load.script)
        .arg(load.url)
        .args(["--", load.label, &load.think_ms.to_string()])
        .stdin(Stdio::null())
        .output()
        .context("running wrk")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("MPBENCH "))
        .ok_or_else(|| anyhow!("wrk printed no figures: {stdout}"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .ok_or_else(|| anyhow!("no {name} in {line}"))?
            .parse()
            .with_context(|| format!("{name} in {line}"))
    };
    let ms = |name: &str| -> anyhow::Result<f64> { Ok(field(name)? as f64 / 1e3) };
    let result = WrkResult {
        requests: field("requests")?,
        duration_s: field("duration_us")? as f64 / 1e6,
        p50_ms: ms("p50_us")?,
        p90_ms: ms("p90_us")?,
        p99_ms: ms("p99_us")?,
        max_ms: ms("max_us")?,
        socket_errors: field("connect")? + field("read")? + field("write")? + field("timeout")?,
        non_2xx: field("status")?,
        checked: field("checked")?,
        refused: field("refused")?,
        sample: stdout
            .lines()
            .find_map(|l| l.strip_prefix("MPBENCH-SAMPLE "))
            .unwrap_or("-")
            .to_owned(),
    };
    if result.checked == 0 {
        bail!("wrk completed no request: {stdout}");
    }
    Ok(result)
}
