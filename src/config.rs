//! Typed configuration, read once from the environment at start-up.
//!
//! Every variable has a local-development default so `meterplane serve` works on a
//! fresh machine; `MP_ENV=production` turns the insecure defaults into start-up errors.

use std::{fmt, net::SocketAddr, str::FromStr, time::Duration};

use anyhow::{bail, Context};

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
    /// Number of HTTP worker threads; 0 means one per core.
    pub workers: usize,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub auth: AuthConfig,
    pub http: HttpConfig,
    pub ingest: IngestConfig,
    pub log_format: LogFormat,
}

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// USD per million tokens of calls whose request/response bodies are stored.
    pub storage_price_per_mtok: rust_decimal::Decimal,
    /// Largest stored request or response body; longer ones are cut and flagged.
    pub body_cap_bytes: usize,
    /// Largest accepted `POST /v1/usage/batch` body.
    pub batch_limit_bytes: usize,
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
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest accepted JSON body, in bytes.
    pub json_limit: usize,
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
        Ok(Self {
            bind: env.parse("MP_BIND", "127.0.0.1:8080")?,
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
            },
            http: HttpConfig {
                json_limit: env.parse("MP_JSON_LIMIT_BYTES", "262144")?,
            },
            ingest: IngestConfig {
                storage_price_per_mtok: env.parse("MP_DATA_STORAGE_PRICE_PER_MTOK", "0.01")?,
                body_cap_bytes: env.parse("MP_BODY_CAP_BYTES", "32768")?,
                batch_limit_bytes: env.parse("MP_BATCH_LIMIT_BYTES", "16777216")?,
            },
            log_format,
        })
    }
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
    fn wrong_values_name_the_variable() {
        let err = config_with(&[("MP_DB_POOL_SIZE", "many")]).unwrap_err();
        assert!(format!("{err:#}").contains("MP_DB_POOL_SIZE"));
    }

    #[test]
    fn secrets_are_not_printed_by_debug() {
        let config = config_with(&[]).expect("defaults are valid");
        assert!(!format!("{config:?}").contains(DEV_JWT_SECRET));
    }
}
