//! RTSPS in tests: self-signed certificates made with rcgen, and the flags
//! that serve them.

use std::path::Path;

use tokio_rustls::rustls::pki_types::CertificateDer;

/// A self-signed certificate for 127.0.0.1 and localhost, as PEM files in
/// `dir` named `NAME.cert.pem` and `NAME.key.pem`; returns its DER.
pub fn self_signed(dir: &Path, name: &str) -> CertificateDer<'static> {
    let c = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("rcgen");
    std::fs::write(dir.join(format!("{name}.cert.pem")), c.cert.pem()).expect("write cert");
    std::fs::write(
        dir.join(format!("{name}.key.pem")),
        c.key_pair.serialize_pem(),
    )
    .expect("write key");
    c.cert.der().clone()
}

/// The flags that serve certificate `NAME` of `dir` (see [`self_signed`])
/// over RTSPS on an ephemeral port.
pub fn flags(dir: &Path, name: &str) -> Vec<String> {
    let file = |kind: &str| dir.join(format!("{name}.{kind}.pem")).display().to_string();
    vec![
        "--rtsps-port".into(),
        "0".into(),
        "--tls-cert".into(),
        file("cert"),
        "--tls-key".into(),
        file("key"),
    ]
}
