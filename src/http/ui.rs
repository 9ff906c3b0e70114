//! The dashboard at `/ui/`: static files embedded in the binary (`ui/` in the
//! repository), served with their content types, validators and a strict Content
//! Security Policy. The pages speak only to the public API, as any client would.
//!
//! The files are listed by hand rather than by a folder-embedding crate: a dozen
//! files, each with its content type in sight, no build script and no new dependency.
//! `tests/api/ui.rs` fails when a file under `ui/` is missing from the list (or the
//! list names one that is gone).

use std::sync::OnceLock;

use actix_web::{
    guard,
    http::header::{self, HeaderValue},
    web, HttpRequest, HttpResponse,
};
use sha2::{Digest, Sha256};

pub struct Asset {
    /// Path under `/ui/`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:literal) => {
        Asset {
            path: $path,
            content_type: $type,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/", $path)),
        }
    };
}

/// Every file the dashboard serves. `README.md` (how to update the vendored files) is
/// not served.
pub static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("format.js", "text/javascript; charset=utf-8"),
    asset!("chart.js", "text/javascript; charset=utf-8"),
    asset!("signin.js", "text/javascript; charset=utf-8"),
    asset!("overview.js", "text/javascript; charset=utf-8"),
    asset!("requests.js", "text/javascript; charset=utf-8"),
    asset!("entities.js", "text/javascript; charset=utf-8"),
    asset!("budgets.js", "text/javascript; charset=utf-8"),
    asset!("invoices.js", "text/javascript; charset=utf-8"),
    asset!("dialog.js", "text/javascript; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!(
        "vendor/htm-preact-3.1.1/standalone.module.js",
        "text/javascript; charset=utf-8"
    ),
    asset!("vendor/htm-preact-3.1.1/LICENSE-htm", "text/plain; charset=utf-8"),
    asset!("vendor/htm-preact-3.1.1/LICENSE-preact", "text/plain; charset=utf-8"),
    asset!("vendor/uplot-1.6.32/uPlot.esm.js", "text/javascript; charset=utf-8"),
    asset!("vendor/uplot-1.6.32/uPlot.min.css", "text/css; charset=utf-8"),
    asset!("vendor/uplot-1.6.32/LICENSE", "text/plain; charset=utf-8"),
];

/// Scripts and styles only from this origin (no inline code, no `eval`), requests only
/// to this origin's API, no framing. Styles set from script through the CSSOM (the
/// chart library sizes its canvas that way) are not inline styles and stay allowed.
///
/// One inline stylesheet is allowed, by its hash: the one of the printable invoice
/// (`templates/invoice.html`). The dashboard fetches that document with the bearer
/// token and opens it as a `blob:` URL, and a `blob:` document takes the policy of
/// the page that made it, not the API's own header for the document; without the
/// hash the invoice would open unstyled. A hash allows that exact text only (no
/// `'unsafe-inline'`, no style attributes); `tests/api/ui.rs` checks it against the
/// template, so a change to the invoice's styles fails a test until it is updated.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'sha256-7YOIV8q5oTQc2J43B0t+ENIqPOw18LGjg5iJ04gUWtU='; \
     img-src 'self' data:; font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", &hex::encode(Sha256::digest(a.bytes))[..20]))
            .collect()
    })
}

/// One resource per file: the request metrics label routes by pattern, and a fixed
/// list keeps that label's values bounded (a `{tail:.*}` pattern cannot be a label).
/// Any other path under `/ui/`, or another method, falls through to the API's 404
/// problem (the guard is on the resource, as on the API's own routes).
pub fn configure(cfg: &mut web::ServiceConfig) {
    let read = || guard::Any(guard::Get()).or(guard::Head());
    cfg.service(web::resource("/ui").guard(read()).to(to_index));
    for (index, asset) in ASSETS.iter().enumerate() {
        let handler = move |req: HttpRequest| async move { serve(&req, index) };
        let mut paths = vec![format!("/ui/{}", asset.path)];
        if asset.path == "index.html" {
            paths.push("/ui/".to_owned());
        }
        for path in paths {
            cfg.service(web::resource(path).guard(read()).to(handler));
        }
    }
}

async fn to_index() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/ui/"))
        .finish()
}

fn serve(req: &HttpRequest, index: usize) -> HttpResponse {
    let asset = &ASSETS[index];
    let etag = &etags()[index];
    // Vendored libraries live under a versioned folder, so their content never changes
    // at a URL; the application's own files are revalidated on every load (cheap: a 304).
    let cache = if asset.path.starts_with("vendor/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let matches = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if matches {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    with_security_headers(&mut response)
        .insert_header((header::CACHE_CONTROL, cache))
        .insert_header((header::ETAG, etag.as_str()));
    if matches {
        return response.finish();
    }
    response
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type)))
        .body(asset.bytes)
}

fn with_security_headers(response: &mut actix_web::HttpResponseBuilder) -> &mut actix_web::HttpResponseBuilder {
    response
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header(("cross-origin-opener-policy", "same-origin"))
}
