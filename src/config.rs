//! Typed configuration, read once from the environment at start-up.
//!
//! Every variable has a local-development default so `meterplane serve` works on a
//! fresh machine; `MP_ENV=production` turns the insecure defaults into start-up errors.

use std::{fmt, net::SocketAddr, str::FromStr, time::Duration};

use anyhow::{bail, Context};

use crate::domain::{
    account_email::AccountMailSettings, account_token::TokenLifetimes, login_throttle::ThrottlePolicy,
    outbox::RetryPolicy,
};

const DEV_JWT_SECRET: &str = "meterplane-dev-jwt-secret-change-me-0123456789";
const DEV_API_KEY_PEPPER: &str = "meterplane-dev-api-key-pepper-change-me";

/// A string that must never be printed (passwords, signing secrets).
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    /// Where `/metrics` is served (`MP_METRICS_ADDR`, default loopback port 9464):
    /// apart from the API, so it is not open to whoever reaches the API port. `None`
    /// (`off`): not served.
    pub metrics_bind: Option<SocketAddr>,
    /// Number of HTTP worker threads; 0 means one per core.
    pub workers: usize,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub auth: AuthConfig,
    pub http: HttpConfig,
    pub ingest: IngestConfig,
    pub budgets: BudgetConfig,
    pub email: EmailConfig,
    pub purge: PurgeConfig,
    pub live: LiveConfig,
    pub log_format: LogFormat,
}

/// The live stream of spend logs (`GET /v1/orgs/{orgId}/spend-logs/stream`).
#[derive(Debug, Clone, Copy)]
pub struct LiveConfig {
    /// How often an idle stream sends a comment, so proxies and browsers keep it open.
    pub heartbeat: Duration,
    /// How long one stream lasts; it then ends with `expired` and the client reconnects
    /// (with a fresh JWT or ticket, so access is checked again).
    pub max_stream: Duration,
    /// How many events a stream may fall behind its client before it ends with
    /// `too_slow` (one ingest request's events are always accepted into an empty buffer).
    pub buffer: usize,
}

/// The retention purge (`jobs::purge`).
#[derive(Debug, Clone, Copy)]
pub struct PurgeConfig {
    /// How often an instance tries to purge; zero: never (another instance, or the
    /// `purge` command, does it).
    pub interval: Duration,
    /// Rows one delete statement removes at most.
    pub batch_rows: i64,
    /// How many days the per-customer cost ledger and the daily roll-ups are kept
    /// (when the plan's retention is shorter): what invoices are made from.
    pub billing_horizon_days: i32,
}

/// Outgoing email: the SMTP server, the sender, and how the outbox worker retries.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// `None` when `MP_SMTP_URL` is unset: the outbox worker does not run and queued
    /// emails stay pending until an instance with an SMTP server runs.
    pub smtp: Option<SmtpConfig>,
    /// The `From` of every email: `Name <address>` or a bare address.
    pub from: String,
    /// How often the worker looks for due emails when nothing woke it.
    pub poll_interval: Duration,
    pub retry: RetryPolicy,
}

/// How a connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text (`smtp://`): a relay on the same host or a private network.
    None,
    /// Plain connection upgraded with STARTTLS, refused if the server cannot
    /// (`smtp://…?tls=required`, port 587 by default).
    StartTls,
    /// TLS from the first byte (`smtps://`, port 465 by default).
    Tls,
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// The URL as configured, credentials included; lettre reads it.
    pub url: Secret,
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// The password inside the URL, percent-decoded, so errors can be scrubbed of it.
    pub password: Option<Secret>,
    /// Longest wait for the SMTP server on one step of a delivery. It also bounds how
    /// long the worker holds an email's row lock and its transaction open.
    pub timeout: Duration,
}

