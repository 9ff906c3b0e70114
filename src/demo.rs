//! `meterplane demo`: a demo tenant with three weeks of realistic usage, so a newcomer
//! sees real numbers at once. Safe to run again: it reuses what exists, issues a fresh
//! key to print, and its sample events have fixed request ids (re-sent ones are
//! recorded once).

use anyhow::Context;
use chrono::{Duration, Utc};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rust_decimal::Decimal;

use crate::{
    auth::KeyIdentity,
    config::Config,
    domain::{
        billing::{BillingProfile, BillingSettings, Currency},
        budget::DefaultScope,
        email::EmailAddress,
        names::Name,
        password::Password,
        plan::Plan,
        project_mode::ProjectMode,
        role::{Access, Role},
        usage::{EventStatus, NewUsageEvent},
    },
    ingest::{IngestSettings, Ingestor, Outcome},
    price_book::PriceBook,
    store::{
        self,
        access::OrgAccess,
        orgs::NewOrganization,
        parties::{PartyQuery, PartySort},
        users::NewUser,
        DbPool,
    },
};

pub const DEMO_EMAIL: &str = "demo@meterplane.local";
pub const DEMO_PASSWORD: &str = "meterplane-demo";
/// A read-only member of the demo organization (same password), to see what viewers see.
pub const DEMO_VIEWER_EMAIL: &str = "viewer@meterplane.local";
const SAMPLE_DAYS: i64 = 21;

struct SampleProject {
    name: &'static str,
    mode: ProjectMode,
    /// (provider, model) pairs the project calls.
    models: &'static [(&'static str, &'static str)],
    agents: &'static [&'static str],
    calls_per_day: std::ops::Range<u32>,
}

const PROJECTS: [SampleProject; 3] = [
    SampleProject {
        name: "Demo Project",
        mode: ProjectMode::Credits,
        models: &[
            ("openai", "gpt-4o"),
            ("openai", "gpt-4o-mini"),
            ("anthropic", "claude-sonnet-4-5"),
        ],
        agents: &[],
        calls_per_day: 40..90,
    },
    SampleProject {
        name: "Support Bot",
        mode: ProjectMode::Hybrid,
        models: &[
            ("anthropic", "claude-haiku-4-5"),
            ("google", "gemini-2.5-flash"),
            ("acme", "in-house-llm"),
        ],
        agents: &["triage", "refunds", "escalation"],
        calls_per_day: 30..70,
    },
    SampleProject {
        name: "Internal Tools",
        mode: ProjectMode::ApiKeys,
        models: &[("mistral", "mistral-small-latest"), ("openai", "gpt-5-mini")],
        agents: &[],
        calls_per_day: 10..30,
    },
];

const FEATURES: [&str; 3] = ["search", "chat", "summarize"];
const CUSTOMERS: [&str; 8] = [
    "acme-corp",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark-industries",
    "wayne-enterprises",
    "tyrell",
];

