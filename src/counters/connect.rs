//! The Redis client as `REDIS_URL` describes it. `redis://` is plain TCP; `rediss://`
//! is TLS (rustls), the server's certificate checked against the bundled Mozilla roots
//! or, with `?sslrootcert=/path/ca.pem` (our parameter, named as libpq's), against the
//! CA certificates in that PEM file. Every connection made from the client (the
//! connection manager, the live stream's pub/sub connection) uses the same TLS. The
//! check cannot be turned off.

use std::path::Path;

use anyhow::{bail, Context};

pub fn client(raw: &str) -> anyhow::Result<redis::Client> {
    crate::tls::install_default_provider();
    // Errors never repeat the URL: it may hold a password.
    let mut url = url::Url::parse(raw).map_err(|e| anyhow::anyhow!("REDIS_URL is not a valid URL ({e})"))?;
    if url.fragment() == Some("insecure") {
        bail!("REDIS_URL: #insecure (no certificate check) is not supported; trust a private CA with ?sslrootcert=");
    }
    let ca_file = url
        .query_pairs()
        .find(|(k, _)| k == "sslrootcert")
        .map(|(_, v)| v.into_owned());
    let Some(ca_file) = ca_file else {
        return redis::Client::open(raw).context("REDIS_URL");
    };
    if url.scheme() != "rediss" {
        bail!("REDIS_URL: sslrootcert needs TLS, a rediss:// URL");
    }
    if ca_file.is_empty() {
        bail!("REDIS_URL: sslrootcert is empty; give a PEM file's path");
    }
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "sslrootcert")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    // Read and checked here, so a wrong file stops the start rather than each connection.
    let pem = std::fs::read(&ca_file).with_context(|| format!("REDIS_URL: reading the CA file {ca_file}"))?;
    crate::tls::pem_certificates(&pem, Path::new(&ca_file)).context("REDIS_URL: sslrootcert")?;
    redis::Client::build_with_tls(
        url.as_str(),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        },
    )
    .context("REDIS_URL: sslrootcert")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(url: &str) -> String {
        format!("{:#}", client(url).unwrap_err())
    }

    #[test]
    fn plain_and_tls_urls_open() {
        assert!(client("redis://127.0.0.1:6379").is_ok());
        assert!(client("rediss://:secret@cache.example.com:6380/0").is_ok());
    }

    #[test]
    fn a_ca_file_needs_tls_and_must_exist() {
        assert!(message("redis://127.0.0.1:6379?sslrootcert=/ca.pem").contains("needs TLS, a rediss:// URL"));
        assert!(
            message("rediss://127.0.0.1:6380#insecure").contains("#insecure (no certificate check) is not supported")
        );
        let missing = message("rediss://:secret@127.0.0.1:6380?sslrootcert=/nonexistent/ca.pem");
        assert!(missing.contains("/nonexistent/ca.pem"), "{missing}");
        assert!(!missing.contains("secret"), "{missing}");
    }
}
