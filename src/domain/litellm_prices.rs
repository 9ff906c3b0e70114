//! Converts a price map in LiteLLM's `model_prices_and_context_window.json` shape into
//! entries of Meterplane's own price file (the body of `POST /v1/admin/prices`), so an
//! operator who keeps LiteLLM's map can import it with `meterplane load-prices --format
//! litellm`.
//!
//! LiteLLM prices per token as JSON numbers (`3e-06`); Meterplane prices per million
//! tokens as exact decimals. A number is read back from its shortest decimal text (the
//! text that round-trips to the same binary value, which is what the file spells), then
//! multiplied by 10⁶ exactly, so `3e-06` becomes `"3"` and never `"2.9999999999999997"`.

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

/// What LiteLLM calls a provider → what the catalog calls it. Google AI Studio models
/// are `gemini` in LiteLLM and `google` in the bundled catalog; every other name is kept
/// (lower case), so prices imported for a LiteLLM provider match the calls LiteLLM
/// reports under that provider.
pub fn catalog_provider(litellm_provider: &str) -> String {
    let provider = litellm_provider.to_lowercase();
    match provider.as_str() {
        "gemini" => "google".to_owned(),
        "text-completion-openai" => "openai".to_owned(),
        _ => provider,
    }
}

/// One entry of the map that was not converted, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub key: String,
    pub reason: String,
}

/// The converted price versions (each an object of Meterplane's price-file shape) and
/// the entries left out.
#[derive(Debug, Default)]
pub struct Conversion {
    pub prices: Vec<Value>,
    pub skipped: Vec<Skipped>,
}

/// Converts every entry of `map` that has a per-token, per-image or per-request price.
/// `valid_from` dates every version (LiteLLM's map carries no dates); `providers`, when
/// given, keeps only those (catalog names, e.g. `google`).
pub fn convert(map: &Map<String, Value>, valid_from: DateTime<Utc>, providers: Option<&[String]>) -> Conversion {
    let mut conversion = Conversion::default();
    for (key, spec) in map {
        if key == "sample_spec" {
            continue;
        }
        match convert_entry(key, spec, valid_from) {
            Ok(price) => {
                let wanted = providers.is_none_or(|list| {
                    let provider = price["provider"].as_str().unwrap_or_default();
                    list.iter().any(|p| p.eq_ignore_ascii_case(provider))
                });
                if wanted {
                    conversion.prices.push(price);
                }
            }
            Err(reason) => conversion.skipped.push(Skipped {
                key: key.clone(),
                reason,
            }),
        }
    }
    conversion
}

fn convert_entry(key: &str, spec: &Value, valid_from: DateTime<Utc>) -> Result<Value, String> {
    let spec = spec.as_object().ok_or("not an object")?;
    let litellm_provider = spec
        .get("litellm_provider")
        .and_then(Value::as_str)
        .ok_or("no litellm_provider")?;
    let provider = catalog_provider(litellm_provider);
    let model = model_name(key, litellm_provider, &provider);
    let per_mtok = |field: &str| per_million(spec, field);

    let input = per_mtok("input_cost_per_token")?;
    let output = per_mtok("output_cost_per_token")?;
    let per_image = per_unit(spec, "output_cost_per_image")?;
    let per_input_image = per_unit(spec, "input_cost_per_image")?;
    let per_request = per_unit(spec, "input_cost_per_request")?;
    if input.is_none() && output.is_none() && per_image.is_none() && per_request.is_none() {
        let units: Vec<&str> = spec
            .keys()
            .filter(|k| k.contains("cost_per_"))
            .map(String::as_str)
            .collect();
        return Err(if units.is_empty() {
            "no price".to_owned()
        } else {
            format!("priced only by {} (not supported)", units.join(", "))
        });
    }
    let input = input.unwrap_or_default();
    let mut price = json!({
        "provider": provider,
        "model": model,
        "inputPerMtok": text(input),
        "outputPerMtok": text(output.unwrap_or_default()),
        // LiteLLM charges cached tokens the input price when it names no cache price.
        "cachedInputPerMtok": text(per_mtok("cache_read_input_token_cost")?.unwrap_or(input)),
        "perRequest": text(per_request.unwrap_or_default()),
        "perImage": text(per_image.unwrap_or_default()),
        "perInputImage": text(per_input_image.unwrap_or_default()),
        "validFrom": valid_from.to_rfc3339_opts(SecondsFormat::Secs, true),
    });
    let optional = [
        ("cacheWrite5mPerMtok", "cache_creation_input_token_cost"),
        ("cacheWrite1hPerMtok", "cache_creation_input_token_cost_above_1hr"),
        ("reasoningPerMtok", "output_cost_per_reasoning_token"),
        ("audioInputPerMtok", "input_cost_per_audio_token"),
        ("audioOutputPerMtok", "output_cost_per_audio_token"),
    ];
    for (ours, theirs) in optional {
        if let Some(amount) = per_mtok(theirs)? {
            price[ours] = json!(text(amount));
        }
    }
    if let Some(long_context) = long_context(spec)? {
        price["longContext"] = long_context;
    }
    Ok(price)
}

