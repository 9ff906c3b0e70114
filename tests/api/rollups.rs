//! The daily and hourly roll-ups against the raw events they summarize: a randomized
//! workload, then every column of `usage_daily` and `usage_hourly` compared with sums
//! SQL recomputes over `usage_events`, exactly. Also the migration that repaired
//! roll-ups written before.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, DurationRound, Utc};
use diesel::sql_types::{Array, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rand::{rngs::StdRng, seq::IndexedRandom, Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{Tenant, TestApp};

/// The grain of the roll-ups besides their time column (`day`, `hour`), recomputed from
/// raw events with the canonical model (the catalog id, checked per event below).
const GRAIN: [&str; 8] = [
    "org_id",
    "project_id",
    "api_key_id",
    "customer_id",
    "agent_id",
    "endpoint",
    "provider",
    "model",
];

/// Latency bucket upper bounds (ms, inclusive) as documented for the stored format.
const BOUNDS: [i64; 16] = [
    25, 50, 100, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000, 20_000, 60_000,
];

/// A roll-up table: its name, its time column, that column recomputed from an event,
/// and the dimensions of `GRAIN` it keeps (the others hold a documented constant).
#[derive(Clone, Copy)]
struct Table {
    name: &'static str,
    time: &'static str,
    from_event: &'static str,
    kept: &'static [&'static str],
}

const DAY: &str = "(occurred_at AT TIME ZONE 'UTC')::date";
const EVERY_DIMENSION: &[&str] = &GRAIN;

const DAILY: Table = Table {
    name: "usage_daily",
    time: "day",
    from_event: DAY,
    kept: EVERY_DIMENSION,
};
const HOURLY: Table = Table {
    name: "usage_hourly",
    time: "hour",
    from_event: "date_trunc('hour', occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
    kept: EVERY_DIMENSION,
};
/// The coarse daily table: organization-wide per model.
const COARSE: [Table; 1] = [Table {
    name: "usage_daily_models",
    time: "day",
    from_event: DAY,
    kept: &["org_id", "provider", "model"],
}];

/// What a dimension's column holds in a table that does not keep it.
fn constant_of(column: &str) -> &'static str {
    match column {
        "project_id" | "api_key_id" => "'00000000-0000-0000-0000-000000000000'::uuid",
        "customer_id" | "agent_id" => "NULL::uuid",
        _ => "''",
    }
}

/// Every summed column of the roll-ups and how it is recomputed from raw events.
fn recomputed_columns() -> Vec<(String, String)> {
    let mut columns: Vec<(String, String)> = [
        ("requests", "count(*)"),
        ("errors", "count(*) FILTER (WHERE status = 'error')"),
        ("cache_hits", "count(*) FILTER (WHERE cache_hit)"),
        ("unpriced", "count(*) FILTER (WHERE unpriced)"),
        ("prompt_tokens", "sum(prompt_tokens)"),
        ("completion_tokens", "sum(completion_tokens)"),
        ("cached_tokens", "sum(cached_tokens)"),
        ("cache_write_5m_tokens", "sum(cache_write_5m_tokens)"),
        ("cache_write_1h_tokens", "sum(cache_write_1h_tokens)"),
        ("reasoning_tokens", "sum(reasoning_tokens)"),
        ("audio_input_tokens", "sum(audio_input_tokens)"),
        ("audio_output_tokens", "sum(audio_output_tokens)"),
        ("images", "sum(images)"),
        ("input_images", "sum(input_images)"),
        ("input_cost", "sum(input_cost)"),
        ("output_cost", "sum(output_cost)"),
        ("cached_input_cost", "sum(cached_input_cost)"),
        ("cache_write_5m_cost", "sum(cache_write_5m_cost)"),
        ("cache_write_1h_cost", "sum(cache_write_1h_cost)"),
        ("reasoning_cost", "sum(reasoning_cost)"),
        ("audio_input_cost", "sum(audio_input_cost)"),
        ("audio_output_cost", "sum(audio_output_cost)"),
        ("request_cost", "sum(request_cost)"),
        ("image_cost", "sum(image_cost)"),
        ("image_input_cost", "sum(image_input_cost)"),
        ("image_output_cost", "sum(image_output_cost)"),
        ("data_storage_cost", "sum(data_storage_cost)"),
        ("cost_before_discount", "sum(cost_before_discount)"),
        ("discount_savings", "sum(discount_savings)"),
        ("cost", "sum(cost)"),
        (
            "credits_cost",
            "coalesce(sum(cost) FILTER (WHERE billing_source = 'credits'), 0)",
        ),
        (
            "api_keys_cost",
            "coalesce(sum(cost) FILTER (WHERE billing_source = 'api-keys'), 0)",
        ),
        ("credits_requests", "count(*) FILTER (WHERE billing_source = 'credits')"),
        (
            "api_keys_requests",
            "count(*) FILTER (WHERE billing_source = 'api-keys')",
        ),
        (
            "credits_data_storage_cost",
            "coalesce(sum(data_storage_cost) FILTER (WHERE billing_source = 'credits'), 0)",
        ),
        (
            "api_keys_data_storage_cost",
            "coalesce(sum(data_storage_cost) FILTER (WHERE billing_source = 'api-keys'), 0)",
        ),
        ("latency_ms_sum", "coalesce(sum(latency_ms), 0)"),
        ("latency_count", "count(latency_ms)"),
        ("ttft_ms_sum", "coalesce(sum(ttft_ms), 0)"),
        ("ttft_count", "count(ttft_ms)"),
    ]
    .into_iter()
    .map(|(c, e)| (c.to_owned(), e.to_owned()))
    .collect();
    for (prefix, value) in [("latency", "latency_ms"), ("ttft", "ttft_ms")] {
        let mut lower: Option<i64> = None;
        for (i, bound) in BOUNDS.iter().enumerate() {
            let condition = match lower {
                None => format!("{value} <= {bound}"),
                Some(l) => format!("{value} > {l} AND {value} <= {bound}"),
            };
            columns.push((
                format!("{prefix}_b{i:02}"),
                format!("count(*) FILTER (WHERE {condition})"),
            ));
            lower = Some(*bound);
        }
        columns.push((
            format!("{prefix}_b16"),
            format!("count(*) FILTER (WHERE {value} > {})", BOUNDS[15]),
        ));
    }
    columns
}

