//! A private `redis-server` process for fault tests: started on a free loopback port,
//! killed (as a crash does) and started again on the same port, and killed when the
//! test drops it. By default it keeps nothing, so a restart comes back empty, as a
//! Redis without persistence does; [`RedisServer::start_persistent`] keeps every
//! acknowledged write across a restart (an append-only file synced on each write).

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::helpers::eventually;

pub struct RedisServer {
    port: u16,
    /// Where a persistent server keeps its append-only file; removed on drop.
    dir: Option<PathBuf>,
    child: Option<Child>,
}

impl RedisServer {
    /// An empty in-memory Redis that loses everything when it is killed.
    pub async fn start() -> Self {
        Self::launch(None).await
    }

    /// A Redis that finds its data again after a kill and restart.
    pub async fn start_persistent() -> Self {
        let dir = std::env::temp_dir().join(format!("mp-redis-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create the Redis data directory");
        Self::launch(Some(dir)).await
    }

    async fn launch(dir: Option<PathBuf>) -> Self {
        // A port found free may be taken by someone else before the server binds it:
        // then the server exits at once and another port is tried.
        for _ in 0..5 {
            let port = free_port();
            let mut server = Self {
                port,
                dir: dir.clone(),
                child: None,
            };
            if server.spawn_and_wait().await {
                return server;
            }
        }
        panic!("could not start a private redis-server (is it on PATH?)");
    }

    /// `redis://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: no chance to save or say goodbye) and waits until it
    /// is gone; its port then refuses connections.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn_and_wait().await,
            "redis-server did not come back on port {}",
            self.port
        );
    }

    /// Starts `redis-server` on `self.port`; false when it exited (port taken).
    async fn spawn_and_wait(&mut self) -> bool {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match &self.dir {
            Some(dir) => command
                .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
                .arg(dir),
            None => command.args(["--appendonly", "no"]),
        };
        let child = command.spawn().expect("run redis-server (is it on PATH?)");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).expect("redis url");
        let answered = eventually("the private redis-server to answer", Duration::from_secs(10), || {
            let client = client.clone();
            let exited = self
                .child
                .as_mut()
                .map(|c| matches!(c.try_wait(), Ok(Some(_))))
                .unwrap_or(true);
            async move {
                if exited {
                    return Some(false);
                }
                let mut conn = client.get_multiplexed_async_connection().await.ok()?;
                let pong: String = redis::cmd("PING").query_async(&mut conn).await.ok()?;
                (pong == "PONG").then_some(true)
            }
        })
        .await;
        if !answered {
            self.child = None;
        }
        answered
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}
