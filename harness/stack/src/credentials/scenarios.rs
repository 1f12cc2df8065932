//! The credential scenarios: each prepares what a real deployment or developer machine would
//! have (environment variables, a token file, CLI `config`/`credentials` files), runs the Rust
//! probe (aws-config) and the Python probe (boto3, from a managed venv) in a clean process
//! environment, and compares the provider that won and the `GetCallerIdentity` ARN with what is
//! expected. Denials are explained: which trust-policy or token condition failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;

use super::iam_setup::Identities;
use super::oidc::{self, SigningKey, TokenClaims, STS_AUDIENCE};
use super::probe::ProbeOutput;
use super::region;
use super::{K8S_NAMESPACE, SERVICE_ACCOUNT};

/// How to run the Rust probe: a program and its leading arguments.
#[derive(Debug, Clone)]
pub struct ProbeCommand {
    /// Executable.
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<String>,
}

/// Where the scenarios run.
pub struct ScenarioEnv {
    /// Identities in the emulator.
    pub identities: Identities,
    /// The issuer's signing key.
    pub key: SigningKey,
    /// Port of the identity server (issuer + STS).
    pub identity_port: u16,
    /// Port of the AWS emulator.
    pub aws_port: u16,
    /// Region for scenarios that do not set one.
    pub region: String,
    /// The Rust probe.
    pub rust_probe: ProbeCommand,
    /// Python interpreter with boto3 (a managed venv's); `None` skips the Python runs.
    pub python: Option<PathBuf>,
    /// Scratch directory (token, config files per scenario).
    pub work_dir: PathBuf,
    /// Scenarios not run, with the reason: their premise is missing from the emulator
    /// (`localstack does not enforce IAM trust policies`).
    pub skip: BTreeMap<String, String>,
}

/// Which SDK resolved the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sdk {
    /// aws-config (Rust).
    Rust,
    /// boto3 (Python).
    Python,
}

impl std::fmt::Display for Sdk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sdk::Rust => "rust (aws-config)",
            Sdk::Python => "python (boto3)",
        })
    }
}

/// What a scenario must produce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Expectation {
    /// Credentials from `provider`, and a caller ARN starting with `arn_prefix`.
    Identity {
        /// Provider that must win.
        provider: String,
        /// Expected caller ARN prefix.
        arn_prefix: String,
    },
    /// Refused by STS with this error code.
    Denied {
        /// STS error code.
        code: String,
    },
    /// Refused by the harness before any call, with a message containing `fix`.
    CaughtBeforeCall {
        /// Text the message must contain.
        fix: String,
    },
}

impl std::fmt::Display for Expectation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expectation::Identity {
                provider,
                arn_prefix,
            } => write!(f, "{provider} → {arn_prefix}…"),
            Expectation::Denied { code } => write!(f, "denied ({code})"),
            Expectation::CaughtBeforeCall { .. } => write!(f, "caught before any call"),
        }
    }
}

/// How a scenario's web identity token differs from the good one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenVariant {
    Good,
    ServiceAccount(&'static str),
    Namespace(&'static str),
    Audience(&'static str),
    UnregisteredIssuer,
    Expired,
    ForeignKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    WebIdentity(TokenVariant),
    Profile,
    ProfileRegionTypo,
    AssumeRoleProfile,
    EnvBeatsWebIdentity,
}

/// One scenario of the chain.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Short name (`irsa`, `irsa-wrong-sa`, …).
    pub name: &'static str,
    /// What it sets up.
    pub description: &'static str,
    setup: Setup,
    /// What must come out.
    pub expect: Expectation,
}

/// Result of one scenario under one SDK.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    /// Scenario name.
    pub scenario: String,
    /// SDK.
    pub sdk: Sdk,
    /// What was expected.
    pub expected: Expectation,
    /// What the probe reported (absent when caught before any call).
    pub observed: Option<ProbeOutput>,
    /// Whether the outcome matched (false when skipped).
    pub passed: bool,
    /// Not run: the emulator lacks the scenario's premise (the reason); never counted as passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Why: for denials, the condition that failed; for mismatches, what differed.
    pub explanation: Vec<String>,
    /// Wall time.
    pub ms: u128,
}

