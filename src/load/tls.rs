//! RTSPS in the load tester: the client side of RTSP over TLS, with rustls
//! on the ring provider (as the server, [`crate::server::tls`]). RFC 2326
//! has only `rtsp` and `rtspu` (§3.2); the `rtsps` scheme and its default
//! port 322 are RFC 7826's (§4.2, §19.2). TLS 1.3 is RFC 8446, 1.2 RFC 5246.
//!
//! - The server's certificate is verified against the CA certificates of
//!   `--ca-file` (PEM) for the URL's host: a name is sent as SNI (RFC 6066
//!   §3) and matched against the certificate's DNS names, an IP address
//!   (never sent as SNI) against its IP addresses.
//! - `--insecure` accepts any certificate (the handshake's signatures are
//!   still checked against the key it presents). It is logged at WARN and
//!   named among the report's warnings.
//! - Media goes interleaved on the TLS connection (RFC 2326 §10.12): RTP
//!   over UDP would travel in plaintext beside a protected control
//!   session, and rtspd refuses it with 461, so `Options::check`
//!   refuses `--transport udp` with an `rtsps://` URL before anything
//!   connects.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::{self, ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio_rustls::TlsConnector;

use super::conn::REPLY_TIMEOUT;
use super::LoadError;

/// How the server's certificate is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the CA certificates to trust.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (`--insecure`).
    pub insecure: bool,
}

impl TlsOptions {
    /// Whether either flag was given (they only mean something for
    /// `rtsps://`).
    pub fn given(&self) -> bool {
        self.ca_file.is_some() || self.insecure
    }
}

/// Why the TLS client cannot be set up. The CA file is public material,
/// but its contents are still never quoted.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "rtsps:// needs --ca-file PEM to verify the server's certificate \
         (or --insecure to skip verification)"
    )]
    NoTrust,
    #[error("--ca-file and --insecure do not go together")]
    Both,
    #[error("{}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: rustls_pki_types::pem::Error,
    },
    #[error("{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: certificate {index} is not a usable CA: {error}", path.display())]
    BadCertificate {
        path: PathBuf,
        index: usize,
        error: rustls::Error,
    },
    #[error("{0:?} is not a host name or IP address TLS can verify")]
    Name(String),
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
}

/// The TLS side of every connection of a run: one configuration, and the
/// name the server's certificate must carry.
#[derive(Clone)]
pub(crate) struct Connector {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connector({:?})", self.name)
    }
}

impl Connector {
    /// The client configuration for `host` (the URL's, brackets taken off
    /// an IPv6 address).
    pub(crate) fn new(opts: &TlsOptions, host: &str) -> Result<Self, TlsError> {
        let provider = Arc::new(crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?;
        let config = match (&opts.ca_file, opts.insecure) {
            (Some(_), true) => return Err(TlsError::Both),
            (None, false) => return Err(TlsError::NoTrust),
            (Some(path), false) => builder.with_root_certificates(roots(path)?),
            (None, true) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))),
        }
        .with_no_client_auth();
        let name = ServerName::try_from(host)
            .map_err(|_| TlsError::Name(host.to_owned()))?
            .to_owned();
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }

    /// The handshake on `tcp`, within [`REPLY_TIMEOUT`].
    pub(crate) async fn handshake(
        &self,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, LoadError> {
        let connect = self.connector.connect(self.name.clone(), tcp);
        match tokio::time::timeout(REPLY_TIMEOUT, connect).await {
            Err(_) => Err(LoadError::Timeout("the TLS handshake")),
            Ok(Ok(s)) => {
                let (_, c) = s.get_ref();
                tracing::trace!(version = ?c.protocol_version(), "TLS established");
                Ok(s)
            }
            Ok(Err(e)) => Err(LoadError::Tls(handshake_error(&e))),
        }
    }
}

/// What failed in a handshake: rustls's own error when there is one
/// (e.g. `invalid peer certificate: UnknownIssuer`), else the I/O error.
fn handshake_error(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(r) => r.to_string(),
        None => e.to_string(),
    }
}

/// Every certificate of the PEM file `path` as a trust anchor.
fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let read = |error| TlsError::Read {
        path: path.to_owned(),
        error,
    };
    let mut store = RootCertStore::empty();
    for (index, cert) in CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .enumerate()
    {
        store
            .add(cert.map_err(read)?)
            .map_err(|error| TlsError::BadCertificate {
                path: path.to_owned(),
                index,
                error,
            })?;
    }
    if store.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(store)
}

/// `--insecure`: any certificate for any name. The handshake's signature
/// is still verified against the key of the certificate presented, so the
/// session keys are the peer's, only the peer is not authenticated.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

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
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_must_be_chosen_once() {
        let none = TlsOptions::default();
        assert!(!none.given());
        assert!(matches!(
            Connector::new(&none, "127.0.0.1"),
            Err(TlsError::NoTrust)
        ));
        let both = TlsOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            insecure: true,
        };
        assert!(matches!(
            Connector::new(&both, "127.0.0.1"),
            Err(TlsError::Both)
        ));
        let insecure = TlsOptions {
            insecure: true,
            ..TlsOptions::default()
        };
        let c = Connector::new(&insecure, "::1").expect("an IPv6 address");
        assert!(matches!(c.name, ServerName::IpAddress(_)));
        let c = Connector::new(&insecure, "cam.example").expect("a DNS name");
        assert!(matches!(c.name, ServerName::DnsName(_)));
        assert!(matches!(
            Connector::new(&insecure, "bad name!"),
            Err(TlsError::Name(_))
        ));
    }

    #[test]
    fn ca_files_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = |p: &Path| TlsOptions {
            ca_file: Some(p.to_owned()),
            insecure: false,
        };
        let missing = dir.path().join("missing.pem");
        let e = Connector::new(&opts(&missing), "h").expect_err("no file");
        assert!(
            e.to_string().starts_with(&missing.display().to_string()),
            "{e}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no PEM here\n").expect("write");
        assert!(matches!(
            Connector::new(&opts(&empty), "h"),
            Err(TlsError::NoCertificate { .. })
        ));
        let junk = dir.path().join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        assert!(matches!(
            Connector::new(&opts(&junk), "h"),
            Err(TlsError::BadCertificate { index: 0, .. })
        ));
        let c = rcgen::generate_simple_self_signed(vec!["h".into()]).expect("rcgen");
        let good = dir.path().join("good.pem");
        std::fs::write(&good, c.cert.pem()).expect("write");
        Connector::new(&opts(&good), "h").expect("a CA file");
    }
}
