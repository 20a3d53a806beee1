//! TLS for exchanges, on rustls with the ring provider: verified against the CA the core
//! hands over, or — only when the core says the configuration asked for it — not at all.
//! Adapters wrap the configuration in their runtime's TLS stream (tokio-rustls,
//! futures-rustls, or rustls driven by hand).

use std::sync::{Arc, Mutex};

use muster_core::{Endpoint, Failure, FailureKind, Identity, Tls, Trust};
use rustls::client::WantsClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, ConfigBuilder, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// The failure of a TLS handshake with `to`, as the TLS stream reported it.
pub fn handshake_failure(to: &Endpoint, tls: &Tls, e: &std::io::Error) -> Failure {
    // A stream reset or closed during the handshake is the transport's failure, not TLS's.
    let kind = match FailureKind::of_io(e) {
        k @ (FailureKind::Reset | FailureKind::Closed | FailureKind::TimedOut) => k,
        _ => FailureKind::Tls,
    };
    Failure::new(kind, format!("{to}: TLS with {:?}: {e}", tls.server_name))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What a configuration is built from.
type Key = (Trust, Option<Identity>);

/// Configurations built so far, newest last: a poll every few seconds then reuses its
/// configuration — no PEM parsed again, and rustls's session cache resumes the TLS session —
/// until the trust or the client certificate changes (rotated files are new bytes, so a new
/// entry).
static BUILT: Mutex<Vec<(Key, Arc<ClientConfig>)>> = Mutex::new(Vec::new());
const KEEP: usize = 8;

/// A client configuration and the server name for `tls`, or why there can be none. The
/// configuration is shared by every exchange with the same trust.
pub fn client_config(tls: &Tls) -> Result<(Arc<ClientConfig>, ServerName<'static>), String> {
    let name = ServerName::try_from(tls.server_name.clone())
        .map_err(|e| format!("{:?} is not a TLS server name: {e}", tls.server_name))?;
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    let key = (tls.trust.clone(), tls.identity.clone());
    if let Some((_, config)) = built.iter().find(|(k, _)| *k == key) {
        return Ok((config.clone(), name));
    }
    let config = Arc::new(build(&tls.trust, tls.identity.as_ref())?);
    if built.len() == KEEP {
        built.remove(0);
    }
    built.push((key, config.clone()));
    Ok((config, name))
}

fn build(trust: &Trust, identity: Option<&Identity>) -> Result<ClientConfig, String> {
    let builder = verifying(trust)?;
    let Some(identity) = identity else {
        return Ok(builder.with_no_client_auth());
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&identity.cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the client certificate is not valid PEM: {e}"))?;
    if chain.is_empty() {
        return Err("the client certificate file holds no certificate".into());
    }
    // The error names the file's problem, never its contents.
    let key = PrivateKeyDer::from_pem_slice(&identity.key_pem)
        .map_err(|e| format!("the client key holds no usable private key: {e}"))?;
    builder
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("the client certificate and key are not usable together: {e}"))
}

/// A configuration builder that verifies servers as `trust` says.
fn verifying(trust: &Trust) -> Result<ConfigBuilder<ClientConfig, WantsClientCert>, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    Ok(match trust {
        Trust::System => {
            let (path, pem) = system_bundle()?;
            let mut roots = RootCertStore::empty();
            // A bundle may hold a certificate rustls cannot use: skip it, as the system does.
            for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(format!(
                    "the system CA bundle {path} holds no usable certificate"
                ));
            }
            builder.with_root_certificates(roots)
        }
        Trust::CaPem(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("the CA certificate is not valid PEM: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("the CA certificate is not usable: {e}"))?;
            }
            if roots.is_empty() {
                return Err("the CA file holds no certificate".into());
            }
            builder.with_root_certificates(roots)
        }
        Trust::InsecureSkipVerify => {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(
                    provider.signature_verification_algorithms,
                )))
        }
        other => return Err(format!("unsupported TLS trust {other:?}")),
    })
}

/// Where systems keep their CA bundle (Debian/Ubuntu/Alpine, Fedora/RHEL, openSUSE, macOS
/// and the BSDs), after `SSL_CERT_FILE`.
const SYSTEM_BUNDLES: [&str; 5] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/usr/local/share/certs/ca-root-nss.crt",
];

/// The system's CA bundle: its path and contents.
fn system_bundle() -> Result<(String, Vec<u8>), String> {
    let from_env = std::env::var("SSL_CERT_FILE")
        .ok()
        .filter(|p| !p.is_empty());
    let candidates: Vec<String> = from_env
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(|p| (*p).to_owned()))
        .collect();
    for path in &candidates {
        if let Ok(pem) = std::fs::read(path) {
            return Ok((path.clone(), pem));
        }
    }
    Err(format!(
        "no system CA bundle (looked for SSL_CERT_FILE and {}): install the ca-certificates package, or set a CA file",
        SYSTEM_BUNDLES.join(", ")
    ))
}

/// Accepts any certificate chain, but still checks that the server holds its key.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn one_configuration_per_trust_and_bad_pem_is_an_error() {
        let a = client_config(&Tls::insecure("kubernetes.default.svc")).unwrap();
        let b = client_config(&Tls::insecure("other.example")).unwrap();
        assert!(
            Arc::ptr_eq(&a.0, &b.0),
            "the same trust shares its configuration"
        );
        let none = Tls::verified("x.example", Bytes::from_static(b"not a certificate"));
        let e = client_config(&none).unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
        // The host's bundle, where the test machine has one (scripts/test runs on Debian).
        if SYSTEM_BUNDLES
            .iter()
            .any(|p| std::path::Path::new(p).exists())
        {
            assert!(client_config(&Tls::system("ec2.us-east-1.amazonaws.com")).is_ok());
        }
    }

    #[test]
    fn a_client_identity_is_its_own_configuration_and_bad_files_are_named() {
        let plain = client_config(&Tls::insecure("etcd.example")).unwrap();
        let no_cert = Tls::insecure("etcd.example").with_identity(Identity {
            cert_pem: Bytes::from_static(b"not a certificate"),
            key_pem: Bytes::from_static(
                b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n",
            ),
        });
        let e = client_config(&no_cert).unwrap_err();
        assert!(e.contains("holds no certificate"), "{e}");
        assert!(!e.contains("c2VjcmV0"), "the key is never shown: {e}");
        assert!(format!("{no_cert:?}").contains("(hidden)"));
        assert!(!format!("{no_cert:?}").contains("c2VjcmV0"));
        // Without an identity, the shared configuration is the one without a certificate.
        let again = client_config(&Tls::insecure("etcd.example")).unwrap();
        assert!(Arc::ptr_eq(&plain.0, &again.0));
        assert!(!again.0.client_auth_cert_resolver.has_certs());
    }
}