#[derive(diesel::QueryableByName)]
struct Group {
    #[diesel(sql_type = Text)]
    grain: String,
    #[diesel(sql_type = Text)]
    sums: String,
}

type Groups = BTreeMap<String, BTreeMap<String, Value>>;

async fn groups(database_url: &str, sql: &str, orgs: &[Uuid]) -> Groups {
    let mut conn = AsyncPgConnection::establish(database_url).await.unwrap();
    let rows: Vec<Group> = diesel::sql_query(sql)
        .bind::<Array<SqlUuid>, _>(orgs)
        .load(&mut conn)
        .await
        .unwrap();
    rows.into_iter()
        .map(|g| (g.grain, serde_json::from_str(&g.sums).unwrap()))
        .collect()
}

/// (roll-ups of `table` as stored, summed over shards; the same recomputed from raw
/// events). Keyed by the grain as text: organization, time, project, … model.
async fn stored_and_recomputed(database_url: &str, table: Table, orgs: &[Uuid]) -> (Groups, Groups) {
    let columns = recomputed_columns();
    // The stored side reads every grain column as it is; the recomputed side writes
    // the constant for the dimensions the table does not keep.
    let grain_key = |model: &str, constants: bool| {
        let mut grain: Vec<&str> = GRAIN.to_vec();
        grain.insert(1, "t");
        grain
            .iter()
            .map(|c| {
                let value = match *c {
                    "t" => "t",
                    c if constants && !table.kept.contains(&c) => constant_of(c),
                    "model" => model,
                    c => c,
                };
                format!("coalesce({value}::text, '-')")
            })
            .collect::<Vec<_>>()
            .join(" || '|' || ")
    };
    let group_by = |model: &str| {
        let kept: Vec<&str> = table
            .kept
            .iter()
            .map(|c| if *c == "model" { model } else { c })
            .collect();
        format!("{}, t", kept.join(", "))
    };
    let object = |value: &dyn Fn(&str, &str) -> String| {
        let pairs: Vec<String> = columns
            .iter()
            .map(|(c, e)| format!("'{c}', trim_scale(({})::numeric)::text", value(c, e)))
            .collect();
        // A function takes at most 100 arguments: objects of 40 pairs, concatenated.
        let objects: Vec<String> = pairs
            .chunks(40)
            .map(|chunk| format!("jsonb_build_object({})", chunk.join(", ")))
            .collect();
        format!("({})::text", objects.join(" || "))
    };
    let stored_group = format!("{}, t", GRAIN.join(", "));
    let stored = format!(
        "SELECT {grain} AS grain, {sums} AS sums FROM (SELECT *, {time} AS t FROM {name} WHERE org_id = ANY($1)) d \
         GROUP BY {group}",
        grain = grain_key("model", false),
        sums = object(&|c, _| format!("sum({c})")),
        time = table.time,
        name = table.name,
        group = stored_group,
    );
    let recomputed = format!(
        "SELECT {grain} AS grain, {sums} AS sums FROM \
           (SELECT *, {time} AS t FROM usage_events WHERE org_id = ANY($1)) e \
         GROUP BY {group}",
        grain = grain_key("canonical_model", true),
        sums = object(&|_, e| e.to_owned()),
        time = table.from_event,
        group = group_by("canonical_model"),
    );
    (
        groups(database_url, &stored, orgs).await,
        groups(database_url, &recomputed, orgs).await,
    )
}

