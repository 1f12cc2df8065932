//! `cargo xtask env`: what a developer `eval`s so their own tools talk to the local stack —
//! psql/libpq (`PG*` + a 0600 passfile for the tenant's role or the superuser), the AWS CLI and
//! boto3 (an `AWS_CONFIG_FILE`/`AWS_SHARED_CREDENTIALS_FILE` pair with the credential guide's
//! profiles: `dev` = the developer's keys, `local` = `role_arn` LangflowLocalRole +
//! `source_profile dev`, both with the emulator's `endpoint_url`), and curl/SDK clients of a
//! tenant (`LANGFLOW_URL` + an API key of the tenant's operator user).
//!
//! Files go to `<state>/env/` (directory 0700, files 0600) and are rewritten on every call;
//! secrets never appear on the command line. The printed script is the only place secrets are
//! shown (the API key), as `eval` needs them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use crate::config::Config;
use crate::e2e::client::{Auth, TenantClient};
use crate::stack::Stack;
use crate::tenancy::{Tenancy, OPERATOR_USERNAME};
use crate::venv::Venv;

/// Pinned AWS CLI (v1, PyPI) the project tests its profiles with.
pub const AWSCLI_VERSION: &str = "1.46.2";
/// Profile holding the developer user's access key.
pub const DEVELOPER_PROFILE: &str = "dev";
/// Profile assuming `LangflowLocalRole` from [`DEVELOPER_PROFILE`]; the default (`AWS_PROFILE`).
pub const LOCAL_ROLE_PROFILE: &str = "local";
/// Name of the API key `env` creates in a tenant.
const API_KEY_NAME: &str = "langflow-infra env";
/// Variables `env` unsets: they would override the profiles.
pub const UNSET: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ENDPOINT_URL_STS",
    "PGPASSWORD",
    "PGSERVICE",
];

/// Output syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    /// `export K='v'` (bash, zsh, sh).
    Bash,
    /// `set -gx K 'v'`.
    Fish,
    /// One JSON object.
    Json,
}

impl std::str::FromStr for Shell {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "bash" | "sh" | "zsh" => Ok(Shell::Bash),
            "fish" => Ok(Shell::Fish),
            "json" => Ok(Shell::Json),
            _ => bail!("unknown shell {s:?}; use bash, fish or json"),
        }
    }
}

/// What `env` prepared: variables to set, variables to unset, files written.
#[derive(Debug, Clone, Serialize)]
pub struct DevEnv {
    /// Tenant prefix, when one was asked for.
    pub tenant: Option<String>,
    /// Variables to export.
    pub vars: BTreeMap<String, String>,
    /// Variables to unset.
    pub unset: Vec<String>,
    /// Files written (0600).
    pub files: Vec<PathBuf>,
}

/// The directory `env` writes to.
pub fn env_dir(config: &Config) -> PathBuf {
    config.state_dir.join("env")
}

/// The managed venv with the pinned AWS CLI (tests run the real `aws` from it).
pub fn awscli_venv(config: &Config) -> Venv {
    Venv::new(
        &config.venv_dir(),
        &format!("awscli-{AWSCLI_VERSION}"),
        &[&format!("awscli=={AWSCLI_VERSION}")],
    )
}

