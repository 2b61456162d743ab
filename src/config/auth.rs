//! `[auth]`, `[[users]]`, `[[paths]]`, and the HTTP side's
//! `[http.permissions]` and `[[http.tokens]]`: who may do what. The keys
//! are read by serde like the other sections; [`check`] then checks what
//! serde cannot (hash lengths, user and token names a rule or permission
//! refers to, CIDR syntax), with the same kind of errors, and
//! [`auth_config`] turns the keys into the server's [`AuthConfig`].
//!
//! A bearer token (RFC 6750) is kept as its SHA-256 only; `rtspd token
//! NAME` mints one ([`token_entry`]).
//!
//! A user's secrets are the RFC 7616 §3.4.2 HA1 hashes for the realm:
//! `MD5(name:realm:password)` and `SHA-256(name:realm:password)`, so no
//! password is stored and changing the realm invalidates every hash.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::value::{Int, ANY};
use super::Settings;
use crate::proto::auth::bearer::{self, Token};
use crate::proto::auth::permission::{Grants, Permission};
use crate::proto::auth::rules::{Cidr, PathRule, Who};
use crate::proto::auth::{Policy, User};
use crate::proto::redirect::{self, Edge, Redirect, When};
use crate::server::AuthConfig;

/// `[auth]`: the realm and how credentials may travel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// The Digest realm; the users' HA1 hashes are computed with it.
    pub realm: String,
    /// Accept Basic credentials on plain RTSP (old devices only).
    pub allow_basic_without_tls: bool,
    /// Refuse Digest answers without `qop` (no nonce count: replayable
    /// within the nonce's lifetime).
    pub require_qop: bool,
    /// Seconds a Digest nonce is valid; after it the client is asked
    /// again with `stale=true`.
    pub nonce_lifetime_secs: Int<1, 86_400>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            realm: "rtspd".into(),
            allow_basic_without_tls: false,
            require_qop: false,
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
    /// Edges' RTSP base URLs readers are sent to (302, RFC 2326 §11.3.3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect: Vec<String>,
    /// Each edge's HTTP API base URL, in `redirect`'s order (for
    /// `least_readers`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_api: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_policy: Option<RedirectPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_when: Option<RedirectWhen>,
    /// Local readers of the path before `redirect_when = "full"` sends
    /// the next away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_readers: Option<Int<0, ANY>>,
}

/// `redirect_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedirectPolicy {
    RoundRobin,
    LeastReaders,
}

/// `redirect_when`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedirectWhen {
    Always,
    Full,
}

fn anyone() -> Vec<String> {
    vec!["anyone".into()]
}

/// `[http.permissions]`: who may use each part of the HTTP side. Each
/// lists `[[users]]` names, `[[http.tokens]]` names, or `"anyone"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpPermissions {
    /// `/api/v1/*`: paths, sessions, kicking a session, reload.
    pub api: Vec<String>,
    /// `/metrics`.
    pub metrics: Vec<String>,
    /// `/`, the status page.
    pub status: Vec<String>,
}

impl Default for HttpPermissions {
    fn default() -> Self {
        Self {
            api: anyone(),
            metrics: anyone(),
            status: anyone(),
        }
    }
}

impl HttpPermissions {
    /// Each permission's key and list.
    pub fn lists(&self) -> [(&'static str, &Vec<String>); 3] {
        [
            (Permission::Api.key(), &self.api),
            (Permission::Metrics.key(), &self.metrics),
            (Permission::Status.key(), &self.status),
        ]
    }
}

/// One `[[http.tokens]]` table, as `rtspd token NAME` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenTable {
    pub name: String,
    /// SHA-256 of the token, 64 hex digits.
    pub sha256: String,
}

/// One step of a key's path in the file: a key, or an index into an
/// array of tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Key(&'static str),
    Index(usize),
}

/// What is wrong with one key: where it is (`users`, 0, `name`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: Vec<Step>,
    pub message: String,
}

impl Problem {
    fn at(path: &[Step], message: String) -> Self {
        Self {
            path: path.to_vec(),
            message,
        }
    }