impl SmtpConfig {
    /// Reads an `smtp://` or `smtps://` URL. Error messages never repeat the URL: it
    /// may hold a password.
    pub fn parse(raw: &str, timeout: Duration) -> anyhow::Result<Self> {
        let url = url::Url::parse(raw).map_err(|e| anyhow::anyhow!("MP_SMTP_URL is not a valid URL ({e})"))?;
        let mut tls_param = None;
        for (name, value) in url.query_pairs() {
            match name.as_ref() {
                "tls" => tls_param = Some(value.into_owned()),
                other => bail!("MP_SMTP_URL has an unknown parameter `{other}`; only `tls=required` is understood"),
            }
        }
        let tls = match (url.scheme(), tls_param.as_deref()) {
            ("smtp", None) => SmtpTls::None,
            ("smtp", Some("required")) => SmtpTls::StartTls,
            ("smtp", Some(other)) => bail!(
                "MP_SMTP_URL: tls=`{other}` is not supported; use `tls=required` (STARTTLS) or smtps:// \
                 (opportunistic STARTTLS could be stripped by anyone on the path)"
            ),
            ("smtps", None) => SmtpTls::Tls,
            ("smtps", Some(_)) => bail!("MP_SMTP_URL: smtps:// is TLS already; drop the `tls` parameter"),
            (scheme, _) => bail!("MP_SMTP_URL must start with smtp:// or smtps://, not {scheme}://"),
        };
        let host = match url.host() {
            Some(host) => host,
            None => bail!("MP_SMTP_URL names no host"),
        };
        let loopback = match &host {
            url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
            url::Host::Ipv4(ip) => ip.is_loopback(),
            url::Host::Ipv6(ip) => ip.is_loopback(),
        };
        // The default ports are lettre's, so what is logged is what it connects to.
        let port = url.port().unwrap_or(match tls {
            SmtpTls::None => 25,
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
        });
        let password = match url.password() {
            Some(encoded) => Some(Secret::new(
                percent_decode(encoded).context("MP_SMTP_URL: the password is not valid percent-encoded UTF-8")?,
            )),
            None if !url.username().is_empty() => {
                bail!("MP_SMTP_URL has a user but no password (`smtp://user:password@host`)")
            }
            None => None,
        };
        if password.is_some() && tls == SmtpTls::None && !loopback {
            bail!(
                "MP_SMTP_URL would send the SMTP password in clear text to {}; use smtps:// or ?tls=required",
                host
            );
        }
        Ok(Self {
            host: host.to_string(),
            url: Secret::new(raw),
            port,
            tls,
            password,
            timeout,
        })
    }
}

fn percent_decode(text: &str) -> anyhow::Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).context("truncated escape")?;
            let hex = std::str::from_utf8(hex)?;
            out.push(u8::from_str_radix(hex, 16)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(String::from_utf8(out)?)
}

#[derive(Debug, Clone)]
pub struct BudgetConfig {
    /// How long an authorize reservation waits for its usage event.
    pub reservation_ttl: Duration,
    /// How long an instance reuses the budgets, rate limits and blocks it read.
    pub rules_cache_ttl: Duration,
    /// One allowed call in this many goes to the decision log (denials always do).
    pub decision_sample_every: u64,
}

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// USD per million tokens of calls whose request/response bodies are stored.
    pub storage_price_per_mtok: rust_decimal::Decimal,
    /// Largest stored request or response body; longer ones are cut and flagged.
    pub body_cap_bytes: usize,
    /// Largest accepted `POST /v1/usage/batch` body.
    pub batch_limit_bytes: usize,
    /// How often an instance looks whether prices, overrides or discounts changed
    /// (`crate::price_book`): a change made through another instance applies here
    /// within this time.
    pub prices_check_every: Duration,
    /// Most events one group transaction of coalesced small requests holds
    /// (`crate::ingest::group`); 1 records every request in a transaction of its own.
    pub group_max_events: usize,
    /// Group transactions of one API key running at once.
    pub group_in_flight: usize,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: Secret,
    pub pool_size: usize,
    /// How long a request waits for a pooled connection before it gets a 503.
    pub acquire_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: Secret,
    /// Prepended to every key, so several deployments (or tests) can share one Redis.
    pub key_prefix: String,
    /// How long a Redis command or connection attempt may take before it counts as
    /// Redis being down; keeps the hot path from hanging on an unreachable server.
    pub timeout: Duration,
    /// What the authorize check answers while Redis is unreachable.
    pub when_down: RedisDownPolicy,
}