/// `usage_entity_rollups` against the raw events: for each kind (customer, agent,
/// endpoint group), span (UTC day, ISO week) and model or total, every sum.
async fn entity_rollups_stored_and_recomputed(database_url: &str, orgs: &[Uuid]) -> (Groups, Groups) {
    const SUMS: &str = "jsonb_build_object('requests', sum(requests)::text, 'errors', sum(errors)::text, \
        'prompt_tokens', sum(prompt_tokens)::text, 'completion_tokens', sum(completion_tokens)::text, \
        'cost', trim_scale(sum(cost))::text)::text";
    let stored = format!(
        "SELECT concat_ws('|', org_id, kind, span, day, coalesce(entity_id::text, '-'), endpoint, provider, model) AS grain, \
         {SUMS} AS sums FROM usage_entity_rollups WHERE org_id = ANY($1) \
         GROUP BY org_id, kind, span, day, entity_id, endpoint, provider, model"
    );
    let mut parts = Vec::new();
    for (kind, entity, endpoint) in [
        ("customer", "customer_id::text", "''"),
        ("agent", "agent_id::text", "''"),
        (
            "endpoint",
            "NULL::text",
            "CASE WHEN endpoint LIKE '/a2a/%' THEN '/a2a/{agentId}' ELSE endpoint END",
        ),
    ] {
        for (span, time) in [
            ("day", "(occurred_at AT TIME ZONE 'UTC')::date"),
            ("week", "date_trunc('week', occurred_at AT TIME ZONE 'UTC')::date"),
        ] {
            for (provider, model) in [("provider", "canonical_model"), ("''", "''")] {
                parts.push(format!(
                    "SELECT concat_ws('|', org_id, '{kind}', '{span}', {time}, coalesce({entity}, '-'), {endpoint}, \
                       {provider}, {model}) AS grain, \
                     jsonb_build_object('requests', count(*)::text, \
                       'errors', (count(*) FILTER (WHERE status = 'error'))::text, \
                       'prompt_tokens', sum(prompt_tokens)::text, 'completion_tokens', sum(completion_tokens)::text, \
                       'cost', trim_scale(sum(cost))::text)::text AS sums \
                     FROM usage_events WHERE org_id = ANY($1) GROUP BY 1"
                ));
            }
        }
    }
    (
        groups(database_url, &stored, orgs).await,
        groups(database_url, &parts.join(" UNION ALL "), orgs).await,
    )
}

/// Every column of `table` besides its grain must be compared: a summed column added
/// to the table without a recomputation here fails this.
async fn assert_every_column_is_compared(app: &TestApp, table: Table) {
    #[derive(diesel::QueryableByName)]
    struct Column {
        #[diesel(sql_type = Text)]
        name: String,
    }
    let columns: Vec<Column> = diesel::sql_query(
        "SELECT column_name::text AS name FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind::<Text, _>(table.name)
    .load(&mut app.db().await)
    .await
    .unwrap();
    let summed: BTreeSet<String> = columns
        .into_iter()
        .map(|c| c.name)
        .filter(|c| !GRAIN.contains(&c.as_str()) && c != "shard" && c != table.time)
        .collect();
    let compared: BTreeSet<String> = recomputed_columns().into_iter().map(|(c, _)| c).collect();
    assert_eq!(
        summed, compared,
        "every summed column of {} needs a recomputation from usage_events here",
        table.name
    );
}

/// A model as the test's own catalog sees it: the provider, the names an event may use
/// (any case) and the catalog id it must be counted under.
struct Model {
    provider: &'static str,
    names: &'static [&'static str],
    canonical: &'static str,
}

const MODELS: [Model; 6] = [
    Model {
        provider: "openai",
        names: &["gpt-4o", "gpt-4o-2024-08-06"],
        canonical: "gpt-4o",
    },
    Model {
        provider: "openai",
        names: &["gpt-4o-mini"],
        canonical: "gpt-4o-mini",
    },
    Model {
        provider: "anthropic",
        names: &["claude-sonnet-4-5", "claude-sonnet-4-5-20250929"],
        canonical: "claude-sonnet-4-5",
    },
    Model {
        provider: "google",
        names: &["gemini-2.5-flash", "gemini-2.5-flash-001"],
        canonical: "gemini-2.5-flash",
    },
    // Not in the catalog: counted under the reported name in lower case.
    Model {
        provider: "acme",
        names: &["Mystery-1"],
        canonical: "mystery-1",
    },
    Model {
        provider: "openai",
        names: &["ft:gpt-4o:acme:tuned"],
        canonical: "ft:gpt-4o:acme:tuned",
    },
];

/// Prices: input, output and cached input per million tokens, per request, per image
/// generated, per image sent; then the optional ones: cache writes (5-minute, 1-hour),
/// reasoning, audio input and output per million tokens.
async fn add_price(
    app: &TestApp,
    provider: &str,
    names: (&str, &str),
    prices: [&str; 6],
    optional: [Option<&str>; 5],
    from: DateTime<Utc>,
) {
    let d = |s: &str| s.parse::<Decimal>().unwrap();
    let o = |i: usize| optional[i].map(d);
    let new = meterplane::store::prices::NewPrice {
        provider: provider.into(),
        model: names.0.into(),
        provider_model_name: names.1.into(),
        input_per_mtok: d(prices[0]),
        output_per_mtok: d(prices[1]),
        cached_input_per_mtok: d(prices[2]),
        per_request: d(prices[3]),
        per_image: d(prices[4]),
        per_input_image: d(prices[5]),
        cache_write_5m_per_mtok: o(0),
        cache_write_1h_per_mtok: o(1),
        reasoning_per_mtok: o(2),
        audio_input_per_mtok: o(3),
        audio_output_per_mtok: o(4),
        valid_from: from,
        ..Default::default()
    };
    let mut conn = app.state.db.get().await.unwrap();
    meterplane::store::prices::insert(&mut conn, &new).await.unwrap();
}

async fn add_discount(app: &TestApp, org_id: Option<Uuid>, provider: Option<&str>, model: Option<&str>, percent: &str) {
    let new = meterplane::store::discounts::NewDiscount {
        org_id,
        provider: provider.map(Into::into),
        model: model.map(Into::into),
        percent: percent.parse().unwrap(),
        valid_from: "2020-01-01T00:00:00Z".parse().unwrap(),
        valid_until: None,
    };
    let mut conn = app.state.db.get().await.unwrap();
    meterplane::store::discounts::insert(&mut conn, new).await.unwrap();
}

