//! A private PostgreSQL for fault tests: a cluster of its own (`initdb`) in a temporary
//! directory, served on a free loopback port with trust authentication, restarted with
//! `pg_ctl` as an operator does, and stopped and removed when the test drops it.

use std::{
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

/// PostgreSQL's programs: the newest installed version's, else those on PATH.
pub fn pg_bin(program: &str) -> PathBuf {
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .max();
    match newest {
        Some(version) => PathBuf::from(format!("/usr/lib/postgresql/{version}/bin/{program}")),
        None => PathBuf::from(program),
    }
}

/// PostgreSQL refuses to run as root: then it runs as the `postgres` account.
pub fn postgres_account() -> Option<(u32, u32)> {
    let me = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&me.stdout).trim() != "0" {
        return None;
    }
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

pub fn as_postgres(command: &mut Command, account: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = account {
        command.uid(uid).gid(gid);
    }
    command
}

fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: could not run it ({e})"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

pub struct PgServer {
    port: u16,
    /// Holds the data directory and the socket; removed on drop.
    root: PathBuf,
    account: Option<(u32, u32)>,
}

impl PgServer {
    /// A new cluster with an empty database `meterplane`, up and accepting
    /// connections. `initdb` takes a few seconds, so a test makes one at most.
    pub fn start() -> Self {
        let account = postgres_account();
        let root = std::env::temp_dir().join(format!("mp-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&root).expect("create the PostgreSQL directory");
        if account.is_some() {
            run(
                Command::new("chown").args(["-R", "postgres:postgres"]).arg(&root),
                "chown",
            );
        }
        run(
            as_postgres(
                Command::new(pg_bin("initdb")).arg("-D").arg(root.join("data")).args([
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
        let server = Self {
            port: std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap_or_else(|e| panic!("find a free port: {e}")),
            root,
            account,
        };
        server.pg_ctl(&["start"]);
        server.psql_in("postgres", "CREATE DATABASE meterplane");
        server
    }

    /// `postgres://postgres@127.0.0.1:<port>/meterplane`
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/meterplane", self.port)
    }

    /// Restarts the server as `pg_ctl restart -m fast` does: sessions are ended
    /// (SQLSTATE 57P01), the server is down for a moment, then accepts connections
    /// again. Returns once it does.
    pub fn restart_fast(&self) {
        self.pg_ctl(&["restart", "-m", "fast"]);
    }

    /// Runs `pg_ctl` on the cluster and waits for it to finish (`-w`); the options
    /// (port, socket, no fsync) are given on every start, restart included.
    fn pg_ctl(&self, args: &[&str]) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off \
             -c max_connections=40",
            self.port,
            self.root.display()
        );
        run(
            as_postgres(
                Command::new(pg_bin("pg_ctl"))
                    .arg("-D")
                    .arg(self.root.join("data"))
                    .args(["-w", "-t", "60", "-l"])
                    .arg(self.root.join("server.log"))
                    .args(["-o", &options])
                    .args(args)
                    .stdin(Stdio::null()),
                self.account,
            ),
            "pg_ctl",
        );
    }

    /// Runs SQL in the `meterplane` database as the superuser, over the socket;
    /// returns what it printed.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("meterplane", sql)
    }

    fn psql_in(&self, database: &str, sql: &str) -> String {
        let output = Command::new(pg_bin("psql"))
            .arg("-h")
            .arg(&self.root)
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", database, "-qtAX"])
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
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = as_postgres(
            Command::new(pg_bin("pg_ctl"))
                .arg("-D")
                .arg(self.root.join("data"))
                .args(["-w", "-t", "30", "-m", "immediate", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            self.account,
        )
        .status();
        // Give the postmaster's children a moment to be gone before their files go.
        std::thread::sleep(Duration::from_millis(50));
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