/// The authorize check's policy while Redis (its counters) is unreachable. Usage
/// recording keeps working either way: PostgreSQL is the system of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum RedisDownPolicy {
    /// Allow calls (blocked customers and agents, and revoked keys, are still
    /// denied); budgets and rate limits are not enforced until Redis is back.
    Open,
    /// Deny every call with `counters_unavailable`.
    Closed,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub jwt_secret: Secret,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub jwt_ttl: Duration,
    /// Clock-skew tolerance when checking `exp`/`nbf`.
    pub jwt_leeway_secs: u64,
    /// Keyed-hash secret for API keys; changing it invalidates every issued key.
    pub api_key_pepper: Secret,
    /// How long a resolved API key stays in the per-instance cache. A key revoked on
    /// another instance keeps working here for at most this long.
    pub api_key_cache_ttl: Duration,
    pub signup_enabled: bool,
    /// Login throttling limits (`MP_LOGIN_*`).
    pub login_throttle: ThrottlePolicy,
    /// The header that carries the client's address when a proxy in front sets it
    /// (`MP_CLIENT_IP_HEADER`, e.g. `x-forwarded-for`: its last entry, the one the
    /// proxy appended, is used). Unset: the TCP peer's address.
    pub client_ip_header: Option<String>,
    /// Where account emails point and how long their tokens last.
    pub account_mail: AccountMailSettings,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest accepted JSON body, in bytes.
    pub json_limit: usize,
    /// Bodies of at least this many bytes (or of unknown length) are large: see
    /// `crate::http::large_bodies`.
    pub large_body_bytes: usize,
    /// Large bodies handled at once per instance.
    pub large_body_concurrency: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, so tests can supply values without
    /// touching the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let env = Env(&lookup);
        let production = env.string("MP_ENV", "development") == "production";
        let jwt_secret = env.string("MP_JWT_SECRET", DEV_JWT_SECRET);
        let api_key_pepper = env.string("MP_API_KEY_PEPPER", DEV_API_KEY_PEPPER);
        if production && (jwt_secret == DEV_JWT_SECRET || api_key_pepper == DEV_API_KEY_PEPPER) {
            bail!("MP_ENV=production requires MP_JWT_SECRET and MP_API_KEY_PEPPER to be set");
        }
        if jwt_secret.len() < 32 {
            bail!("MP_JWT_SECRET must be at least 32 bytes long");
        }
        let log_format = match env.string("MP_LOG_FORMAT", "pretty").as_str() {
            "json" => LogFormat::Json,
            "pretty" => LogFormat::Pretty,
            other => bail!("MP_LOG_FORMAT must be `json` or `pretty`, got `{other}`"),
        };
        let email = EmailConfig {
            smtp: match lookup("MP_SMTP_URL").filter(|url| !url.trim().is_empty()) {
                Some(url) => Some(SmtpConfig::parse(
                    url.trim(),
                    Duration::from_millis(env.parse("MP_SMTP_TIMEOUT_MS", "15000")?),
                )?),
                None => None,
            },
            from: {
                let from = env.string("MP_SMTP_FROM", "Meterplane <alerts@meterplane.local>");
                from.parse::<lettre::message::Mailbox>().map_err(|e| {
                    anyhow::anyhow!("MP_SMTP_FROM `{from}` is not an email address or `Name <address>`: {e}")
                })?;
                from
            },
            poll_interval: Duration::from_millis(env.parse("MP_OUTBOX_POLL_MS", "5000")?),
            retry: RetryPolicy::new(
                Duration::from_millis(env.parse("MP_OUTBOX_RETRY_BASE_MS", "30000")?),
                Duration::from_millis(env.parse("MP_OUTBOX_RETRY_CAP_MS", "3600000")?),
                env.parse("MP_OUTBOX_MAX_ATTEMPTS", "12")?,
            )
            .map_err(|e| anyhow::anyhow!("MP_OUTBOX_RETRY_BASE_MS, _CAP_MS, _MAX_ATTEMPTS: {e}"))?,
        };
        if email.poll_interval.is_zero() {
            bail!("MP_OUTBOX_POLL_MS must be greater than 0");
        }
        if email.smtp.as_ref().is_some_and(|smtp| smtp.timeout.is_zero()) {
            bail!("MP_SMTP_TIMEOUT_MS must be greater than 0");
        }
        Ok(Self {
            bind: env.parse("MP_BIND", "127.0.0.1:8080")?,
            metrics_bind: match env.string("MP_METRICS_ADDR", "127.0.0.1:9464").trim() {
                "off" => None,
                _ => Some(env.parse("MP_METRICS_ADDR", "127.0.0.1:9464")?),
            },
            workers: env.parse("MP_WORKERS", "0")?,
            database: DatabaseConfig {
                url: Secret::new(env.string("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/meterplane")),
                pool_size: env.parse("MP_DB_POOL_SIZE", "16")?,
                acquire_timeout: Duration::from_millis(env.parse("MP_DB_ACQUIRE_TIMEOUT_MS", "5000")?),
            },
            redis: RedisConfig {
                url: Secret::new(env.string("REDIS_URL", "redis://127.0.0.1:6379")),
                key_prefix: env.string("MP_REDIS_PREFIX", "mp:"),
                timeout: Duration::from_millis(env.parse("MP_REDIS_TIMEOUT_MS", "500")?),
                when_down: env.parse("MP_AUTHORIZE_WHEN_REDIS_DOWN", "open")?,
            },
            auth: AuthConfig {
                jwt_secret: Secret::new(jwt_secret),
                jwt_issuer: env.string("MP_JWT_ISSUER", "meterplane"),
                jwt_audience: env.string("MP_JWT_AUDIENCE", "meterplane-api"),
                jwt_ttl: Duration::from_secs(env.parse("MP_JWT_TTL_SECS", "900")?),
                jwt_leeway_secs: env.parse("MP_JWT_LEEWAY_SECS", "5")?,
                api_key_pepper: Secret::new(api_key_pepper),
                api_key_cache_ttl: Duration::from_secs(env.parse("MP_API_KEY_CACHE_TTL_SECS", "10")?),
                signup_enabled: env.parse("MP_SIGNUP_ENABLED", "true")?,
                login_throttle: login_throttle(&env)?,
                client_ip_header: lookup("MP_CLIENT_IP_HEADER")
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty()),
                account_mail: AccountMailSettings {
                    api_base: env.string("MP_PUBLIC_URL", "http://127.0.0.1:8080"),
                    lifetimes: TokenLifetimes {
                        verification: Duration::from_secs(positive(
                            env.parse("MP_VERIFY_TOKEN_TTL_SECS", "172800")?,
                            "MP_VERIFY_TOKEN_TTL_SECS",
                        )?),
                        reset: Duration::from_secs(positive(
                            env.parse("MP_RESET_TOKEN_TTL_SECS", "3600")?,
                            "MP_RESET_TOKEN_TTL_SECS",
                        )?),
                    },
                },
            },
            http: HttpConfig {
                json_limit: env.parse("MP_JSON_LIMIT_BYTES", "262144")?,
                large_body_bytes: env.parse("MP_LARGE_BODY_BYTES", "1048576")?,
                large_body_concurrency: match env.parse("MP_LARGE_BODY_CONCURRENCY", "1")? {
                    0 => bail!("MP_LARGE_BODY_CONCURRENCY must be at least 1"),
                    n => n,
                },
            },
            ingest: IngestConfig {
                storage_price_per_mtok: env.parse("MP_DATA_STORAGE_PRICE_PER_MTOK", "0.01")?,
                body_cap_bytes: env.parse("MP_BODY_CAP_BYTES", "32768")?,
                batch_limit_bytes: env.parse("MP_BATCH_LIMIT_BYTES", "16777216")?,
                prices_check_every: match env.parse("MP_PRICES_CHECK_MS", "1000")? {
                    0 => bail!("MP_PRICES_CHECK_MS must be greater than 0"),
                    ms => Duration::from_millis(ms),
                },
                group_max_events: match env.parse("MP_INGEST_GROUP_MAX_EVENTS", "500")? {
                    0 => bail!("MP_INGEST_GROUP_MAX_EVENTS must be at least 1 (1: no coalescing)"),
                    n => n,
                },
                group_in_flight: match env.parse("MP_INGEST_GROUP_IN_FLIGHT", "1")? {
                    0 => bail!("MP_INGEST_GROUP_IN_FLIGHT must be at least 1"),
                    n => n,
                },
            },
            budgets: BudgetConfig {
                reservation_ttl: Duration::from_secs(env.parse("MP_RESERVATION_TTL_SECS", "600")?),
                rules_cache_ttl: Duration::from_millis(env.parse("MP_BUDGET_RULES_CACHE_MS", "1000")?),
                decision_sample_every: env.parse("MP_DECISION_SAMPLE_EVERY", "100")?,
            },
            email,
            purge: PurgeConfig {
                interval: Duration::from_secs(env.parse("MP_PURGE_INTERVAL_SECS", "3600")?),
                batch_rows: match env.parse("MP_PURGE_BATCH_ROWS", "5000")? {
                    rows if rows > 0 => rows,
                    _ => bail!("MP_PURGE_BATCH_ROWS must be greater than 0"),
                },
                billing_horizon_days: billing_horizon(env.parse("MP_BILLING_HORIZON_DAYS", "400")?)?,
            },
            live: LiveConfig {
                heartbeat: Duration::from_secs(positive(
                    env.parse("MP_LIVE_HEARTBEAT_SECS", "15")?,
                    "MP_LIVE_HEARTBEAT_SECS",
                )?),
                max_stream: Duration::from_secs(positive(
                    env.parse("MP_LIVE_MAX_STREAM_SECS", "3600")?,
                    "MP_LIVE_MAX_STREAM_SECS",
                )?),
                buffer: usize::try_from(positive(env.parse("MP_LIVE_BUFFER", "10000")?, "MP_LIVE_BUFFER")?)
                    .context("MP_LIVE_BUFFER is too large")?,
            },
            log_format,
        })
    }
}