/// Prices with ten decimal places, a price change inside the window, a model whose
/// first price starts inside the window (so earlier calls are unpriced but known), and
/// discounts for a provider and, in another case, for one organization's model.
async fn catalog(app: &TestApp, org_a: Uuid, start: DateTime<Utc>) {
    let long_ago: DateTime<Utc> = "2020-01-01T00:00:00Z".parse().unwrap();
    add_price(
        app,
        "openai",
        ("gpt-4o", "gpt-4o-2024-08-06"),
        [
            "2.5123456789",
            "10.0000000001",
            "1.2500000003",
            "0.0001234567",
            "0.0012345678",
            "0.0003333333",
        ],
        [
            None,
            None,
            Some("7.7777777777"),
            Some("40.0000000003"),
            Some("80.0000000001"),
        ],
        long_ago,
    )
    .await;
    add_price(
        app,
        "openai",
        ("gpt-4o", "gpt-4o-2024-08-06"),
        [
            "2.4999999999",
            "9.8765432101",
            "1.1111111111",
            "0.0000000007",
            "0.0400000001",
            "0",
        ],
        [None, None, None, Some("41.1111111111"), None],
        start + Duration::hours(30),
    )
    .await;
    add_price(
        app,
        "openai",
        ("gpt-4o-mini", "gpt-4o-mini"),
        ["0.1500000001", "0.6000000007", "0.0750000003", "0", "0", "0.0000012345"],
        [None, None, None, None, None],
        long_ago,
    )
    .await;
    add_price(
        app,
        "anthropic",
        ("claude-sonnet-4-5", "claude-sonnet-4-5-20250929"),
        [
            "3.0000000001",
            "15.0000000009",
            "0.3000000007",
            "0.0000123457",
            "0",
            "0.0048000001",
        ],
        [Some("3.7500000003"), Some("6.0000000007"), None, None, None],
        start + Duration::hours(20),
    )
    .await;
    add_price(
        app,
        "google",
        ("gemini-2.5-flash", "gemini-2.5-flash-001"),
        [
            "0.3333333333",
            "2.6666666667",
            "0.0833333333",
            "0",
            "0.0390000001",
            "0.0025000003",
        ],
        [Some("0.3833333333"), None, Some("2.5000000001"), None, None],
        long_ago,
    )
    .await;
    add_discount(app, None, Some("openai"), None, "12.3456").await;
    add_discount(app, Some(org_a), None, Some("CLAUDE-SONNET-4-5"), "33.3333").await;
}

/// Where an event can come from: a key, the organization it belongs to, and whether
/// its project is hybrid (so the event may name who paid).
struct Source {
    org: Uuid,
    secret: String,
    hybrid: bool,
}

async fn key_in(app: &TestApp, tenant: &Tenant, mode: &str) -> String {
    let project = app
        .post_json(
            &tenant.owner,
            &format!("/v1/orgs/{}/projects", tenant.org_id),
            json!({"name": format!("{mode} project"), "mode": mode}),
        )
        .await;
    let key = app
        .post_json(
            &tenant.owner,
            &format!(
                "/v1/orgs/{}/projects/{}/keys",
                tenant.org_id,
                project["id"].as_str().unwrap()
            ),
            json!({"name": mode}),
        )
        .await;
    key["secret"].as_str().unwrap().to_owned()
}

