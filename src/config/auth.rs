//! `[auth]`, `[[users]]` and `[[paths]]`: who may do what. The keys are
//! read by serde like the other sections; [`check`] then checks what
//! serde cannot (hash lengths, user names a rule refers to, CIDR syntax),
//! with the same kind of errors, and [`auth_config`] turns the keys into
//! the server's [`AuthConfig`].
//!
//! A user's secrets are the RFC 7616 §3.4.2 HA1 hashes for the realm:
//! `MD5(name:realm:password)` and `SHA-256(name:realm:password)`, so no
//! password is stored and changing the realm invalidates every hash.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::value::Int;
use super::Settings;
use crate::proto::auth::rules::{Cidr, PathRule, Who};
use crate::proto::auth::{Policy, User};
use crate::server::AuthConfig;

/// `[auth]`: the realm and how credentials may travel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// The Digest realm; the users' HA1 hashes are computed with it.
    pub realm: String,
    /// Accept Basic credentials on plain RTSP (old devices only).
    pub allow_basic_without_tls: bool,
    /// Seconds a Digest nonce is valid; after it the client is asked
    /// again with `stale=true`.
    pub nonce_lifetime_secs: Int<1, 86_400>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            realm: "rtspd".into(),
            allow_basic_without_tls: false,
            nonce_lifetime_secs: Int::of(60),
        }
    }
}

/// One `[[users]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserTable {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha1_md5: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha1_sha256: Option<String>,
}

/// One `[[paths]]` rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathTable {
    #[serde(rename = "match")]
    pub pattern: String,
    /// User names, or `"anyone"`. Absent: anyone.
    #[serde(default = "anyone")]
    pub read: Vec<String>,
    /// User names, or `"anyone"`. Absent: nobody.
    #[serde(default)]
    pub publish: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_ips: Vec<String>,
}

fn anyone() -> Vec<String> {
    vec!["anyone".into()]
}

/// What is wrong with one key of a `[[users]]` or `[[paths]]` table:
/// (section, index, key, message).
pub type Problem = (&'static str, usize, &'static str, String);

/// Checks the users and rules beyond their types.
pub fn check(s: &Settings) -> Result<(), Problem> {
    for (i, u) in s.users.iter().enumerate() {
        let bad_name = u.name.is_empty()
            || u.name == "anyone"
            || u.name.len() > 64
            || u.name
                .chars()
                .any(|c| c == ':' || c == '"' || c.is_control());
        if bad_name {
            return Err((
                "users",
                i,
                "name",
                format!(
                    "{:?}: 1 to 64 characters, not \"anyone\", without ':' or '\"'",
                    u.name
                ),
            ));
        }
        if let Some(j) = s.users[..i].iter().position(|o| o.name == u.name) {
            return Err((
                "users",
                i,
                "name",
                format!("{:?} is already users[{j}]", u.name),
            ));
        }
        for (key, hash, len) in [
            ("ha1_md5", &u.ha1_md5, 32),
            ("ha1_sha256", &u.ha1_sha256, 64),
        ] {
            if let Some(h) = hash {
                if h.len() != len || !h.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return Err((
                        "users",
                        i,
                        key,
                        format!("expected {len} hex digits (`rtspd passwd` prints it)"),
                    ));
                }
            }
        }
        if u.ha1_md5.is_none() && u.ha1_sha256.is_none() {
            return Err((
                "users",
                i,
                "name",
                format!("{:?} has neither ha1_md5 nor ha1_sha256", u.name),
            ));
        }
    }
    for (i, p) in s.paths.iter().enumerate() {
        if p.pattern.trim_matches('/').is_empty() && p.pattern != "/**" && p.pattern != "/" {
            return Err((
                "paths",
                i,
                "match",
                "expected a path or glob such as /live/* or /private/**".into(),
            ));
        }
        for (key, names) in [("read", &p.read), ("publish", &p.publish)] {
            if let Some(n) = names
                .iter()
                .find(|n| *n != "anyone" && !s.users.iter().any(|u| u.name == **n))
            {
                return Err((
                    "paths",
                    i,
                    key,
                    format!("{n:?} is not a [[users]] name (or \"anyone\")"),
                ));
            }
        }
        for (key, nets) in [("allow_ips", &p.allow_ips), ("deny_ips", &p.deny_ips)] {
            for n in nets {
                n.parse::<Cidr>().map_err(|e| ("paths", i, key, e))?;
            }
        }
    }
    Ok(())
}

/// The `[[users]]` table for `name` with `password` in `realm`, as
/// `rtspd passwd` prints it.
pub fn user_entry(name: &str, realm: &str, password: &str) -> Result<String, String> {
    use crate::proto::auth::digest::ha1;
    use crate::proto::auth::Algorithm;
    let probe = Settings {
        users: vec![UserTable {
            name: name.into(),
            ha1_md5: Some("0".repeat(32)),
            ha1_sha256: None,
        }],
        ..Settings::default()
    };
    check(&probe).map_err(|(_, _, _, m)| m)?;
    let name_toml = toml::Value::String(name.into()).to_string();
    Ok(format!(
        "# realm {realm:?}: another realm needs new hashes\n[[users]]\nname = {name_toml}\nha1_md5 = \"{}\"\nha1_sha256 = \"{}\"\n",
        ha1(Algorithm::Md5, name, realm, password),
        ha1(Algorithm::Sha256, name, realm, password),
    ))
}

/// The server's view of the keys (checked by [`check`] first).
pub fn auth_config(s: &Settings) -> AuthConfig {
    let users: HashMap<String, User> = s
        .users
        .iter()
        .map(|u| {
            let user = User {
                name: u.name.clone(),
                ha1_md5: u.ha1_md5.as_ref().map(|h| h.to_ascii_lowercase()),
                ha1_sha256: u.ha1_sha256.as_ref().map(|h| h.to_ascii_lowercase()),
            };
            (u.name.clone(), user)
        })
        .collect();
    let nets = |v: &[String]| v.iter().filter_map(|n| n.parse().ok()).collect();
    AuthConfig {
        policy: Policy {
            realm: s.auth.realm.clone(),
            users,
            allow_basic_without_tls: s.auth.allow_basic_without_tls,
        },
        rules: s
            .paths
            .iter()
            .map(|p| PathRule {
                pattern: p.pattern.clone(),
                read: Who::from_list(&p.read),
                publish: Who::from_list(&p.publish),
                allow_ips: nets(&p.allow_ips),
                deny_ips: nets(&p.deny_ips),
            })
            .collect(),
        nonce_lifetime: Duration::from_secs(s.auth.nonce_lifetime_secs.get()),
        max_failures: s.limits.max_auth_failures.get() as u32,
        max_unknown_sessions: s.limits.max_unknown_sessions.get() as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_entry_parses_back_with_the_rfc_hashes() {
        let text = user_entry("alice", "rtspd", "secret").unwrap();
        assert!(text.contains("4810f2ccb0902ce17b7daca2a401bd0c"), "{text}");
        assert!(text.contains("90fff557e2155640f012b5f679133f13a0adc706952129f8ed1ac375fbe5b7a0"));
        let parsed = super::super::file::parse(&text).unwrap();
        assert_eq!(parsed.settings.users[0].name, "alice");
        assert!(user_entry("a:b", "rtspd", "x").is_err());
        assert!(user_entry("anyone", "rtspd", "x").is_err());
    }
}