/// The tier LiteLLM spells as `input_cost_per_token_above_200k_tokens` and its
/// siblings. Meterplane keeps one tier per version: with several thresholds (a few
/// models list 128k and 200k), the lowest one is taken.
fn long_context(spec: &Map<String, Value>) -> Result<Option<Value>, String> {
    let Some(thousands) = spec
        .keys()
        .filter_map(|k| k.strip_prefix("input_cost_per_token_above_")?.strip_suffix("k_tokens"))
        .filter_map(|n| n.parse::<i64>().ok())
        .min()
    else {
        return Ok(None);
    };
    let tier = |field: &str| per_million(spec, &format!("{field}_above_{thousands}k_tokens"));
    let Some(input) = tier("input_cost_per_token")? else {
        return Ok(None);
    };
    let output = match tier("output_cost_per_token")? {
        Some(output) => output,
        None => per_million(spec, "output_cost_per_token")?.unwrap_or_default(),
    };
    let mut prices = json!({
        "aboveTokens": thousands * 1000,
        "inputPerMtok": text(input),
        "outputPerMtok": text(output),
        "cachedInputPerMtok": text(tier("cache_read_input_token_cost")?.unwrap_or(input)),
    });
    if let Some(write) = tier("cache_creation_input_token_cost")? {
        prices["cacheWrite5mPerMtok"] = json!(text(write));
    }
    if let Some(write) = per_million(
        spec,
        &format!("cache_creation_input_token_cost_above_1hr_above_{thousands}k_tokens"),
    )? {
        prices["cacheWrite1hPerMtok"] = json!(text(write));
    }
    Ok(Some(prices))
}

/// `gemini/gemini-2.5-pro` → `gemini-2.5-pro`: the provider prefix some keys carry is
/// dropped, as the LiteLLM integration drops it from the model it records.
fn model_name(key: &str, litellm_provider: &str, provider: &str) -> String {
    match key.split_once('/') {
        Some((prefix, rest))
            if !rest.is_empty()
                && (prefix.eq_ignore_ascii_case(litellm_provider) || prefix.eq_ignore_ascii_case(provider)) =>
        {
            rest.to_owned()
        }
        _ => key.to_owned(),
    }
}

fn per_million(spec: &Map<String, Value>, field: &str) -> Result<Option<Decimal>, String> {
    Ok(per_unit(spec, field)?.map(|per_token| per_token * Decimal::from(1_000_000)))
}

fn per_unit(spec: &Map<String, Value>, field: &str) -> Result<Option<Decimal>, String> {
    match spec.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => exact(value)
            .filter(|d| !d.is_sign_negative())
            .map(Some)
            .ok_or_else(|| format!("{field}: {value} is not a price")),
    }
}