/// `MP_LOGIN_*`: the login throttling limits; defaults in [`ThrottlePolicy::default`].
fn login_throttle(env: &Env) -> anyhow::Result<ThrottlePolicy> {
    let d = ThrottlePolicy::default();
    let secs = |name: &str, default: Duration| -> anyhow::Result<Duration> {
        Ok(Duration::from_secs(positive(
            env.parse(name, &default.as_secs().to_string())?,
            name,
        )?))
    };
    let limit = |name: &str, default: u32| -> anyhow::Result<u32> {
        let value: u32 = env.parse(name, &default.to_string())?;
        if value == 0 {
            bail!("{name} must be greater than 0");
        }
        Ok(value)
    };
    let policy = ThrottlePolicy {
        pair_free_failures: env.parse("MP_LOGIN_FREE_FAILURES", &d.pair_free_failures.to_string())?,
        pair_base_delay: Duration::from_millis(positive(
            env.parse("MP_LOGIN_BASE_DELAY_MS", &d.pair_base_delay.as_millis().to_string())?,
            "MP_LOGIN_BASE_DELAY_MS",
        )?),
        pair_max_delay: secs("MP_LOGIN_MAX_DELAY_SECS", d.pair_max_delay)?,
        account_limit: limit("MP_LOGIN_ACCOUNT_LIMIT", d.account_limit)?,
        address_limit: limit("MP_LOGIN_ADDRESS_LIMIT", d.address_limit)?,
        window: secs("MP_LOGIN_WINDOW_SECS", d.window)?,
        known_address_ttl: secs("MP_LOGIN_KNOWN_ADDRESS_SECS", d.known_address_ttl)?,
    };
    if policy.pair_base_delay > policy.pair_max_delay {
        bail!("MP_LOGIN_BASE_DELAY_MS must not exceed MP_LOGIN_MAX_DELAY_SECS");
    }
    Ok(policy)
}

