//! Opening a PostgreSQL connection as `DATABASE_URL` describes it, TLS included: the
//! pools and the migration run connect through [`PgTarget`], so they agree.
//!
//! TLS follows libpq's `sslmode` and `sslrootcert` URL parameters, which
//! tokio-postgres does not read (it knows `disable`, `prefer` and `require`, and
//! connects without TLS unless given a connector):
//!
//! | `sslmode`           | TLS                        | the server's certificate            |
//! |---------------------|----------------------------|-------------------------------------|
//! | absent, `disable`   | no                         | –                                   |
//! | `prefer`            | if the server offers it    | not checked (chain if `sslrootcert`)|
//! | `require`           | yes                        | not checked (chain if `sslrootcert`)|
//! | `verify-ca`         | yes                        | chain                               |
//! | `verify-full`       | yes                        | chain and host name                 |
//!
//! The chain leads to `sslrootcert` (a PEM file, or `system` for the operating
//! system's store), else to the bundled Mozilla roots. Unlike libpq, no `sslmode`
//! means no TLS (libpq's default `prefer` is encryption nobody checks; a URL without
//! TLS settings keeps connecting as it always has). A `host=… user=…` string is
//! tokio-postgres's to read: `sslmode=require` there is TLS without a check.

use std::{path::PathBuf, str::FromStr};

use anyhow::{bail, Context};
use diesel::ConnectionError;
use diesel_async::AsyncPgConnection;
use tokio_postgres::config::SslMode;

use crate::tls::{self, Roots, Verify};

/// The libpq `sslmode` values understood here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    fn parse(value: &str) -> anyhow::Result<Self> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            "allow" => bail!("DATABASE_URL: sslmode=allow is not supported; use disable, prefer or require"),
            other => {
                bail!("DATABASE_URL: sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full")
            }
        })
    }

    /// What the certificate check is, given where the roots come from (`None`: no
    /// `sslrootcert`). As libpq: with a CA file, `prefer` and `require` check the chain.
    fn verify(self, roots: Option<&Roots>) -> Option<VerifyLevel> {
        match (self, roots) {
            (Self::Disable, _) => None,
            (Self::Prefer | Self::Require, None) => Some(VerifyLevel::Nothing),
            (Self::Prefer | Self::Require | Self::VerifyCa, _) => Some(VerifyLevel::Chain),
            (Self::VerifyFull, _) => Some(VerifyLevel::Full),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VerifyLevel {
    Nothing,
    Chain,
    Full,
}

/// A parsed `DATABASE_URL`: where to connect and how.
#[derive(Clone)]
pub struct PgTarget {
    config: tokio_postgres::Config,
    /// `None`: no TLS.
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    mode: TlsMode,
}

impl std::fmt::Debug for PgTarget {
    // The config holds the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl PgTarget {
    /// Reads the URL and, for a TLS mode, the CA file. Errors never repeat the URL,
    /// which may hold a password.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let options = TlsOptions::split(url)?;
        let mut config = tokio_postgres::Config::from_str(&options.rest)
            .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL: {e}"))?;
        let mode = match (options.sslmode.as_deref(), options.url_form) {
            (Some(value), _) => TlsMode::parse(value)?,
            (None, true) => TlsMode::Disable,
            // A `key=value` string: tokio-postgres read its sslmode (disable, prefer,
            // require; prefer is also its default, so it stays plain as it always was).
            (None, false) => match config.get_ssl_mode() {
                SslMode::Require => TlsMode::Require,
                _ => TlsMode::Disable,
            },
        };
        let roots = options.sslrootcert.as_deref().map(|value| match value {
            "system" => Roots::System,
            path => Roots::File(PathBuf::from(path)),
        });
        let tls = match mode.verify(roots.as_ref()) {
            None => None,
            Some(level) => {
                let store = roots
                    .as_ref()
                    .unwrap_or(&Roots::Bundled)
                    .store()
                    .context("DATABASE_URL: sslrootcert")?;
                let verify = match level {
                    VerifyLevel::Nothing => Verify::Nothing,
                    VerifyLevel::Chain => Verify::Chain(store),
                    VerifyLevel::Full => Verify::Full(store),
                };
                Some(tokio_postgres_rustls::MakeRustlsConnect::new(tls::client_config(
                    verify,
                )?))
            }
        };
        // JIT compilation pays off for long analytic scans, not for the short reads and
        // writes here: above the planner's default cost threshold it added about 60 ms
        // to a per-customer report that runs in 90 ms. An `options=-c jit=on` in the URL
        // comes later on the command line, so it still wins.
        let session = match config.get_options() {
            Some(own) => format!("-c jit=off {own}"),
            None => "-c jit=off".to_owned(),
        };
        config.options(&session);
        config.ssl_mode(match mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        });
        Ok(Self { config, tls, mode })
    }

    pub fn mode(&self) -> TlsMode {
        self.mode
    }

    /// Opens one connection (diesel-async's pool and the migration harness call this).
    pub async fn connect(&self) -> diesel::ConnectionResult<AsyncPgConnection> {
        let refused = |e: tokio_postgres::Error| ConnectionError::BadConnection(error_chain(&e));
        match &self.tls {
            None => {
                let (client, connection) = self.config.connect(tokio_postgres::NoTls).await.map_err(refused)?;
                AsyncPgConnection::try_from_client_and_connection(client, connection).await
            }
            Some(tls) => {
                let (client, connection) = self.config.connect(tls.clone()).await.map_err(refused)?;
                AsyncPgConnection::try_from_client_and_connection(client, connection).await
            }
        }
    }
}

