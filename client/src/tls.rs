//! TLS for the QUIC transport: the server's self-signed certificate is pinned.
//!
//! Trust is exactly one DER certificate: the end-entity certificate the server
//! presents must be byte-for-byte the pinned one, and its TLS 1.3 handshake signature
//! is verified with the ring provider. Names, validity dates and chains are not
//! consulted, because a pin already says which key to trust.

use crate::error::ClientError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;
use std::time::Duration;

/// QUIC keep-alive sent by the client; keeps NAT mappings and the server's QUIC idle
/// timer alive whatever the application heartbeat is.
pub const QUIC_KEEP_ALIVE: Duration = Duration::from_secs(20);
/// The client's QUIC idle timeout.
pub const QUIC_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// A [`ServerCertVerifier`] that accepts exactly one certificate.
#[derive(Debug)]
pub struct PinnedCertVerifier {
    pinned: Vec<u8>,
    provider: Arc<CryptoProvider>,
}

impl PinnedCertVerifier {
    /// Trusts only `pinned_der`; signatures are checked with `provider`'s algorithms.
    pub fn new(pinned_der: Vec<u8>, provider: Arc<CryptoProvider>) -> Self {
        PinnedCertVerifier { pinned: pinned_der, provider }
    }
}

impl ServerCertVerifier for PinnedCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.pinned.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Never reached: the configuration only offers TLS 1.3 (QUIC requires it).
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A rustls client configuration for the QUIC transport: ring provider (set
/// explicitly, never the process default), TLS 1.3 only, ALPN `switchboard/1`, and
/// trust pinned to `pinned_cert_der`.
pub fn rustls_client_config(pinned_cert_der: &[u8]) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedCertVerifier::new(pinned_cert_der.to_vec(), provider.clone()));
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Tls { reason: e.to_string() })?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![switchboard_protocol::ALPN.to_vec()];
    Ok(config)
}

/// A quinn client configuration: [`rustls_client_config`] plus keep-alive
/// ([`QUIC_KEEP_ALIVE`]) and idle timeout ([`QUIC_IDLE_TIMEOUT`]).
pub fn quic_client_config(pinned_cert_der: &[u8]) -> Result<quinn::ClientConfig, ClientError> {
    let tls = rustls_client_config(pinned_cert_der)?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| ClientError::Tls { reason: e.to_string() })?;
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(QUIC_KEEP_ALIVE));
    let idle = quinn::IdleTimeout::try_from(QUIC_IDLE_TIMEOUT).map_err(|e| ClientError::Tls { reason: e.to_string() })?;
    transport.max_idle_timeout(Some(idle));
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier_for(der: &[u8]) -> PinnedCertVerifier {
        PinnedCertVerifier::new(der.to_vec(), Arc::new(rustls::crypto::ring::default_provider()))
    }

    #[test]
    fn only_the_pinned_certificate_is_trusted() {
        let a = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap().cert.der().to_vec();
        let b = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap().cert.der().to_vec();
        let v = verifier_for(&a);
        let name = ServerName::try_from("localhost").unwrap();
        assert!(v.verify_server_cert(&CertificateDer::from(a.clone()), &[], &name, &[], UnixTime::now()).is_ok());
        assert!(v.verify_server_cert(&CertificateDer::from(b), &[], &name, &[], UnixTime::now()).is_err());
        assert!(!v.supported_verify_schemes().is_empty());
    }

    #[test]
    fn quic_config_builds_without_a_process_default_provider() {
        let der = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap().cert.der().to_vec();
        let tls = rustls_client_config(&der).unwrap();
        assert_eq!(tls.alpn_protocols, vec![switchboard_protocol::ALPN.to_vec()]);
        assert!(quic_client_config(&der).is_ok());
    }
}
