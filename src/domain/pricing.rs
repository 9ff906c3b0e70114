//! The cost engine: what one call costs, from its token counts, the price in force
//! and the applicable discount.
//!
//! Rules (all amounts in USD):
//! - `promptTokens` includes `cachedTokens` (as providers report them); cached tokens
//!   are charged at the cached-input price, the rest at the input price;
//! - each component is rounded once, by [`round_money`]; the total before discount
//!   is the sum of the rounded components, so components always add up exactly;
//! - the discount applies to the model charges (input, output, cached input, request,
//!   image), not to the data-storage charge, and its savings are rounded once;
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

/// One version of a model's price, in USD.
#[derive(Debug, Clone, PartialEq)]
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
}

/// What a call consumed. `stored_tokens` is set when its bodies are kept, and is
/// charged at the data-storage price.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quantities {
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    /// Images the call generated.
    pub images: i32,
    /// Images sent with the request.
    pub input_images: i32,
    pub stored_tokens: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    pub input: Decimal,
    pub output: Decimal,
    pub cached_input: Decimal,
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
    if q.cached_tokens > q.prompt_tokens {
        return Err(Invalid::new("cachedTokens cannot exceed promptTokens"));
    }
    if !(Decimal::ZERO..=HUNDRED).contains(&discount_percent) {
        return Err(Invalid::new("discount must be between 0 and 100 percent"));
    }
    let per_token = |count: i64, per_mtok: Decimal| -> Result<Decimal, Invalid> {
        Decimal::from(count)
            .checked_mul(per_mtok)
            .map(|d| round_money(d / PER_MILLION))
            .ok_or_else(|| Invalid::new("token count too large to price"))
    };
    let input = per_token(q.prompt_tokens - q.cached_tokens, price.input_per_mtok)?;
    let cached_input = per_token(q.cached_tokens, price.cached_input_per_mtok)?;
    let output = per_token(q.completion_tokens, price.output_per_mtok)?;
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

    let model_charges = input + cached_input + output + request + image;
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
            per_image: dec!(0),
            per_input_image: dec!(0),
        }
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

    fn money() -> impl Strategy<Value = Decimal> {
        (0u64..100_000_000_000u64).prop_map(|n| Decimal::new(n as i64, 6)) // up to $100k/M, 6 places
    }

    proptest! {
        #[test]
        fn components_sum_and_discounts_stay_in_bounds(
            prompt in 0i64..2_000_000_000, completion in 0i64..2_000_000_000, cached_share in 0u8..=100,
            images in 0i32..1000, input_images in 0i32..1000, stored in proptest::bool::ANY,
            input in money(), output in money(), cached in money(), per_request in money(), per_image in money(),
            per_input_image in money(), storage in money(), pct_bp in 0u32..=10_000,
        ) {
            let cached_tokens = prompt * i64::from(cached_share) / 100;
            let q = Quantities {
                prompt_tokens: prompt, completion_tokens: completion, cached_tokens, images, input_images,
                stored_tokens: if stored { prompt + completion } else { 0 },
            };
            let price = Price { id: Uuid::nil(), input_per_mtok: input, output_per_mtok: output,
                cached_input_per_mtok: cached, per_request, per_image, per_input_image };
            let percent = Decimal::new(i64::from(pct_bp), 2);
            let cost = compute_cost(&q, Some(&price), storage, percent).unwrap();
            let parts = cost.input + cost.output + cost.cached_input + cost.request + cost.image + cost.data_storage;
            prop_assert_eq!(parts, cost.before_discount);
            prop_assert_eq!(cost.image_input + cost.image_output, cost.image);
            prop_assert_eq!(cost.total, cost.before_discount - cost.discount_savings);
            prop_assert!(cost.discount_savings >= Decimal::ZERO);
            prop_assert!(cost.total >= Decimal::ZERO);
            prop_assert!(cost.total <= cost.before_discount);
            for part in [cost.input, cost.output, cost.cached_input, cost.request, cost.image_input, cost.image_output, cost.data_storage, cost.discount_savings] {
                prop_assert!(part.scale() <= super::super::money::MONEY_SCALE);
            }
        }
    }
}
