//! The price catalog (everyone reads, operators write) and discounts (operators
//! manage them; a tenant sees the ones that apply to it).

use actix_web::{delete, get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    extract::{AuthUser, JsonBody},
    paths::OrgPath,
    schemas::{self, DiscountPercent, FilterText, ModelName, Money, Percent, PriceAmount, ProviderName},
    state::AppState,
    validate::{query_text, Fields},
};
use crate::{
    domain::{
        role::Access,
        usage::{bounded_text, MAX_TOKENS},
        Invalid,
    },
    error::{AppError, AppResult, FieldError, Problem},
    store::{
        self,
        discounts::{DiscountRow, NewDiscount},
        prices::{NewPrice, PriceRow},
    },
};

/// Highest accepted price per million tokens, per request or per image (USD).
const MAX_PRICE: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "id": "0193a5e2-7c4f-7b3a-9d2e-5f6a7b8c9d0e", "provider": "anthropic", "model": "claude-sonnet-4-5",
    "providerModelName": "claude-sonnet-4-5-20250929", "inputPerMtok": "3", "outputPerMtok": "15",
    "cachedInputPerMtok": "0.3", "perRequest": "0", "perImage": "0", "perInputImage": "0",
    "cacheWrite5mPerMtok": "3.75", "cacheWrite1hPerMtok": "6", "reasoningPerMtok": null,
    "audioInputPerMtok": null, "audioOutputPerMtok": null, "longContext": null,
    "validFrom": "2026-12-01T00:00:00Z", "validUntil": null
}))]
pub struct PriceView {
    id: Uuid,
    provider: String,
    /// Catalog id.
    model: String,
    /// The provider's own name for the model; events may use either.
    provider_model_name: String,
    /// USD per million input tokens.
    #[schema(value_type = Money)]
    input_per_mtok: Decimal,
    #[schema(value_type = Money)]
    output_per_mtok: Decimal,
    #[schema(value_type = Money)]
    cached_input_per_mtok: Decimal,
    #[schema(value_type = Money)]
    per_request: Decimal,
    /// USD per image the call generated.
    #[schema(value_type = Money)]
    per_image: Decimal,
    /// USD per image sent with the request.
    #[schema(value_type = Money)]
    per_input_image: Decimal,
    /// USD per million tokens written to a 5-minute prompt cache; `null`: charged as input.
    #[schema(value_type = Option<Money>, example = "3.75")]
    cache_write_5m_per_mtok: Option<Decimal>,
    /// USD per million tokens written to a 1-hour prompt cache; `null`: the 5-minute price.
    #[schema(value_type = Option<Money>, example = "6")]
    cache_write_1h_per_mtok: Option<Decimal>,
    /// USD per million reasoning tokens; `null`: the output price.
    #[schema(value_type = Option<Money>, example = "15")]
    reasoning_per_mtok: Option<Decimal>,
    /// USD per million audio input tokens; `null`: the input price.
    #[schema(value_type = Option<Money>, example = "40")]
    audio_input_per_mtok: Option<Decimal>,
    /// USD per million audio output tokens; `null`: the output price.
    #[schema(value_type = Option<Money>, example = "80")]
    audio_output_per_mtok: Option<Decimal>,
    /// Prices for calls whose prompt is longer than `aboveTokens`; `null`: none.
    long_context: Option<LongContextPrices>,
    valid_from: DateTime<Utc>,
    /// When the next version of this model's price takes over; absent for the latest.
    valid_until: Option<DateTime<Utc>>,
}