/// The scenario set for these identities.
pub fn scenarios(ids: &Identities) -> Vec<Scenario> {
    let assumed = |role_arn: &str| {
        let name = role_arn.rsplit('/').next().unwrap_or_default();
        format!("arn:aws:sts::{}:assumed-role/{name}/", ids.account_id)
    };
    let irsa = Expectation::Identity {
        provider: "web-identity".into(),
        arn_prefix: assumed(&ids.role_arn),
    };
    let denied = |code: &str| Expectation::Denied { code: code.into() };
    let web = |name, description, variant, expect| Scenario {
        name,
        description,
        setup: Setup::WebIdentity(variant),
        expect,
    };
    vec![
        web(
            "irsa",
            "AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE for langflow/langflow-sa",
            TokenVariant::Good,
            irsa,
        ),
        web(
            "irsa-wrong-sa",
            "token for service account default-sa",
            TokenVariant::ServiceAccount("default-sa"),
            denied("AccessDenied"),
        ),
        web(
            "irsa-wrong-namespace",
            "token for namespace default",
            TokenVariant::Namespace("default"),
            denied("AccessDenied"),
        ),
        web(
            "irsa-wrong-aud",
            "token with aud=langflow",
            TokenVariant::Audience("langflow"),
            denied("InvalidIdentityToken"),
        ),
        web(
            "irsa-missing-provider",
            "token from an issuer with no IAM OIDC provider",
            TokenVariant::UnregisteredIssuer,
            denied("InvalidIdentityToken"),
        ),
        web(
            "irsa-expired",
            "token expired 10 minutes ago",
            TokenVariant::Expired,
            denied("ExpiredTokenException"),
        ),
        web(
            "irsa-foreign-key",
            "token signed by a key the issuer does not publish",
            TokenVariant::ForeignKey,
            denied("InvalidIdentityToken"),
        ),
        Scenario {
            name: "profile",
            description: "AWS_PROFILE=dev with keys in a credentials file",
            setup: Setup::Profile,
            expect: Expectation::Identity {
                provider: "profile".into(),
                arn_prefix: ids.developer_arn.clone(),
            },
        },
        Scenario {
            name: "profile-region-typo",
            description: "profile dev with region = us-east1",
            setup: Setup::ProfileRegionTypo,
            expect: Expectation::CaughtBeforeCall {
                fix: "did you mean \"us-east-1\"".into(),
            },
        },
        Scenario {
            name: "assume-role",
            description: "profile local: role_arn LangflowLocalRole + source_profile dev",
            setup: Setup::AssumeRoleProfile,
            expect: Expectation::Identity {
                provider: "assume-role".into(),
                arn_prefix: assumed(&ids.local_role_arn),
            },
        },
        Scenario {
            name: "precedence-env-over-web-identity",
            description: "static AWS_ACCESS_KEY_ID/SECRET plus IRSA variables",
            setup: Setup::EnvBeatsWebIdentity,
            expect: Expectation::Identity {
                provider: "environment".into(),
                arn_prefix: ids.developer_arn.clone(),
            },
        },
    ]
}

/// Claims for a token variant.
fn claims_for(env: &ScenarioEnv, variant: TokenVariant) -> TokenClaims {
    let issuer = &env.identities.issuer;
    let (mut ns, mut sa, mut aud, mut ttl) = (K8S_NAMESPACE, SERVICE_ACCOUNT, STS_AUDIENCE, 3600);
    let mut claims_issuer = issuer.clone();
    match variant {
        TokenVariant::ServiceAccount(other) => sa = other,
        TokenVariant::Namespace(other) => ns = other,
        TokenVariant::Audience(other) => aud = other,
        TokenVariant::Expired => ttl = -600,
        TokenVariant::UnregisteredIssuer => {
            claims_issuer = format!(
                "http://127.0.0.1:{}/id/00000000000000000000000000000000",
                env.identity_port
            )
        }
        TokenVariant::Good | TokenVariant::ForeignKey => {}
    }
    TokenClaims::service_account(&claims_issuer, ns, sa, aud, ttl)
}

/// Runs every scenario under both SDKs (Python only when an interpreter is given).
pub async fn run_all(env: &ScenarioEnv) -> Result<Vec<ScenarioResult>> {
    std::fs::create_dir_all(&env.work_dir)?;
    let mut jobs = Vec::new();
    for scenario in scenarios(&env.identities) {
        jobs.push((scenario.clone(), Sdk::Rust));
        if env.python.is_some() {
            jobs.push((scenario, Sdk::Python));
        }
    }
    let results = futures::stream::iter(jobs)
        .map(|(scenario, sdk)| async move { run_one(env, &scenario, sdk).await })
        .buffered(4)
        .collect::<Vec<_>>()
        .await;
    results.into_iter().collect()
}

