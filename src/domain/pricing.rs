//! The cost engine: what one call costs, from its token counts, the price in force
//! and the applicable discount.
//!
//! Token counts follow the OpenAI convention, which is also LiteLLM's: `promptTokens`
//! counts every input token — cached reads, cache writes and audio input included —
//! and `completionTokens` every output token, reasoning and audio output included.
//! The parts are disjoint: cached + cache writes (5-minute and 1-hour) + audio input
//! never exceed `promptTokens`, reasoning + audio output never exceed
//! `completionTokens` ([`Quantities::check`]). A gateway whose provider counts
//! otherwise (Anthropic's `input_tokens` leaves cache reads and writes out) adds them
//! in before reporting.
//!
//! Rules (all amounts in USD):
//! - each kind of token is charged at its own price: plain input (prompt minus the
//!   parts named above), cached input, cache writes by duration, plain output
//!   (completion minus reasoning and audio output), reasoning, audio input and output;
//! - a price a version does not name falls back to the nearest one it does
//!   ([`Price::rates`]): reasoning and audio output to the output price, audio input to
//!   the input price, a 1-hour cache write to the 5-minute write price and that to the
//!   input price — the way providers without such a distinction bill them;
//! - each component is rounded once, by [`round_money`]; the total before discount
//!   is the sum of the rounded components, so components always add up exactly;
//! - the discount applies to the model charges (every component but data storage),
//!   and its savings are rounded once;
//! - images are charged per image: those sent with the request (`input_images`) at
//!   the input-image price, those the call generated (`images`) at the image price;
//!   `image` is the sum of the two rounded parts;
//! - an unpriced model costs zero in every component.

use rust_decimal::Decimal;
use uuid::Uuid;

use super::{
    money::{round_money, MAX_EVENT_AMOUNT},
    Invalid,
};

const PER_MILLION: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);
const HUNDRED: Decimal = Decimal::ONE_HUNDRED;

/// One version of a model's price, in USD (per million tokens unless named otherwise).
/// The optional prices fall back as [`Price::rates`] says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Price {
    pub id: Uuid,
    pub input_per_mtok: Decimal,
    pub output_per_mtok: Decimal,
    pub cached_input_per_mtok: Decimal,
    pub per_request: Decimal,
    /// Per image the call generated.
    pub per_image: Decimal,
    /// Per image sent with the request.
    pub per_input_image: Decimal,
    /// Tokens written to a prompt cache that lives 5 minutes (Anthropic's default).
    pub cache_write_5m_per_mtok: Option<Decimal>,
    /// Tokens written to a prompt cache that lives 1 hour.
    pub cache_write_1h_per_mtok: Option<Decimal>,
    /// Reasoning ("thinking") tokens, part of the completion tokens.
    pub reasoning_per_mtok: Option<Decimal>,
    pub audio_input_per_mtok: Option<Decimal>,
    pub audio_output_per_mtok: Option<Decimal>,
    /// Other prices for calls whose prompt is longer than a threshold.
    pub long_context: Option<LongContext>,
}

/// Prices for long prompts (Gemini 2.5 Pro and Claude Sonnet 4/4.5 above 200,000 input
/// tokens): a call whose `prompt_tokens` — every input token, cached and cache writes
/// included — exceeds `above_tokens` is charged these prices for all its tokens, not
/// only for those past the threshold, the way the providers bill it. A cache write
/// without a price of its own here is charged at this input price.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LongContext {
    pub above_tokens: i64,
    pub input_per_mtok: Decimal,
    pub output_per_mtok: Decimal,
    pub cached_input_per_mtok: Decimal,
    pub cache_write_5m_per_mtok: Option<Decimal>,
    pub cache_write_1h_per_mtok: Option<Decimal>,
}

/// The per-million-token prices a call is charged at, every fallback resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    pub input: Decimal,
    pub cached_input: Decimal,
    pub cache_write_5m: Decimal,
    pub cache_write_1h: Decimal,
    pub output: Decimal,
    pub reasoning: Decimal,
    pub audio_input: Decimal,
    pub audio_output: Decimal,
}

impl Price {
    /// The prices a call with `prompt_tokens` is charged at: the long-context prices
    /// when the prompt is past their threshold ([`LongContext`]), else the base ones. A
    /// price the version leaves out is the one providers that do not distinguish it
    /// charge: reasoning tokens and audio output are output, audio input is input, a
    /// 1-hour cache write costs what a 5-minute one does, and a cache write without a
    /// price of its own is input. Reasoning and audio prices, when named, are not
    /// tiered; when not, they follow the (tiered) output and input prices.
    pub fn rates(&self, prompt_tokens: i64) -> Rates {
        let long = self.long_context.as_ref().filter(|t| prompt_tokens > t.above_tokens);
        let (input, output, cached_input, write_5m, write_1h) = match long {
            Some(t) => (
                t.input_per_mtok,
                t.output_per_mtok,
                t.cached_input_per_mtok,
                t.cache_write_5m_per_mtok,
                t.cache_write_1h_per_mtok,
            ),
            None => (
                self.input_per_mtok,
                self.output_per_mtok,
                self.cached_input_per_mtok,
                self.cache_write_5m_per_mtok,
                self.cache_write_1h_per_mtok,
            ),
        };
        let cache_write_5m = write_5m.unwrap_or(input);
        Rates {
            input,
            cached_input,
            cache_write_5m,
            cache_write_1h: write_1h.unwrap_or(cache_write_5m),
            output,
            reasoning: self.reasoning_per_mtok.unwrap_or(output),
            audio_input: self.audio_input_per_mtok.unwrap_or(input),
            audio_output: self.audio_output_per_mtok.unwrap_or(output),
        }
    }
}

