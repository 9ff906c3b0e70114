//! The `meterplane` command line: one binary, one subcommand per job.

use std::io::BufRead;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::{
    config::Config,
    domain::{email::EmailAddress, names::Name, password::Password, project_mode::ProjectMode},
    http::openapi,
    startup::Application,
    store::{self, orgs::NewOrganization, users::NewUser},
    telemetry,
};

#[derive(Parser)]
#[command(name = "meterplane", version, about = "Control plane for LLM gateways")]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    /// Load a price catalog file (default: the bundled `data/prices.json`).
    LoadPrices {
        #[arg(long)]
        file: Option<std::path::PathBuf>,
    },
    /// Create a demo user, organization, project and API key, and print how to use them.
    Demo,
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
        Command::LoadPrices { file } => load_prices(&config, file.as_deref()).await?,
        Command::Demo => demo(&config).await?,
        Command::Openapi { .. } => unreachable!("handled above"),
    }
    Ok(())
}

async fn migrate_db(config: &Config) -> anyhow::Result<()> {
    let applied = store::run_migrations(config.database.url.expose()).await?;
    tracing::info!(count = applied.len(), ?applied, "migrations applied");
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
    let user = store::users::upsert_operator(&mut conn, &email, &hash)
        .await
        .map_err(to_anyhow)?;
    println!("operator {} ({}) is ready", user.email, user.id);
    Ok(())
}

fn pool(config: &Config) -> anyhow::Result<store::DbPool> {
    store::connect(config.database.url.expose(), 2, config.database.acquire_timeout)
}

fn to_anyhow(e: crate::error::AppError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// The catalog shipped with the binary, so `load-prices` works from any directory.
const BUNDLED_PRICES: &str = include_str!("../data/prices.json");

async fn load_prices(config: &Config, file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        None => BUNDLED_PRICES.to_owned(),
    };
    let entries: Vec<crate::http::pricing::CreatePrice> =
        serde_json::from_str(&text).context("parsing the price file")?;
    let prices = entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| entry.parse().map_err(|errors| anyhow::anyhow!("entry {i}: {errors:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let pool = pool(config)?;
    let mut conn = pool.get().await?;
    let written = store::prices::upsert_all(&mut conn, &prices).await.map_err(to_anyhow)?;
    println!("loaded {written} price versions");
    Ok(())
}

pub const DEMO_EMAIL: &str = "demo@meterplane.local";
pub const DEMO_PASSWORD: &str = "meterplane-demo";

/// Idempotent: reuses the demo user, organization and project, and issues a fresh key.
async fn demo(config: &Config) -> anyhow::Result<()> {
    let pool = pool(config)?;
    let mut conn = pool.get().await?;
    let email = EmailAddress::parse(DEMO_EMAIL).map_err(|e| anyhow::anyhow!("{e}"))?;
    let user = match store::users::find_by_email(&mut conn, &email)
        .await
        .map_err(to_anyhow)?
    {
        Some(user) => user,
        None => {
            let password_hash = Password::parse(DEMO_PASSWORD)
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .hash()?;
            let new = NewUser {
                email,
                password_hash,
                display_name: "Demo User".into(),
                is_operator: false,
            };
            store::users::insert(&mut conn, new).await.map_err(to_anyhow)?
        }
    };
    let caller = crate::auth::Caller {
        user_id: user.id,
        is_operator: false,
    };
    let orgs = store::orgs::list_for_user(&mut conn, user.id)
        .await
        .map_err(to_anyhow)?;
    let org_id = match orgs.first() {
        Some((org, _)) => org.id,
        None => {
            let name = Name::parse("Demo Org").map_err(|e| anyhow::anyhow!("{e}"))?;
            let new = NewOrganization {
                name,
                slug: None,
                alert_emails: vec![],
            };
            store::orgs::create(&mut conn, user.id, new)
                .await
                .map_err(to_anyhow)?
                .0
                .id
        }
    };
    let access = store::access::authorize(&mut conn, &caller, org_id, crate::domain::role::Access::Manage)
        .await
        .map_err(to_anyhow)?;
    let projects = store::projects::list(&mut conn, &access).await.map_err(to_anyhow)?;
    let project = match projects.into_iter().next() {
        Some(project) => project,
        None => {
            let name = Name::parse("Demo Project").map_err(|e| anyhow::anyhow!("{e}"))?;
            store::projects::create(&mut conn, &access, name, ProjectMode::Credits)
                .await
                .map_err(to_anyhow)?
        }
    };
    let name = Name::parse("demo key").map_err(|e| anyhow::anyhow!("{e}"))?;
    let key = store::api_keys::create(
        &mut conn,
        &access,
        project.id,
        store::api_keys::NewKey { name, expires_at: None },
        config.auth.api_key_pepper.expose(),
    )
    .await
    .map_err(to_anyhow)?;
    if key.secret.is_empty() {
        bail!("key generation returned an empty secret");
    }
    println!("demo user:     {DEMO_EMAIL} / {DEMO_PASSWORD}");
    println!("organization:  {org_id}");
    println!("project:       {}", project.id);
    println!("api key:       {}", key.secret);
    Ok(())
}
