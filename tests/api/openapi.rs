//! The committed OpenAPI document is exactly what the code generates.

use reqwest::{Method, StatusCode};

use crate::helpers::{expect_json, TestApp};

#[test]
fn committed_document_matches_the_code() {
    let generated = meterplane::http::openapi::document_json().unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is out of date; run `cargo run -- openapi --write openapi/openapi.json`"
    );
}

#[test]
fn every_operation_is_described_for_sdk_generators() {
    let doc = serde_json::to_value(meterplane::http::openapi::document()).unwrap();
    let mut operation_ids = std::collections::HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(operation_ids.insert(id.to_owned()), "operationId {id} is used twice");
            assert!(
                op["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{method} {path} has no tag"
            );
            let summary = op["summary"].as_str().unwrap_or_default();
            assert!(
                !summary.is_empty() && !summary.contains('\n'),
                "{method} {path} needs a one-line summary (the first doc-comment line), got {summary:?}"
            );
            assert!(
                op["security"].is_array(),
                "{method} {path} must state its security, `[]` when public"
            );
            assert!(
                op["responses"]
                    .as_object()
                    .is_some_and(|r| r.keys().any(|s| s.starts_with('2'))),
                "{method} {path} documents no success"
            );
            for status in ["414", "431", "500", "503"] {
                assert!(
                    op["responses"].get(status).is_some(),
                    "{method} {path} does not document {status}"
                );
            }
            for (status, response) in op["responses"].as_object().unwrap() {
                assert!(
                    response["description"].as_str().is_some_and(|d| !d.is_empty()),
                    "{method} {path} {status} has no description (OpenAPI requires one)"
                );
                if status.starts_with('4') || status.starts_with('5') {
                    let content = response["content"].as_object().unwrap();
                    assert!(
                        content.keys().all(|k| k == "application/problem+json"),
                        "{method} {path} {status} is not documented as problem+json"
                    );
                }
            }
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415"] {
                    assert!(
                        op["responses"].get(status).is_some(),
                        "{method} {path} takes a body but omits {status}"
                    );
                }
            }
            if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                assert!(
                    op["responses"].get("401").is_some(),
                    "{method} {path} is secured but documents no 401"
                );
            }
        }
    }
    // Every schema reference resolves (a query parameter's enum is not collected into
    // the components by itself).
    let text = doc.to_string();
    for name in text.split("#/components/schemas/").skip(1) {
        let name: String = name.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        assert!(
            doc["components"]["schemas"].get(&name).is_some(),
            "#/components/schemas/{name} is referenced but not defined"
        );
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["api_key"]["name"], "X-Api-Key");
}

#[tokio::test]
async fn the_document_and_its_reference_page_are_served() {
    let app = TestApp::spawn().await;
    let served = expect_json(
        app.request(Method::GET, "/openapi.json").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        served,
        serde_json::to_value(meterplane::http::openapi::document()).unwrap()
    );
    let page = app.request(Method::GET, "/docs/").send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"));
    assert!(
        !html.contains("cdn") && !html.contains("unpkg"),
        "the reference page must work offline"
    );
}