/// What a call consumed. `stored_tokens` is set when its bodies are kept, and is
/// charged at the data-storage price. See the module documentation for what
/// `prompt_tokens` and `completion_tokens` include.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quantities {
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// Prompt tokens read from a cache.
    pub cached_tokens: i64,
    /// Prompt tokens written to a 5-minute cache.
    pub cache_write_5m_tokens: i64,
    /// Prompt tokens written to a 1-hour cache.
    pub cache_write_1h_tokens: i64,
    /// Completion tokens spent reasoning.
    pub reasoning_tokens: i64,
    /// Prompt tokens of audio.
    pub audio_input_tokens: i64,
    /// Completion tokens of audio.
    pub audio_output_tokens: i64,
    /// Images the call generated.
    pub images: i32,
    /// Images sent with the request.
    pub input_images: i32,
    pub stored_tokens: i64,
}

/// Which count a breach of [`Quantities::check`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breach {
    /// Cached tokens alone exceed the prompt.
    Cached,
    /// Cached, cache-write and audio input tokens together exceed the prompt.
    Prompt,
    /// Reasoning and audio output tokens together exceed the completion.
    Completion,
}

impl Breach {
    pub fn message(self) -> &'static str {
        match self {
            Self::Cached => "cachedTokens cannot exceed promptTokens",
            Self::Prompt => {
                "cachedTokens + cacheWrite5mTokens + cacheWrite1hTokens + audioInputTokens cannot exceed \
                 promptTokens (promptTokens counts every input token)"
            }
            Self::Completion => {
                "reasoningTokens + audioOutputTokens cannot exceed completionTokens (completionTokens counts \
                 every output token)"
            }
        }
    }
}

impl Quantities {
    /// The parts of the prompt and of the completion fit in them (see the module
    /// documentation). Counts are non-negative, which callers check first.
    pub fn check(&self) -> Result<(), Breach> {
        let prompt_parts = [
            self.cached_tokens,
            self.cache_write_5m_tokens,
            self.cache_write_1h_tokens,
            self.audio_input_tokens,
        ];
        let completion_parts = [self.reasoning_tokens, self.audio_output_tokens];
        let sum = |parts: &[i64]| parts.iter().try_fold(0i64, |acc, n| acc.checked_add(*n));
        if self.cached_tokens > self.prompt_tokens {
            Err(Breach::Cached)
        } else if sum(&prompt_parts).is_none_or(|s| s > self.prompt_tokens) {
            Err(Breach::Prompt)
        } else if sum(&completion_parts).is_none_or(|s| s > self.completion_tokens) {
            Err(Breach::Completion)
        } else {
            Ok(())
        }
    }

    /// Prompt tokens charged at the plain input price.
    fn plain_input(&self) -> i64 {
        self.prompt_tokens
            - self.cached_tokens
            - self.cache_write_5m_tokens
            - self.cache_write_1h_tokens
            - self.audio_input_tokens
    }

    /// Completion tokens charged at the plain output price.
    fn plain_output(&self) -> i64 {
        self.completion_tokens - self.reasoning_tokens - self.audio_output_tokens
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// Plain input tokens (see [`Quantities`]).
    pub input: Decimal,
    /// Plain output tokens.
    pub output: Decimal,
    pub cached_input: Decimal,
    pub cache_write_5m: Decimal,
    pub cache_write_1h: Decimal,
    pub reasoning: Decimal,
    pub audio_input: Decimal,
    pub audio_output: Decimal,
    pub request: Decimal,
    /// `image_input + image_output`.
    pub image: Decimal,
    pub image_input: Decimal,
    pub image_output: Decimal,
    pub data_storage: Decimal,
    pub before_discount: Decimal,
    pub discount_percent: Decimal,
    pub discount_savings: Decimal,
    pub total: Decimal,
}

/// The cost of one call. `discount_percent` is in `0..=100`.
pub fn compute_cost(
    quantities: &Quantities,
    price: Option<&Price>,
    storage_per_mtok: Decimal,
    discount_percent: Decimal,
) -> Result<Cost, Invalid> {
    let Some(price) = price else {
        return Ok(Cost::default());
    };
    let q = quantities;
    q.check().map_err(|breach| Invalid::new(breach.message()))?;
    if !(Decimal::ZERO..=HUNDRED).contains(&discount_percent) {
        return Err(Invalid::new("discount must be between 0 and 100 percent"));
    }
    let per_token = |count: i64, per_mtok: Decimal| -> Result<Decimal, Invalid> {
        Decimal::from(count)
            .checked_mul(per_mtok)
            .map(|d| round_money(d / PER_MILLION))
            .ok_or_else(|| Invalid::new("token count too large to price"))
    };
    let rates = price.rates(q.prompt_tokens);
    let input = per_token(q.plain_input(), rates.input)?;
    let cached_input = per_token(q.cached_tokens, rates.cached_input)?;
    let cache_write_5m = per_token(q.cache_write_5m_tokens, rates.cache_write_5m)?;
    let cache_write_1h = per_token(q.cache_write_1h_tokens, rates.cache_write_1h)?;
    let audio_input = per_token(q.audio_input_tokens, rates.audio_input)?;
    let output = per_token(q.plain_output(), rates.output)?;
    let reasoning = per_token(q.reasoning_tokens, rates.reasoning)?;
    let audio_output = per_token(q.audio_output_tokens, rates.audio_output)?;
    let data_storage = per_token(q.stored_tokens, storage_per_mtok)?;
    let request = round_money(price.per_request);
    let per_image = |count: i32, price: Decimal| {
        Decimal::from(count)
            .checked_mul(price)
            .map(round_money)
            .ok_or_else(|| Invalid::new("image count too large to price"))
    };
    let image_output = per_image(q.images, price.per_image)?;
    let image_input = per_image(q.input_images, price.per_input_image)?;
    let image = image_input + image_output;

    let model_charges = input
        + cached_input
        + cache_write_5m
        + cache_write_1h
        + audio_input
        + output
        + reasoning
        + audio_output
        + request
        + image;
    if model_charges + data_storage >= MAX_EVENT_AMOUNT {
        return Err(Invalid::new(format!(
            "the cost of this event exceeds {MAX_EVENT_AMOUNT} USD"
        )));
    }
    let discount_savings = round_money(model_charges * discount_percent / HUNDRED);
    let before_discount = model_charges + data_storage;
    Ok(Cost {
        input,
        output,
        cached_input,
        cache_write_5m,
        cache_write_1h,
        reasoning,
        audio_input,
        audio_output,
        request,
        image,
        image_input,
        image_output,
        data_storage,
        before_discount,
        discount_percent,
        discount_savings,
        total: before_discount - discount_savings,
    })
}
/// One model's price from a given instant on.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogEntry {
    pub provider: String,
    pub model: String,
    pub provider_model_name: String,
    pub valid_from: chrono::DateTime<chrono::Utc>,
    pub price: Price,
}