/// Views of price versions ordered by provider, model, valid_from: each version's
/// `validUntil` is the start of the next version of the same model.
pub(super) fn price_views(rows: Vec<PriceRow>) -> Vec<PriceView> {
    let mut views: Vec<PriceView> = Vec::with_capacity(rows.len());
    for row in rows {
        // Rows come ordered by provider, model, valid_from.
        if let Some(previous) = views.last_mut() {
            if previous.provider == row.provider && previous.model == row.model {
                previous.valid_until = Some(row.valid_from);
            }
        }
        let long_context = LongContextPrices::of(&row);
        views.push(PriceView {
            id: row.id,
            provider: row.provider,
            model: row.model,
            provider_model_name: row.provider_model_name,
            input_per_mtok: row.input_per_mtok.normalize(),
            output_per_mtok: row.output_per_mtok.normalize(),
            cached_input_per_mtok: row.cached_input_per_mtok.normalize(),
            per_request: row.per_request.normalize(),
            per_image: row.per_image.normalize(),
            per_input_image: row.per_input_image.normalize(),
            cache_write_5m_per_mtok: row.cache_write_5m_per_mtok.map(|d| d.normalize()),
            cache_write_1h_per_mtok: row.cache_write_1h_per_mtok.map(|d| d.normalize()),
            reasoning_per_mtok: row.reasoning_per_mtok.map(|d| d.normalize()),
            audio_input_per_mtok: row.audio_input_per_mtok.map(|d| d.normalize()),
            audio_output_per_mtok: row.audio_output_per_mtok.map(|d| d.normalize()),
            long_context,
            valid_from: row.valid_from,
            valid_until: None,
        });
    }
    views
}

/// The view of version `id` among `rows` (ordered as for [`price_views`]).
pub(super) fn price_view(rows: Vec<PriceRow>, id: Uuid) -> Option<PriceView> {
    price_views(rows).into_iter().find(|v| v.id == id)
}

/// A price version. Amounts are decimal strings in USD. The optional token prices
/// (cache writes, reasoning, audio) fall back when absent: cache writes to the input
/// price (a 1-hour write to the 5-minute price first), reasoning and audio output to
/// the output price, audio input to the input price.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "provider": "anthropic", "model": "claude-sonnet-4-5", "providerModelName": "claude-sonnet-4-5-20250929",
    "inputPerMtok": "3", "outputPerMtok": "15", "cachedInputPerMtok": "0.30",
    "cacheWrite5mPerMtok": "3.75", "cacheWrite1hPerMtok": "6", "validFrom": "2026-12-01T00:00:00Z"
}))]
pub struct CreatePrice {
    #[schema(value_type = ProviderName)]
    provider: String,
    #[schema(value_type = ModelName)]
    model: String,
    /// Defaults to the name the model's latest version carries, else to `model`.
    #[serde(default)]
    #[schema(value_type = Option<ModelName>)]
    provider_model_name: Option<String>,
    #[serde(deserialize_with = "schemas::decimal_text")]
    #[schema(value_type = PriceAmount)]
    input_per_mtok: Decimal,
    #[serde(deserialize_with = "schemas::decimal_text")]
    #[schema(value_type = PriceAmount)]
    output_per_mtok: Decimal,
    #[serde(deserialize_with = "schemas::decimal_text")]
    #[schema(value_type = PriceAmount)]
    cached_input_per_mtok: Decimal,
    #[serde(default, deserialize_with = "schemas::decimal_text")]
    #[schema(value_type = PriceAmount)]
    per_request: Decimal,
    /// USD per image the call generated (`images` on events).
    #[serde(default, deserialize_with = "schemas::decimal_text")]
    #[schema(value_type = PriceAmount)]
    per_image: Decimal,
    /// USD per image sent with the request (`inputImages` on events).
    #[serde(default, deserialize_with = "schemas::decimal_text")]
    #[schema(value_type = PriceAmount)]
    per_input_image: Decimal,
    /// USD per million prompt tokens written to a 5-minute cache (`cacheWrite5mTokens`).
    #[serde(default, deserialize_with = "schemas::optional_decimal_text")]
    #[schema(value_type = Option<PriceAmount>, example = "3.75")]
    cache_write_5m_per_mtok: Option<Decimal>,
    /// USD per million prompt tokens written to a 1-hour cache (`cacheWrite1hTokens`).
    #[serde(default, deserialize_with = "schemas::optional_decimal_text")]
    #[schema(value_type = Option<PriceAmount>, example = "6")]
    cache_write_1h_per_mtok: Option<Decimal>,
    /// USD per million reasoning tokens (`reasoningTokens`).
    #[serde(default, deserialize_with = "schemas::optional_decimal_text")]
    #[schema(value_type = Option<PriceAmount>, example = "15")]
    reasoning_per_mtok: Option<Decimal>,
    /// USD per million audio input tokens (`audioInputTokens`).
    #[serde(default, deserialize_with = "schemas::optional_decimal_text")]
    #[schema(value_type = Option<PriceAmount>, example = "40")]
    audio_input_per_mtok: Option<Decimal>,
    /// USD per million audio output tokens (`audioOutputTokens`).
    #[serde(default, deserialize_with = "schemas::optional_decimal_text")]
    #[schema(value_type = Option<PriceAmount>, example = "80")]
    audio_output_per_mtok: Option<Decimal>,
    /// Other prices for calls whose prompt (every input token) is longer than
    /// `aboveTokens`, applied to all of the call's tokens.
    #[serde(default)]
    long_context: Option<LongContextPrices>,
    valid_from: DateTime<Utc>,
}