/// Runs one scenario under one SDK.
pub async fn run_one(env: &ScenarioEnv, scenario: &Scenario, sdk: Sdk) -> Result<ScenarioResult> {
    let started = Instant::now();
    if let Some(reason) = env.skip.get(scenario.name) {
        return Ok(ScenarioResult {
            scenario: scenario.name.to_string(),
            sdk,
            expected: scenario.expect.clone(),
            observed: None,
            passed: false,
            skipped: Some(reason.clone()),
            explanation: vec![format!("skipped: {reason}")],
            ms: 0,
        });
    }
    let dir = env.work_dir.join(format!(
        "{}-{}",
        scenario.name,
        match sdk {
            Sdk::Rust => "rust",
            Sdk::Python => "python",
        }
    ));
    std::fs::create_dir_all(&dir)?;
    let (vars, token) = prepare(env, scenario, &dir)?;
    let mut result = ScenarioResult {
        scenario: scenario.name.to_string(),
        sdk,
        expected: scenario.expect.clone(),
        observed: None,
        passed: false,
        skipped: None,
        explanation: Vec::new(),
        ms: 0,
    };
    // What the harness checks before any call: region names in the config file and env.
    let mut caught = Vec::new();
    if let Ok(text) = std::fs::read_to_string(dir.join("config")) {
        for (profile, line, message) in region::lint_config(&text) {
            caught.push(format!(
                "{message} (profile {profile}, line {line} of the AWS config file)"
            ));
        }
    }
    for name in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
        if let Some(Err(message)) = vars.get(name).map(|r| region::check_region(r)) {
            caught.push(format!("{name}: {message}"));
        }
    }
    if !caught.is_empty() {
        result.passed = matches!(&scenario.expect, Expectation::CaughtBeforeCall { fix } if caught.iter().any(|c| c.contains(fix.as_str())));
        result.explanation = caught;
        result.ms = started.elapsed().as_millis();
        return Ok(result);
    }
    let observed = run_probe(env, sdk, &vars, &dir).await?;
    let (passed, mut explanation) = judge(&scenario.expect, &observed);
    if observed.error.is_some() {
        if let Some(token) = &token {
            let trust = match live_trust_policy(env).await {
                Ok(trust) => trust,
                Err(e) => {
                    explanation.push(format!(
                        "cannot read the role's current trust policy ({e:#}); explaining against the provisioned one"
                    ));
                    env.identities.trust_policy.clone()
                }
            };
            explanation.extend(explain_web_identity(env, &trust, token));
        }
    }
    result.passed = passed;
    result.explanation = explanation;
    result.observed = Some(observed);
    result.ms = started.elapsed().as_millis();
    Ok(result)
}

/// Writes the scenario's files and returns its environment (and its token, if any).
fn prepare(
    env: &ScenarioEnv,
    scenario: &Scenario,
    dir: &Path,
) -> Result<(BTreeMap<String, String>, Option<String>)> {
    let ids = &env.identities;
    let mut vars = BTreeMap::new();
    let mut token = None;
    let config_path = dir.join("config");
    let credentials_path = dir.join("credentials");
    let developer_keys = format!(
        "[dev]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        ids.developer_access_key_id, ids.developer_secret_access_key
    );
    let mut write_token =
        |variant: TokenVariant, vars: &mut BTreeMap<String, String>| -> Result<()> {
            let claims = claims_for(env, variant);
            let signed = if variant == TokenVariant::ForeignKey {
                SigningKey::generate()?.sign(&claims)?
            } else {
                env.key.sign(&claims)?
            };
            let path = dir.join("token");
            harness_core::state::write_private(&path, signed.as_bytes())?;
            vars.insert("AWS_ROLE_ARN".into(), ids.role_arn.clone());
            vars.insert(
                "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
                path.display().to_string(),
            );
            vars.insert(
                "AWS_ROLE_SESSION_NAME".into(),
                format!("langflow-infra-{}", scenario.name),
            );
            token = Some(signed);
            Ok(())
        };
    match scenario.setup {
        Setup::WebIdentity(variant) => {
            write_token(variant, &mut vars)?;
            vars.insert("AWS_REGION".into(), env.region.clone());
            vars.insert("AWS_DEFAULT_REGION".into(), env.region.clone());
        }
        Setup::Profile | Setup::ProfileRegionTypo => {
            let region = if scenario.setup == Setup::ProfileRegionTypo {
                "us-east1"
            } else {
                env.region.as_str()
            };
            std::fs::write(&config_path, format!("[profile dev]\nregion = {region}\n"))?;
            harness_core::state::write_private(&credentials_path, developer_keys.as_bytes())?;
            vars.insert("AWS_PROFILE".into(), "dev".into());
        }
        Setup::AssumeRoleProfile => {
            std::fs::write(
                &config_path,
                format!(
                    "[profile dev]\nregion = {region}\n\n[profile local]\nregion = {region}\nrole_arn = {}\nsource_profile = dev\nrole_session_name = langflow-local\n",
                    ids.local_role_arn,
                    region = env.region
                ),
            )?;
            harness_core::state::write_private(&credentials_path, developer_keys.as_bytes())?;
            vars.insert("AWS_PROFILE".into(), "local".into());
        }
        Setup::EnvBeatsWebIdentity => {
            write_token(TokenVariant::Good, &mut vars)?;
            vars.insert(
                "AWS_ACCESS_KEY_ID".into(),
                ids.developer_access_key_id.clone(),
            );
            vars.insert(
                "AWS_SECRET_ACCESS_KEY".into(),
                ids.developer_secret_access_key.clone(),
            );
            vars.insert("AWS_REGION".into(), env.region.clone());
            vars.insert("AWS_DEFAULT_REGION".into(), env.region.clone());
        }
    }
    vars.insert("AWS_CONFIG_FILE".into(), config_path.display().to_string());
    vars.insert(
        "AWS_SHARED_CREDENTIALS_FILE".into(),
        credentials_path.display().to_string(),
    );
    Ok((vars, token))
}