/// Prepares the files and variables for the running stack; `tenant` is a prefix or schema id.
pub async fn prepare(stack: &Stack, tenant: Option<&str>) -> Result<DevEnv> {
    let config = stack.config();
    let state = stack.running_state()?;
    let (pg_port, aws_port) = (
        Stack::service_port(&state, "postgres")?,
        Stack::service_port(&state, "aws")?,
    );
    let dir = env_dir(config);
    crate::state::create_private_dir(&dir)?;
    let tenancy = Tenancy::for_running_stack(config, stack.files())?;
    let mut vars = BTreeMap::new();
    let mut files = Vec::new();

    // Postgres: the tenant's own role (sees only its schema) or the superuser.
    let found = match tenant {
        Some(t) => {
            let schemas = tenancy.schema_list().await?;
            let found = schemas
                .into_iter()
                .find(|s| s.prefix == t || s.schema == t)
                .ok_or_else(|| {
                    anyhow!("no tenant {t:?}; see `cargo xtask tenant schema-list` for prefixes")
                })?;
            Some(found)
        }
        None => None,
    };
    let (target, pgpass_name) = match &found {
        Some(s) => (
            tenancy.tenant_target(&s.schema)?,
            format!("{}.pgpass", s.prefix),
        ),
        None => (
            tenancy.admin_target().clone(),
            "postgres.pgpass".to_string(),
        ),
    };
    debug_assert_eq!(target.port, pg_port);
    let pgpass = dir.join(pgpass_name);
    crate::state::write_private(
        &pgpass,
        crate::bundle::restore::pgpass_line(&target).as_bytes(),
    )?;
    files.push(pgpass.clone());
    vars.insert("PGHOST".into(), "127.0.0.1".into());
    vars.insert("PGPORT".into(), target.port.to_string());
    vars.insert("PGUSER".into(), target.user.clone());
    vars.insert("PGDATABASE".into(), target.database.clone());
    vars.insert("PGPASSFILE".into(), pgpass.display().to_string());
    vars.insert("PGSSLMODE".into(), "disable".into());

    // AWS: the credential guide's profiles against the emulator.
    let (config_file, credentials_file) = write_aws_files(config, &dir, aws_port)?;
    files.push(config_file.clone());
    files.push(credentials_file.clone());
    vars.insert("AWS_CONFIG_FILE".into(), config_file.display().to_string());
    vars.insert(
        "AWS_SHARED_CREDENTIALS_FILE".into(),
        credentials_file.display().to_string(),
    );
    vars.insert("AWS_PROFILE".into(), LOCAL_ROLE_PROFILE.into());
    vars.insert("AWS_REGION".into(), config.aws.region.clone());
    vars.insert("AWS_DEFAULT_REGION".into(), config.aws.region.clone());
    vars.insert("AWS_EC2_METADATA_DISABLED".into(), "true".into());
    vars.insert(
        "LANGFLOW_INFRA_TENANT_BUCKET".into(),
        config.aws.tenant_bucket.clone(),
    );

    // Langflow: the tenant's URL through the gateway and an API key of its operator user.
    if let Some(schema) = &found {
        let endpoint = stack
            .tenant_endpoints()
            .await?
            .into_iter()
            .find(|e| e.prefix == schema.prefix)
            .ok_or_else(|| {
                anyhow!(
                    "tenant {} has no running instance behind the gateway; run `cargo xtask up`",
                    schema.prefix
                )
            })?;
        let key_file = dir.join(format!("{}.langflow-api-key", schema.prefix));
        let operator = tenancy.tenant_secrets(&schema.schema)?.operator_password;
        let key = api_key(&endpoint.url, &key_file, &operator).await?;
        files.push(key_file);
        vars.insert("LANGFLOW_URL".into(), endpoint.url.clone());
        vars.insert("LANGFLOW_API_KEY".into(), key);
        vars.insert("LANGFLOW_INFRA_TENANT_SCHEMA".into(), schema.schema.clone());
    }
    Ok(DevEnv {
        tenant: found.map(|s| s.prefix),
        vars,
        unset: UNSET.iter().map(|s| s.to_string()).collect(),
        files,
    })
}