pub async fn run(config: &Config, pool: &DbPool) -> anyhow::Result<()> {
    let mut conn = pool.get().await?;
    if store::prices::list(&mut conn, None).await?.is_empty() {
        crate::cli::load_price_file(pool, crate::cli::BUNDLED_PRICES).await?;
    }
    let user = demo_user(&mut conn, DEMO_EMAIL, "Demo User").await?;
    let caller = user.caller();
    let org_id = match store::orgs::list_for_user(&mut conn, user.id).await?.first() {
        Some((org, _)) => org.id,
        None => {
            let new = NewOrganization {
                name: Name::parse("Demo Org")?,
                slug: None,
                alert_emails: vec![],
            };
            store::orgs::create(&mut conn, user.id, new).await?.0.id
        }
    };
    // Pro keeps 90 days, so three weeks of history fit.
    store::orgs::set_plan(&mut conn, org_id, Plan::Pro, Plan::Pro.retention_days(None)?).await?;
    let access = store::access::authorize(&mut conn, &caller, org_id, Access::Manage).await?;
    let viewer = demo_user(&mut conn, DEMO_VIEWER_EMAIL, "Demo Viewer").await?;
    store::members::ensure(&mut conn, &access, viewer.id, Role::Viewer).await?;

    let ingestor = Ingestor::new(
        pool.clone(),
        PriceBook::new(pool.clone(), config.ingest.prices_check_every),
        IngestSettings {
            storage_per_mtok: config.ingest.storage_price_per_mtok,
            body_cap_bytes: config.ingest.body_cap_bytes,
        },
    );
    let mut printed_key = None;
    let mut recorded = 0;
    for (index, sample) in PROJECTS.iter().enumerate() {
        let project = project(&mut conn, &access, sample).await?;
        let created = store::api_keys::create(
            &mut conn,
            &access,
            project.id,
            store::api_keys::NewKey {
                name: Name::parse("demo key")?,
                expires_at: None,
            },
            config.auth.api_key_pepper.expose(),
        )
        .await?;
        let identity = KeyIdentity {
            key_id: created.key.id,
            project_id: project.id,
            org_id,
        };
        if index == 0 {
            printed_key = Some((project.id, created.secret));
        }
        let events = sample_events(sample, index as u64);
        for chunk in events.chunks(500) {
            let outcomes = ingestor
                .record(&identity, chunk.iter().cloned().map(Ok).collect())
                .await?
                .outcomes;
            recorded += outcomes
                .iter()
                .filter(|o| matches!(o, Outcome::Accepted { .. }))
                .count();
        }
    }
    billing(&mut conn, &access).await?;
    let (project_id, secret) = printed_key.context("no demo project")?;
    println!("demo user:     {DEMO_EMAIL} / {DEMO_PASSWORD}");
    println!("demo viewer:   {DEMO_VIEWER_EMAIL} / {DEMO_PASSWORD} (read only)");
    println!("organization:  {org_id}");
    println!("project:       {project_id}");
    println!("api key:       {secret}");
    println!("sample usage:  {recorded} new events over the last {SAMPLE_DAYS} days");
    Ok(())
}

/// Billing settings and customers' billing profiles, so invoices look like real ones
/// (an issuer, tax, a markup, someone to send them to). What an operator already set
/// is kept.
async fn billing(conn: &mut store::DbConn, access: &OrgAccess) -> anyhow::Result<()> {
    if store::billing::settings(conn, access).await?.updated_at.is_none() {
        let settings = BillingSettings {
            issuer_name: Some("Demo Org Inc.".into()),
            issuer_address: Some("1 Main Street\nSpringfield, IL 62701\nUSA".into()),
            tax_id: Some("US12-3456789".into()),
            tax_rate: Decimal::new(825, 2),
            currency: Currency::Usd,
            markup: Decimal::from(20),
            due_days: 30,
            footer: Some("Thank you for your business. Questions: billing@demo.example".into()),
        };
        store::billing::set_settings(conn, access, &settings).await?;
    }
    let query = PartyQuery {
        id: None,
        external_id: None,
        blocked: None,
        sort: PartySort::ExternalId,
        limit: CUSTOMERS.len() as i64,
        offset: 0,
    };
    let customers = store::parties::page(conn, access, DefaultScope::Customer, &query, Utc::now()).await?;
    for customer in customers.iter().filter(|c| CUSTOMERS.contains(&c.external_id.as_str())) {
        if store::billing::profile(conn, access, customer.id)
            .await?
            .updated_at
            .is_some()
        {
            continue;
        }
        let name = customer
            .external_id
            .split('-')
            .map(|w| w[..1].to_uppercase() + &w[1..])
            .collect::<Vec<_>>()
            .join(" ");
        let profile = BillingProfile {
            billing_name: Some(format!("{name} Ltd.")),
            email: Some(EmailAddress::parse(&format!(
                "billing@{}.example",
                customer.external_id
            ))?),
            address: None,
            tax_id: None,
        };
        store::billing::set_profile(conn, access, customer.id, &profile).await?;
    }
    Ok(())
}