/// Runs a probe in a clean environment: only the scenario's variables, the emulator endpoints,
/// `HOME` in the scratch dir (no real `~/.aws`), and IMDS disabled (no calls off 127.0.0.1).
async fn run_probe(
    env: &ScenarioEnv,
    sdk: Sdk,
    vars: &BTreeMap<String, String>,
    dir: &Path,
) -> Result<ProbeOutput> {
    let mut command = match sdk {
        Sdk::Rust => {
            let mut c = tokio::process::Command::new(&env.rust_probe.program);
            c.args(&env.rust_probe.args);
            c
        }
        Sdk::Python => {
            let python = env.python.as_ref().context("no Python interpreter")?;
            let script = dir.join("creds_probe.py");
            std::fs::write(&script, PYTHON_PROBE)?;
            let mut c = tokio::process::Command::new(python);
            c.arg(script);
            c
        }
    };
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env(
            "AWS_ENDPOINT_URL",
            crate::services::aws::endpoint(env.aws_port),
        )
        .env(
            "AWS_ENDPOINT_URL_STS",
            format!("http://127.0.0.1:{}", env.identity_port),
        )
        .envs(vars)
        .kill_on_drop(true);
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), command.output())
        .await
        .context("credential probe timed out after 60 s")?
        .context("cannot run the credential probe")?;
    last_json_line(&output, &format!("the {sdk} probe"))
}

/// The last line of `output`'s stdout that is a JSON object, parsed: how the harness's Python
/// helpers report. Fails naming `what`, its exit status and stderr when there is none.
pub fn last_json_line<T: serde::de::DeserializeOwned>(
    output: &std::process::Output,
    what: &str,
) -> Result<T> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| {
            format!(
                "{what} printed no result (exit {}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )
        })?;
    serde_json::from_str(line).with_context(|| format!("{what} printed {line:?}"))
}

/// The Python probe's source (written next to each scenario's files).
pub const PYTHON_PROBE: &str = include_str!("../../../python/creds_probe.py");

/// Compares an outcome with the expectation.
fn judge(expect: &Expectation, observed: &ProbeOutput) -> (bool, Vec<String>) {
    match expect {
        Expectation::Identity {
            provider,
            arn_prefix,
        } => {
            let mut why = Vec::new();
            if observed.provider.as_deref() != Some(provider.as_str()) {
                why.push(format!(
                    "provider {} won, expected {provider}",
                    observed.provider.as_deref().unwrap_or("none")
                ));
            }
            match &observed.arn {
                Some(arn) if arn.starts_with(arn_prefix.as_str()) => {}
                Some(arn) => why.push(format!("caller is {arn}, expected {arn_prefix}…")),
                None => why.push(format!(
                    "no identity: {}",
                    observed.error.as_deref().unwrap_or("no error reported")
                )),
            }
            (why.is_empty(), why)
        }
        Expectation::Denied { code } => {
            if observed.arn.is_some() {
                return (
                    false,
                    vec![format!(
                        "was NOT denied: resolved as {}",
                        observed.arn.as_deref().unwrap_or_default()
                    )],
                );
            }
            let got = observed.error_code.as_deref().unwrap_or("none");
            if got == code {
                (true, Vec::new())
            } else {
                (
                    false,
                    vec![format!(
                        "denied with {got}, expected {code}: {}",
                        observed.error.as_deref().unwrap_or_default()
                    )],
                )
            }
        }
        Expectation::CaughtBeforeCall { .. } => (
            false,
            vec!["the harness did not catch it before the call".into()],
        ),
    }
}