/// Writes `aws/config` and `aws/credentials` (0600) with the `dev` and `local` profiles.
fn write_aws_files(config: &Config, dir: &Path, aws_port: u16) -> Result<(PathBuf, PathBuf)> {
    let ids = crate::credentials::read_identities(config)?;
    let aws_dir = dir.join("aws");
    crate::state::create_private_dir(&aws_dir)?;
    let endpoint = crate::services::aws::endpoint(aws_port);
    let region = &config.aws.region;
    let common = format!(
        "region = {region}\nendpoint_url = {endpoint}\ns3 =\n    addressing_style = path\n"
    );
    let config_text = format!(
        "# Written by `cargo xtask env`: the local stack's emulator at {endpoint}.\n\
         [profile {DEVELOPER_PROFILE}]\n{common}\n\
         [profile {LOCAL_ROLE_PROFILE}]\n{common}role_arn = {role}\nsource_profile = {DEVELOPER_PROFILE}\nrole_session_name = langflow-local\n",
        role = ids.local_role_arn,
    );
    let credentials_text = format!(
        "[{DEVELOPER_PROFILE}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        ids.developer_access_key_id, ids.developer_secret_access_key
    );
    let config_file = aws_dir.join("config");
    let credentials_file = aws_dir.join("credentials");
    crate::state::write_private(&config_file, config_text.as_bytes())?;
    crate::state::write_private(&credentials_file, credentials_text.as_bytes())?;
    Ok((config_file, credentials_file))
}

/// The tenant API key kept in `key_file`, or a new one of the operator user when there is none
/// or it no longer works (a tenant re-created, a key deleted).
async fn api_key(tenant_url: &str, key_file: &Path, operator_password: &str) -> Result<String> {
    let client = TenantClient::new(tenant_url);
    if let Ok(existing) = std::fs::read_to_string(key_file) {
        let existing = existing.trim().to_string();
        let answer = client
            .get("api/v1/users/whoami", &Auth::ApiKey(&existing))
            .await?;
        if answer.status == 200 {
            return Ok(existing);
        }
    }
    let token = client
        .token(OPERATOR_USERNAME, operator_password)
        .await
        .with_context(|| format!("cannot log in to {tenant_url} as the harness's operator"))?;
    let key = client.create_api_key(&token, API_KEY_NAME).await?;
    crate::state::write_private(key_file, format!("{key}\n").as_bytes())?;
    Ok(key)
}

/// The script to `eval` (or the JSON object).
pub fn render(env: &DevEnv, shell: Shell) -> String {
    let mut out = String::new();
    match shell {
        Shell::Json => {
            return serde_json::to_string_pretty(env).unwrap_or_default();
        }
        Shell::Bash => {
            out.push_str(&format!(
                "# langflow-infra: eval \"$(cargo xtask env{})\"\n",
                env.tenant
                    .as_ref()
                    .map(|t| format!(" --tenant {t}"))
                    .unwrap_or_default()
            ));
            out.push_str(&format!("unset {};\n", env.unset.join(" ")));
            for (k, v) in &env.vars {
                out.push_str(&format!("export {k}='{}';\n", v.replace('\'', "'\\''")));
            }
        }
        Shell::Fish => {
            out.push_str(&format!(
                "# langflow-infra: cargo xtask env --shell fish{} | source\n",
                env.tenant
                    .as_ref()
                    .map(|t| format!(" --tenant {t}"))
                    .unwrap_or_default()
            ));
            for k in &env.unset {
                out.push_str(&format!("set -e {k} 2>/dev/null;\n"));
            }
            for (k, v) in &env.vars {
                let escaped = v.replace('\\', "\\\\").replace('\'', "\\'");
                out.push_str(&format!("set -gx {k} '{escaped}';\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_quote_values() {
        let env = DevEnv {
            tenant: Some("acme".into()),
            vars: BTreeMap::from([("A".to_string(), "it's $HOME `x` \\".to_string())]),
            unset: vec!["B".into()],
            files: Vec::new(),
        };
        let bash = render(&env, Shell::Bash);
        assert!(bash.contains("unset B;"), "{bash}");
        assert!(bash.contains("export A='it'\\''s $HOME `x` \\';"), "{bash}");
        let fish = render(&env, Shell::Fish);
        assert!(
            fish.contains("set -gx A 'it\\'s $HOME `x` \\\\';"),
            "{fish}"
        );
        let json: serde_json::Value = serde_json::from_str(&render(&env, Shell::Json)).unwrap();
        assert_eq!(json["vars"]["A"], "it's $HOME `x` \\");
    }
}
