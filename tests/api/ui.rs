//! The dashboard's files as the server sends them: every file under `ui/` is served
//! (and nothing else), with its content type, a strict Content Security Policy,
//! validators and caching; and what the pages load resolves to a served file. The
//! dashboard itself is tested in a real browser by `deploy/ui-check.sh`.

use std::{collections::BTreeSet, path::Path};

use meterplane::http::ui::{ASSETS, CONTENT_SECURITY_POLICY};
use reqwest::{header, Method, StatusCode};

use crate::helpers::TestApp;

fn files_under(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        if entry.file_type().unwrap().is_dir() {
            files_under(&entry.path(), &format!("{name}/"), out);
        } else {
            out.insert(name);
        }
    }
}

#[test]
fn every_file_of_the_dashboard_is_embedded_and_every_embedded_file_exists() {
    let mut on_disk = BTreeSet::new();
    files_under(&Path::new(env!("CARGO_MANIFEST_DIR")).join("ui"), "", &mut on_disk);
    on_disk.remove("README.md");
    let embedded: BTreeSet<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
    assert_eq!(on_disk, embedded, "ui/ and the list in src/http/ui.rs differ");
}

/// `./x.js` and `./vendor/…` imports, `src=` and `href=` of the page: each must be a
/// served file, or the dashboard breaks offline.
#[test]
fn what_the_pages_load_is_served() {
    let served: BTreeSet<&str> = ASSETS.iter().map(|a| a.path).collect();
    for asset in ASSETS
        .iter()
        .filter(|a| a.path.ends_with(".js") || a.path.ends_with(".html"))
    {
        if asset.path.starts_with("vendor/") {
            continue;
        }
        let text = std::str::from_utf8(asset.bytes).unwrap();
        for quote in ['\'', '"'] {
            for (marker, base) in [("from ", ""), ("src=", ""), ("href=", "")] {
                let needle = format!("{marker}{quote}");
                for piece in text.split(needle.as_str()).skip(1) {
                    let Some(target) = piece.split(quote).next() else {
                        continue;
                    };
                    let target = target.trim_start_matches("./");
                    assert!(
                        served.contains(format!("{base}{target}").as_str()),
                        "{} loads {target}, which is not served",
                        asset.path
                    );
                }
            }
        }
        assert!(
            !text.contains("<script>"),
            "{}: no inline script (the CSP forbids it)",
            asset.path
        );
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{}: nothing from another origin",
            asset.path
        );
    }
}

#[tokio::test]
async fn the_dashboard_is_served_with_its_types_a_strict_policy_and_validators() {
    let app = TestApp::spawn().await;
    let page = app.request(Method::GET, "/ui/").send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
    assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self';"));
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
    assert!(page
        .text()
        .await
        .unwrap()
        .contains(r#"<script type="module" src="app.js">"#));

    // Revalidation: the same validator answers 304 without a body.
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    let again = app
        .request(Method::GET, "/ui/index.html")
        .header(header::IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert!(again.bytes().await.unwrap().is_empty());

    let script = app.request(Method::GET, "/ui/app.js").send().await.unwrap();
    assert_eq!(script.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
    let library = app
        .request(Method::GET, "/ui/vendor/uplot-1.6.32/uPlot.esm.js")
        .send()
        .await
        .unwrap();
    assert_eq!(library.status(), StatusCode::OK);
    assert_eq!(
        library.headers()[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );

    let head = app.request(Method::HEAD, "/ui/app.css").send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()[header::CONTENT_TYPE], "text/css; charset=utf-8");

    // The update notes are not served, and neither is anything else; what is not
    // served is the API's problem document, as for any unknown route.
    for (method, path) in [
        (Method::GET, "/ui/README.md"),
        (Method::GET, "/ui/../Cargo.toml"),
        (Method::GET, "/ui/missing.js"),
        (Method::POST, "/ui/"),
    ] {
        let missing = app.request(method.clone(), path).send().await.unwrap();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(missing.headers()[header::CONTENT_TYPE], "application/problem+json");
    }
}

#[tokio::test]
async fn ui_without_the_slash_redirects_to_the_dashboard() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client.get(format!("{}/ui", app.address)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(response.headers()[header::LOCATION], "/ui/");
}

/// The policy allows the printable invoice's stylesheet by its hash (the dashboard
/// opens that document as a `blob:` URL, which takes the dashboard's policy): the
/// hash must be the one of the template's `<style>` as it is now.
#[test]
fn the_policy_allows_exactly_the_invoice_stylesheet() {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let template = include_str!("../../templates/invoice.html");
    let style = template
        .split_once("<style>")
        .and_then(|(_, rest)| rest.split_once("</style>"))
        .map(|(style, _)| style)
        .expect("the invoice template has a <style> element");
    assert!(
        !style.contains("{{") && !style.contains("{%"),
        "the stylesheet is the same for every invoice"
    );
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(style.as_bytes()));
    assert!(
        CONTENT_SECURITY_POLICY.contains(&format!("style-src 'self' 'sha256-{hash}';")),
        "the invoice stylesheet changed: put 'sha256-{hash}' in CONTENT_SECURITY_POLICY (src/http/ui.rs)"
    );
    assert_eq!(template.matches("<style>").count(), 1, "one stylesheet in the invoice");
    assert!(
        !template.contains("style=\""),
        "no style attributes in the invoice (the hash does not allow them)"
    );
}
