//! The `Authorization` request header (RFC 7235 §4.2, RFC 2326 §12.5):
//! `Digest` credentials (RFC 7616 §3.4, RFC 2617 §3.2.2) and `Basic`
//! (RFC 7617 §2).
//!
//! The parser is bounded and total: a value longer than
//! [`MAX_AUTHORIZATION`], an unterminated quoted string, a parameter given
//! twice, a missing required parameter or an unknown algorithm is a
//! [`HeaderError`], never a panic. Quoted strings follow RFC 7230 §3.2.6
//! (`\` escapes the next character).

use base64::Engine as _;

use super::Algorithm;

/// The longest `Authorization` value accepted. A real Digest header is a
/// few hundred bytes; ROBUSTNESS B8#64 names a 64 KiB `response=`.
pub const MAX_AUTHORIZATION: usize = 4096;

/// Parameters in one header at most (RFC 7616 names 12).
const MAX_PARAMS: usize = 32;

/// Why an `Authorization` value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("Authorization header longer than {MAX_AUTHORIZATION} bytes")]
    TooLong,
    #[error("unknown authentication scheme")]
    UnknownScheme,
    #[error("unterminated quoted string")]
    Unterminated,
    #[error("malformed parameter list")]
    Syntax,
    #[error("parameter `{0}` given twice")]
    Duplicate(String),
    #[error("more than {MAX_PARAMS} parameters")]
    TooManyParams,
    #[error("missing parameter `{0}`")]
    Missing(&'static str),
    #[error("unknown algorithm")]
    UnknownAlgorithm,
    #[error("unsupported qop")]
    UnknownQop,
    #[error("malformed nonce count")]
    BadNonceCount,
    #[error("malformed Basic credentials")]
    BadBasic,
}

/// `qop=auth` with its nonce count and client nonce (RFC 7616 §3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qop {
    pub nc: u32,
    /// `nc` as the client wrote it (8 hex digits); the digest hashes it as text.
    pub nc_text: String,
    pub cnonce: String,
}

/// Parsed `Digest` credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestCredentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    /// The hex digest the client computed (compared in constant time).
    pub response: String,
    pub algorithm: Algorithm,
    pub opaque: Option<String>,
    /// `None` for RFC 2069-style clients (GStreamer's `rtspsrc`).
    pub qop: Option<Qop>,
}

/// What an `Authorization` header carries.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Digest(DigestCredentials),
    Basic { username: String, password: String },
}

impl std::fmt::Debug for Credentials {
    // Never prints a password or a response.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Digest(d) => write!(f, "Digest(username={:?})", d.username),
            Self::Basic { username, .. } => write!(f, "Basic(username={username:?})"),
        }
    }
}

impl Credentials {
    /// The user name the client claims.
    pub fn username(&self) -> &str {
        match self {
            Self::Digest(d) => &d.username,
            Self::Basic { username, .. } => username,
        }
    }
}

/// Parses an `Authorization` header value.
pub fn parse_authorization(value: &str) -> Result<Credentials, HeaderError> {
    if value.len() > MAX_AUTHORIZATION {
        return Err(HeaderError::TooLong);
    }
    let value = value.trim();
    let (scheme, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("digest") {
        parse_digest(rest).map(Credentials::Digest)
    } else if scheme.eq_ignore_ascii_case("basic") {
        parse_basic(rest.trim())
    } else {
        Err(HeaderError::UnknownScheme)
    }
}

fn parse_basic(token: &str) -> Result<Credentials, HeaderError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| HeaderError::BadBasic)?;
    let text = String::from_utf8(bytes).map_err(|_| HeaderError::BadBasic)?;
    let (username, password) = text.split_once(':').ok_or(HeaderError::BadBasic)?;
    Ok(Credentials::Basic {
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

/// `auth-param` list: `name=token` or `name="quoted"`, comma separated
/// (RFC 7235 §2.1). Names are case-insensitive; returned lowercased.
pub fn parse_params(s: &str) -> Result<Vec<(String, String)>, HeaderError> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out: Vec<(String, String)> = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b',') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            return Ok(out);
        }
        let start = i;
        while i < b.len() && is_token(b[i]) {
            i += 1;
        }
        if i == start {
            return Err(HeaderError::Syntax);
        }
        let name = s[start..i].to_ascii_lowercase();
        while i < b.len() && matches!(b[i], b' ' | b'\t') {
            i += 1;
        }
        if b.get(i) != Some(&b'=') {
            return Err(HeaderError::Syntax);
        }
        i += 1;
        while i < b.len() && matches!(b[i], b' ' | b'\t') {
            i += 1;
        }
        let value = if b.get(i) == Some(&b'"') {
            i += 1;
            let mut v = Vec::new();
            loop {
                match b.get(i) {
                    None => return Err(HeaderError::Unterminated),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        let &c = b.get(i + 1).ok_or(HeaderError::Unterminated)?;
                        v.push(c);
                        i += 2;
                    }
                    Some(&c) => {
                        v.push(c);
                        i += 1;
                    }
                }
            }
            String::from_utf8(v).map_err(|_| HeaderError::Syntax)?
        } else {
            let vs = i;
            while i < b.len() && is_token(b[i]) {
                i += 1;
            }
            if i == vs {
                return Err(HeaderError::Syntax);
            }
            s[vs..i].to_owned()
        };
        if out.iter().any(|(n, _)| *n == name) {
            return Err(HeaderError::Duplicate(name));
        }
        if out.len() == MAX_PARAMS {
            return Err(HeaderError::TooManyParams);
        }
        out.push((name, value));
        while i < b.len() && matches!(b[i], b' ' | b'\t') {
            i += 1;
        }
        match b.get(i) {
            None | Some(b',') => {}
            Some(_) => return Err(HeaderError::Syntax),
        }
    }
}