fn random_case(rng: &mut StdRng, name: &str) -> String {
    match rng.random_range(0..6) {
        0 => name.to_uppercase(),
        1 => name
            .chars()
            .map(|c| {
                if rng.random_bool(0.5) {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect(),
        _ => name.to_owned(),
    }
}

/// One random event of `source`. Returns it with the model it must be counted under.
fn random_event(
    rng: &mut StdRng,
    source: &Source,
    request_id: &str,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (Value, &'static str) {
    let model = MODELS.choose(rng).unwrap();
    let name = model.names.choose(rng).unwrap();
    let endpoint = *["/chat/completions", "/embeddings", "/responses"].choose(rng).unwrap();
    let prompt: i64 = if rng.random_bool(0.1) {
        0
    } else {
        rng.random_range(1..250_000)
    };
    let completion: i64 = rng.random_range(0..40_000);
    // The parts priced apart, each within what its total has left.
    let mut part = |left: &mut i64, chance: f64| {
        let n = if *left > 0 && rng.random_bool(chance) {
            rng.random_range(0..=*left)
        } else {
            0
        };
        *left -= n;
        n
    };
    let (mut prompt_left, mut completion_left) = (prompt, completion);
    let cached = part(&mut prompt_left, 0.4);
    let (write_5m, write_1h) = (part(&mut prompt_left, 0.3), part(&mut prompt_left, 0.2));
    let audio_input = part(&mut prompt_left, 0.15);
    let (reasoning, audio_output) = (part(&mut completion_left, 0.3), part(&mut completion_left, 0.15));
    let mut event = json!({
        "requestId": request_id,
        "endpoint": endpoint,
        "provider": random_case(rng, model.provider),
        "model": random_case(rng, name),
        "status": if rng.random_bool(0.15) { "error" } else { "success" },
        "promptTokens": prompt,
        "completionTokens": completion,
        "cachedTokens": cached,
        "cacheWrite5mTokens": write_5m,
        "cacheWrite1hTokens": write_1h,
        "audioInputTokens": audio_input,
        "reasoningTokens": reasoning,
        "audioOutputTokens": audio_output,
        "images": if rng.random_bool(0.2) { rng.random_range(1..5) } else { 0 },
        "inputImages": if rng.random_bool(0.2) { rng.random_range(1..9) } else { 0 },
        "cacheHit": rng.random_bool(0.2),
        "retries": rng.random_range(0..3),
    });
    if rng.random_bool(0.85) {
        // Spread over the window, across UTC day boundaries.
        let span = (now - start).num_milliseconds() - 60_000;
        let at = start + Duration::milliseconds(rng.random_range(0..span));
        event["startedAt"] = json!(at.to_rfc3339());
    }
    if rng.random_bool(0.8) {
        event["latencyMs"] = json!(match rng.random_range(0..4) {
            0 => rng.random_range(0..=60),
            1 => rng.random_range(0..3_000),
            2 => rng.random_range(0..25_000),
            _ => rng.random_range(0..120_000),
        });
    }
    if rng.random_bool(0.6) {
        event["timeToFirstTokenMs"] = json!(match rng.random_range(0..3) {
            0 => rng.random_range(0..=300),
            1 => rng.random_range(0..8_000),
            _ => rng.random_range(0..90_000),
        });
    }
    if rng.random_bool(0.7) {
        event["user"] = json!(format!("customer-{}", rng.random_range(0..8)));
    }
    match rng.random_range(0..5) {
        0 => event["endpoint"] = json!(format!("/a2a/agent-{}", rng.random_range(0..3))),
        1 => event["agentId"] = json!(format!("agent-{}", rng.random_range(0..3))),
        _ => {}
    }
    if rng.random_bool(0.2) {
        event["requestBody"] = json!({"messages": [{"role": "user", "content": "hello"}]});
    }
    if source.hybrid && rng.random_bool(0.6) {
        let paid_by = *["credits", "api-keys"].choose(rng).unwrap();
        event["billingSource"] = json!(paid_by);
    }
    (event, model.canonical)
}

/// Sends one event on its own; a rejection reads like a batch's.
async fn post_single(app: &TestApp, secret: &str, event: &Value) -> Value {
    let response = app
        .request(Method::POST, "/v1/usage")
        .header("x-api-key", secret)
        .json(event)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    match status {
        StatusCode::CREATED | StatusCode::OK => body,
        StatusCode::UNPROCESSABLE_ENTITY => json!({"status": "rejected"}),
        other => panic!("single event answered {other}: {body}"),
    }
}

#[tokio::test]
async fn every_roll_up_column_equals_the_sums_over_raw_events() {
    let seed: u64 = std::env::var("MP_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("roll-up reconciliation seed: {seed} (MP_TEST_SEED={seed} repeats it)");
    let mut rng = StdRng::seed_from_u64(seed);

    let app = TestApp::spawn().await;
    let tenant_a = app.tenant().await;
    let tenant_b = app.tenant().await;
    let now = Utc::now();
    // The free plan keeps today and the two days before.
    let start = now.duration_trunc(Duration::days(1)).unwrap() - Duration::days(2) + Duration::minutes(1);
    catalog(&app, tenant_a.org_id, start).await;
    let sources = [
        Source {
            org: tenant_a.org_id,
            secret: tenant_a.key_secret.clone(),
            hybrid: false,
        },
        Source {
            org: tenant_a.org_id,
            secret: key_in(&app, &tenant_a, "hybrid").await,
            hybrid: true,
        },
        Source {
            org: tenant_a.org_id,
            secret: key_in(&app, &tenant_a, "api-keys").await,
            hybrid: false,
        },
        Source {
            org: tenant_b.org_id,
            secret: tenant_b.key_secret.clone(),
            hybrid: false,
        },
        Source {
            org: tenant_b.org_id,
            secret: key_in(&app, &tenant_b, "hybrid").await,
            hybrid: true,
        },
    ];

    // (organization, request id) → the canonical model of the event first sent with it.
    let mut first_sent: HashMap<(Uuid, String), &'static str> = HashMap::new();
    let mut sent: Vec<(usize, Value)> = Vec::new();
    for i in 0..1_500 {
        let s = rng.random_range(0..sources.len());
        let source = &sources[s];
        // A tenth are retries of an earlier request id of the same organization, sent
        // again as they were or with other content.
        let earlier: Vec<&(usize, Value)> = sent.iter().filter(|(t, _)| sources[*t].org == source.org).collect();
        let mut event = if rng.random_bool(0.1) && !earlier.is_empty() {
            let (_, original) = earlier.choose(&mut rng).unwrap();
            let mut retry = (*original).clone();
            if rng.random_bool(0.5) {
                retry["completionTokens"] = json!(rng.random_range(0..40_000));
            }
            retry
        } else {
            let request_id = format!("req-{i}-{}", rng.random::<u32>());
            let (event, canonical) = random_event(&mut rng, source, &request_id, start, now);
            first_sent.insert((source.org, request_id), canonical);
            event
        };
        if rng.random_bool(0.04) {
            event["promptTokens"] = json!(-1); // rejected: must count nowhere
        }
        sent.push((s, event));
    }

    // Send each key's events in order, as runs of single calls or batches of random
    // sizes, several keys at a time (concurrent transactions write to different roll-up
    // shards, and retries race their originals).
    let mut queues: Vec<std::collections::VecDeque<Value>> = vec![Default::default(); sources.len()];
    for (s, event) in sent {
        queues[s].push_back(event);
    }
    let mut accepted_request_ids: BTreeSet<(Uuid, String)> = BTreeSet::new();
    while queues.iter().any(|q| !q.is_empty()) {
        let mut wave = Vec::new();
        for (s, queue) in queues.iter_mut().enumerate() {
            if queue.is_empty() || rng.random_bool(0.3) {
                continue;
            }
            let size = rng.random_range(1..=queue.len().min(120));
            let chunk: Vec<Value> = queue.drain(..size).collect();
            wave.push((s, chunk, rng.random_bool(0.25)));
        }
        let sends = wave.iter().map(|(s, events, single)| {
            let (app, source) = (&app, &sources[*s]);
            async move {
                if *single {
                    let mut results = Vec::new();
                    for event in events {
                        results.push(post_single(app, &source.secret, event).await);
                    }
                    results
                } else {
                    let (status, body) = app.send_batch(&source.secret, json!(events)).await;
                    assert_eq!(status, StatusCode::OK, "{body}");
                    body["results"].as_array().unwrap().clone()
                }
            }
        });
        let answers = futures_util::future::join_all(sends).await;
        for ((s, events, _), results) in wave.iter().zip(answers) {
            for (event, result) in events.iter().zip(results) {
                if result["status"] == "accepted" {
                    let request_id = event["requestId"].as_str().unwrap().to_owned();
                    assert!(
                        accepted_request_ids.insert((sources[*s].org, request_id)),
                        "a request id accepted twice"
                    );
                }
            }
        }
    }

    let orgs = [tenant_a.org_id, tenant_b.org_id];
    let stored_events =
        app.count_rows("usage_events", tenant_a.org_id).await + app.count_rows("usage_events", tenant_b.org_id).await;
    assert_eq!(stored_events, accepted_request_ids.len() as i64);

    // Each event is counted under the catalog id of its model, whichever name and case
    // it was reported with, priced or not.
    #[derive(diesel::QueryableByName)]
    struct Recorded {
        #[diesel(sql_type = SqlUuid)]
        org_id: Uuid,
        #[diesel(sql_type = Text)]
        request_id: String,
        #[diesel(sql_type = Text)]
        canonical_model: String,
    }
    let recorded: Vec<Recorded> =
        diesel::sql_query("SELECT org_id, request_id, canonical_model FROM usage_events WHERE org_id = ANY($1)")
            .bind::<Array<SqlUuid>, _>(&orgs[..])
            .load(&mut app.db().await)
            .await
            .unwrap();
    for r in &recorded {
        assert_eq!(
            r.canonical_model,
            first_sent[&(r.org_id, r.request_id.clone())],
            "{}",
            r.request_id
        );
    }

    for table in [DAILY, HOURLY].into_iter().chain(COARSE) {
        assert_every_column_is_compared(&app, table).await;
        let (stored, recomputed) = stored_and_recomputed(&app.database_url, table, &orgs).await;
        let spread = if table.kept.len() == GRAIN.len() { 100 } else { 5 };
        assert!(
            recomputed.len() > spread,
            "a workload spread over many {} rows",
            table.name
        );
        let total: i64 = recomputed
            .values()
            .map(|sums| sums["requests"].as_str().unwrap().parse::<i64>().unwrap())
            .sum();
        assert_eq!(total, stored_events);
        assert_eq!(
            stored.keys().collect::<Vec<_>>(),
            recomputed.keys().collect::<Vec<_>>(),
            "the same {} rows",
            table.name
        );
        for (grain, sums) in &recomputed {
            assert_eq!(
                &stored[grain], sums,
                "{} {grain} differs from its raw events",
                table.name
            );
        }
        // The workload reached what it was meant to: discounts, unpriced calls, both
        // billing sources, amounts with many decimal places.
        let column_total = |column: &str| -> Decimal {
            recomputed
                .values()
                .map(|sums| sums[column].as_str().unwrap().parse::<Decimal>().unwrap())
                .sum()
        };
        for column in [
            "discount_savings",
            "unpriced",
            "api_keys_cost",
            "credits_cost",
            "image_cost",
            "image_input_cost",
            "image_output_cost",
            "cache_write_5m_cost",
            "cache_write_1h_cost",
            "reasoning_cost",
            "audio_input_cost",
            "audio_output_cost",
            "reasoning_tokens",
            "request_cost",
            "data_storage_cost",
            "errors",
            "latency_b16",
            "ttft_b00",
            "ttft_b16",
            "ttft_count",
        ] {
            assert!(column_total(column) > Decimal::ZERO, "{column} is exercised");
        }
        assert!(column_total("cost_before_discount").scale() >= 8);
    }
    // The hourly grain is finer: the same events over more rows.
    let daily_rows = stored_and_recomputed(&app.database_url, DAILY, &orgs).await.0.len();
    let hourly_rows = stored_and_recomputed(&app.database_url, HOURLY, &orgs).await.0.len();
    assert!(
        hourly_rows > daily_rows,
        "{hourly_rows} hourly, {daily_rows} daily rows"
    );

    let (stored, recomputed) = entity_rollups_stored_and_recomputed(&app.database_url, &orgs).await;
    assert!(recomputed.len() > 200, "per-entity rows: {}", recomputed.len());
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        recomputed.keys().collect::<Vec<_>>(),
        "the same usage_entity_rollups rows"
    );
    for (grain, sums) in &recomputed {
        assert_eq!(
            &stored[grain], sums,
            "usage_entity_rollups {grain} differs from its raw events"
        );
    }
}

/// Roll-ups written before the repair — `cost_before_discount` rounded to whole units,
/// an unpriced event counted under the provider's model name, a model name in another
/// case under its own row — are recomputed by the migration from the raw events; a day
/// whose raw events are gone keeps its roll-ups.
#[tokio::test]
async fn the_repair_migration_recomputes_roll_ups_from_raw_events() {
    use diesel::migration::Migration;
    use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
    use diesel_migrations::MigrationHarness;

    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    // A database migrated up to the repair. The tenant's ids are enough: raw events and
    // roll-ups carry ids without foreign keys.
    let admin =
        std::env::var("MP_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
    let name = crate::helpers::test_database_name();
    let mut admin_conn = AsyncPgConnection::establish(&admin).await.unwrap();
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut admin_conn)
        .await
        .unwrap();
    let url = format!("{base}/{name}");
    let repair = "2026-12-02-120000";
    let before_url = url.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn =
            <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(&before_url).unwrap();
        loop {
            let pending = conn.pending_migrations(meterplane::store::MIGRATIONS).unwrap();
            let next = <[_]>::first(&pending).expect("the repair migration is pending");
            if next
                .name()
                .to_string()
                .replace('-', "")
                .starts_with(&repair.replace('-', ""))
            {
                break;
            }
            conn.run_next_migration(meterplane::store::MIGRATIONS).unwrap();
        }
    })
    .await
    .unwrap();

    let (org, project, key) = (tenant.org_id, tenant.project_id, tenant.key_id);
    let today = Utc::now().date_naive();
    let yesterday = today - Duration::days(1);
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    for day in [today, yesterday, today - Duration::days(5)] {
        meterplane::store::partitions::ensure_day(&mut conn, day).await.unwrap();
    }
    diesel::sql_query(
        "INSERT INTO model_prices (id, provider, model, provider_model_name, input_per_mtok, output_per_mtok, \
           cached_input_per_mtok, valid_from) \
         VALUES (gen_random_uuid(), 'openai', 'gpt-4o', 'gpt-4o-2024-08-06', 2.5, 10, 1.25, now() - interval '1 hour')",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    // Events as the code before the repair stored them (no canonical model yet).
    let insert_event = |at: String, request_id: &str, model: &str, unpriced: bool, cost: &str, latency: i32| {
        format!(
            "INSERT INTO usage_events (org_id, id, occurred_at, request_id, project_id, api_key_id, endpoint, \
               provider, model, status, prompt_tokens, completion_tokens, cached_tokens, images, latency_ms, ttft_ms, cache_hit, \
               retries, bodies_truncated, billing_source, unpriced, input_cost, output_cost, cached_input_cost, \
               request_cost, image_cost, data_storage_cost, cost_before_discount, discount_percent, discount_savings, cost) \
             VALUES ('{org}', gen_random_uuid(), '{at}', '{request_id}', '{project}', '{key}', '/chat/completions', \
               'openai', '{model}', 'success', 1000, 100, 0, 0, {latency}, {latency} / 4, false, 0, false, 'credits', {unpriced}, \
               {cost}, 0, 0, 0, 0, 0, {cost}, 0, 0, {cost})"
        )
    };
    let noon = |day: chrono::NaiveDate| format!("{day} 12:00:00+00");
    for sql in [
        insert_event(noon(today), "a", "gpt-4o", false, "0.3456789012", 40),
        insert_event(noon(today), "b", "GPT-4O", false, "1.7", 900),
        // Before the price started: unpriced, under the provider's name and another case.
        insert_event(noon(yesterday), "c", "GPT-4o-2024-08-06", true, "0", 70_000),
        insert_event(noon(yesterday), "d", "My-Model", true, "0", 10),
        insert_event(noon(yesterday), "e", "my-model", true, "0", 10),
    ] {
        diesel::sql_query(sql).execute(&mut conn).await.unwrap();
    }
    // Roll-ups as the old code wrote them: cost_before_discount rounded to whole units,
    // each spelling under its own model name; and a day whose events are gone.
    let rollup = |day: chrono::NaiveDate, model: &str, requests: i64, cost: &str, before: &str, shard: i16| {
        let zeros = vec!["0"; 17].join(", ");
        format!(
            "INSERT INTO usage_daily (org_id, day, project_id, api_key_id, customer_id, agent_id, endpoint, provider, \
               model, shard, requests, errors, cache_hits, unpriced, prompt_tokens, completion_tokens, cached_tokens, \
               images, input_cost, output_cost, cached_input_cost, request_cost, image_cost, data_storage_cost, \
               cost_before_discount, discount_savings, cost, credits_cost, api_keys_cost, latency_ms_sum, latency_count, \
               latency_b00, latency_b01, latency_b02, latency_b03, latency_b04, latency_b05, latency_b06, latency_b07, \
               latency_b08, latency_b09, latency_b10, latency_b11, latency_b12, latency_b13, latency_b14, latency_b15, \
               latency_b16) \
             VALUES ('{org}', '{day}', '{project}', '{key}', NULL, NULL, '/chat/completions', 'openai', '{model}', \
               {shard}, {requests}, 0, 0, 0, 0, 0, 0, 0, {cost}, 0, 0, 0, 0, 0, {before}, 0, {cost}, {cost}, 0, 0, 0, \
               {zeros})"
        )
    };
    let gone = today - Duration::days(5);
    for sql in [
        rollup(today, "gpt-4o", 1, "0.3456789012", "0", 0),
        rollup(today, "gpt-4o", 1, "1.7", "2", 3),
        rollup(yesterday, "gpt-4o-2024-08-06", 1, "0", "0", 1),
        rollup(yesterday, "My-Model", 1, "0", "0", 1),
        rollup(yesterday, "my-model", 1, "0", "0", 2),
        rollup(gone, "gpt-4o", 7, "3.5", "4", 0),
    ] {
        diesel::sql_query(sql).execute(&mut conn).await.unwrap();
    }
    drop(conn);

    meterplane::store::run_migrations(&url).await.unwrap();

    let (stored, recomputed) = stored_and_recomputed(&url, DAILY, &[org]).await;
    let key_of = |day: chrono::NaiveDate, model: &str| {
        format!("{org}|{day}|{project}|{key}|-|-|/chat/completions|openai|{model}")
    };
    // Recomputed days: one row per canonical model, equal to the raw events.
    let today_gpt = &stored[&key_of(today, "gpt-4o")];
    assert_eq!(
        (
            today_gpt["requests"].as_str(),
            today_gpt["cost_before_discount"].as_str()
        ),
        (Some("2"), Some("2.0456789012")),
        "the unrounded sum of both events"
    );
    assert_eq!(today_gpt["latency_b01"], "1");
    assert_eq!(today_gpt["latency_b07"], "1");
    let yesterday_gpt = &stored[&key_of(yesterday, "gpt-4o")];
    assert_eq!(
        (yesterday_gpt["requests"].as_str(), yesterday_gpt["unpriced"].as_str()),
        (Some("1"), Some("1")),
        "the unpriced provider name counts under the catalog id"
    );
    assert_eq!(yesterday_gpt["latency_b16"], "1");
    assert_eq!(stored[&key_of(yesterday, "my-model")]["requests"], "2");
    assert!(!stored.contains_key(&key_of(yesterday, "gpt-4o-2024-08-06")));
    assert!(!stored.contains_key(&key_of(yesterday, "My-Model")));
    // The day without raw events keeps what it had.
    let kept = &stored[&key_of(gone, "gpt-4o")];
    assert_eq!(
        (kept["requests"].as_str(), kept["cost"].as_str()),
        (Some("7"), Some("3.5"))
    );
    // Every other row equals its raw events, column for column (time to first token,
    // added later, is filled in from them too).
    assert_eq!(
        (today_gpt["ttft_count"].as_str(), today_gpt["ttft_ms_sum"].as_str()),
        (Some("2"), Some("235"))
    );
    let mut stored = stored;
    stored.remove(&key_of(gone, "gpt-4o"));
    assert_eq!(stored, recomputed);
    // The hourly roll-ups start with the recent hours of the raw events.
    let (hourly, recomputed) = stored_and_recomputed(&url, HOURLY, &[org]).await;
    assert_eq!(hourly.len(), 3, "{hourly:?}");
    assert_eq!(hourly, recomputed);
}

/// The migration that made the per-entity roll-ups filled them from `usage_daily`: run
/// again (down, then up) over roll-ups that ingest wrote, it writes the same sums
/// (summed over shards) that ingest did.
#[tokio::test]
async fn the_entity_roll_up_migration_fills_them_as_ingest_does() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().await;
    let mut rng = StdRng::seed_from_u64(8);
    let now = Utc::now();
    let events: Vec<Value> = (0..120)
        .map(|i| {
            let model = MODELS.choose(&mut rng).unwrap();
            let endpoint = ["/chat/completions", "/embeddings", "/a2a/planner"][rng.random_range(0..3)];
            json!({
                "requestId": format!("m-{i}"),
                "startedAt": (now - Duration::hours(rng.random_range(1..48))).to_rfc3339(),
                "endpoint": endpoint,
                "provider": model.provider, "model": model.names[0],
                "user": format!("customer-{}", rng.random_range(0..6)),
                "agentId": if rng.random_bool(0.5) { json!(format!("agent-{}", rng.random_range(0..3))) } else { Value::Null },
                "promptTokens": rng.random_range(1..5000), "completionTokens": rng.random_range(0..900),
                "latencyMs": rng.random_range(5..9000),
            })
        })
        .collect();
    for chunk in events.chunks(30) {
        let (status, body) = app.send_batch(&tenant.key_secret, json!(chunk)).await;
        assert!(status.is_success(), "{status}: {body}");
        let rejected: Vec<&Value> = body["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] != "accepted")
            .collect();
        assert!(rejected.is_empty(), "{rejected:?}");
    }
    let orgs = [tenant.org_id];
    let (ingested, recomputed) = entity_rollups_stored_and_recomputed(&app.database_url, &orgs).await;
    assert_eq!(ingested, recomputed);

    let migration = "migrations/2026-12-07-100000_entity_rollups";
    let mut conn = app.db().await;
    for file in ["down.sql", "up.sql"] {
        let sql = std::fs::read_to_string(format!("{}/{migration}/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        diesel_async::SimpleAsyncConnection::batch_execute(&mut conn, &sql)
            .await
            .unwrap();
    }
    let (rebuilt, _) = entity_rollups_stored_and_recomputed(&app.database_url, &orgs).await;
    assert!(rebuilt.len() > 50, "{}", rebuilt.len());
    assert_eq!(rebuilt, ingested, "usage_entity_rollups rebuilt by the migration");
}
