//! RTSPS: RTSP over TLS, with rustls through `tokio-rustls`. RFC 2326 has
//! only `rtsp` and `rtspu` (§3.2); the `rtsps` scheme, its port 322 and
//! RTSP over TLS are RFC 7826's (§4.2, §19.2), and clients speak them to
//! RTSP/1.0 servers alike. TLS 1.3 is RFC 8446, 1.2 RFC 5246.
//!
//! - [`server_config`] reads the certificate chain and key (PEM files) into
//!   a rustls `ServerConfig`; every failure names the file. Start and
//!   reload both call it, so a bad file stops the start or refuses the
//!   reload, and the key's bytes never reach a log line or an error.
//! - `Tls` is the running side: the config new handshakes use, replaced
//!   whole by a reload (connections already up keep the session they
//!   negotiated, and so their certificate).
//! - `serve` is one accepted TCP connection: its connection slot was
//!   taken before (the caps apply before any handshake work), the
//!   handshake has `handshake_timeout`, and a stalled, trickled or garbage
//!   handshake is closed without a reply. Then it is an RTSP connection
//!   like any other (`conn::serve` is generic over the stream).
//!
//! Media on an RTSPS connection goes interleaved on it (RFC 2326 §10.12):
//! SETUP refuses UDP there with 461, since plaintext RTP must never follow
//! a TLS-protected control session by accident.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::reload::Swap;
use super::{conn, ConnSlot, Shared};
use crate::proto::limit::Limit;

/// The `[tls]` keys as the server uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Certificate chain, PEM; empty with `key`: no RTSPS.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
    /// RTSPS port; `None` tries 322, then 8322.
    pub port: Option<u16>,
    /// Plain RTSP requests other than OPTIONS get 403.
    pub require: bool,
    /// A client must finish its handshake this long after it connected.
    pub handshake_timeout: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert: PathBuf::new(),
            key: PathBuf::new(),
            port: None,
            require: false,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl TlsConfig {
    /// Whether RTSPS is asked for (a certificate or a key is named).
    pub fn enabled(&self) -> bool {
        !self.cert.as_os_str().is_empty() || !self.key.as_os_str().is_empty()
    }
}

/// The default RTSPS port (RFC 7826 §4.2; IANA's `rtsps`), and the
/// unprivileged one used when it cannot be bound.
pub const DEFAULT_PORT: u16 = 322;
pub const FALLBACK_PORT: u16 = 8322;

/// Largest certificate or key file read: real ones are a few KiB.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// Why the certificate or key cannot be used. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("[tls] {missing} is not set: cert and key go together")]
    Incomplete { missing: &'static str },
    #[error("[tls] require = true needs cert and key")]
    RequireWithoutCert,
    #[error("{}: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },
    #[error("{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: not valid PEM ({what})", path.display())]
    Pem { path: PathBuf, what: &'static str },
    #[error("{}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it", path.display())]
    NoKey { path: PathBuf },
    #[error("{} with {}: {error}", cert.display(), key.display())]
    Rejected {
        cert: PathBuf,
        key: PathBuf,
        error: tokio_rustls::rustls::Error,
    },
}

/// The rustls configuration for `cfg`'s certificate and key, `None` when
/// RTSPS is off. ALPN is not set: RTSP 1.0 clients send none.
pub fn server_config(cfg: &TlsConfig) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    if !cfg.enabled() {
        return if cfg.require {
            Err(TlsError::RequireWithoutCert)
        } else {
            Ok(None)
        };
    }
    for (path, missing) in [(&cfg.cert, "cert"), (&cfg.key, "key")] {
        if path.as_os_str().is_empty() {
            return Err(TlsError::Incomplete { missing });
        }
    }
    let chain = read_certs(&cfg.cert)?;
    let key = read_key(&cfg.key)?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let rejected = |error| TlsError::Rejected {
        cert: cfg.cert.clone(),
        key: cfg.key.clone(),
        error,
    };
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(rejected)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(rejected)?;
    Ok(Some(Arc::new(config)))
}

/// A PEM file's text, capped at [`MAX_PEM_BYTES`].
fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let read_error = |error| TlsError::Read {
        path: path.to_owned(),
        error,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PEM_BYTES + 1).read_to_end(&mut bytes))
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(read_error(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_PEM_BYTES} bytes; is this a PEM file?"),
        )));
    }
    Ok(bytes)
}

