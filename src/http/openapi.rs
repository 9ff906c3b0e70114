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
        (name = "usage", description = "Usage events reported by the gateway"),
        (name = "spend logs", description = "The request log of an organization"),
        (name = "budgets", description = "Spending limits per customer, agent, API key, project or organization, counted from a durable per-day spend ledger"),
        (name = "rate limits", description = "Requests and tokens per minute per scope"),
        (name = "defaults", description = "The budget and rate limits every customer (or agent) without its own gets"),
        (name = "customers and agents", description = "The tenant's end customers and agents with their spend, budget, limits and status"),
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
    describe_problems(&mut doc);
    doc
}

const PROBLEM_JSON: &str = "application/problem+json";

/// Documents error answers as they are sent, in one place rather than on every
/// handler: with the `application/problem+json` media type, plus the generic answers
/// the extractors give — 400 for malformed input or parameters on every operation that
/// takes any, 413 and 415 on every operation with a body.
fn describe_problems(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
    let problem = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
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
            let responses = &mut op.responses.responses;
            for (status, response) in responses.iter_mut() {
                if let (true, RefOr::T(response)) = (status.starts_with('4') || status.starts_with('5'), response) {
                    if let Some(content) = response.content.shift_remove("application/json") {
                        response.content.insert(PROBLEM_JSON.to_owned(), content);
                    }
                }
            }
            if takes_body || takes_parameters {
                responses.entry("400".to_owned()).or_insert_with(|| {
                    problem("Malformed JSON, an unknown or missing field, a wrong type, or a bad parameter")
                });
            }
            if takes_body {
                responses
                    .entry("413".to_owned())
                    .or_insert_with(|| problem("The body is too large"));
                responses
                    .entry("415".to_owned())
                    .or_insert_with(|| problem("The body is not application/json"));
            }
        }
    }
}

/// The document as committed: pretty JSON with a trailing newline.
pub fn document_json() -> anyhow::Result<String> {
    Ok(document().to_pretty_json()? + "\n")
}