async fn demo_user(conn: &mut store::DbConn, address: &str, name: &str) -> anyhow::Result<store::users::User> {
    let email = EmailAddress::parse(address)?;
    if let Some(user) = store::users::find_by_email(conn, &email).await? {
        return Ok(user);
    }
    let password_hash = Password::parse(DEMO_PASSWORD)?.hash()?;
    let new = NewUser {
        email,
        password_hash,
        display_name: name.into(),
        is_operator: false,
    };
    let user = store::users::insert(conn, new).await?;
    // Made by the operator's own command, with a known address: nothing to prove.
    Ok(store::users::mark_verified(conn, user.id).await?)
}

async fn project(
    conn: &mut store::DbConn,
    access: &OrgAccess,
    sample: &SampleProject,
) -> anyhow::Result<store::projects::Project> {
    let existing = store::projects::list(conn, access)
        .await?
        .into_iter()
        .find(|p| p.name == sample.name);
    Ok(match existing {
        Some(project) => project,
        None => store::projects::create(conn, access, Name::parse(sample.name)?, sample.mode).await?,
    })
}

/// Deterministic traffic: the same seed gives the same request ids and shapes.
fn sample_events(sample: &SampleProject, seed: u64) -> Vec<NewUsageEvent> {
    let mut rng = StdRng::seed_from_u64(seed);
    let now = Utc::now();
    let today = now.date_naive();
    let mut events = Vec::new();
    for days_ago in (0..SAMPLE_DAYS).rev() {
        let day_start = (today - Duration::days(days_ago))
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .unwrap_or(now);
        // Today's calls fall between midnight and now (not piled up at now, which
        // shortly after midnight gave most of them one timestamp).
        let seconds = match days_ago {
            0 => (now - day_start).num_seconds().clamp(1, 86_400),
            _ => 86_400,
        };
        let calls = rng.random_range(sample.calls_per_day.clone());
        for call in 0..calls {
            let occurred_at = day_start + Duration::seconds(rng.random_range(0..seconds));
            let (provider, model) = sample.models[rng.random_range(0..sample.models.len())];
            let agent = (!sample.agents.is_empty()).then(|| sample.agents[rng.random_range(0..sample.agents.len())]);
            let failed = rng.random_bool(0.04);
            let prompt_tokens = rng.random_range(200..6_000);
            let cache_hit = rng.random_bool(0.1);
            let latency_ms = rng.random_range(150..4_000);
            // The first token comes before the call ends.
            let ttft_ms = rng.random_range(80..=latency_ms.min(900));
            events.push(NewUsageEvent {
                request_id: format!("demo-{seed}-{days_ago}-{call}"),
                endpoint: agent.map_or_else(|| "/chat/completions".to_owned(), |a| format!("/a2a/{a}")),
                provider: provider.to_owned(),
                model: model.to_owned(),
                customer: Some(CUSTOMERS[rng.random_range(0..CUSTOMERS.len())].to_owned()),
                agent: agent.map(str::to_owned),
                status: if failed {
                    EventStatus::Error
                } else {
                    EventStatus::Success
                },
                error_code: failed.then(|| {
                    if rng.random_bool(0.5) {
                        "rate_limited"
                    } else {
                        "upstream_timeout"
                    }
                    .to_owned()
                }),
                prompt_tokens,
                completion_tokens: if failed { 0 } else { rng.random_range(50..1_500) },
                cached_tokens: if cache_hit { prompt_tokens / 2 } else { 0 },
                cache_write_5m_tokens: 0,
                cache_write_1h_tokens: 0,
                reasoning_tokens: 0,
                audio_input_tokens: 0,
                audio_output_tokens: 0,
                images: 0,
                latency_ms: Some(latency_ms),
                ttft_ms: Some(ttft_ms),
                cache_hit,
                retries: i32::from(failed),
                started_at: Some(occurred_at),
                ended_at: None,
                occurred_at,
                metadata: Some(serde_json::json!({ "feature": FEATURES[call as usize % FEATURES.len()] })),
                request_body: None,
                response_body: None,
                bodies_truncated: false,
                billing_source: None,
                input_images: 0,
                call_type: Some(if agent.is_some() { "a2a" } else { "completion" }.to_owned()),
                model_id: None,
                api_base: None,
                client_ip: None,
                tags: vec![],
                gateway_overhead_ms: Some(rng.random_range(1..12)),
            });
        }
    }
    events.retain(|e| e.occurred_at <= now);
    events
}