/// Long-context prices: a call whose `promptTokens` (cached tokens and cache writes
/// included) exceed `aboveTokens` is charged these for every token, not only those past
/// the threshold, as Google and Anthropic bill it. Cache writes without a price here
/// cost this input price; reasoning and audio prices of the version are not tiered
/// (when the version names none, they follow this output and input price).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"aboveTokens": 200000, "inputPerMtok": "2.5", "outputPerMtok": "15", "cachedInputPerMtok": "0.625"}))]
pub struct LongContextPrices {
    #[schema(minimum = 1, maximum = 100_000_000, example = 200000)]
    above_tokens: i64,
    #[serde(deserialize_with = "schemas::decimal_text")]
    #[schema(value_type = PriceAmount, example = "2.5")]
    input_per_mtok: Decimal,
    #[serde(deserialize_with = "schemas::decimal_text")]
    #[schema(value_type = PriceAmount, example = "15")]
    output_per_mtok: Decimal,
    #[serde(deserialize_with = "schemas::decimal_text")]
    #[schema(value_type = PriceAmount, example = "0.625")]
    cached_input_per_mtok: Decimal,
    #[serde(
        default,
        deserialize_with = "schemas::optional_decimal_text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<PriceAmount>, example = "7.5")]
    cache_write_5m_per_mtok: Option<Decimal>,
    #[serde(
        default,
        deserialize_with = "schemas::optional_decimal_text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<PriceAmount>, example = "12")]
    cache_write_1h_per_mtok: Option<Decimal>,
}

impl LongContextPrices {
    fn of(row: &PriceRow) -> Option<Self> {
        Some(Self {
            above_tokens: row.long_context_above_tokens?,
            input_per_mtok: row.long_context_input_per_mtok?.normalize(),
            output_per_mtok: row.long_context_output_per_mtok?.normalize(),
            cached_input_per_mtok: row.long_context_cached_input_per_mtok?.normalize(),
            cache_write_5m_per_mtok: row.long_context_cache_write_5m_per_mtok.map(|d| d.normalize()),
            cache_write_1h_per_mtok: row.long_context_cache_write_1h_per_mtok.map(|d| d.normalize()),
        })
    }
}

fn amount(value: Decimal) -> Result<Decimal, Invalid> {
    if value.is_sign_negative() {
        Err(Invalid::new("must not be negative"))
    } else if value > MAX_PRICE {
        Err(Invalid::new(format!("must be at most {MAX_PRICE}")))
    } else if value.scale() > crate::domain::money::MONEY_SCALE {
        Err(Invalid::new("has more than 10 decimal places"))
    } else {
        Ok(value)
    }
}

impl CreatePrice {
    /// Whether the body names the provider's own name (else it defaults).
    pub fn names_provider_model(&self) -> bool {
        self.provider_model_name.is_some()
    }