/// tokio-postgres puts the useful part ("invalid peer certificate: UnknownIssuer") in
/// the source of its error, which diesel would drop.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// The URL with libpq's TLS parameters taken out of its query string.
#[derive(Debug, PartialEq, Eq)]
struct TlsOptions {
    /// `postgres://…` rather than `host=… user=…`.
    url_form: bool,
    rest: String,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

impl TlsOptions {
    /// Only the URL form (`postgres://…?sslmode=…`) is read; a `key=value` connection
    /// string goes to tokio-postgres as it is.
    fn split(url: &str) -> anyhow::Result<Self> {
        let url_form = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let (base, query) = match url.split_once('?') {
            Some((base, query)) if url_form => (base, query),
            _ => {
                return Ok(Self {
                    url_form,
                    rest: url.to_owned(),
                    sslmode: None,
                    sslrootcert: None,
                })
            }
        };
        let (mut sslmode, mut sslrootcert, mut kept) = (None, None, Vec::new());
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = || {
                url::form_urlencoded::parse(format!("v={value}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            match key {
                "sslmode" => sslmode = Some(decoded()),
                "sslrootcert" => sslrootcert = Some(decoded()),
                "sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir" => {
                    bail!("DATABASE_URL: {key} is not supported (no client certificates)")
                }
                _ => kept.push(pair),
            }
        }
        if sslrootcert.as_deref() == Some("") {
            bail!("DATABASE_URL: sslrootcert is empty; give a PEM file's path or `system`");
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        Ok(Self {
            url_form,
            rest,
            sslmode,
            sslrootcert,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> TlsOptions {
        TlsOptions::split(url).unwrap()
    }

    #[test]
    fn tls_parameters_leave_the_url_and_others_stay() {
        let options =
            split("postgres://u:p@db:5432/app?application_name=mp&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem");
        assert_eq!(options.rest, "postgres://u:p@db:5432/app?application_name=mp");
        assert_eq!(options.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(options.sslrootcert.as_deref(), Some("/etc/ca.pem"));

        let options = split("postgresql://db/app?sslmode=require");
        assert_eq!(options.rest, "postgresql://db/app");
        assert_eq!(options.sslmode.as_deref(), Some("require"));
        assert_eq!(options.sslrootcert, None);
    }

    #[test]
    fn sessions_run_without_jit_unless_the_url_says_otherwise() {
        let target = PgTarget::parse("postgres://u@db/app").unwrap();
        assert_eq!(target.config.get_options(), Some("-c jit=off"));
        let target = PgTarget::parse("postgres://u@db/app?options=-c%20jit%3Don").unwrap();
        assert_eq!(target.config.get_options(), Some("-c jit=off -c jit=on"));
    }

    #[test]
    fn a_url_without_tls_parameters_is_left_alone() {
        for url in [
            "postgres://u:p@127.0.0.1:5432/app",
            "postgres://u:p@127.0.0.1:5432/app?connect_timeout=5",
            "host=localhost user=postgres sslmode=disable",
        ] {
            let options = split(url);
            assert_eq!(options.rest, url);
            assert_eq!((options.sslmode, options.sslrootcert), (None, None));
        }
    }

    #[test]
    fn modes_follow_libpq() {
        let file = Roots::File("/ca.pem".into());
        assert_eq!(TlsMode::Disable.verify(Some(&file)), None);
        assert_eq!(TlsMode::Prefer.verify(None), Some(VerifyLevel::Nothing));
        assert_eq!(TlsMode::Require.verify(None), Some(VerifyLevel::Nothing));
        // libpq: a root certificate turns require into verify-ca.
        assert_eq!(TlsMode::Require.verify(Some(&file)), Some(VerifyLevel::Chain));
        assert_eq!(TlsMode::VerifyCa.verify(None), Some(VerifyLevel::Chain));
        assert_eq!(TlsMode::VerifyFull.verify(None), Some(VerifyLevel::Full));
        assert_eq!(TlsMode::VerifyFull.verify(Some(&file)), Some(VerifyLevel::Full));
    }

    #[test]
    fn plain_by_default_and_verified_when_asked() {
        let plain = PgTarget::parse("postgres://u:secret@127.0.0.1/app").unwrap();
        assert_eq!(plain.mode(), TlsMode::Disable);
        assert!(plain.tls.is_none());
        assert_eq!(plain.config.get_ssl_mode(), SslMode::Disable);

        // The bundled roots need no file.
        let full = PgTarget::parse("postgres://u:secret@db.example.com/app?sslmode=verify-full").unwrap();
        assert_eq!(full.mode(), TlsMode::VerifyFull);
        assert!(full.tls.is_some());
        assert_eq!(full.config.get_ssl_mode(), SslMode::Require);

        let prefer = PgTarget::parse("postgres://u:secret@db/app?sslmode=prefer").unwrap();
        assert_eq!(prefer.config.get_ssl_mode(), SslMode::Prefer);
        assert!(prefer.tls.is_some());
    }

    #[test]
    fn a_key_value_string_keeps_its_own_sslmode() {
        let plain = PgTarget::parse("host=db user=u password=secret dbname=app").unwrap();
        assert_eq!(plain.mode(), TlsMode::Disable);
        let required = PgTarget::parse("host=db user=u password=secret dbname=app sslmode=require").unwrap();
        assert_eq!(required.mode(), TlsMode::Require);
        assert!(required.tls.is_some());
        // Certificate checks need the URL form.
        assert!(PgTarget::parse("host=db user=u sslmode=verify-full").is_err());
    }

    #[test]
    fn wrong_values_are_named_without_the_password() {
        let message = |url: &str| format!("{:#}", PgTarget::parse(url).unwrap_err());
        let unknown = message("postgres://u:secret@db/app?sslmode=verify");
        assert!(unknown.contains("sslmode=verify is not one of"), "{unknown}");
        assert!(message("postgres://u:secret@db/app?sslmode=allow").contains("sslmode=allow is not supported"));
        let missing = message("postgres://u:secret@db/app?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem");
        assert!(missing.contains("/nonexistent/ca.pem"), "{missing}");
        assert!(message("postgres://u:secret@db/app?sslcert=/c.pem").contains("sslcert is not supported"));
        for url in [
            "postgres://u:secret@db/app?sslmode=verify",
            "postgres://u:secret@db/app?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
            "postgres://u:secret@db/app?bogus=1",
        ] {
            assert!(!message(url).contains("secret"), "{url}");
        }
    }
}