/// The decimal a JSON number (or numeric string) spells, exactly.
fn exact(value: &Value) -> Option<Decimal> {
    let spelled = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_owned(),
        _ => return None,
    };
    if spelled.contains(['e', 'E']) {
        Decimal::from_scientific(&spelled).ok()
    } else {
        spelled.parse().ok()
    }
}

fn text(amount: Decimal) -> String {
    amount.normalize().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Map<String, Value> {
        // Written for this test in the shape of LiteLLM's map (numbers as LiteLLM
        // spells them), with the kinds of entries it holds.
        let map = json!({
            "sample_spec": {"max_tokens": "LEGACY parameter", "input_cost_per_token": 0.0, "litellm_provider": "one of https://docs.litellm.ai/docs/providers"},
            "claude-sonnet-4-5-20250929": {
                "litellm_provider": "anthropic", "mode": "chat",
                "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
                "cache_read_input_token_cost": 3e-07,
                "cache_creation_input_token_cost": 3.75e-06,
                "cache_creation_input_token_cost_above_1hr": 6e-06,
                "input_cost_per_token_above_200k_tokens": 6e-06,
                "output_cost_per_token_above_200k_tokens": 2.25e-05,
                "cache_read_input_token_cost_above_200k_tokens": 6e-07,
                "cache_creation_input_token_cost_above_200k_tokens": 7.5e-06,
                "cache_creation_input_token_cost_above_1hr_above_200k_tokens": 1.2e-05
            },
            "gemini/gemini-2.5-pro": {
                "litellm_provider": "gemini", "mode": "chat",
                "input_cost_per_token": 1.25e-06, "output_cost_per_token": 1e-05,
                "cache_read_input_token_cost": 1.25e-07,
                "input_cost_per_token_above_200k_tokens": 2.5e-06,
                "output_cost_per_token_above_200k_tokens": 1.5e-05,
                "cache_read_input_token_cost_above_200k_tokens": 2.5e-07,
                "output_cost_per_reasoning_token": 1e-05
            },
            "gpt-4o-audio-preview": {
                "litellm_provider": "openai", "mode": "chat",
                "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05,
                "input_cost_per_audio_token": 4e-05, "output_cost_per_audio_token": 8e-05
            },
            "text-embedding-3-small": {
                "litellm_provider": "openai", "mode": "embedding",
                "input_cost_per_token": 2e-08, "output_cost_per_token": 0.0
            },
            "dall-e-3": {"litellm_provider": "openai", "mode": "image_generation", "output_cost_per_image": 0.04},
            "whisper-1": {"litellm_provider": "openai", "mode": "audio_transcription", "input_cost_per_second": 0.0001},
            "mistral/mistral-small-latest": {
                "litellm_provider": "mistral", "mode": "chat",
                "input_cost_per_token": "1e-07", "output_cost_per_token": 3e-07
            },
            "broken-model": {"litellm_provider": "openai", "input_cost_per_token": -1}
        });
        map.as_object().cloned().unwrap_or_default()
    }

    fn at() -> DateTime<Utc> {
        "2026-12-01T00:00:00Z".parse().unwrap_or_default()
    }

    fn by_model<'a>(conversion: &'a Conversion, model: &str) -> &'a Value {
        conversion
            .prices
            .iter()
            .find(|p| p["model"] == model)
            .unwrap_or_else(|| panic!("{model} not converted: {:?}", conversion.skipped))
    }

    #[test]
    fn a_claude_entry_keeps_cache_writes_and_its_long_context_tier_exactly() {
        let conversion = convert(&sample(), at(), None);
        let claude = by_model(&conversion, "claude-sonnet-4-5-20250929");
        assert_eq!(
            claude,
            &json!({
                "provider": "anthropic", "model": "claude-sonnet-4-5-20250929",
                "inputPerMtok": "3", "outputPerMtok": "15", "cachedInputPerMtok": "0.3",
                "perRequest": "0", "perImage": "0", "perInputImage": "0",
                "cacheWrite5mPerMtok": "3.75", "cacheWrite1hPerMtok": "6",
                "longContext": {
                    "aboveTokens": 200000, "inputPerMtok": "6", "outputPerMtok": "22.5",
                    "cachedInputPerMtok": "0.6", "cacheWrite5mPerMtok": "7.5", "cacheWrite1hPerMtok": "12"
                },
                "validFrom": "2026-12-01T00:00:00Z"
            })
        );
    }

    #[test]
    fn gemini_becomes_google_without_its_prefix_and_keeps_reasoning_and_tier() {
        let conversion = convert(&sample(), at(), None);
        let gemini = by_model(&conversion, "gemini-2.5-pro");
        assert_eq!(gemini["provider"], "google");
        assert_eq!(gemini["inputPerMtok"], "1.25");
        assert_eq!(gemini["cachedInputPerMtok"], "0.125");
        assert_eq!(gemini["reasoningPerMtok"], "10");
        assert_eq!(gemini["longContext"]["aboveTokens"], 200000);
        assert_eq!(gemini["longContext"]["outputPerMtok"], "15");
        assert_eq!(gemini["longContext"]["cachedInputPerMtok"], "0.25");
        assert!(gemini["longContext"].get("cacheWrite5mPerMtok").is_none());
    }

    #[test]
    fn audio_embedding_image_and_string_prices_convert_and_missing_cache_prices_follow_input() {
        let conversion = convert(&sample(), at(), None);
        let audio = by_model(&conversion, "gpt-4o-audio-preview");
        assert_eq!(
            (&audio["audioInputPerMtok"], &audio["audioOutputPerMtok"]),
            (&json!("40"), &json!("80"))
        );
        assert_eq!(audio["cachedInputPerMtok"], "2.5");
        let embedding = by_model(&conversion, "text-embedding-3-small");
        assert_eq!(
            (&embedding["inputPerMtok"], &embedding["outputPerMtok"]),
            (&json!("0.02"), &json!("0"))
        );
        assert_eq!(by_model(&conversion, "dall-e-3")["perImage"], "0.04");
        let mistral = by_model(&conversion, "mistral-small-latest");
        assert_eq!(
            (&mistral["inputPerMtok"], &mistral["outputPerMtok"]),
            (&json!("0.1"), &json!("0.3"))
        );
    }

    #[test]
    fn entries_without_a_supported_price_are_reported_not_guessed() {
        let conversion = convert(&sample(), at(), None);
        let mut skipped: Vec<(&str, &str)> = conversion
            .skipped
            .iter()
            .map(|s| (s.key.as_str(), s.reason.as_str()))
            .collect();
        skipped.sort_unstable();
        assert_eq!(
            skipped,
            vec![
                ("broken-model", "input_cost_per_token: -1 is not a price"),
                ("whisper-1", "priced only by input_cost_per_second (not supported)"),
            ]
        );
        assert_eq!(conversion.prices.len(), 6);
    }

    #[test]
    fn a_provider_list_keeps_only_those_providers() {
        let only = vec!["Google".to_owned(), "mistral".to_owned()];
        let conversion = convert(&sample(), at(), Some(&only));
        let mut models: Vec<&str> = conversion.prices.iter().filter_map(|p| p["model"].as_str()).collect();
        models.sort_unstable();
        assert_eq!(models, vec!["gemini-2.5-pro", "mistral-small-latest"]);
    }

    #[test]
    fn per_token_numbers_become_exact_per_million_decimals() {
        for (number, per_mtok) in [
            (json!(3e-06), "3"),
            (json!(1.25e-07), "0.125"),
            (json!(2.25e-05), "22.5"),
            (json!(0.0), "0"),
        ] {
            let spec = json!({"p": number});
            let amount = per_million(spec.as_object().unwrap_or(&Map::new()), "p");
            assert_eq!(amount.map(|a| a.map(text)), Ok(Some(per_mtok.to_owned())), "{number}");
        }
    }
}