    /// Checks every field; shared by the API and `meterplane load-prices`.
    pub fn parse(self) -> Result<NewPrice, Vec<FieldError>> {
        let mut f = Fields::default();
        let provider = f.take("provider", bounded_text(&self.provider.to_lowercase(), 100));
        let model = f.take("model", bounded_text(&self.model, 200));
        let provider_model_name = match self.provider_model_name.as_deref() {
            Some(name) => f.take("providerModelName", bounded_text(name, 200)),
            None => model.clone(),
        };
        let mut amount = |name: &str, value: Decimal| f.take(name, amount(value));
        let input_per_mtok = amount("inputPerMtok", self.input_per_mtok);
        let output_per_mtok = amount("outputPerMtok", self.output_per_mtok);
        let cached_input_per_mtok = amount("cachedInputPerMtok", self.cached_input_per_mtok);
        let per_request = amount("perRequest", self.per_request);
        let per_image = amount("perImage", self.per_image);
        let per_input_image = amount("perInputImage", self.per_input_image);
        // An optional price is `Some(None)` when absent, `None` when invalid.
        let mut optional = |name: &str, value: Option<Decimal>| match value {
            Some(v) => amount(name, v).map(Some),
            None => Some(None),
        };
        let cache_write_5m_per_mtok = optional("cacheWrite5mPerMtok", self.cache_write_5m_per_mtok);
        let cache_write_1h_per_mtok = optional("cacheWrite1hPerMtok", self.cache_write_1h_per_mtok);
        let reasoning_per_mtok = optional("reasoningPerMtok", self.reasoning_per_mtok);
        let audio_input_per_mtok = optional("audioInputPerMtok", self.audio_input_per_mtok);
        let audio_output_per_mtok = optional("audioOutputPerMtok", self.audio_output_per_mtok);
        // The long-context columns: all `None` without long-context prices.
        let long = self.long_context.as_ref();
        let mut long_amount = |name: &str, value: Option<Decimal>| optional(&format!("longContext.{name}"), value);
        let long_context_input_per_mtok = long_amount("inputPerMtok", long.map(|l| l.input_per_mtok));
        let long_context_output_per_mtok = long_amount("outputPerMtok", long.map(|l| l.output_per_mtok));
        let long_context_cached_input_per_mtok =
            long_amount("cachedInputPerMtok", long.map(|l| l.cached_input_per_mtok));
        let long_context_cache_write_5m_per_mtok =
            long_amount("cacheWrite5mPerMtok", long.and_then(|l| l.cache_write_5m_per_mtok));
        let long_context_cache_write_1h_per_mtok =
            long_amount("cacheWrite1hPerMtok", long.and_then(|l| l.cache_write_1h_per_mtok));
        let long_context_above_tokens = match long.map(|l| l.above_tokens) {
            Some(n) if !(1..=MAX_TOKENS).contains(&n) => {
                f.push("longContext.aboveTokens", format!("must be 1 to {MAX_TOKENS}"));
                None
            }
            above => Some(above),
        };
        let row = (|| {
            Some(NewPrice {
                id: Uuid::nil(),
                provider: provider?,
                model: model?,
                provider_model_name: provider_model_name?,
                valid_from: self.valid_from,
                input_per_mtok: input_per_mtok?,
                output_per_mtok: output_per_mtok?,
                cached_input_per_mtok: cached_input_per_mtok?,
                per_request: per_request?,
                per_image: per_image?,
                per_input_image: per_input_image?,
                cache_write_5m_per_mtok: cache_write_5m_per_mtok?,
                cache_write_1h_per_mtok: cache_write_1h_per_mtok?,
                reasoning_per_mtok: reasoning_per_mtok?,
                audio_input_per_mtok: audio_input_per_mtok?,
                audio_output_per_mtok: audio_output_per_mtok?,
                long_context_above_tokens: long_context_above_tokens?,
                long_context_input_per_mtok: long_context_input_per_mtok?,
                long_context_output_per_mtok: long_context_output_per_mtok?,
                long_context_cached_input_per_mtok: long_context_cached_input_per_mtok?,
                long_context_cache_write_5m_per_mtok: long_context_cache_write_5m_per_mtok?,
                long_context_cache_write_1h_per_mtok: long_context_cache_write_1h_per_mtok?,
            })
        })();
        row.ok_or_else(|| f.into_errors())
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PriceQuery {
    #[param(inline, value_type = Option<FilterText>)]
    provider: Option<String>,
}

/// Every price version in the catalog, oldest first per model.
#[utoipa::path(
    tag = "pricing",
    security(("bearer" = [])),
    params(PriceQuery),
    responses((status = 200, description = "Price versions", body = Vec<PriceView>), (status = 401, body = Problem))
)]
#[get("/prices")]
pub async fn list_prices(
    state: web::Data<AppState>,
    _caller: AuthUser,
    query: web::Query<PriceQuery>,
) -> AppResult<web::Json<Vec<PriceView>>> {
    let mut conn = state.conn().await?;
    let provider = query_text("provider", query.into_inner().provider)?.map(|p| p.to_lowercase());
    Ok(web::Json(price_views(
        store::prices::list(&mut conn, provider.as_deref()).await?,
    )))
}