/// RFC 7230 §3.2.6 `tchar`, plus `/` for unquoted base64 nonces that some
/// clients send bare.
fn is_token(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&c)
}

fn parse_digest(rest: &str) -> Result<DigestCredentials, HeaderError> {
    let mut params = parse_params(rest)?;
    let mut take = |name: &str| {
        params
            .iter()
            .position(|(n, _)| n == name)
            .map(|i| params.swap_remove(i).1)
    };
    let algorithm = match take("algorithm") {
        None => Algorithm::Md5,
        Some(a) => Algorithm::from_name(&a).ok_or(HeaderError::UnknownAlgorithm)?,
    };
    let qop = match take("qop") {
        None => None,
        Some(q) if q.eq_ignore_ascii_case("auth") => {
            let nc_text = take("nc").ok_or(HeaderError::Missing("nc"))?;
            let nc = parse_nc(&nc_text)?;
            let cnonce = take("cnonce").ok_or(HeaderError::Missing("cnonce"))?;
            Some(Qop {
                nc,
                nc_text,
                cnonce,
            })
        }
        Some(_) => return Err(HeaderError::UnknownQop),
    };
    Ok(DigestCredentials {
        username: take("username").ok_or(HeaderError::Missing("username"))?,
        realm: take("realm").ok_or(HeaderError::Missing("realm"))?,
        nonce: take("nonce").ok_or(HeaderError::Missing("nonce"))?,
        uri: take("uri").ok_or(HeaderError::Missing("uri"))?,
        response: take("response").ok_or(HeaderError::Missing("response"))?,
        opaque: take("opaque"),
        algorithm,
        qop,
    })
}

