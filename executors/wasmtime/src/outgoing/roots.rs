//! The CA certificates outgoing HTTPS trusts: the webpki roots (Mozilla's, compiled in) and
//! the container's own bundle, as a native process of the container would see it: the file
//! `$SSL_CERT_FILE` names in the container's env, else the first of [`BUNDLES`] that exists.
//! The engine runs inside the container (after pivot_root), so these are the image's or a
//! volume's files. Read once per guest, at most [`MAX_BUNDLE_BYTES`].

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Where distributions keep their CA bundle (Debian/Ubuntu/Alpine, Fedora/RHEL, openSUSE,
/// older RHEL, others).
pub const BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/ssl/cert.pem",
];
/// The container's variable naming a bundle instead of [`BUNDLES`] (as for OpenSSL).
pub const CERT_FILE_ENV: &str = "SSL_CERT_FILE";
/// A bigger bundle is ignored (Debian's holds ~150 certificates in ~220 KB).
pub const MAX_BUNDLE_BYTES: u64 = 4 << 20;

/// What was read, for the problem lines and the tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Certificates added from the bundle.
    pub added: usize,
    /// PEM certificates that did not parse or were refused as roots.
    pub skipped: usize,
}

/// The TLS configuration of outgoing requests, and a problem with the container's bundle to
/// report, if any.
pub fn client_config(env: &[String]) -> (ClientConfig, Option<String>) {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let problem = match bundle_path(env) {
        Some(path) => load(&mut roots, Path::new(&path)).err(),
        None => None,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // ring supports both of rustls' default protocol versions: this cannot fail.
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| ClientConfig::builder());
    let mut config = builder.with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (config, problem)
}

/// `$SSL_CERT_FILE` of the container's env when set, else the first bundle that exists.
fn bundle_path(env: &[String]) -> Option<String> {
    let from_env = env
        .iter()
        .rev()
        .find_map(|kv| kv.strip_prefix(CERT_FILE_ENV)?.strip_prefix('='))
        .filter(|v| !v.is_empty());
    if let Some(path) = from_env {
        return Some(path.to_string());
    }
    BUNDLES
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| p.to_string())
}

/// Adds the PEM certificates of `path` to `roots`; an error says why none were added or
/// which were skipped.
pub fn load(roots: &mut RootCertStore, path: &Path) -> Result<Loaded, String> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("CA bundle {shown}: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_BUNDLE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("CA bundle {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_BUNDLE_BYTES {
        return Err(format!(
            "CA bundle {shown} is larger than {MAX_BUNDLE_BYTES} bytes: ignored, only the \
             webpki roots are trusted"
        ));
    }
    let mut loaded = Loaded::default();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        match cert.map(|c| roots.add(c)) {
            Ok(Ok(())) => loaded.added += 1,
            _ => loaded.skipped += 1,
        }
    }
    match loaded {
        Loaded { added: 0, .. } => Err(format!(
            "CA bundle {shown} holds no usable certificate: only the webpki roots are trusted"
        )),
        Loaded { skipped: 0, .. } => Ok(loaded),
        Loaded { added, skipped } => Err(format!(
            "CA bundle {shown}: {skipped} certificates skipped (malformed), {added} trusted"
        )),
    }
}
