//! The HTTP layer: routes, extractors, the error mapping and the OpenAPI document.
//! Handlers parse input into domain types, call the store, and shape the response;
//! they hold no SQL and no business rules.

pub mod account;
pub mod activity;
pub mod admin;
pub mod alerts;
pub mod api_keys;
pub mod auth;
pub mod authorize;
pub mod billing;
pub mod budgets;
pub mod decisions;
pub mod defaults;
pub mod extract;
pub mod gateway;
pub mod head_limits;
pub mod health;
pub mod invitations;
pub mod invoices;
pub mod large_bodies;
pub mod litellm;
pub mod live;
pub mod members;
pub mod openapi;
pub mod org_prices;
pub mod orgs;
pub mod paging;
pub mod parties;
pub mod paths;
pub mod pricing;
pub mod projects;
pub mod rate_limits;
pub mod rejections;
pub mod schemas;
pub mod spend_logs;
pub mod state;
pub mod summary;
pub mod ui;
pub mod usage;
pub mod validate;

use utoipa_actix_web::{scope, service_config::ServiceConfig};

/// Every route of the API. Registering through `utoipa_actix_web` puts each handler's
/// `#[utoipa::path]` into the OpenAPI document, so a route cannot go undocumented.
/// `batch_limit` is the body limit of the usage batch endpoint (larger than the rest).
///
/// Order matters for speed, and in one place for meaning: `…/spend-logs/stream` is
/// registered before `…/spend-logs/{eventId}`, which would otherwise take it (and
/// refuse `stream` as an event id). Otherwise no two paths overlap. A request is matched
/// against the routes in registration order four times (routing, the tracing span's
/// `http.route`, twice for the metrics' route label), and every `{param}` route it
/// passes costs a regex match. So the gateway's hot paths come first.
pub fn routes(batch_limit: usize) -> impl FnOnce(&mut ServiceConfig) {
    move |cfg| {
        cfg.service(health::healthz).service(health::readyz).service(
            scope("/v1")
                .service(authorize::authorize)
                .service(usage::record_usage)
                .service(
                    scope("/usage/batch")
                        .wrap(actix_web::middleware::from_fn(large_bodies::take_turns))
                        .app_data(rejections::json_config(batch_limit))
                        .service(usage::record_usage_batch),
                )
                .service(gateway::whoami)
                .service(
                    scope("/integrations/litellm/logs")
                        .wrap(actix_web::middleware::from_fn(large_bodies::take_turns))
                        .app_data(rejections::json_config(batch_limit))
                        .service(litellm::record_litellm_logs),
                )
                .service(auth::signup)
                .service(auth::login)
                .service(auth::me)
                .service(account::resend_verification)
                .service(account::verify_email)
                .service(account::request_password_reset)
                .service(account::confirm_password_reset)
                .service(account::change_password)
                .service(orgs::create_organization)
                .service(orgs::list_organizations)
                .service(orgs::get_organization)
                .service(orgs::update_organization)
                .service(billing::get_billing_settings)
                .service(billing::put_billing_settings)
                .service(invoices::list_invoices)
                .service(invoices::create_invoice)
                .service(invoices::generate_invoices)
                .service(invoices::get_invoice)
                .service(invoices::update_invoice)
                .service(invoices::delete_invoice)
                .service(invoices::finalize_invoice)
                .service(invoices::void_invoice)
                .service(invoices::send_invoice)
                .service(invoices::invoice_csv)
                .service(invoices::invoice_html)
                .service(invoices::reconcile_invoice)
                .service(members::list_members)
                .service(members::add_member)
                .service(members::change_member_role)
                .service(members::remove_member)
                .service(invitations::list_invitations)
                .service(invitations::revoke_invitation)
                .service(invitations::accept_invitation)
                .service(projects::create_project)
                .service(projects::list_projects)
                .service(projects::get_project)
                .service(projects::update_project)
                .service(api_keys::create_api_key)
                .service(api_keys::list_api_keys)
                .service(api_keys::get_api_key)
                .service(api_keys::revoke_api_key)
                .service(api_keys::rotate_api_key)
                .service(admin::list_all_organizations)
                .service(admin::set_organization_plan)
                .service(decisions::list_decisions)
                .service(pricing::list_prices)
                .service(pricing::create_price)
                .service(pricing::list_discounts)
                .service(pricing::create_discount)
                .service(pricing::delete_discount)
                .service(pricing::list_organization_discounts)
                .service(org_prices::create_organization_price)
                .service(org_prices::list_organization_prices_as_operator)
                .service(org_prices::list_organization_prices)
                .service(budgets::list_budgets)
                .service(budgets::set_budget)
                .service(budgets::get_budget)
                .service(budgets::change_budget)
                .service(budgets::delete_budget)
                .service(budgets::reset_budget)
                .service(rate_limits::list_rate_limits)
                .service(rate_limits::set_rate_limits)
                .service(rate_limits::get_rate_limits)
                .service(rate_limits::delete_rate_limits)
                .service(defaults::get_defaults)
                .service(defaults::set_defaults)
                .service(defaults::delete_defaults)
                .service(parties::list_customers)
                .service(parties::get_customer)
                .service(parties::block_customer)
                .service(parties::unblock_customer)
                .service(billing::get_customer_billing)
                .service(billing::put_customer_billing)
                .service(parties::list_agents)
                .service(parties::get_agent)
                .service(parties::block_agent)
                .service(parties::unblock_agent)
                .service(spend_logs::list_spend_logs)
                .service(live::stream_spend_logs)
                .service(live::create_stream_ticket)
                .service(spend_logs::get_spend_log)
                .service(alerts::list_alerts)
                .service(activity::get_activity)
                // Before `/activity/{entity}`, which would take `summary` for an entity.
                .service(summary::get_summary)
                .service(activity::list_entity_activity),
        );
    }
}
