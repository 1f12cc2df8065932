//! The tenants file (`fixtures/tenants.yaml` by default): which tenants and users `up` provisions.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::naming;

/// Tenants `up` makes sure exist.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantsFixture {
    /// The tenants, in order.
    #[serde(default)]
    pub tenants: Vec<FixtureTenant>,
}

/// One tenant of the fixture.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureTenant {
    /// Tenant prefix (`/tenant/<prefix>/`).
    pub prefix: String,
    /// Users created (once) in the tenant.
    #[serde(default)]
    pub users: Vec<FixtureUser>,
}

/// One user of a fixture tenant.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureUser {
    /// Login name.
    pub username: String,
    /// Whether the user is a Langflow superuser.
    #[serde(default)]
    pub superuser: bool,
    /// A fixed password (for reproducible test setups); generated when absent.
    #[serde(default)]
    pub password: Option<String>,
}

impl TenantsFixture {
    /// Reads and validates a tenants file. A missing file means no tenants.
    pub fn load(path: &Path) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Self::parse(&text).with_context(|| format!("invalid tenants file {}", path.display()))
    }

    /// Parses and validates tenants YAML.
    pub fn parse(text: &str) -> Result<Self> {
        let fixture: Self = if text.trim().is_empty() {
            Self::default()
        } else {
            serde_norway::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?
        };
        let mut prefixes = BTreeSet::new();
        for tenant in &fixture.tenants {
            naming::validate_prefix(&tenant.prefix)?;
            if !prefixes.insert(tenant.prefix.as_str()) {
                bail!(
                    "tenant prefix '{}' is listed twice; list each tenant once",
                    tenant.prefix
                );
            }
            let mut users = BTreeSet::new();
            for user in &tenant.users {
                naming::validate_username(&user.username)?;
                if let Some(password) = &user.password {
                    naming::validate_password(password)?;
                }
                if !users.insert(user.username.to_lowercase()) {
                    bail!(
                        "user {:?} is listed twice in tenant '{}' (usernames are case-insensitive)",
                        user.username,
                        tenant.prefix
                    );
                }
            }
        }
        Ok(fixture)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_default_fixture() {
        let text = include_str!("../../../../fixtures/tenants.yaml");
        let fixture = TenantsFixture::parse(text).unwrap();
        let prefixes: Vec<_> = fixture.tenants.iter().map(|t| t.prefix.as_str()).collect();
        assert_eq!(prefixes, ["acme", "widgetco"]);
        assert_eq!(fixture.tenants[0].users[0].username, "admin@acme.com");
        assert!(fixture.tenants[0].users[0].superuser);
    }

    #[test]
    fn rejects_bad_prefix_duplicates_and_unknown_keys() {
        let bad_prefix = TenantsFixture::parse("tenants:\n  - prefix: \"a;drop\"\n").unwrap_err();
        assert!(
            format!("{bad_prefix:#}").contains("a;drop"),
            "{bad_prefix:#}"
        );
        let twice = TenantsFixture::parse("tenants:\n  - prefix: a\n  - prefix: a\n").unwrap_err();
        assert!(twice.to_string().contains("listed twice"), "{twice}");
        let dup_user = TenantsFixture::parse(
            "tenants:\n  - prefix: a\n    users:\n      - username: Bob\n      - username: bob\n",
        )
        .unwrap_err();
        assert!(
            dup_user.to_string().contains("case-insensitive"),
            "{dup_user}"
        );
        let unknown = TenantsFixture::parse("tenants:\n  - prefx: a\n").unwrap_err();
        assert!(format!("{unknown:#}").contains("prefx"), "{unknown:#}");
        assert_eq!(TenantsFixture::parse("").unwrap().tenants.len(), 0);
    }
}