/// The price versions that may apply to a set of calls.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    entries: Vec<CatalogEntry>,
}

impl Catalog {
    pub fn new(entries: Vec<CatalogEntry>) -> Self {
        Self { entries }
    }

    /// How many price versions it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The catalog model a reported name stands for: the catalog id it names, or the
    /// catalog id of the latest version that carries it as the provider's own name.
    /// Provider and model names match whatever their case ([`same_name`]).
    pub fn resolve(&self, provider: &str, model: &str) -> Option<&str> {
        let of_provider = || self.entries.iter().filter(move |e| same_name(&e.provider, provider));
        if let Some(entry) = of_provider().find(|e| same_name(&e.model, model)) {
            return Some(entry.model.as_str());
        }
        of_provider()
            .filter(|e| same_name(&e.provider_model_name, model))
            .max_by_key(|e| e.valid_from)
            .map(|e| e.model.as_str())
    }

    /// The version in force at `at` for `model`. The reported name is first resolved to
    /// a catalog model ([`Catalog::resolve`]), so a new version applies whichever name
    /// the gateway reports.
    pub fn lookup(&self, provider: &str, model: &str, at: chrono::DateTime<chrono::Utc>) -> Option<&CatalogEntry> {
        let catalog_id = self.resolve(provider, model)?;
        self.entries
            .iter()
            .filter(|e| same_name(&e.provider, provider) && e.model == catalog_id && e.valid_from <= at)
            .max_by_key(|e| e.valid_from)
    }

    /// The name roll-ups count a call under: the catalog id when the catalog knows the
    /// model (by either name, priced at that time or not), otherwise the reported name
    /// in lower case, so names that differ only in case count as one model.
    pub fn canonical_model(&self, provider: &str, model: &str) -> String {
        self.resolve(provider, model)
            .map_or_else(|| model.to_lowercase(), str::to_owned)
    }

    /// The names ([`Catalog::canonical_model`]) a filter on `model` selects: calls counted
    /// under the same model as `model`, whichever of its names (any case) the filter and
    /// the calls use. With a provider, that provider's model; without, the model under
    /// every provider the catalog knows it for, and the reported name in lower case
    /// (calls of providers the catalog does not know it for). Sorted, without repeats.
    pub fn filter_names(&self, provider: Option<&str>, model: &str) -> Vec<String> {
        let mut names = match provider {
            Some(provider) => vec![self.canonical_model(provider, model)],
            None => {
                let mut providers: Vec<&str> = self.entries.iter().map(|e| e.provider.as_str()).collect();
                providers.sort_unstable();
                providers.dedup();
                providers
                    .into_iter()
                    .filter_map(|p| self.resolve(p, model).map(str::to_owned))
                    .chain(std::iter::once(model.to_lowercase()))
                    .collect()
            }
        };
        names.sort();
        names.dedup();
        names
    }
}

/// One organization's negotiated prices (overrides of the catalog), versioned like the
/// catalog: a version applies from its `valid_from` until the organization's next
/// version of the same model.
///
/// Precedence for a call of the organization at time `t`: its override version in
/// force at `t`, if any, else the catalog's version in force at `t`
/// ([`Catalog::lookup_for`]). An override in force always wins over the catalog, also
/// over a catalog version that started later. Discounts apply to whichever price won.
#[derive(Debug, Clone, Default)]
pub struct OrgPrices {
    entries: Vec<CatalogEntry>,
    /// The catalog model each entry stands for ([`Catalog::canonical_model`]), when
    /// worked out ahead by [`OrgPrices::keyed`].
    keys: Option<Vec<String>>,
}

impl OrgPrices {
    pub fn new(entries: Vec<CatalogEntry>) -> Self {
        Self { entries, keys: None }
    }

    /// Works out once which catalog model each override stands for, so pricing a batch
    /// of events does not resolve the overrides' names for every event.
    pub fn keyed(mut self, catalog: &Catalog) -> Self {
        let keys = self
            .entries
            .iter()
            .map(|e| catalog.canonical_model(&e.provider, &e.model))
            .collect();
        self.keys = Some(keys);
        self
    }

