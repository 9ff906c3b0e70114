//! The `meterplane` command line: one binary, one subcommand per job.

use std::io::BufRead;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::{
    config::Config,
    domain::{email::EmailAddress, password::Password},
    http::openapi,
    startup::Application,
    store, telemetry,
};

#[derive(Parser)]
#[command(name = "meterplane", version, about = "Control plane for LLM gateways")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PriceFormat {
    /// A JSON array of `POST /v1/admin/prices` bodies.
    Meterplane,
    /// LiteLLM's `model_prices_and_context_window.json`: an object keyed by model.
    Litellm,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API.
    Serve {
        /// Apply pending migrations before serving.
        #[arg(long)]
        migrate: bool,
    },
    /// Apply pending database migrations.
    Migrate,
    /// Create a platform operator (or reset an existing one's password). The password
    /// is read from MP_OPERATOR_PASSWORD or, when unset, from the first line of stdin.
    CreateOperator {
        #[arg(long)]
        email: String,
    },
    /// Print the OpenAPI document, or write it to a file.
    Openapi {
        #[arg(long)]
        write: Option<std::path::PathBuf>,
    },
    /// Load a price catalog file (default: the bundled `data/prices.json`), in
    /// Meterplane's own shape or in LiteLLM's model-price JSON shape.
    LoadPrices {
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        #[arg(long, value_enum, default_value_t = PriceFormat::Meterplane)]
        format: PriceFormat,
        /// When LiteLLM's prices take effect (its map carries no dates); default: now.
        #[arg(long)]
        valid_from: Option<chrono::DateTime<chrono::Utc>>,
        /// Only these providers (catalog names, comma-separated), for a LiteLLM map.
        #[arg(long, value_delimiter = ',')]
        providers: Option<Vec<String>>,
        /// Print the versions in Meterplane's shape instead of loading them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Create a demo user, organization, project and API key, and print how to use them.
    Demo,
    /// Set the Redis budget counters from the spend ledger in PostgreSQL, for every
    /// organization or one. The service also does this by itself when it finds an
    /// organization's counters gone.
    RebuildCounters {
        #[arg(long)]
        org: Option<uuid::Uuid>,
    },
    /// Remove what every organization's retention no longer keeps (raw events, request
    /// ids, decision log; roll-ups after the billing horizon) and print what went.
    /// Running instances also do this every MP_PURGE_INTERVAL_SECS.
    Purge,
    /// Reconcile an organization's finalized and void invoices with the customers'
    /// events and cost ledger: one JSON line per invoice. Exits with status 1 when any
    /// invoice does not reconcile.
    ReconcileInvoices {
        #[arg(long)]
        org: uuid::Uuid,
    },
}

pub async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Openapi { write } = &cli.command {
        let json = openapi::document_json()?;
        return match write {
            Some(path) => std::fs::write(path, json).with_context(|| format!("writing {}", path.display())),
            None => {
                print!("{json}");
                Ok(())
            }
        };
    }
    let config = Config::from_env()?;
    telemetry::init(config.log_format);
    match cli.command {
        Command::Serve { migrate } => {
            if migrate {
                migrate_db(&config).await?;
            }
            let app = Application::build(config).await?;
            tracing::info!(port = app.port(), "meterplane listening");
            app.run_until_stopped().await?;
        }
        Command::Migrate => migrate_db(&config).await?,
        Command::CreateOperator { email } => create_operator(&config, &email).await?,
        Command::LoadPrices {
            file,
            format,
            valid_from,
            providers,
            dry_run,
        } => {
            let text = match file {
                Some(path) => std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
                None => BUNDLED_PRICES.to_owned(),
            };
            let text = match format {
                PriceFormat::Meterplane => text,
                PriceFormat::Litellm => {
                    from_litellm(&text, valid_from.unwrap_or_else(chrono::Utc::now), providers.as_deref())?
                }
            };
            if dry_run {
                println!("{text}");
            } else {
                let written = load_price_file(&pool(&config)?, &text).await?;
                println!("loaded {written} price versions");
            }
        }
        Command::Demo => crate::demo::run(&config, &pool(&config)?).await?,
        Command::RebuildCounters { org } => rebuild_counters(config, org).await?,
        Command::Purge => purge(&config).await?,
        Command::ReconcileInvoices { org } => reconcile_invoices(&config, org).await?,
        Command::Openapi { .. } => unreachable!("handled above"),
    }
    Ok(())
}

async fn migrate_db(config: &Config) -> anyhow::Result<()> {
    let applied = store::run_migrations(config.database.url.expose()).await?;
    tracing::info!(count = applied.len(), ?applied, "migrations applied");
    Ok(())
}

async fn rebuild_counters(config: Config, org: Option<uuid::Uuid>) -> anyhow::Result<()> {
    let state = crate::http::state::AppState::connect(config).await?;
    let orgs = match org {
        Some(id) => vec![id],
        None => {
            let mut conn = state.conn().await?;
            store::orgs::list_all(&mut conn)
                .await?
                .into_iter()
                .map(|o| o.id)
                .collect()
        }
    };
    let now = chrono::Utc::now();
    for org_id in &orgs {
        state.enforcer.rebuild(*org_id, now).await?;
    }
    println!("rebuilt the counters of {} organization(s)", orgs.len());
    Ok(())
}