/// `MP_BILLING_HORIZON_DAYS`: long enough that last month can always be invoiced.
fn billing_horizon(days: i32) -> anyhow::Result<i32> {
    use crate::domain::retention::{MAX_BILLING_HORIZON_DAYS, MIN_BILLING_HORIZON_DAYS};
    if !(MIN_BILLING_HORIZON_DAYS..=MAX_BILLING_HORIZON_DAYS).contains(&days) {
        bail!(
            "MP_BILLING_HORIZON_DAYS must be from {MIN_BILLING_HORIZON_DAYS} to {MAX_BILLING_HORIZON_DAYS} \
             (days the per-customer cost data invoices are made from is kept)"
        );
    }
    Ok(days)
}

fn positive(value: u64, name: &str) -> anyhow::Result<u64> {
    if value == 0 {
        bail!("{name} must be greater than 0");
    }
    Ok(value)
}

struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn string(&self, name: &str, default: &str) -> String {
        (self.0)(name).unwrap_or_else(|| default.to_owned())
    }

    fn parse<T>(&self, name: &str, default: &str) -> anyhow::Result<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let raw = self.string(name, default);
        raw.parse::<T>()
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("{name} has an invalid value `{raw}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config_with(vars: &[(&str, &str)]) -> anyhow::Result<Config> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_work_for_local_development() {
        let config = config_with(&[]).expect("defaults are valid");
        assert_eq!(config.bind.port(), 8080);
        assert_eq!(config.auth.jwt_ttl, Duration::from_secs(900));
    }

    #[test]
    fn production_refuses_development_secrets() {
        let err = config_with(&[("MP_ENV", "production")]).unwrap_err();
        assert!(err.to_string().contains("MP_JWT_SECRET"));
    }

    #[test]
    fn the_billing_horizon_defaults_to_400_days_and_keeps_last_month_invoiceable() {
        assert_eq!(config_with(&[]).unwrap().purge.billing_horizon_days, 400);
        let set = config_with(&[("MP_BILLING_HORIZON_DAYS", "70")]).unwrap();
        assert_eq!(set.purge.billing_horizon_days, 70);
        for wrong in ["69", "3661", "-1", "a year"] {
            let err = config_with(&[("MP_BILLING_HORIZON_DAYS", wrong)]).unwrap_err();
            assert!(
                format!("{err:#}").contains("MP_BILLING_HORIZON_DAYS"),
                "{wrong}: {err:#}"
            );
        }
    }

    #[test]
    fn wrong_values_name_the_variable() {
        let err = config_with(&[("MP_DB_POOL_SIZE", "many")]).unwrap_err();
        assert!(format!("{err:#}").contains("MP_DB_POOL_SIZE"));
    }

    #[test]
    fn without_an_smtp_url_nothing_is_sent() {
        let config = config_with(&[]).expect("defaults are valid");
        assert!(config.email.smtp.is_none());
        let blank = config_with(&[("MP_SMTP_URL", " ")]).expect("blank is unset");
        assert!(blank.email.smtp.is_none());
    }

    #[test]
    fn smtp_urls_give_the_tls_mode_and_default_port() {
        let cases = [
            ("smtp://127.0.0.1:2525", SmtpTls::None, 2525),
            ("smtp://mail.example.com", SmtpTls::None, 25),
            ("smtp://user:pw@mail.example.com?tls=required", SmtpTls::StartTls, 587),
            ("smtps://user:pw@mail.example.com", SmtpTls::Tls, 465),
            ("smtps://mail.example.com:2465", SmtpTls::Tls, 2465),
            ("smtp://user:pw@localhost:2525", SmtpTls::None, 2525),
        ];
        for (url, tls, port) in cases {
            let config = config_with(&[("MP_SMTP_URL", url)]).unwrap_or_else(|e| panic!("{url}: {e:#}"));
            let smtp = config.email.smtp.expect("configured");
            assert_eq!((smtp.tls, smtp.port), (tls, port), "{url}");
        }
    }

    #[test]
    fn bad_smtp_urls_are_refused_without_repeating_the_password() {
        for url in [
            "http://mail.example.com",
            "smtp://mail.example.com?tls=opportunistic",
            "smtp://mail.example.com?tsl=required",
            "smtps://mail.example.com?tls=required",
            "smtp://user@mail.example.com",
            "smtp://user:s3cret-pw@mail.example.com",
            "smtp://user:s3cret-pw@:25",
            "not a url s3cret-pw",
        ] {
            let err = config_with(&[("MP_SMTP_URL", url)]).expect_err(url);
            let message = format!("{err:#}");
            assert!(message.contains("MP_SMTP_URL"), "{url}: {message}");
            assert!(!message.contains("s3cret-pw"), "{url}: {message}");
        }
    }

    #[test]
    fn the_smtp_password_is_decoded_and_never_printed() {
        let config = config_with(&[("MP_SMTP_URL", "smtps://mailer:p%40ss%2Fw0rd@mail.example.com")]).unwrap();
        let smtp = config.email.smtp.as_ref().unwrap();
        assert_eq!(smtp.password.as_ref().map(Secret::expose), Some("p@ss/w0rd"));
        let printed = format!("{config:?}");
        assert!(!printed.contains("p%40ss") && !printed.contains("p@ss"), "{printed}");
    }

    #[test]
    fn outbox_settings_are_checked() {
        assert!(config_with(&[("MP_SMTP_FROM", "not an address")]).is_err());
        assert!(config_with(&[("MP_SMTP_FROM", "Alerts <alerts@example.com>")]).is_ok());
        assert!(config_with(&[("MP_OUTBOX_MAX_ATTEMPTS", "0")]).is_err());
        assert!(config_with(&[("MP_OUTBOX_RETRY_BASE_MS", "0")]).is_err());
        assert!(config_with(&[("MP_OUTBOX_RETRY_BASE_MS", "5000"), ("MP_OUTBOX_RETRY_CAP_MS", "1000")]).is_err());
        assert!(config_with(&[("MP_OUTBOX_POLL_MS", "0")]).is_err());
    }

    #[test]
    fn live_stream_knobs_have_defaults_and_refuse_zero() {
        let config = config_with(&[]).expect("defaults are valid");
        assert_eq!(config.live.heartbeat, Duration::from_secs(15));
        assert_eq!(config.live.max_stream, Duration::from_secs(3600));
        assert_eq!(config.live.buffer, 10_000);
        for name in ["MP_LIVE_HEARTBEAT_SECS", "MP_LIVE_MAX_STREAM_SECS", "MP_LIVE_BUFFER"] {
            let err = config_with(&[(name, "0")]).unwrap_err();
            assert!(format!("{err:#}").contains(name), "{err:#}");
        }
        let set = config_with(&[("MP_LIVE_MAX_STREAM_SECS", "2"), ("MP_LIVE_BUFFER", "50")]).expect("valid");
        assert_eq!((set.live.max_stream, set.live.buffer), (Duration::from_secs(2), 50));
    }

    #[test]
    fn secrets_are_not_printed_by_debug() {
        let config = config_with(&[]).expect("defaults are valid");
        assert!(!format!("{config:?}").contains(DEV_JWT_SECRET));
    }
}