    /// The override in force at `at` for the model a call reports. An override names
    /// a model the way an event does — by the catalog id or the provider's own name,
    /// in any case — so both are taken to the catalog model they stand for
    /// ([`Catalog::canonical_model`]) and compared there; an override of a model the
    /// catalog does not know also matches by its `provider_model_name`. `catalog` is
    /// the one [`OrgPrices::keyed`] was given, if it was.
    pub fn in_force<'a>(
        &'a self,
        catalog: &Catalog,
        provider: &str,
        model: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Option<&'a CatalogEntry> {
        if self.entries.is_empty() {
            return None;
        }
        let reported = catalog.canonical_model(provider, model);
        let stands_for = |i: usize, e: &CatalogEntry| match &self.keys {
            Some(keys) => keys.get(i).is_some_and(|k| same_name(k, &reported)),
            None => same_name(&catalog.canonical_model(&e.provider, &e.model), &reported),
        };
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.valid_from <= at && same_name(&e.provider, provider))
            .filter(|(i, e)| stands_for(*i, e) || same_name(&e.provider_model_name, model))
            .map(|(_, e)| e)
            .max_by_key(|e| e.valid_from)
    }
}

impl Catalog {
    /// The price a call of an organization with `overrides` is charged at: the
    /// organization's override in force at `at`, else the catalog's version in force
    /// at `at` ([`OrgPrices`] has the precedence).
    pub fn lookup_for<'a>(
        &'a self,
        overrides: &'a OrgPrices,
        provider: &str,
        model: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Option<&'a CatalogEntry> {
        overrides
            .in_force(self, provider, model, at)
            .or_else(|| self.lookup(provider, model, at))
    }
}