/// Adds a price version; it applies to events from `validFrom` on (operators only).
#[utoipa::path(
    tag = "pricing",
    security(("bearer" = [])),
    request_body = CreatePrice,
    responses(
        (status = 201, description = "The new price version", body = PriceView),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 409, description = "A version starting at that instant exists", body = Problem),
        (status = 422, body = Problem),
    )
)]
#[post("/admin/prices")]
pub async fn create_price(
    state: web::Data<AppState>,
    caller: AuthUser,
    body: JsonBody<CreatePrice>,
) -> AppResult<HttpResponse> {
    caller.0.require_operator()?;
    let named = body.provider_model_name.is_some();
    let mut new = body.into_inner().parse().map_err(AppError::validation)?;
    let mut conn = state.conn().await?;
    if let Some(spelling) = store::prices::other_spelling_of(&mut conn, &new.provider, &new.model).await? {
        return Err(AppError::invalid_field(
            "model",
            format!("model names are case-insensitive and the catalog spells this model `{spelling}`"),
        ));
    }
    if !named {
        if let Some(name) = store::prices::provider_model_name_of(&mut conn, &new.provider, &new.model).await? {
            new.provider_model_name = name;
        }
    }
    let row = store::prices::insert(&mut conn, &new).await?;
    state.prices.changed(&mut conn).await;
    tracing::info!(provider = %row.provider, model = %row.model, valid_from = %row.valid_from, "price added");
    // Its `validUntil` depends on the other versions of the model.
    let view = price_views(store::prices::list(&mut conn, Some(&row.provider)).await?)
        .into_iter()
        .find(|v| v.id == row.id);
    Ok(HttpResponse::Created().json(view))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscountView {
    id: Uuid,
    /// Absent for a global discount.
    org_id: Option<Uuid>,
    provider: Option<String>,
    model: Option<String>,
    /// 0 < percent ≤ 100.
    #[schema(value_type = Percent)]
    percent: Decimal,
    valid_from: DateTime<Utc>,
    valid_until: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl From<DiscountRow> for DiscountView {
    fn from(d: DiscountRow) -> Self {
        Self {
            id: d.id,
            org_id: d.org_id,
            provider: d.provider,
            model: d.model,
            percent: d.percent.normalize(),
            valid_from: d.valid_from,
            valid_until: d.valid_until,
            created_at: d.created_at,
        }
    }
}

/// A discount for a provider, a model, or both; global, or for one organization.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"orgId": null, "provider": "anthropic", "percent": "10", "validUntil": "2027-01-01T00:00:00Z"}))]
pub struct CreateDiscount {
    #[serde(default)]
    org_id: Option<Uuid>,
    #[serde(default)]
    #[schema(value_type = Option<ProviderName>)]
    provider: Option<String>,
    /// Matches the catalog id or the provider's own model name.
    #[serde(default)]
    #[schema(value_type = Option<ModelName>)]
    model: Option<String>,
    #[serde(deserialize_with = "schemas::decimal_text")]
    #[schema(value_type = DiscountPercent)]
    percent: Decimal,
    /// Defaults to now.
    #[serde(default)]
    valid_from: Option<DateTime<Utc>>,
    #[serde(default)]
    valid_until: Option<DateTime<Utc>>,
}

impl CreateDiscount {
    fn parse(self, now: DateTime<Utc>) -> Result<NewDiscount, AppError> {
        let mut f = Fields::default();
        let valid_from = self.valid_from.unwrap_or(now);
        if self.percent <= Decimal::ZERO || self.percent > Decimal::ONE_HUNDRED {
            f.push("percent", "must be greater than 0 and at most 100");
        } else if self.percent.scale() > 4 {
            f.push("percent", "has more than 4 decimal places");
        }
        if self.provider.is_none() && self.model.is_none() {
            f.push("provider", "a discount names a provider, a model, or both");
        }
        if self.valid_until.is_some_and(|until| until <= valid_from) {
            f.push("validUntil", "must be after validFrom");
        }
        let provider = match self.provider.as_deref() {
            Some(p) => f.take("provider", bounded_text(&p.to_lowercase(), 100).map(Some)),
            None => Some(None),
        };
        let model = match self.model.as_deref() {
            Some(m) => f.take("model", bounded_text(m, 200).map(Some)),
            None => Some(None),
        };
        let (Some(provider), Some(model), true) = (provider, model, f.is_empty()) else {
            return Err(AppError::validation(f.into_errors()));
        };
        Ok(NewDiscount {
            org_id: self.org_id,
            provider,
            model,
            percent: self.percent,
            valid_from,
            valid_until: self.valid_until,
        })
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct DiscountQuery {
    /// Only this organization's discounts.
    org_id: Option<Uuid>,
    /// Only global discounts.
    #[serde(default)]
    global: bool,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
pub struct DiscountPath {
    discount_id: Uuid,
}

/// Discounts, all or filtered (operators only).
#[utoipa::path(
    tag = "pricing",
    security(("bearer" = [])),
    params(DiscountQuery),
    responses((status = 200, description = "The discounts", body = Vec<DiscountView>), (status = 401, body = Problem), (status = 403, body = Problem))
)]
#[get("/admin/discounts")]
pub async fn list_discounts(
    state: web::Data<AppState>,
    caller: AuthUser,
    query: web::Query<DiscountQuery>,
) -> AppResult<web::Json<Vec<DiscountView>>> {
    caller.0.require_operator()?;
    let scope = match (query.org_id, query.global) {
        (Some(org), _) => Some(Some(org)),
        (None, true) => Some(None),
        (None, false) => None,
    };
    let mut conn = state.conn().await?;
    let rows = store::discounts::list(&mut conn, scope).await?;
    Ok(web::Json(rows.into_iter().map(DiscountView::from).collect()))
}

/// Creates a discount (operators only). See the README for the precedence rules.
#[utoipa::path(
    tag = "pricing",
    security(("bearer" = [])),
    request_body = CreateDiscount,
    responses(
        (status = 201, description = "The new discount", body = DiscountView),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, description = "No such organization", body = Problem),
        (status = 422, body = Problem),
    )
)]
#[post("/admin/discounts")]
pub async fn create_discount(
    state: web::Data<AppState>,
    caller: AuthUser,
    body: JsonBody<CreateDiscount>,
) -> AppResult<HttpResponse> {
    caller.0.require_operator()?;
    let new = body.into_inner().parse(Utc::now())?;
    let mut conn = state.conn().await?;
    let row = store::discounts::insert(&mut conn, new).await?;
    state.prices.changed(&mut conn).await;
    tracing::info!(discount_id = %row.id, org_id = ?row.org_id, percent = %row.percent, "discount created");
    Ok(HttpResponse::Created().json(DiscountView::from(row)))
}