async fn purge(config: &Config) -> anyhow::Result<()> {
    let outcome = crate::jobs::purge::run_once(
        &pool(config)?,
        chrono::Utc::now(),
        config.purge.batch_rows,
        config.purge.billing_horizon_days,
    )
    .await?;
    match outcome {
        Ok(report) => println!("{}", serde_json::to_string_pretty(&report)?),
        Err(crate::jobs::purge::Skipped::Busy) => anyhow::bail!("another instance is purging; try again later"),
    }
    Ok(())
}

async fn reconcile_invoices(config: &Config, org_id: uuid::Uuid) -> anyhow::Result<()> {
    use crate::{domain::invoice::InvoiceStatus, http::invoices::Reconciliation, store::invoices};
    let pool = pool(config)?;
    let mut conn = pool.get().await?;
    let access = store::access::OrgAccess::command_line_reader(org_id);
    let now = chrono::Utc::now();
    let earliest = invoices::ledger_start(now, config.purge.billing_horizon_days);
    let (mut checked, mut failed) = (0, 0);
    for status in [InvoiceStatus::Finalized, InvoiceStatus::Void] {
        let mut filter = invoices::ListFilter {
            status: Some(status),
            ..Default::default()
        };
        loop {
            let page = invoices::list(&mut conn, &access, &filter, 200).await?;
            let Some(last) = page.last().map(|h| h.id) else { break };
            for header in page {
                let r = invoices::reconcile(&mut conn, &access, header, now, earliest).await?;
                checked += 1;
                failed += usize::from(!r.reconciled);
                println!("{}", serde_json::to_string(&Reconciliation::from(r))?);
            }
            filter.before = Some(last);
        }
    }
    eprintln!("{checked} invoice(s) checked, {failed} not reconciled");
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}

fn read_password() -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("MP_OPERATOR_PASSWORD") {
        return Ok(password);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

async fn create_operator(config: &Config, email: &str) -> anyhow::Result<()> {
    let email = EmailAddress::parse(email).map_err(|e| anyhow::anyhow!("--email: {e}"))?;
    let password = Password::parse(&read_password()?).map_err(|e| anyhow::anyhow!("password: {e}"))?;
    let hash = password.hash()?;
    let pool = pool(config)?;
    let mut conn = pool.get().await?;
    let user = store::users::upsert_operator(&mut conn, &email, &hash).await?;
    println!("operator {} ({}) is ready", user.email, user.id);
    Ok(())
}

fn pool(config: &Config) -> anyhow::Result<store::DbPool> {
    store::connect(config.database.url.expose(), 2, config.database.acquire_timeout)
}

/// The catalog shipped with the binary, so `load-prices` works from any directory.
pub const BUNDLED_PRICES: &str = include_str!("../data/prices.json");

/// A LiteLLM price map as a Meterplane price file: the entries the API would accept
/// (each checked with its rules), the others named on stderr with the reason.
pub fn from_litellm(
    text: &str,
    valid_from: chrono::DateTime<chrono::Utc>,
    providers: Option<&[String]>,
) -> anyhow::Result<String> {
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).context("parsing the LiteLLM price map (a JSON object keyed by model)")?;
    let conversion = crate::domain::litellm_prices::convert(&map, valid_from, providers);
    let mut accepted = Vec::with_capacity(conversion.prices.len());
    let mut skipped = conversion.skipped;
    for price in conversion.prices {
        let key = format!(
            "{}/{}",
            price["provider"].as_str().unwrap_or("?"),
            price["model"].as_str().unwrap_or("?")
        );
        let checked = serde_json::from_value::<crate::http::pricing::CreatePrice>(price.clone())
            .map_err(|e| e.to_string())
            .and_then(|p| p.parse().map(drop).map_err(|errors| format!("{errors:?}")));
        match checked {
            Ok(()) => accepted.push(price),
            Err(reason) => skipped.push(crate::domain::litellm_prices::Skipped { key, reason }),
        }
    }
    for s in &skipped {
        eprintln!("skipped {}: {}", s.key, s.reason);
    }
    eprintln!(
        "{} price versions converted, {} entries skipped",
        accepted.len(),
        skipped.len()
    );
    Ok(serde_json::to_string_pretty(&accepted)?)
}

/// Parses a price file with the API's own rules and upserts every version.
pub async fn load_price_file(pool: &store::DbPool, text: &str) -> anyhow::Result<usize> {
    let entries: Vec<crate::http::pricing::CreatePrice> =
        serde_json::from_str(text).context("parsing the price file")?;
    let prices = entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| entry.parse().map_err(|errors| anyhow::anyhow!("entry {i}: {errors:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut conn = pool.get().await?;
    let written = store::prices::upsert_all(&mut conn, &prices).await?;
    // Running instances re-read their cached prices within a second.
    store::prices::announce_change(&mut conn).await?;
    Ok(written)
}
