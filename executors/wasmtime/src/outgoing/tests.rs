//! Timeouts, targets and the CA bundle; whole requests through the proxy fixture are in
//! `crate::http`'s tests.

use std::time::Duration;

use hyper::Uri;
use rustls::RootCertStore;
use wasmtime_wasi_http::RequestOptions;

use super::roots::{self, MAX_BUNDLE_BYTES};
use super::send::Target;
use super::Timeouts;

#[test]
fn guest_options_are_capped() {
    assert_eq!(Timeouts::with_options(None), Timeouts::DEFAULT);
    let options = RequestOptions {
        connect_timeout: Some(Duration::from_millis(300)),
        first_byte_timeout: Some(Duration::from_secs(100_000)),
        between_bytes_timeout: None,
    };
    let timeouts = Timeouts::with_options(Some(&options));
    assert_eq!(timeouts.connect, Duration::from_millis(300));
    assert_eq!(timeouts.first_byte, Timeouts::MAX.first_byte);
    assert_eq!(timeouts.between_bytes, Timeouts::DEFAULT.between_bytes);
}

#[test]
fn targets() {
    let target = |uri: &str| Target::of(&uri.parse::<Uri>().unwrap());
    let t = target("http://Example.COM/x?y").unwrap();
    assert_eq!((t.tls, t.host.as_str(), t.port), (false, "example.com", 80));
    assert_eq!(t.to_string(), "http://example.com:80");
    let t = target("https://10.1.2.3:8443/").unwrap();
    assert_eq!((t.tls, t.host.as_str(), t.port), (true, "10.1.2.3", 8443));
    let t = target("https://[fd00::1]/").unwrap();
    assert_eq!((t.host.as_str(), t.port), ("fd00::1", 443));
    assert_eq!(t.to_string(), "https://[fd00::1]:443");
    assert!(target("/relative").is_err());
}

#[test]
fn bundles_are_read_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut roots = RootCertStore::empty();

    let missing = dir.path().join("missing.crt");
    let err = roots::load(&mut roots, &missing).unwrap_err();
    assert!(err.contains("missing.crt"), "{err}");

    let empty = dir.path().join("empty.crt");
    std::fs::write(&empty, "no certificates here\n").unwrap();
    let err = roots::load(&mut roots, &empty).unwrap_err();
    assert!(err.contains("no usable certificate"), "{err}");

    let garbage = dir.path().join("garbage.crt");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = roots::load(&mut roots, &garbage).unwrap_err();
    assert!(err.contains("no usable certificate"), "{err}");

    let big = dir.path().join("big.crt");
    std::fs::write(&big, vec![b'#'; MAX_BUNDLE_BYTES as usize + 1]).unwrap();
    let err = roots::load(&mut roots, &big).unwrap_err();
    assert!(err.contains("larger than"), "{err}");
    assert!(roots.is_empty());

    // SSL_CERT_FILE wins over the default paths, and its problems are reported.
    let env = vec![format!("SSL_CERT_FILE={}", empty.display())];
    let (config, problem) = roots::client_config(&env);
    assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    assert!(problem.is_some_and(|p| p.contains("empty.crt")));
}
