//! Tenant naming rules: prefixes, schema ids (`{prefix}-{6 hex}`), usernames and passwords.
//!
//! Everything a user types is checked here before it reaches SQL, and SQL always quotes
//! identifiers as well, so a hostile prefix is rejected twice over.

use anyhow::{bail, Result};

/// Longest allowed tenant prefix.
pub const MAX_PREFIX_LEN: usize = 50;
/// Length of the random hex suffix of a schema id.
pub const SCHEMA_SUFFIX_LEN: usize = 6;
/// Length of generated user passwords.
pub const GENERATED_PASSWORD_LEN: usize = 16;
/// Longest username Langflow's login form accepts comfortably (the column is unbounded).
pub const MAX_USERNAME_LEN: usize = 255;

/// Checks a tenant prefix: 1–50 characters of letters, digits, `_` and `-`.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN {
        bail!(
            "invalid prefix {prefix:?}: it must be 1-{MAX_PREFIX_LEN} characters long (got {}); \
             use letters, digits, '_' or '-'",
            prefix.chars().count()
        );
    }
    if let Some(bad) = prefix
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        bail!("invalid prefix {prefix:?}: character {bad:?} is not allowed; use letters, digits, '_' or '-'");
    }
    Ok(())
}

/// A schema id for `prefix` with the given 6-hex-digit suffix.
pub fn schema_id(prefix: &str, suffix: &str) -> String {
    format!("{prefix}-{suffix}")
}

/// Splits a schema id into its prefix, checking the whole id's shape.
pub fn parse_schema_id(schema: &str) -> Result<&str> {
    let shape_error = || {
        anyhow::anyhow!(
            "invalid schema id {schema:?}: expected <prefix>-<6 hex digits> such as acme-1a2b3c; \
             see `cargo xtask tenant schema-list`"
        )
    };
    let (prefix, suffix) = schema.rsplit_once('-').ok_or_else(shape_error)?;
    if suffix.len() != SCHEMA_SUFFIX_LEN
        || !suffix
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        || validate_prefix(prefix).is_err()
    {
        return Err(shape_error());
    }
    Ok(prefix)
}

/// Checks the inputs of `user-add` / `user-reset` before anything connects anywhere.
pub fn check_user_input(schema: &str, username: &str, password: Option<&str>) -> Result<()> {
    parse_schema_id(schema)?;
    validate_username(username)?;
    if let Some(password) = password {
        validate_password(password)?;
    }
    Ok(())
}

/// Checks a username: non-empty, no surrounding whitespace, no control characters.
pub fn validate_username(username: &str) -> Result<()> {
    if username.trim().is_empty() {
        bail!("invalid username: it is empty; pass --username NAME");
    }
    if username.trim() != username {
        bail!("invalid username {username:?}: remove the leading/trailing spaces");
    }
    if username.len() > MAX_USERNAME_LEN || username.chars().any(char::is_control) {
        bail!("invalid username {username:?}: use at most {MAX_USERNAME_LEN} printable characters");
    }
    Ok(())
}

/// Checks a password given on the command line (bcrypt only uses the first 72 bytes).
pub fn validate_password(password: &str) -> Result<()> {
    if password.is_empty() {
        bail!(
            "invalid password: it is empty; pass a non-empty --password or omit it to generate one"
        );
    }
    if password.len() > 72 {
        bail!(
            "invalid password: it is {} bytes long and bcrypt only uses 72; pass at most 72 bytes",
            password.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_follow_the_rules() {
        for ok in ["a", "acme", "Widget_Co-2", &"x".repeat(50)] {
            validate_prefix(ok).unwrap();
        }
        for (bad, needle) in [
            ("", "1-50"),
            (&"x".repeat(51) as &str, "1-50"),
            ("ac me", "' '"),
            ("a\"; DROP SCHEMA public; --", "'\"'"),
            ("acmé", "'é'"),
            ("a.b", "'.'"),
        ] {
            let error = validate_prefix(bad).unwrap_err().to_string();
            assert!(error.contains(needle), "{bad:?}: {error}");
            assert!(error.starts_with("invalid prefix"), "{error}");
        }
    }

    #[test]
    fn schema_ids_round_trip_and_bad_ones_are_named() {
        let id = schema_id("my-co", "0a9f3c");
        assert_eq!(parse_schema_id(&id).unwrap(), "my-co");
        for bad in [
            "acme",
            "acme-1234567",
            "acme-12345g",
            "-1a2b3c",
            "a b-1a2b3c",
            "acme-1A2B3C",
        ] {
            let error = parse_schema_id(bad).unwrap_err().to_string();
            assert!(error.contains("invalid schema id"), "{bad}: {error}");
        }
    }

    #[test]
    fn usernames_and_passwords_are_checked() {
        validate_username("admin@acme.com").unwrap();
        assert!(validate_username("").is_err());
        assert!(validate_username(" admin").is_err());
        assert!(validate_username("a\nb").is_err());
        validate_password("x").unwrap();
        assert!(validate_password("")
            .unwrap_err()
            .to_string()
            .contains("empty"));
        assert!(validate_password(&"p".repeat(73)).is_err());
    }
}