/// `LangflowRole`'s trust policy as the emulator holds it now (it may have been changed since
/// provisioning — that is what a check is for).
async fn live_trust_policy(env: &ScenarioEnv) -> Result<Value> {
    let sdk = crate::services::aws::sdk_config(env.aws_port, &env.region).await;
    let name = env
        .identities
        .role_arn
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let role = aws_sdk_iam::Client::new(&sdk)
        .get_role()
        .role_name(name)
        .send()
        .await
        .map_err(aws_sdk_iam::Error::from)?;
    let document = role
        .role()
        .and_then(|r| r.assume_role_policy_document())
        .context("role without a trust policy")?;
    // IAM returns policy documents URL-encoded.
    let decoded = if document.trim_start().starts_with('{') {
        document.to_string()
    } else {
        super::identity_server::url_decode(document)
    };
    Ok(serde_json::from_str(&decoded)?)
}

/// Explains a refused web identity token against `trust` (the role's trust policy): each STS and
/// trust-policy condition, in the order STS evaluates them, and whether the token meets it.
pub fn explain_web_identity(env: &ScenarioEnv, trust: &Value, token: &str) -> Vec<String> {
    let ids = &env.identities;
    let Ok((_, claims)) = oidc::decode_unverified(token) else {
        return vec!["the token is not a JWT".into()];
    };
    let text = |key: &str| claims[key].as_str().unwrap_or_default().to_string();
    let (iss, sub, aud) = (text("iss"), text("sub"), text("aud"));
    let mut why = Vec::new();
    let host_path = oidc::provider_host_path(&iss);
    let provider_arn = format!("arn:aws:iam::{}:oidc-provider/{host_path}", ids.account_id);
    if provider_arn != ids.provider_arn {
        why.push(format!(
            "issuer {iss} has no IAM OIDC provider in account {} (registered: {}); create it with `aws iam create-open-id-connect-provider` / `eksctl utils associate-iam-oidc-provider`",
            ids.account_id, ids.provider_arn
        ));
    }
    if aud != STS_AUDIENCE {
        why.push(format!(
            "token aud is {aud:?}; the provider's client id list is [\"{STS_AUDIENCE}\"] (set the projected token's audience to {STS_AUDIENCE})"
        ));
    }
    if oidc::verify_signature(token, &env.key.jwks()).is_err() && provider_arn == ids.provider_arn {
        why.push("the token's signature does not verify with the issuer's published JWKS (signed by another key)".into());
    }
    let exp = claims["exp"].as_u64().unwrap_or(0);
    let now = oidc::unix_now();
    if exp <= now {
        why.push(format!(
            "token expired {} s ago (exp {exp}); the kubelet refreshes projected tokens — a stale copy or a stopped refresher is the usual cause",
            now - exp
        ));
    }
    for statement in trust["Statement"].as_array().into_iter().flatten() {
        let federated = statement["Principal"]["Federated"]
            .as_str()
            .unwrap_or_default();
        if federated != provider_arn {
            why.push(format!(
                "trust policy principal is {federated}, the token's provider is {provider_arn}"
            ));
        }
        for (operator, conditions) in statement["Condition"].as_object().into_iter().flatten() {
            for (key, wanted) in conditions.as_object().into_iter().flatten() {
                let claim = key.rsplit(':').next().unwrap_or_default();
                let actual = match claim {
                    "sub" => &sub,
                    "aud" => &aud,
                    _ => continue,
                };
                let wanted_values: Vec<&str> = match wanted {
                    Value::String(s) => vec![s.as_str()],
                    Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                    _ => Vec::new(),
                };
                let matches = wanted_values.iter().any(|w| {
                    if operator == "StringLike" {
                        wildcard_match(w, actual)
                    } else {
                        w == actual
                    }
                });
                if !matches {
                    why.push(format!(
                        "{claim}: the trust policy requires {operator} {wanted}, but the token's {claim} is {actual:?} (condition key {key})"
                    ));
                }
            }
        }
    }
    if why.is_empty() {
        why.push("the token meets every condition the harness knows; see the identity log".into());
    }
    why
}

fn wildcard_match(pattern: &str, value: &str) -> bool {
    let regex = format!(
        "^{}$",
        regex::escape(pattern)
            .replace(r"\*", ".*")
            .replace(r"\?", ".")
    );
    regex::Regex::new(&regex).is_ok_and(|r| r.is_match(value))
}
