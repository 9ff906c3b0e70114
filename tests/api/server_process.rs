//! The real binary as its own OS process (`meterplane serve`), configured only through
//! its environment as an operator would, on a test's database and Redis key prefix.
//! Killed when dropped.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::helpers::{eventually, TestApp};

pub struct ServerProcess {
    /// `http://127.0.0.1:<port>`
    pub address: String,
    child: Child,
}

impl ServerProcess {
    /// Serves `app`'s database, Redis and key prefix; `env` adds or overrides
    /// variables (e.g. `MP_SMTP_URL`). Returns once it answers `/healthz`.
    pub async fn start(app: &TestApp, env: &[(&str, String)]) -> Self {
        // A port found free may be taken before the server binds it: the process
        // then exits, and another port is tried.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("find a free port")
                .port();
            let redis = &app.state.config.redis;
            let mut command = Command::new(env!("CARGO_BIN_EXE_meterplane"));
            command
                .arg("serve")
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("MP_BIND", format!("127.0.0.1:{port}"))
                .env("MP_WORKERS", "2")
                // Several processes on one machine: each its own metrics port.
                .env("MP_METRICS_ADDR", "127.0.0.1:0")
                .env("DATABASE_URL", &app.database_url)
                .env("MP_DB_POOL_SIZE", "4")
                .env("REDIS_URL", redis.url.expose())
                .env("MP_REDIS_PREFIX", &redis.key_prefix)
                .env("RUST_LOG", "error")
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            let mut server = Self {
                address: format!("http://127.0.0.1:{port}"),
                child: command.spawn().expect("run the meterplane binary"),
            };
            // No connection kept open: it would hold up a graceful stop.
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("http client");
            let healthz = format!("{}/healthz", server.address);
            let up = eventually("the server process to answer", Duration::from_secs(20), || {
                let exited = matches!(server.child.try_wait(), Ok(Some(_)));
                let (client, healthz) = (client.clone(), healthz.clone());
                async move {
                    if exited {
                        return Some(false);
                    }
                    let response = client.get(&healthz).send().await.ok()?;
                    response.status().is_success().then_some(true)
                }
            })
            .await;
            if up {
                return server;
            }
        }
        panic!("the meterplane binary did not start");
    }
}

impl ServerProcess {
    /// Asks the process to stop (SIGTERM, as an orchestrator does) and waits until it
    /// has exited; true when it exited cleanly.
    pub async fn terminate(mut self) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "could not signal process {pid}");
        eventually("the server process to exit", Duration::from_secs(20), || {
            let status = self.child.try_wait().ok().flatten();
            async move { status.map(|s| s.success()) }
        })
        .await
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
