//! The OpenAPI document: the base below plus every path registered in `routes`.

use actix_web::App;
use utoipa::{
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};
use utoipa_actix_web::AppExt;

use crate::error::{ErrorCode, FieldError, Problem};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Meterplane API",
        description = "Control plane for LLM gateways: organizations, projects, API keys, usage, budgets, activity and invoices.\n\nErrors are RFC 9457 problem details (`application/problem+json`) with a stable `code`.",
    ),
    components(schemas(Problem, ErrorCode, FieldError)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "auth", description = "Sign-up, login and the signed-in user"),
        (name = "organizations", description = "Tenants"),
        (name = "members", description = "People in an organization and their roles"),
        (name = "projects", description = "Projects of an organization"),
        (name = "api keys", description = "Project API keys presented by the gateway"),
        (name = "gateway", description = "Called by the gateway with a project API key"),
        (name = "budgets", description = "Budgets, rate limits, blocks and why calls were denied"),
        (name = "usage", description = "Usage events reported by the gateway"),
        (name = "integrations", description = "Usage in a gateway's own format (LiteLLM's logging payloads)"),
        (name = "spend logs", description = "The request log of an organization"),
        (name = "activity", description = "Usage, cost and reliability over days or hours, from the roll-ups"),
        (name = "customers and agents", description = "The tenant's end customers and agents with their spend, budget, limits and status"),
        (name = "billing", description = "Billing settings of an organization and billing profiles of its customers, for invoices"),
        (name = "invoices", description = "Invoices for an organization's customers: drafts from the per-customer cost ledger, finalized with gapless numbers, voided, exported, emailed and reconciled"),
        (name = "alerts", description = "Alert emails sent to an organization, and their delivery"),
        (name = "pricing", description = "The model price catalog and discounts"),
        (name = "operator", description = "Platform operators only"),
        (name = "operations", description = "Health probes"),
    )
)]
struct BaseDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("Access token from `POST /v1/auth/login`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Api-Key",
                "A project API key (`mp_…`); `Authorization: Bearer mp_…` is accepted too",
            ))),
        );
        components.add_security_scheme(
            "ticket",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "ticket",
                "A one-time stream ticket from `POST /v1/orgs/{orgId}/stream-tickets` (60 seconds, one use), for the live request log where a header cannot be sent (a browser's `EventSource`)",
            ))),
        );
    }
}

/// The complete document, as served at `/openapi.json` and committed in `openapi/`.
pub fn document() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = App::new()
        .into_utoipa_app()
        .openapi(BaseDoc::openapi())
        .configure(super::routes(0))
        .split_for_parts();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    complete_operations(&mut doc);
    doc
}

const PROBLEM_JSON: &str = "application/problem+json";

/// The meaning of an error status, for responses declared without their own words.
fn problem_description(status: &str) -> Option<&'static str> {
    Some(match status {
        "400" => "Malformed JSON, an unknown or missing field, a wrong type, or a bad parameter",
        "401" => "Missing, invalid or expired credentials",
        "403" => "Signed in, but the role does not allow this",
        "404" => "No such object in an organization the caller belongs to",
        "409" => "Conflicts with the current state",
        "413" => "The body is too large",
        "414" => "The request target (path and query) is longer than 16 KiB",
        "415" => "The body is not application/json",
        "422" => "A value breaks a rule; `errors` lists each one",
        "431" => "The request headers are larger than 32 KiB together",
        "500" => "An unexpected server error; nothing was half-written",
        "503" => "PostgreSQL or Redis is unavailable or saturated; retry later",
        _ => return None,
    })
}

/// Completes every operation in one place rather than on every handler:
/// - error answers are documented as they are sent, `application/problem+json`, and
///   described when the handler gave no words of its own;
/// - the generic answers the extractors and the server give are listed: 400 on every
///   operation with a body or parameters, 413 and 415 on every operation with a body,
///   414 and 431 (`http::head_limits`), 500 and 503 everywhere;
/// - operations without credentials say so (`security: []`), so generators do not
///   attach a token to them.
fn complete_operations(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
    let problem = |status: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(problem_description(status).unwrap_or("An error"))
                .content(PROBLEM_JSON, Content::new(Some(Ref::from_schema_name("Problem"))))
                .build(),
        )
    };
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in operations.into_iter().flatten() {
            let takes_body = op.request_body.is_some();
            let takes_parameters = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
            op.security.get_or_insert_with(Vec::new);
            let responses = &mut op.responses.responses;
            for (status, response) in responses.iter_mut() {
                let is_error = status.starts_with('4') || status.starts_with('5');
                if let (true, RefOr::T(response)) = (is_error, response) {
                    if let Some(content) = response.content.shift_remove("application/json") {
                        response.content.insert(PROBLEM_JSON.to_owned(), content);
                    }
                    if response.description.is_empty() {
                        response.description = problem_description(status).unwrap_or("An error").to_owned();
                    }
                }
            }
            let mut generic = vec!["414", "431", "500", "503"];
            if takes_body || takes_parameters {
                generic.push("400");
            }
            if takes_body {
                generic.extend(["413", "415"]);
            }
            for status in generic {
                responses.entry(status.to_owned()).or_insert_with(|| problem(status));
            }
        }
    }
}

/// The document as committed: pretty JSON with a trailing newline.
pub fn document_json() -> anyhow::Result<String> {
    Ok(document().to_pretty_json()? + "\n")
}