/// Provider and model names are case-insensitive: `OpenAI`/`GPT-4o` names the same
/// model as `openai`/`gpt-4o`. (Unicode lower-casing; ASCII names take a fast path.)
pub fn same_name(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        a.chars()
            .flat_map(char::to_lowercase)
            .eq(b.chars().flat_map(char::to_lowercase))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn sonnet() -> Price {
        Price {
            id: Uuid::nil(),
            input_per_mtok: dec!(3),
            output_per_mtok: dec!(15),
            cached_input_per_mtok: dec!(0.30),
            per_request: dec!(0),
            ..Price::default()
        }
    }

    /// Claude Sonnet 4.5's list prices: cache reads 0.1×, 5-minute writes 1.25× and
    /// 1-hour writes 2× the input price.
    fn claude() -> Price {
        Price {
            cache_write_5m_per_mtok: Some(dec!(3.75)),
            cache_write_1h_per_mtok: Some(dec!(6)),
            ..sonnet()
        }
    }

    #[test]
    fn a_claude_call_with_cache_writes_of_both_durations_and_cache_reads() {
        // 50,000 prompt tokens: 30,000 read from the cache, 8,000 written for 5 minutes,
        // 2,000 written for an hour, 10,000 plain; 1,000 completion tokens.
        let q = Quantities {
            prompt_tokens: 50_000,
            completion_tokens: 1_000,
            cached_tokens: 30_000,
            cache_write_5m_tokens: 8_000,
            cache_write_1h_tokens: 2_000,
            ..Default::default()
        };
        let cost = compute_cost(&q, Some(&claude()), dec!(0), dec!(0)).unwrap();
        // 10,000 × 3/M = 0.03; 30,000 × 0.30/M = 0.009; 8,000 × 3.75/M = 0.03;
        // 2,000 × 6/M = 0.012; 1,000 × 15/M = 0.015; total 0.096.
        assert_eq!(
            (
                cost.input,
                cost.cached_input,
                cost.cache_write_5m,
                cost.cache_write_1h,
                cost.output
            ),
            (dec!(0.03), dec!(0.009), dec!(0.03), dec!(0.012), dec!(0.015))
        );
        assert_eq!(cost.total, dec!(0.096));
    }

    #[test]
    fn a_reasoning_call_is_charged_at_the_reasoning_price_or_else_as_output() {
        // o3-like: 2,000 prompt tokens, 5,000 completion tokens of which 4,200 reasoning.
        let o3 = Price {
            input_per_mtok: dec!(2),
            output_per_mtok: dec!(8),
            cached_input_per_mtok: dec!(0.5),
            ..Price::default()
        };
        let q = Quantities {
            prompt_tokens: 2_000,
            completion_tokens: 5_000,
            reasoning_tokens: 4_200,
            ..Default::default()
        };
        let cost = compute_cost(&q, Some(&o3), dec!(0), dec!(0)).unwrap();
        // input 2,000 × 2/M = 0.004; output 800 × 8/M = 0.0064; reasoning 4,200 × 8/M = 0.0336.
        assert_eq!(
            (cost.input, cost.output, cost.reasoning, cost.total),
            (dec!(0.004), dec!(0.0064), dec!(0.0336), dec!(0.044))
        );
        // A reasoning price of its own replaces the output price for those tokens only.
        let priced = Price {
            reasoning_per_mtok: Some(dec!(3.5)),
            ..o3
        };
        let cost = compute_cost(&q, Some(&priced), dec!(0), dec!(0)).unwrap();
        assert_eq!((cost.reasoning, cost.total), (dec!(0.0147), dec!(0.0251)));
    }

    #[test]
    fn an_audio_call_charges_audio_tokens_apart() {
        // gpt-4o-audio-preview-like: text 2.50/10, audio 40/80 per million.
        let audio = Price {
            input_per_mtok: dec!(2.5),
            output_per_mtok: dec!(10),
            cached_input_per_mtok: dec!(1.25),
            audio_input_per_mtok: Some(dec!(40)),
            audio_output_per_mtok: Some(dec!(80)),
            ..Price::default()
        };
        // 1,500 prompt tokens of which 1,200 audio; 900 completion of which 700 audio.
        let q = Quantities {
            prompt_tokens: 1_500,
            completion_tokens: 900,
            audio_input_tokens: 1_200,
            audio_output_tokens: 700,
            ..Default::default()
        };
        let cost = compute_cost(&q, Some(&audio), dec!(0), dec!(0)).unwrap();
        // 300 × 2.5/M = 0.00075; 1,200 × 40/M = 0.048; 200 × 10/M = 0.002; 700 × 80/M = 0.056.
        assert_eq!(
            (cost.input, cost.audio_input, cost.output, cost.audio_output, cost.total),
            (dec!(0.00075), dec!(0.048), dec!(0.002), dec!(0.056), dec!(0.10675))
        );
    }

    /// Gemini 2.5 Pro: 1.25/10 up to 200,000 prompt tokens, 2.50/15 above; context cache
    /// reads 0.31/0.625.
    fn gemini_pro() -> Price {
        Price {
            input_per_mtok: dec!(1.25),
            output_per_mtok: dec!(10),
            cached_input_per_mtok: dec!(0.31),
            long_context: Some(LongContext {
                above_tokens: 200_000,
                input_per_mtok: dec!(2.5),
                output_per_mtok: dec!(15),
                cached_input_per_mtok: dec!(0.625),
                ..LongContext::default()
            }),
            ..Price::default()
        }
    }

    #[test]
    fn a_prompt_past_the_threshold_is_charged_the_long_context_prices_for_every_token() {
        let call = |prompt_tokens| Quantities {
            prompt_tokens,
            completion_tokens: 2_000,
            cached_tokens: 100_000,
            reasoning_tokens: 500,
            ..Default::default()
        };
        // 200,000 is not above 200,000: input 100,000 × 1.25/M = 0.125; cached 100,000 ×
        // 0.31/M = 0.031; output 1,500 × 10/M = 0.015; reasoning 500 × 10/M = 0.005.
        let below = compute_cost(&call(200_000), Some(&gemini_pro()), dec!(0), dec!(0)).unwrap();
        assert_eq!(
            (
                below.input,
                below.cached_input,
                below.output,
                below.reasoning,
                below.total
            ),
            (dec!(0.125), dec!(0.031), dec!(0.015), dec!(0.005), dec!(0.176))
        );
        // One more token: 100,001 × 2.5/M = 0.2500025; 100,000 × 0.625/M = 0.0625;
        // 1,500 × 15/M = 0.0225; 500 × 15/M = 0.0075.
        let above = compute_cost(&call(200_001), Some(&gemini_pro()), dec!(0), dec!(0)).unwrap();
        assert_eq!(
            (
                above.input,
                above.cached_input,
                above.output,
                above.reasoning,
                above.total
            ),
            (
                dec!(0.2500025),
                dec!(0.0625),
                dec!(0.0225),
                dec!(0.0075),
                dec!(0.3425025)
            )
        );
        // Long-context cache writes without a price of their own are long-context input.
        let rates = gemini_pro().rates(200_001);
        assert_eq!((rates.cache_write_5m, rates.cache_write_1h), (dec!(2.5), dec!(2.5)));
    }

    #[test]
    fn missing_prices_fall_back_to_the_nearest_one_named() {
        let rates = sonnet().rates(0);
        assert_eq!(
            (
                rates.cache_write_5m,
                rates.cache_write_1h,
                rates.reasoning,
                rates.audio_input,
                rates.audio_output
            ),
            (dec!(3), dec!(3), dec!(15), dec!(3), dec!(15))
        );
        let only_5m = Price {
            cache_write_5m_per_mtok: Some(dec!(3.75)),
            ..sonnet()
        };
        assert_eq!(only_5m.rates(0).cache_write_1h, dec!(3.75));
        assert_eq!(claude().rates(0).cache_write_1h, dec!(6));
    }

    #[test]
    fn the_parts_of_a_prompt_and_a_completion_fit_in_them() {
        let fits = Quantities {
            prompt_tokens: 10,
            completion_tokens: 5,
            cached_tokens: 4,
            cache_write_5m_tokens: 3,
            cache_write_1h_tokens: 2,
            audio_input_tokens: 1,
            reasoning_tokens: 3,
            audio_output_tokens: 2,
            ..Default::default()
        };
        assert_eq!(fits.check(), Ok(()));
        let breach = |q: Quantities| q.check().unwrap_err();
        assert_eq!(
            breach(Quantities {
                cached_tokens: 11,
                ..fits
            }),
            Breach::Cached
        );
        assert_eq!(
            breach(Quantities {
                audio_input_tokens: 2,
                ..fits
            }),
            Breach::Prompt
        );
        assert_eq!(
            breach(Quantities {
                cache_write_1h_tokens: 3,
                ..fits
            }),
            Breach::Prompt
        );
        assert_eq!(
            breach(Quantities {
                reasoning_tokens: 4,
                ..fits
            }),
            Breach::Completion
        );
        assert_eq!(
            breach(Quantities {
                cache_write_5m_tokens: i64::MAX,
                ..fits
            }),
            Breach::Prompt,
            "no overflow"
        );
        assert!(compute_cost(
            &Quantities {
                audio_output_tokens: 3,
                ..fits
            },
            Some(&sonnet()),
            dec!(0),
            dec!(0)
        )
        .is_err());
    }

    #[test]
    fn hand_computed_case() {
        // 1,200 prompt tokens of which 200 cached, 300 completion tokens:
        // input 1,000 × $3/M = 0.003; cached 200 × $0.30/M = 0.00006;
        // output 300 × $15/M = 0.0045; total 0.00756.
        let q = Quantities {
            prompt_tokens: 1200,
            completion_tokens: 300,
            cached_tokens: 200,
            ..Default::default()
        };
        let cost = compute_cost(&q, Some(&sonnet()), dec!(0), dec!(0)).unwrap();
        assert_eq!(cost.input, dec!(0.003));
        assert_eq!(cost.cached_input, dec!(0.00006));
        assert_eq!(cost.output, dec!(0.0045));
        assert_eq!(cost.total, dec!(0.00756));
    }

    #[test]
    fn discount_spares_the_storage_charge() {
        let q = Quantities {
            prompt_tokens: 1_000_000,
            completion_tokens: 0,
            stored_tokens: 1_000_000,
            ..Default::default()
        };
        let cost = compute_cost(&q, Some(&sonnet()), dec!(0.01), dec!(10)).unwrap();
        assert_eq!(cost.before_discount, dec!(3.01));
        assert_eq!(cost.discount_savings, dec!(0.3));
        assert_eq!(cost.total, dec!(2.71));
    }

    #[test]
    fn per_request_and_image_charges() {
        let price = Price {
            per_request: dec!(0.001),
            per_image: dec!(0.04),
            per_input_image: dec!(0.0025),
            ..sonnet()
        };
        let q = Quantities {
            images: 3,
            input_images: 2,
            ..Default::default()
        };
        let cost = compute_cost(&q, Some(&price), dec!(0), dec!(0)).unwrap();
        // 3 generated × 0.04 = 0.12; 2 sent × 0.0025 = 0.005.
        assert_eq!(
            (
                cost.request,
                cost.image_output,
                cost.image_input,
                cost.image,
                cost.total
            ),
            (dec!(0.001), dec!(0.12), dec!(0.005), dec!(0.125), dec!(0.126))
        );
    }

    #[test]
    fn unpriced_models_cost_nothing() {
        let q = Quantities {
            prompt_tokens: 10,
            completion_tokens: 10,
            stored_tokens: 20,
            ..Default::default()
        };
        assert_eq!(compute_cost(&q, None, dec!(0.01), dec!(50)).unwrap(), Cost::default());
    }

    #[test]
    fn costs_too_large_to_store_are_rejected() {
        let price = Price {
            per_image: dec!(1_000_000),
            ..sonnet()
        };
        let q = Quantities {
            images: 10_000,
            ..Default::default()
        };
        assert!(compute_cost(&q, Some(&price), dec!(0), dec!(0)).is_err());
        let q = Quantities {
            images: 9_999,
            ..Default::default()
        };
        assert!(compute_cost(&q, Some(&price), dec!(0), dec!(0)).is_ok());
    }

    #[test]
    fn impossible_inputs_are_rejected() {
        let q = Quantities {
            prompt_tokens: 10,
            cached_tokens: 11,
            ..Default::default()
        };
        assert!(compute_cost(&q, Some(&sonnet()), dec!(0), dec!(0)).is_err());
        let q = Quantities {
            prompt_tokens: 10,
            ..Default::default()
        };
        assert!(compute_cost(&q, Some(&sonnet()), dec!(0), dec!(101)).is_err());
    }

    #[test]
    fn catalog_applies_the_version_in_force() {
        use chrono::TimeZone;
        let day = |d| chrono::Utc.with_ymd_and_hms(2026, 3, d, 0, 0, 0).unwrap();
        let entry = |from, input| CatalogEntry {
            provider: "anthropic".into(),
            model: "claude-sonnet-4-5".into(),
            provider_model_name: "claude-sonnet-4-5-20250929".into(),
            valid_from: from,
            price: Price {
                input_per_mtok: input,
                ..sonnet()
            },
        };
        let catalog = Catalog::new(vec![entry(day(1), dec!(3)), entry(day(10), dec!(2))]);
        let input_at = |model, d| {
            catalog
                .lookup("anthropic", model, day(d))
                .map(|e| e.price.input_per_mtok)
        };
        assert_eq!(input_at("claude-sonnet-4-5", 5), Some(dec!(3)));
        assert_eq!(input_at("claude-sonnet-4-5-20250929", 10), Some(dec!(2)));
        assert_eq!(input_at("claude-sonnet-4-5", 20), Some(dec!(2)));
        assert_eq!(catalog.lookup("openai", "claude-sonnet-4-5", day(20)), None);

        // A later version recorded without the provider name still applies to events
        // that report the provider name.
        let mut renamed = entry(day(15), dec!(1));
        renamed.provider_model_name = renamed.model.clone();
        let catalog = Catalog::new(vec![entry(day(1), dec!(3)), renamed]);
        let price = catalog
            .lookup("anthropic", "claude-sonnet-4-5-20250929", day(20))
            .map(|e| e.price.input_per_mtok);
        assert_eq!(price, Some(dec!(1)));
        assert_eq!(
            catalog.lookup(
                "anthropic",
                "claude-sonnet-4-5",
                chrono::Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap()
            ),
            None
        );
    }

    #[test]
    fn names_match_whatever_their_case() {
        use chrono::TimeZone;
        let day = |d| chrono::Utc.with_ymd_and_hms(2026, 3, d, 0, 0, 0).unwrap();
        let catalog = Catalog::new(vec![CatalogEntry {
            provider: "openai".into(),
            model: "gpt-4o".into(),
            provider_model_name: "gpt-4o-2024-08-06".into(),
            valid_from: day(10),
            price: sonnet(),
        }]);
        for (provider, model) in [
            ("openai", "gpt-4o"),
            ("OpenAI", "GPT-4O"),
            ("OPENAI", "GPT-4o-2024-08-06"),
        ] {
            assert!(catalog.lookup(provider, model, day(11)).is_some(), "{provider}/{model}");
            assert_eq!(catalog.canonical_model(provider, model), "gpt-4o");
        }
        // Known to the catalog but not priced yet: still the catalog id.
        assert!(catalog.lookup("openai", "gpt-4o-2024-08-06", day(9)).is_none());
        assert_eq!(catalog.canonical_model("openai", "gpt-4o-2024-08-06"), "gpt-4o");
        // Unknown models count under their name in lower case.
        assert_eq!(catalog.canonical_model("openai", "My-Fine-Tune"), "my-fine-tune");
        assert_eq!(catalog.canonical_model("anthropic", "gpt-4o"), "gpt-4o");
        assert!(catalog.lookup("anthropic", "gpt-4o", day(11)).is_none());
        assert!(same_name("Ünïcode-X", "üNÏCODE-x"));
        assert!(!same_name("gpt-4o", "gpt-4o-mini"));
    }

    #[test]
    fn a_model_filter_selects_the_model_by_either_name() {
        let entry = |provider: &str, model: &str, name: &str| CatalogEntry {
            provider: provider.into(),
            model: model.into(),
            provider_model_name: name.into(),
            valid_from: chrono::DateTime::UNIX_EPOCH,
            price: sonnet(),
        };
        let catalog = Catalog::new(vec![
            entry("openai", "gpt-4o", "gpt-4o-2024-08-06"),
            entry("azure", "gpt-4o", "gpt-4o"),
        ]);
        assert_eq!(catalog.filter_names(None, "GPT-4o"), ["gpt-4o"]);
        // The provider's name: the catalog id, and the name itself for calls of
        // providers whose catalog does not know it.
        assert_eq!(
            catalog.filter_names(None, "gpt-4o-2024-08-06"),
            ["gpt-4o", "gpt-4o-2024-08-06"]
        );
        assert_eq!(catalog.filter_names(Some("openai"), "GPT-4o-2024-08-06"), ["gpt-4o"]);
        assert_eq!(
            catalog.filter_names(Some("azure"), "gpt-4o-2024-08-06"),
            ["gpt-4o-2024-08-06"]
        );
        assert_eq!(catalog.filter_names(None, "My-Tune"), ["my-tune"]);
        assert_eq!(Catalog::default().filter_names(None, "X"), ["x"]);
    }

    #[test]
    fn an_organizations_override_in_force_wins_over_the_catalog() {
        use chrono::TimeZone;
        let day = |d| chrono::Utc.with_ymd_and_hms(2026, 3, d, 0, 0, 0).unwrap();
        let entry = |model: &str, name: &str, from, input| CatalogEntry {
            provider: "anthropic".into(),
            model: model.into(),
            provider_model_name: name.into(),
            valid_from: from,
            price: Price {
                input_per_mtok: input,
                ..sonnet()
            },
        };
        let catalog = Catalog::new(vec![
            entry("claude-sonnet-4-5", "claude-sonnet-4-5-20250929", day(1), dec!(3)),
            // A catalog change after the override started: the override still wins.
            entry("claude-sonnet-4-5", "claude-sonnet-4-5-20250929", day(20), dec!(4)),
        ]);
        let overrides = OrgPrices::new(vec![
            // Named by the provider's name, in another case: the same catalog model.
            entry(
                "Claude-Sonnet-4-5-20250929",
                "Claude-Sonnet-4-5-20250929",
                day(5),
                dec!(2),
            ),
            entry("claude-sonnet-4-5", "claude-sonnet-4-5-20250929", day(10), dec!(1.5)),
            // A model the catalog does not know, priced for this organization only.
            entry("house-model", "house-model-v2", day(1), dec!(7)),
        ]);
        let input_at = |overrides: &OrgPrices, model: &str, d| {
            catalog
                .lookup_for(overrides, "anthropic", model, day(d))
                .map(|e| e.price.input_per_mtok)
        };
        // Before the first override: the catalog's list price.
        assert_eq!(input_at(&overrides, "claude-sonnet-4-5", 4), Some(dec!(3)));
        assert_eq!(input_at(&overrides, "CLAUDE-SONNET-4-5", 5), Some(dec!(2)));
        assert_eq!(input_at(&overrides, "claude-sonnet-4-5-20250929", 9), Some(dec!(2)));
        assert_eq!(input_at(&overrides, "claude-sonnet-4-5", 10), Some(dec!(1.5)));
        assert_eq!(input_at(&overrides, "claude-sonnet-4-5", 25), Some(dec!(1.5)));
        // Another organization (no overrides) pays the catalog's price.
        assert_eq!(input_at(&OrgPrices::default(), "claude-sonnet-4-5", 25), Some(dec!(4)));
        // The override makes an unknown model priced, by either of its names.
        assert_eq!(input_at(&overrides, "house-model", 2), Some(dec!(7)));
        assert_eq!(input_at(&overrides, "House-Model-V2", 2), Some(dec!(7)));
        assert_eq!(input_at(&OrgPrices::default(), "house-model", 2), None);
        // Only the override's provider.
        assert!(catalog
            .lookup_for(&overrides, "openai", "house-model", day(2))
            .is_none());
        // Names worked out ahead, as for a batch: the same answers.
        let keyed = overrides.clone().keyed(&catalog);
        for (model, d) in [
            ("claude-sonnet-4-5", 4),
            ("claude-sonnet-4-5-20250929", 9),
            ("CLAUDE-SONNET-4-5", 25),
            ("house-model-v2", 2),
        ] {
            assert_eq!(
                input_at(&keyed, model, d),
                input_at(&overrides, model, d),
                "{model} on day {d}"
            );
        }
        assert_eq!(input_at(&keyed, "claude-sonnet-4-5", 9), Some(dec!(2)));
    }

    fn money() -> impl Strategy<Value = Decimal> {
        (0u64..100_000_000_000u64).prop_map(|n| Decimal::new(n as i64, 6)) // up to $100k/M, 6 places
    }

    proptest! {
        #[test]
        fn components_sum_and_discounts_stay_in_bounds(
            prompt in 0i64..2_000_000_000, completion in 0i64..2_000_000_000,
            prompt_shares in proptest::array::uniform4(0u8..=25), completion_shares in proptest::array::uniform2(0u8..=50),
            images in 0i32..1000, input_images in 0i32..1000, stored in proptest::bool::ANY,
            base in proptest::array::uniform6(money()), extra in proptest::array::uniform5(proptest::option::of(money())),
            storage in money(), pct_bp in 0u32..=10_000,
            long in proptest::option::of((0i64..2_000_000_000, proptest::array::uniform3(money()),
                proptest::array::uniform2(proptest::option::of(money())))),
        ) {
            let share = |total: i64, pct: u8| total * i64::from(pct) / 100;
            let q = Quantities {
                prompt_tokens: prompt, completion_tokens: completion,
                cached_tokens: share(prompt, prompt_shares[0]),
                cache_write_5m_tokens: share(prompt, prompt_shares[1]),
                cache_write_1h_tokens: share(prompt, prompt_shares[2]),
                audio_input_tokens: share(prompt, prompt_shares[3]),
                reasoning_tokens: share(completion, completion_shares[0]),
                audio_output_tokens: share(completion, completion_shares[1]),
                images, input_images,
                stored_tokens: if stored { prompt + completion } else { 0 },
            };
            let [input, output, cached, per_request, per_image, per_input_image] = base;
            let price = Price { id: Uuid::nil(), input_per_mtok: input, output_per_mtok: output,
                cached_input_per_mtok: cached, per_request, per_image, per_input_image,
                cache_write_5m_per_mtok: extra[0], cache_write_1h_per_mtok: extra[1], reasoning_per_mtok: extra[2],
                audio_input_per_mtok: extra[3], audio_output_per_mtok: extra[4],
                long_context: long.map(|(above, [input, output, cached], writes)| LongContext {
                    above_tokens: above, input_per_mtok: input, output_per_mtok: output, cached_input_per_mtok: cached,
                    cache_write_5m_per_mtok: writes[0], cache_write_1h_per_mtok: writes[1] }) };
            let percent = Decimal::new(i64::from(pct_bp), 2);
            let cost = compute_cost(&q, Some(&price), storage, percent).unwrap();
            let parts = [cost.input, cost.output, cost.cached_input, cost.cache_write_5m, cost.cache_write_1h,
                cost.reasoning, cost.audio_input, cost.audio_output, cost.request, cost.image, cost.data_storage];
            prop_assert_eq!(parts.iter().sum::<Decimal>(), cost.before_discount);
            prop_assert_eq!(cost.image_input + cost.image_output, cost.image);
            prop_assert_eq!(cost.total, cost.before_discount - cost.discount_savings);
            prop_assert!(cost.discount_savings >= Decimal::ZERO);
            prop_assert!(cost.total >= Decimal::ZERO);
            prop_assert!(cost.total <= cost.before_discount);
            for part in parts.iter().chain([&cost.image_input, &cost.image_output, &cost.discount_savings]) {
                prop_assert!(*part >= Decimal::ZERO);
                prop_assert!(part.scale() <= super::super::money::MONEY_SCALE);
            }
            // Every token is charged once: at a price of its kind, never twice.
            let rates = price.rates(q.prompt_tokens);
            let exact = |count: i64, per_mtok: Decimal| Decimal::from(count) * per_mtok / PER_MILLION;
            let unrounded = exact(q.plain_input(), rates.input) + exact(q.cached_tokens, rates.cached_input)
                + exact(q.cache_write_5m_tokens, rates.cache_write_5m) + exact(q.cache_write_1h_tokens, rates.cache_write_1h)
                + exact(q.audio_input_tokens, rates.audio_input) + exact(q.plain_output(), rates.output)
                + exact(q.reasoning_tokens, rates.reasoning) + exact(q.audio_output_tokens, rates.audio_output);
            let rounded_tokens = cost.input + cost.cached_input + cost.cache_write_5m + cost.cache_write_1h
                + cost.audio_input + cost.output + cost.reasoning + cost.audio_output;
            // Eight components, each rounded by at most half a unit of the last place.
            prop_assert!((rounded_tokens - unrounded).abs() <= Decimal::new(4, 10));
        }
    }
}