/// Removes a discount; events already recorded keep the discount they got.
#[utoipa::path(
    tag = "pricing",
    security(("bearer" = [])),
    params(DiscountPath),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
    )
)]
#[delete("/admin/discounts/{discountId}")]
pub async fn delete_discount(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<DiscountPath>,
) -> AppResult<HttpResponse> {
    caller.0.require_operator()?;
    let mut conn = state.conn().await?;
    store::discounts::delete(&mut conn, path.discount_id).await?;
    state.prices.changed(&mut conn).await;
    Ok(HttpResponse::NoContent().finish())
}

/// The discounts that can apply to this organization's calls: its own and the global ones.
#[utoipa::path(
    tag = "pricing",
    security(("bearer" = [])),
    params(OrgPath),
    responses((status = 200, description = "The discounts", body = Vec<DiscountView>), (status = 401, body = Problem), (status = 404, body = Problem))
)]
#[get("/orgs/{orgId}/discounts")]
pub async fn list_organization_discounts(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<OrgPath>,
) -> AppResult<web::Json<Vec<DiscountView>>> {
    let mut conn = state.conn().await?;
    let access = store::access::authorize(&mut conn, &caller.0, path.org_id, Access::Read).await?;
    let rows = store::discounts::list_applicable(&mut conn, &access).await?;
    Ok(web::Json(rows.into_iter().map(DiscountView::from).collect()))
}