    /// The key as written in messages: `users[0].name`,
    /// `http.permissions.api`.
    pub fn key(&self) -> String {
        let mut out = String::new();
        for step in &self.path {
            match step {
                Step::Key(k) if out.is_empty() => out.push_str(k),
                Step::Key(k) => {
                    out.push('.');
                    out.push_str(k);
                }
                Step::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }
}

/// A user or token name: 1 to 64 characters, not `anyone`, nothing that
/// breaks a Digest header.
fn bad_name(name: &str) -> bool {
    name.is_empty()
        || name == "anyone"
        || name.len() > 64
        || name.chars().any(|c| c == ':' || c == '"' || c.is_control())
}

/// Checks the users, rules, tokens and permissions beyond their types.
pub fn check(s: &Settings) -> Result<(), Problem> {
    use Step::{Index, Key};
    for (i, u) in s.users.iter().enumerate() {
        if bad_name(&u.name) {
            return Err(Problem::at(
                &[Key("users"), Index(i), Key("name")],
                format!(
                    "{:?}: 1 to 64 characters, not \"anyone\", without ':' or '\"'",
                    u.name
                ),
            ));
        }
        if let Some(j) = s.users[..i].iter().position(|o| o.name == u.name) {
            return Err(Problem::at(
                &[Key("users"), Index(i), Key("name")],
                format!("{:?} is already users[{j}]", u.name),
            ));
        }
        for (key, hash, len) in [
            ("ha1_md5", &u.ha1_md5, 32),
            ("ha1_sha256", &u.ha1_sha256, 64),
        ] {
            if let Some(h) = hash {
                if h.len() != len || !h.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return Err(Problem::at(
                        &[Key("users"), Index(i), Key(key)],
                        format!("expected {len} hex digits (`rtspd passwd` prints it)"),
                    ));
                }
            }
        }
        if u.ha1_md5.is_none() && u.ha1_sha256.is_none() {
            return Err(Problem::at(
                &[Key("users"), Index(i), Key("name")],
                format!("{:?} has neither ha1_md5 nor ha1_sha256", u.name),
            ));
        }
    }
    for (i, p) in s.paths.iter().enumerate() {
        if p.pattern.trim_matches('/').is_empty() && p.pattern != "/**" && p.pattern != "/" {
            return Err(Problem::at(
                &[Key("paths"), Index(i), Key("match")],
                "expected a path or glob such as /live/* or /private/**".into(),
            ));
        }
        for (key, names) in [("read", &p.read), ("publish", &p.publish)] {
            if let Some(n) = names
                .iter()
                .find(|n| *n != "anyone" && !s.users.iter().any(|u| u.name == **n))
            {
                return Err(Problem::at(
                    &[Key("paths"), Index(i), Key(key)],
                    format!("{n:?} is not a [[users]] name (or \"anyone\")"),
                ));
            }
        }
        for (key, nets) in [("allow_ips", &p.allow_ips), ("deny_ips", &p.deny_ips)] {
            for n in nets {
                n.parse::<Cidr>()
                    .map_err(|e| Problem::at(&[Key("paths"), Index(i), Key(key)], e))?;
            }
        }
        check_redirect(i, p)?;
    }
    check_http(s)
}

/// A `[[paths]]` rule's redirect keys.
fn check_redirect(i: usize, p: &PathTable) -> Result<(), Problem> {
    use Step::{Index, Key};
    let at = |key| [Key("paths"), Index(i), Key(key)];
    for u in &p.redirect {
        redirect::base_url(u, redirect::RTSP_SCHEMES)
            .map_err(|e| Problem::at(&at("redirect"), e.to_string()))?;
    }
    for u in &p.redirect_api {
        redirect::base_url(u, &["http"])
            .map_err(|e| Problem::at(&at("redirect_api"), e.to_string()))?;
    }
    let set = |v: bool, key| (v && p.redirect.is_empty()).then_some(key);
    if let Some(key) = set(!p.redirect_api.is_empty(), "redirect_api")
        .or(set(p.redirect_policy.is_some(), "redirect_policy"))
        .or(set(p.redirect_when.is_some(), "redirect_when"))
    {
        return Err(Problem::at(&at(key), "needs redirect (the edges)".into()));
    }
    if !p.redirect_api.is_empty() && p.redirect_api.len() != p.redirect.len() {
        return Err(Problem::at(
            &at("redirect_api"),
            format!(
                "{} API URLs for {} edges: one per redirect URL, in the same order",
                p.redirect_api.len(),
                p.redirect.len()
            ),
        ));
    }
    if p.redirect_policy == Some(RedirectPolicy::LeastReaders) && p.redirect_api.is_empty() {
        return Err(Problem::at(
            &at("redirect_policy"),
            "least_readers needs redirect_api, each edge's HTTP API".into(),
        ));
    }
    if (p.redirect_when == Some(RedirectWhen::Full)) != p.max_readers.is_some() {
        return Err(Problem::at(
            &at(if p.max_readers.is_some() {
                "max_readers"
            } else {
                "redirect_when"
            }),
            "max_readers goes with redirect_when = \"full\"".into(),
        ));
    }
    Ok(())
}

/// The redirect of a checked rule.
fn redirect_of(p: &PathTable) -> Option<Redirect> {
    if p.redirect.is_empty() {
        return None;
    }
    let base = |u: &String, schemes| redirect::base_url(u, schemes).unwrap_or_else(|_| u.clone());
    Some(Redirect {
        edges: p
            .redirect
            .iter()
            .enumerate()
            .map(|(k, u)| Edge {
                url: base(u, redirect::RTSP_SCHEMES),
                api: p.redirect_api.get(k).map(|a| base(a, &["http"])),
            })
            .collect(),
        policy: match p.redirect_policy {
            Some(RedirectPolicy::LeastReaders) => redirect::Policy::LeastReaders,
            _ => redirect::Policy::RoundRobin,
        },
        when: match p.max_readers {
            Some(n) if p.redirect_when == Some(RedirectWhen::Full) => When::Full {
                max_readers: n.usize(),
            },
            _ => When::Always,
        },
    })
}

/// `[[http.tokens]]` and `[http.permissions]`.
fn check_http(s: &Settings) -> Result<(), Problem> {
    use Step::{Index, Key};
    let tokens = &s.http.tokens;
    for (i, t) in tokens.iter().enumerate() {
        let at = |key| [Key("http"), Key("tokens"), Index(i), Key(key)];
        if bad_name(&t.name) {
            return Err(Problem::at(
                &at("name"),
                format!(
                    "{:?}: 1 to 64 characters, not \"anyone\", without ':' or '\"'",
                    t.name
                ),
            ));
        }
        if let Some(j) = tokens[..i].iter().position(|o| o.name == t.name) {
            return Err(Problem::at(
                &at("name"),
                format!("{:?} is already http.tokens[{j}]", t.name),
            ));
        }
        if let Some(j) = s.users.iter().position(|u| u.name == t.name) {
            return Err(Problem::at(
                &at("name"),
                format!(
                    "{:?} is the name of users[{j}]: a token needs a name of its own",
                    t.name
                ),
            ));
        }
        if Token::from_hex(&t.name, &t.sha256).is_none() {
            return Err(Problem::at(
                &at("sha256"),
                "expected 64 hex digits, the token's SHA-256 (`rtspd token NAME` prints it)".into(),
            ));
        }
    }
    for (key, names) in s.http.permissions.lists() {
        let known = |n: &String| {
            n == "anyone"
                || s.users.iter().any(|u| u.name == *n)
                || tokens.iter().any(|t| t.name == *n)
        };
        if let Some(n) = names.iter().find(|n| !known(n)) {
            return Err(Problem::at(
                &[Key("http"), Key("permissions"), Key(key)],
                format!("{n:?} is not a [[users]] or [[http.tokens]] name (or \"anyone\")"),
            ));
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
    check(&probe).map_err(|p| p.message)?;
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
            require_qop: s.auth.require_qop,
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
                redirect: redirect_of(p),
            })
            .collect(),
        nonce_lifetime: Duration::from_secs(s.auth.nonce_lifetime_secs.get()),
        max_failures: s.limits.max_auth_failures.get() as u32,
        max_unknown_sessions: s.limits.max_unknown_sessions.get() as u32,
        grants: Grants {
            api: Who::from_list(&s.http.permissions.api),
            metrics: Who::from_list(&s.http.permissions.metrics),
            status: Who::from_list(&s.http.permissions.status),
        },
        tokens: s
            .http
            .tokens
            .iter()
            .filter_map(|t| Token::from_hex(&t.name, &t.sha256))
            .collect(),
    }
}

