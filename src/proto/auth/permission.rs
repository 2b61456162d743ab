//! Permissions of the HTTP side (issue 12): who may use the JSON API,
//! scrape the metrics and see the status page. Each names users (from
//! `[[users]]`) or bearer tokens (from `[[http.tokens]]`), or `"anyone"`;
//! the default is `"anyone"` for each, as before there were permissions.
//! `/healthz` needs none, and `/sdp/{path}` is a DESCRIBE of the path, so
//! the path's `[[paths]]` read rule decides it ([`super::rules`]).

use super::rules::Who;

/// What an HTTP route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Everything under `/api/v1/`.
    Api,
    /// `/metrics`.
    Metrics,
    /// `/`, the status page.
    Status,
}

impl Permission {
    /// The config key (`[http.permissions]`).
    pub fn key(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Metrics => "metrics",
            Self::Status => "status",
        }
    }

    pub const ALL: [Self; 3] = [Self::Api, Self::Metrics, Self::Status];
}

/// Who holds each permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    pub api: Who,
    pub metrics: Who,
    pub status: Who,
}

impl Default for Grants {
    fn default() -> Self {
        Self {
            api: Who::Anyone,
            metrics: Who::Anyone,
            status: Who::Anyone,
        }
    }
}

impl Grants {
    /// Who holds `p`.
    pub fn of(&self, p: Permission) -> &Who {
        match p {
            Permission::Api => &self.api,
            Permission::Metrics => &self.metrics,
            Permission::Status => &self.status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_permission_is_looked_up_on_its_own() {
        let g = Grants {
            api: Who::from_list(&["alice".into()]),
            metrics: Who::from_list(&["alice".into(), "prom".into()]),
            status: Who::from_list(&["anyone".into(), "bob".into()]),
        };
        let admits = |p, name| g.of(p).admits(name);
        assert!(admits(Permission::Api, "alice"));
        assert!(!admits(Permission::Api, "prom"));
        assert!(!admits(Permission::Api, "bob"));
        assert!(admits(Permission::Metrics, "prom"));
        assert!(!admits(Permission::Metrics, "bob"));
        assert!(admits(Permission::Status, "bob"));
        assert!(admits(Permission::Status, "nobody at all"));
        let none = Who::from_list(&[]);
        assert!(!none.admits("alice"));
        assert_eq!(Grants::default().of(Permission::Api), &Who::Anyone);
        let keys: Vec<_> = Permission::ALL.iter().map(|p| p.key()).collect();
        assert_eq!(keys, ["api", "metrics", "status"]);
    }
}