/// What went wrong in a PEM file, without its contents.
fn pem_problem(e: &rustls_pki_types::pem::Error) -> &'static str {
    use rustls_pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { .. } => "a section has no END line",
        Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        Error::Base64Decode(_) => "bad base64",
        _ => "unreadable",
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem(path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            what: pem_problem(&e),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    use rustls_pki_types::pem::Error;
    let pem = read_pem(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        Error::NoItemsFound => TlsError::NoKey {
            path: path.to_owned(),
        },
        e => TlsError::Pem {
            path: path.to_owned(),
            what: pem_problem(&e),
        },
    })
}

/// The RTSPS listener and its configuration, before the server runs.
pub struct Listener {
    pub(crate) listener: TcpListener,
    pub(crate) config: Arc<ServerConfig>,
}

impl Listener {
    /// Loads the certificate and binds the port `cfg` asks for (322, else
    /// 8322, without one); `None` when RTSPS is off. A certificate that
    /// does not load is an [`io::ErrorKind::InvalidInput`] error wrapping
    /// the [`TlsError`].
    pub async fn bind(bind: IpAddr, cfg: &TlsConfig) -> io::Result<Option<Self>> {
        let config =
            server_config(cfg).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let Some(config) = config else {
            return Ok(None);
        };
        let listener = super::bind_tcp(bind, cfg.port, (DEFAULT_PORT, FALLBACK_PORT)).await?;
        Ok(Some(Self { listener, config }))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// The running RTSPS side: the configuration new handshakes get, and the
/// connections that are TLS (for SETUP's transport check).
pub(crate) struct Tls {
    config: Swap<ServerConfig>,
    conns: Mutex<HashSet<u64>>,
    pub(crate) addr: SocketAddr,
}

impl Tls {
    pub(crate) fn new(config: Arc<ServerConfig>, addr: SocketAddr) -> Self {
        Self {
            config: Swap::from_arc(config),
            conns: Mutex::default(),
            addr,
        }
    }

    /// New handshakes use `config` from now on.
    pub(crate) fn set_config(&self, config: Arc<ServerConfig>) {
        self.config.set_arc(config);
    }

    /// Whether connection `conn` is an RTSPS one.
    pub(crate) fn is_tls(&self, conn: u64) -> bool {
        self.lock().contains(&conn)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keeps a connection in [`Tls`]'s set while it lives.
struct Registered<'a> {
    tls: &'a Tls,
    conn: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.tls.lock().remove(&self.conn);
    }
}

/// Serves one accepted RTSPS connection: refused at once without a slot
/// (no handshake is spent on it), else handshake within the deadline,
/// then RTSP.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    tls: Arc<Tls>,
    stream: TcpStream,
    peer: SocketAddr,
    conn_id: u64,
    slot: Option<ConnSlot>,
    cancel: CancellationToken,
) {
    let Some(slot) = slot else {
        debug!("connection refused before the TLS handshake");
        return;
    };
    let acceptor = TlsAcceptor::from(tls.config.get());
    let deadline = shared.config().tls.handshake_timeout;
    let stream = tokio::select! {
        _ = cancel.cancelled() => return,
        r = tokio::time::timeout(deadline, acceptor.accept(stream)) => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                debug!(error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                debug!(?deadline, "TLS handshake not completed in time");
                shared.refusals.refuse(Limit::TlsHandshakeTimeout);
                return;
            }
        },
    };
    {
        let (_, session) = stream.get_ref();
        debug!(version = ?session.protocol_version(), suite = ?session.negotiated_cipher_suite().map(|s| s.suite()), "TLS established");
    }
    tls.lock().insert(conn_id);
    let _registered = Registered {
        tls: &tls,
        conn: conn_id,
    };
    conn::serve(shared.clone(), stream, peer, conn_id, Some(slot), cancel).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_incomplete_and_require_without_a_certificate() {
        let off = TlsConfig::default();
        assert!(!off.enabled());
        assert!(matches!(server_config(&off), Ok(None)));
        let require = TlsConfig {
            require: true,
            ..TlsConfig::default()
        };
        assert!(matches!(
            server_config(&require),
            Err(TlsError::RequireWithoutCert)
        ));
        let cert_only = TlsConfig {
            cert: "c.pem".into(),
            ..TlsConfig::default()
        };
        assert!(cert_only.enabled());
        assert!(matches!(
            server_config(&cert_only),
            Err(TlsError::Incomplete { missing: "key" })
        ));
        let missing = TlsConfig {
            cert: "/nonexistent/c.pem".into(),
            key: "/nonexistent/k.pem".into(),
            ..TlsConfig::default()
        };
        let e = server_config(&missing).expect_err("no such file");
        assert!(e.to_string().starts_with("/nonexistent/c.pem: "), "{e}");
    }
}