/// A fresh bearer token for `name` and its `[[http.tokens]]` table, as
/// `rtspd token` prints them: (token, table). The token is shown once;
/// the table holds only its SHA-256.
pub fn token_entry(name: &str) -> Result<(String, String), String> {
    if bad_name(name) {
        return Err(format!(
            "{name:?}: 1 to 64 characters, not \"anyone\", without ':' or '\"'"
        ));
    }
    let (token, sha256) = bearer::mint().map_err(|e| format!("OS random source: {e}"))?;
    let name_toml = toml::Value::String(name.into()).to_string();
    Ok((
        token,
        format!(
            "# list {name_toml} in [http.permissions] to let its holder in\n[[http.tokens]]\nname = {name_toml}\nsha256 = \"{sha256}\"\n"
        ),
    ))
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

    #[test]
    fn token_entry_parses_back_with_the_tokens_hash() {
        let (token, text) = token_entry("prom").unwrap();
        assert!(!text.contains(&token), "{text}");
        let parsed =
            super::super::file::parse(&format!("[http.permissions]\nmetrics = [\"prom\"]\n{text}"))
                .unwrap();
        let tokens = &parsed.settings.http.tokens;
        assert_eq!(tokens[0].name, "prom");
        let config = auth_config(&parsed.settings);
        assert_eq!(bearer::find(&config.tokens, &token), Some("prom"));
        assert!(config.grants.metrics.admits("prom"));
        assert!(token_entry("a:b").is_err());
        assert!(token_entry("anyone").is_err());
        assert!(token_entry("").is_err());
    }
}