/// `nc`: exactly 8 hex digits (RFC 7616 §3.4), not zero.
fn parse_nc(s: &str) -> Result<u32, HeaderError> {
    if s.len() != 8 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(HeaderError::BadNonceCount);
    }
    match u32::from_str_radix(s, 16) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(HeaderError::BadNonceCount),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC7616: &str = r#"Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;

    #[test]
    fn parses_the_rfc_7616_example() {
        let Credentials::Digest(d) = parse_authorization(RFC7616).unwrap() else {
            panic!("not digest")
        };
        assert_eq!(d.username, "Mufasa");
        assert_eq!(d.realm, "http-auth@example.org");
        assert_eq!(d.uri, "/dir/index.html");
        assert_eq!(d.algorithm, Algorithm::Sha256);
        let q = d.qop.unwrap();
        assert_eq!((q.nc, q.nc_text.as_str()), (1, "00000001"));
        assert_eq!(q.cnonce, "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ");
        assert_eq!(
            d.opaque.as_deref(),
            Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
        );
    }

    /// What ffmpeg 5.1 and GStreamer 1.22 sent to a stub server that
    /// offered SHA-256 then MD5 (nonce "abc", opaque "op").
    #[test]
    fn real_client_headers() {
        let ffmpeg = r#"Digest username="alice", realm="rtspd", nonce="abc", uri="rtsp://127.0.0.1:18554/x", response="c7664fb8e997aaf7752b11a1f655d7d1", algorithm="MD5", opaque="op", qop="auth", cnonce="901eca965e3afa5b", nc=00000001"#;
        let Credentials::Digest(d) = parse_authorization(ffmpeg).unwrap() else {
            panic!()
        };
        assert_eq!(d.algorithm, Algorithm::Md5);
        assert_eq!(d.qop.as_ref().map(|q| q.nc), Some(1));
        let ha1 = super::super::digest::ha1(Algorithm::Md5, "alice", "rtspd", "secret");
        assert!(super::super::digest::response_matches(&ha1, "DESCRIBE", &d));
        let gst = r#"Digest username="alice", realm="rtspd", nonce="abc", uri="rtsp://127.0.0.1:18555/x", response="fd0cafcdeb0bf9c38e6bf082a190485f", opaque="op""#;
        let Credentials::Digest(d) = parse_authorization(gst).unwrap() else {
            panic!()
        };
        assert_eq!((d.algorithm, d.qop.is_none()), (Algorithm::Md5, true));
        assert!(super::super::digest::response_matches(&ha1, "DESCRIBE", &d));
    }

    #[test]
    fn quoted_strings_unescape() {
        let p = parse_params(r#"a="x\"y\\z", b=tok"#).unwrap();
        assert_eq!(p[0], ("a".into(), r#"x"y\z"#.into()));
        assert_eq!(p[1], ("b".into(), "tok".into()));
    }

    #[test]
    fn rfc_2069_style_without_qop() {
        let h = r#"Digest username="u", realm="r", nonce="n", uri="rtsp://h/a", response="00""#;
        let Credentials::Digest(d) = parse_authorization(h).unwrap() else {
            panic!()
        };
        assert_eq!(d.qop, None);
        assert_eq!(d.algorithm, Algorithm::Md5);
    }

    #[test]
    fn malformed_headers_are_errors() {
        let base = r#"username="u", realm="r", nonce="n", uri="/", response="0""#;
        let long = format!(r#"Digest {base}, cnonce="{}""#, "a".repeat(10 * 1024));
        let cases: &[(&str, HeaderError)] = &[
            (r#"Digest username="u"#, HeaderError::Unterminated),
            (r#"Digest username="u\"#, HeaderError::Unterminated),
            (
                r#"Digest username="u", username="v", realm="r""#,
                HeaderError::Duplicate("username".into()),
            ),
            (
                r#"Digest USERNAME="u", username="v""#,
                HeaderError::Duplicate("username".into()),
            ),
            (&long, HeaderError::TooLong),
            (
                r#"Digest username="u", realm="r", nonce="n", uri="/""#,
                HeaderError::Missing("response"),
            ),
            (
                r#"Digest username="u", realm="r", nonce="n", uri="/", response="0", algorithm=SHA-512-256"#,
                HeaderError::UnknownAlgorithm,
            ),
            (
                r#"Digest username="u", realm="r", nonce="n", uri="/", response="0", qop=auth, cnonce="c""#,
                HeaderError::Missing("nc"),
            ),
            (
                r#"Digest username="u", realm="r", nonce="n", uri="/", response="0", qop=auth, nc=1, cnonce="c""#,
                HeaderError::BadNonceCount,
            ),
            (
                r#"Digest username="u", realm="r", nonce="n", uri="/", response="0", qop=auth-int, nc=00000001, cnonce="c""#,
                HeaderError::UnknownQop,
            ),
            (r#"Digest username"#, HeaderError::Syntax),
            (r#"Digest =x"#, HeaderError::Syntax),
            (r#"Digest a="b"c"#, HeaderError::Syntax),
            ("Bearer abc", HeaderError::UnknownScheme),
            ("Basic !!!", HeaderError::BadBasic),
            ("Basic dXNlcg==", HeaderError::BadBasic),
        ];
        for (h, want) in cases {
            assert_eq!(parse_authorization(h).unwrap_err(), *want, "{h}");
        }
        let many: String = (0..40).map(|i| format!("p{i}=x,")).collect();
        assert_eq!(
            parse_authorization(&format!("Digest {many}")).unwrap_err(),
            HeaderError::TooManyParams
        );
    }

    #[test]
    fn basic_credentials() {
        // RFC 7617 §2: "Aladdin" / "open sesame".
        let c = parse_authorization("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==").unwrap();
        assert_eq!(
            c,
            Credentials::Basic {
                username: "Aladdin".into(),
                password: "open sesame".into()
            }
        );
        assert_eq!(format!("{c:?}"), r#"Basic(username="Aladdin")"#);
    }

    #[test]
    fn never_panics_on_any_prefix() {
        for i in 0..=RFC7616.len() {
            if let Some(p) = RFC7616.get(..i) {
                let _ = parse_authorization(p);
            }
        }
    }
}
