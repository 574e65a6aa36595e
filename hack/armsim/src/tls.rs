//! A throw-away test CA and a server certificate for `127.0.0.1` / `localhost`, generated at
//! start-up with rcgen, and the rustls server configuration that serves it.
//!
//! The Azure SDK refuses bearer tokens over plain HTTP (azure_core's
//! `BearerTokenAuthorizationPolicy`) and azure_identity refuses a non-https authority host, so
//! the simulator must speak TLS; clients trust `ca.pem` explicitly (never the system store).

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;

/// What `generate` returns: the CA certificate (PEM, for clients) and the server config.
pub struct Tls {
    pub ca_pem: String,
    pub server_config: Arc<rustls::ServerConfig>,
}

/// The crypto provider armsim uses everywhere (ring: already built for the workspace).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Generates a fresh CA (rcgen's default validity window) and a leaf certificate for
/// `localhost`, `127.0.0.1` and `::1`, signed by it.
pub fn generate() -> anyhow::Result<Tls> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "armsim test CA (not trusted anywhere)");
    ca_params.distinguished_name.push(DnType::OrganizationName, "citystack armsim");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let ca_cert = ca_params.self_signed(&ca_key).context("self-signing the CA")?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()])?;
    leaf_params.distinguished_name.push(DnType::CommonName, "armsim");
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().context("generating the server key")?;
    let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer).context("signing the server certificate")?;

    let chain: Vec<CertificateDer<'static>> = vec![leaf_cert.der().clone(), ca_cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let mut server_config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("TLS server certificate")?;
    // HTTP/1.1 only: the Azure SDK's reqwest transport speaks it, and so does everything else.
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];

    Ok(Tls { ca_pem: ca_cert.pem(), server_config: Arc::new(server_config) })
}
