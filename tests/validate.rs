//! `validate` on the project's own templates (clean, cfn-lint included) and on deliberately broken
//! fixtures under fixtures/cfn/, each asserting the exact finding it must produce.

mod common;

use harness::config::Config;
use harness::validate::{run, Severity, ValidateOptions};

/// `severity check rule file:line` of every finding of a fixture (cfn-lint off unless asked).
async fn findings(case: &str, lint: bool) -> Vec<String> {
    let root = common::repo_root();
    let config = Config::load(&root).unwrap();
    let options = ValidateOptions {
        dir: root.join("fixtures/cfn").join(case),
        lint,
        rules: root.join("rules"),
        extra_rules: Vec::new(),
        image: None,
    };
    let report = run(&config, &options).await.unwrap();
    report
        .findings
        .iter()
        .map(|f| {
            format!(
                "{:?} {} {} {}:{}",
                f.severity, f.check, f.rule, f.file, f.line
            )
        })
        .collect()
}

#[tokio::test]
async fn project_templates_pass_clean_with_cfn_lint() {
    let root = common::repo_root();
    let config = Config::load(&root).unwrap();
    let options = ValidateOptions {
        dir: root.join("aws"),
        lint: true,
        rules: root.join("rules"),
        extra_rules: Vec::new(),
        image: None,
    };
    let report = run(&config, &options).await.unwrap();
    assert_eq!(report.templates.len(), 4, "{:?}", report.templates);
    assert_eq!(report.parameter_files.len(), 8);
    let not_info: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.severity != Severity::Info)
        .collect();
    assert!(not_info.is_empty(), "{not_info:#?}");
    assert_eq!(report.errors(), 0);
}

/// Both shapes of tenant routing on the ALB validate clean, cfn-lint included: path-pattern rules
/// (one shared origin, as deployed) and host-header rules with a certificate covering the hosts.
#[tokio::test]
async fn tenant_routing_by_path_and_by_host_both_validate() {
    let root = common::repo_root();
    let config = Config::load(&root).unwrap();
    for shape in ["path", "host"] {
        let options = ValidateOptions {
            dir: root.join("fixtures/cfn-routing").join(shape),
            lint: true,
            rules: root.join("rules"),
            extra_rules: Vec::new(),
            image: None,
        };
        let report = run(&config, &options).await.unwrap();
        assert_eq!(report.templates.len(), 1, "{shape}: {:?}", report.templates);
        let not_info: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.severity != Severity::Info)
            .collect();
        assert!(not_info.is_empty(), "{shape}: {not_info:#?}");
    }
}

#[tokio::test]
async fn dangling_import_is_an_error_at_its_line() {
    assert_eq!(
        findings("dangling-import", false).await,
        [
            "Error wiring dangling-import dangling-import/rds-stack.cfn.yaml:8",
            "Info wiring unused-export dangling-import/vpc-stack.cfn.yaml:11",
        ]
    );
}

#[tokio::test]
async fn bad_parameter_file_reports_each_problem() {
    assert_eq!(
        findings("bad-params", false).await,
        [
            "Error params missing-parameter bad-params/params/app-dev.json:1",
            "Error params invalid-value bad-params/params/app-dev.json:2",
            "Error params fargate-cpu-memory bad-params/params/app-dev.json:4",
            "Error params invalid-value bad-params/params/app-dev.json:5",
            "Error params unknown-parameter bad-params/params/app-dev.json:6",
        ]
    );
}

#[tokio::test]
async fn malformed_yaml_and_unknown_tags_are_file_line_errors() {
    assert_eq!(
        findings("malformed", false).await,
        ["Error parse yaml-syntax malformed/bad-stack.cfn.yaml:6"]
    );
    assert_eq!(
        findings("unknown-tag", false).await,
        ["Error parse unknown-tag unknown-tag/tag-stack.cfn.yaml:7"]
    );
}

#[tokio::test]
async fn import_cycle_is_reported() {
    assert_eq!(
        findings("cycle", false).await,
        ["Error wiring import-cycle cycle/a-stack.cfn.yaml:1"]
    );
}

#[tokio::test]
async fn cfn_lint_findings_join_the_report() {
    assert_eq!(
        findings("lint-error", true).await,
        [
            // (checkov, the optional linter, joins the report the same way)
            "Error checkov CKV_AWS_26 lint-error/topic-stack.cfn.yaml:2",
            "Error cfn-lint E3002 lint-error/topic-stack.cfn.yaml:6"
        ]
    );
}

#[tokio::test]
async fn missing_directory_is_a_clear_error() {
    let config = Config::load(&common::repo_root()).unwrap();
    let options = ValidateOptions {
        dir: common::repo_root().join("no-such-dir"),
        lint: false,
        rules: common::repo_root().join("rules"),
        extra_rules: Vec::new(),
        image: None,
    };
    let err = run(&config, &options).await.unwrap_err().to_string();
    assert!(err.contains("is not a directory"), "{err}");
}

/// `rule line message` of the guard findings for one fixture under fixtures/cfn/guard/.
fn guard_findings(rule: &str) -> Vec<String> {
    use harness::validate::{guard, params, template};
    let root = common::repo_root();
    let dir = root.join("fixtures/cfn/guard");
    let file = format!("{rule}-stack.cfn.yaml");
    let loaded = template::load(&dir.join(&file), &file).unwrap();
    let param_files: Vec<_> = std::fs::read_dir(dir.join("params"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| params::load(&p, &p.display().to_string()).ok())
        .collect();
    let (rules, problems) = guard::load_rules(&root.join("rules"), &|p| p.display().to_string());
    assert!(problems.is_empty(), "{problems:#?}");
    guard::check(&[loaded], &param_files, &rules)
        .iter()
        .map(|f| format!("{} {} {}", f.rule, f.line, f.message))
        .collect()
}

#[test]
fn each_guard_rule_catches_its_fixture() {
    let expected: &[(&str, &[&str])] = &[
        (
            "rds_encrypted_with_cmk",
            &[
                "rds_encrypted_with_cmk 7 the Aurora cluster's storage is not encrypted",
                "rds_encrypted_with_cmk 4 the Aurora cluster is not encrypted with a customer-managed KMS key",
            ],
        ),
        (
            "rds_managed_credentials",
            &[
                "rds_managed_credentials 9 the master password is a template value",
                "rds_managed_credentials 4 the master credentials are not managed by Secrets Manager",
            ],
        ),
        (
            "rds_not_public",
            &["rds_not_public 6 the database instance is publicly accessible"],
        ),
        (
            "rds_protected_on_prd",
            &[
                "rds_protected_on_prd 13 [prd] deletion protection is off on prd",
                "rds_protected_on_prd 14 [prd] prd keeps backups for less than 7 days",
            ],
        ),
        (
            "s3_encrypted_versioned_private",
            &[
                "s3_encrypted_versioned_private 4 the bucket has no default encryption",
                "s3_encrypted_versioned_private 4 the bucket is not versioned",
                "s3_encrypted_versioned_private 7 public access is not fully blocked (BlockPublicPolicy)",
            ],
        ),
        (
            "s3_tls_only",
            &[
                "s3_tls_only 1 no bucket policy denies plain-HTTP access",
            ],
        ),
        (
            "alb_http_only_redirects",
            &["alb_http_only_redirects 9 an unconditional HTTP listener forwards traffic instead of redirecting to HTTPS"],
        ),
        (
            "ecs_insights_and_exec",
            &["ecs_insights_and_exec 7 Container Insights is off"],
        ),
        (
            "ecs_exec_enabled",
            &["ecs_exec_enabled 4 ECS Exec is off for the service"],
        ),
        (
            "logs_have_retention",
            &["logs_have_retention 4 the log group keeps logs forever"],
        ),
        (
            "sg_no_world_ingress_except_web",
            &["sg_no_world_ingress_except_web 12 a security group admits 0.0.0.0/0 on a port other than 80/443"],
        ),
        (
            "ecr_scan_and_lifecycle",
            &["ecr_scan_and_lifecycle 6 images are not scanned on push"],
        ),
        (
            "kms_rotation",
            &["kms_rotation 5 KMS key rotation is off"],
        ),
        (
            "alb_tenant_rules_by_path_or_host",
            &["alb_tenant_rules_by_path_or_host 8 a listener rule routes on something other than the path or the host header"],
        ),
    ];
    let mut mismatches = Vec::new();
    for (rule, want) in expected {
        let got = guard_findings(rule);
        if got != *want {
            mismatches.push(format!("{rule}: got {got:#?}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[tokio::test]
async fn sarif_and_junit_carry_the_findings() {
    let root = common::repo_root();
    let config = Config::load(&root).unwrap();
    let options = ValidateOptions {
        dir: root.join("fixtures/cfn/dangling-import"),
        lint: false,
        rules: root.join("rules"),
        extra_rules: Vec::new(),
        image: None,
    };
    let report = run(&config, &options).await.unwrap();
    let sarif: serde_json::Value =
        serde_json::from_str(&harness::validate::formats::sarif(&report)).unwrap();
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["ruleId"], "wiring/dangling-import");
    assert_eq!(results[0]["level"], "error");
    assert_eq!(
        results[0]["locations"][0]["physicalLocation"]["region"]["startLine"],
        8
    );
    let junit = harness::validate::formats::junit(&report);
    assert!(junit.contains("tests=\"4\" failures=\"1\""), "{junit}");
    assert!(
        junit.contains("dangling-import/rds-stack.cfn.yaml:8 [wiring/dangling-import]"),
        "{junit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rehearsal_deploys_the_four_stacks_into_the_emulator() {
    use harness::rehearse;
    let root = common::repo_root();
    let config = Config::load(&root).unwrap();
    let plan = harness::deploy::plan(&root.join("aws"), "dev", &[], "us-east-1").unwrap();
    let rehearsal = rehearse::run(&config, &plan).await.unwrap();
    let names: Vec<(&str, &str)> = rehearsal
        .stacks
        .iter()
        .map(|s| (s.name.as_str(), s.status.as_str()))
        .collect();
    // Exporters before importers (ecr has no imports: anywhere before fargate is fine).
    let at = |name: &str| {
        names
            .iter()
            .position(|(n, status)| *n == name && *status == "CREATE_COMPLETE")
            .unwrap_or_else(|| panic!("{name} not created: {rehearsal:#?}"))
    };
    assert!(at("langflow-acme-dev-vpc-stack") < at("langflow-acme-dev-rds-stack"));
    assert!(at("langflow-acme-dev-rds-stack") < at("langflow-acme-dev-fargate-stack"));
    assert!(at("langflow-acme-dev-ecr-stack") < 4);
    assert!(rehearsal.ok() && rehearsal.deleted);
    let fargate = &rehearsal.stacks[at("langflow-acme-dev-fargate-stack")];
    assert!(fargate
        .outputs
        .iter()
        .any(|(k, v)| k == "ApplicationLoadBalancerDNSName" && v.ends_with(".elb.amazonaws.com")));

    // A set with names of its own (no naming convention, stack names inferred from the
    // exports, a resource type the emulator does not know) deploys too.
    let variant = root.join("fixtures/cfn-variants/managed-secret");
    let plan = harness::deploy::plan(&variant, "dev", &[], "us-east-1").unwrap();
    let rehearsal = rehearse::run(&config, &plan).await.unwrap();
    assert!(rehearsal.ok(), "{rehearsal:#?}");
    assert_eq!(rehearsal.stacks[0].name, "variant-a-net");
    assert!(
        rehearsal.stacks[0]
            .skipped
            .iter()
            .any(|s| s.contains("PublicIp")),
        "{rehearsal:#?}"
    );
}

fn irsa_findings(case: &str) -> Vec<String> {
    let base = common::repo_root().join("fixtures/irsa");
    let dir = base.join(case);
    harness::validate::irsa::check(&dir.join("k8s"), &dir.join("iam"), "000000000000", &base)
        .iter()
        .map(|f| format!("{:?} {} {}:{}", f.severity, f.rule, f.file, f.line))
        .collect()
}

#[test]
fn irsa_manifests_must_agree_with_the_trust_policy() {
    // The repository's own k8s/ and iam/ agree.
    let root = common::repo_root();
    let clean =
        harness::validate::irsa::check(&root.join("k8s"), &root.join("iam"), "000000000000", &root);
    assert!(clean.is_empty(), "{clean:#?}");
    assert_eq!(
        irsa_findings("wrong-sa"),
        ["Error deployment-service-account wrong-sa/k8s/deployment.yaml:16"]
    );
    assert_eq!(
        irsa_findings("wrong-namespace"),
        ["Error trust-sub wrong-namespace/iam/langflow-role-trust.json:12"]
    );
    assert_eq!(
        irsa_findings("no-aud"),
        ["Error trust-aud no-aud/iam/langflow-role-trust.json:10"]
    );
    assert_eq!(
        irsa_findings("wrong-role"),
        ["Error service-account-role wrong-role/k8s/serviceaccount.yaml:8"]
    );
    assert_eq!(
        irsa_findings("full-access"),
        ["Warning least-privilege full-access/iam/langflow-role.json:4"]
    );
}

/// A template set AWS would deploy but whose policy findings are error-level is still rehearsed
/// (`validate --rehearse`): the findings are reported and fail the run, the stacks are created in
/// the emulator all the same (before, the rehearsal was refused until every finding was fixed).
#[test]
fn policy_findings_do_not_block_the_rehearsal() {
    let root = common::repo_root();
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("aws");
    std::fs::create_dir_all(set.join("params")).unwrap();
    std::fs::create_dir_all(set.join("apps")).unwrap();
    for entry in [
        "vpc-stack.cfn.yaml",
        "rds-stack.cfn.yaml",
        "ecr-stack.cfn.yaml",
    ] {
        std::fs::copy(root.join("aws").join(entry), set.join(entry)).unwrap();
    }
    std::fs::copy(
        root.join("aws/apps/fargate-stack.cfn.yaml"),
        set.join("apps/fargate-stack.cfn.yaml"),
    )
    .unwrap();
    for entry in std::fs::read_dir(root.join("aws/params")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), set.join("params").join(entry.file_name())).unwrap();
    }
    // A policy violation the emulator does not care about: the database key without rotation.
    let rds = set.join("rds-stack.cfn.yaml");
    let text = std::fs::read_to_string(&rds).unwrap();
    assert!(text.contains("EnableKeyRotation: true"));
    std::fs::write(
        &rds,
        text.replace("EnableKeyRotation: true", "EnableKeyRotation: false"),
    )
    .unwrap();

    let output = std::process::Command::new(common::xtask_binary())
        .args([
            "validate",
            "--no-lint",
            "--format",
            "json",
            "--rehearse",
            "dev",
            "--dir",
        ])
        .arg(&set)
        .env("LANGFLOW_INFRA_STATE_DIR", dir.path().join("state"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}); stderr: {stderr}"));
    let errors: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .collect();
    assert!(
        errors.iter().any(|f| f["message"]
            .as_str()
            .unwrap_or("")
            .to_lowercase()
            .contains("rotation")
            || f["rule"]
                .as_str()
                .unwrap_or("")
                .to_lowercase()
                .contains("rotation")),
        "the key rotation finding is reported: {errors:#?}"
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "findings fail the run; stderr: {stderr}"
    );
    assert!(!stderr.contains("not rehearsing"), "{stderr}");
    for stack in ["vpc", "rds", "ecr", "fargate"] {
        let line = format!("deploy: langflow-acme-dev-{stack}-stack ({stack}) CREATE_COMPLETE");
        assert!(stderr.contains(&line), "{line} missing: {stderr}");
    }
}

/// The `secrets` findings of `validate` on a fixture set: "severity rule resource variable | message".
async fn secrets_findings(set: &str) -> Vec<(String, String)> {
    let root = common::repo_root();
    let config = Config::load(&root).unwrap();
    let options = ValidateOptions {
        dir: root.join("fixtures/cfn-secrets").join(set),
        lint: false,
        rules: root.join("rules"),
        extra_rules: Vec::new(),
        image: None,
    };
    let report = harness::validate::run(&config, &options).await.unwrap();
    report
        .findings
        .iter()
        .filter(|f| f.check == "secrets")
        .map(|f| {
            let variable = f
                .message
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string();
            (
                format!("{:?} {} {}", f.severity, f.rule, variable),
                format!("{}:{} {}", f.file, f.line, f.message),
            )
        })
        .collect()
}

/// Secrets are found by where their value comes from, not by the variable's name: a NoEcho
/// parameter whole or inside a Fn::Sub URL, a secure dynamic reference, and a secret two stacks
/// away (exported, imported into another export's URL, imported into the task); each error names
/// the variable and the source. Plain values stay quiet; a secret-like name of unknown origin is a
/// warning; the same stacks with the URL in Secrets Manager and `Secrets:` are clean.
#[tokio::test]
async fn secrets_are_followed_by_data_flow_not_by_name() {
    let single = secrets_findings("single").await;
    let kinds: Vec<&str> = single.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "Error secret-in-environment DB_PASS",
            "Error secret-in-environment LANGFLOW_DATABASE_URL",
            "Error secret-in-environment EXTERNAL_API_KEY",
            "Warning secret-name-in-environment SESSION_TOKEN_HINT",
        ],
        "{single:#?}"
    );
    assert!(
        single[0].1.contains("is the NoEcho parameter DBPassword"),
        "{single:#?}"
    );
    assert!(
        single[1]
            .1
            .contains("carries the NoEcho parameter DBPassword"),
        "{single:#?}"
    );
    assert!(
        single[2]
            .1
            .contains("{{resolve:ssm-secure:/app/external-api-key}}"),
        "{single:#?}"
    );
    // Each finding points at its own Environment entry.
    let lines: Vec<&str> = single
        .iter()
        .map(|(_, m)| m.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            "single/app-stack.cfn.yaml:38",
            "single/app-stack.cfn.yaml:40",
            "single/app-stack.cfn.yaml:42",
            "single/app-stack.cfn.yaml:44",
        ],
        "{single:#?}"
    );

    let chain = secrets_findings("chain").await;
    assert_eq!(chain.len(), 1, "{chain:#?}");
    let (kind, message) = &chain[0];
    assert_eq!(kind, "Error secret-in-environment LANGFLOW_DATABASE_URL");
    assert!(
        message.starts_with("chain/service-stack.cfn.yaml:"),
        "{message}"
    );
    assert!(
        message.contains("the export ${?}-DatabaseUrl of chain/database-stack.cfn.yaml, which carries the export ${?}-AdminPassword of chain/secrets-stack.cfn.yaml, which carries the NoEcho parameter AdminPassword"),
        "{message}"
    );

    assert_eq!(secrets_findings("fixed").await, Vec::new());
    let name_only = secrets_findings("name-only").await;
    assert_eq!(
        name_only
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>(),
        ["Warning secret-name-in-environment DB_PASSWORD"],
        "{name_only:#?}"
    );
}

/// The `langflow` findings of `validate` on a fixture set: "severity rule resource".
async fn langflow_findings(dir: &str) -> Vec<String> {
    let root = common::repo_root();
    let config = Config::load(&root).unwrap();
    let options = ValidateOptions {
        dir: root.join(dir),
        lint: false,
        rules: root.join("rules"),
        extra_rules: Vec::new(),
        image: None,
    };
    let report = harness::validate::run(&config, &options).await.unwrap();
    report
        .findings
        .iter()
        .filter(|f| f.check == "langflow")
        .map(|f| {
            format!(
                "{:?} {} {}",
                f.severity,
                f.rule,
                f.resource.as_deref().unwrap_or("-")
            )
        })
        .collect()
}

/// Every Langflow service rule fires on the broken service (a positive each, found through the
/// references between its resources, with the stage whose parameters break it) and none on the
/// same service done right; the project's aws/ is clean, and the variants' real bugs are found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn langflow_rules_fire_on_their_positives_and_stay_quiet_on_the_fixed_service() {
    let broken = langflow_findings("fixtures/cfn-langflow/broken").await;
    for expected in [
        "Error langflow-shared-signing-key Service",
        "Error langflow-workers-need-shared-queue Service",
        "Warning langflow-workers-per-process-cache Service",
        "Error langflow-several-tasks-not-sticky Service",
        "Error langflow-health-path-redirects Pool",
        "Warning langflow-health-path-not-readiness Pool",
        "Error langflow-superuser-password-is-db-password Service",
        "Warning langflow-empty-database-default DbHost",
        "Error bucket-cors-any-origin-writes Files",
        "Error langflow-files-on-task-disk Service",
    ] {
        assert!(
            broken.iter().any(|f| f == expected),
            "{expected} missing: {broken:#?}"
        );
    }
    assert_eq!(broken.len(), 10, "{broken:#?}");
    let fixed = langflow_findings("fixtures/cfn-langflow/fixed").await;
    assert!(fixed.is_empty(), "{fixed:#?}");
    let ours = langflow_findings("aws").await;
    assert!(ours.is_empty(), "{ours:#?}");
    // A service with names of its own: 4 workers, 2 tasks not sticky, /health.
    let own = langflow_findings("fixtures/cfn-variants/own-secret").await;
    assert!(
        own.contains(&"Error langflow-several-tasks-not-sticky LangflowService".to_string()),
        "{own:#?}"
    );
    assert!(
        own.contains(&"Warning langflow-health-path-not-readiness Pool".to_string()),
        "{own:#?}"
    );
    // Static and live agree: what the replicas suite shows failing on its fault fixtures
    // (tests/images/replicas.rs) is found here without running anything.
    let stock = langflow_findings("fixtures/cfn-replicas/stock-no-key").await;
    assert!(
        stock.contains(&"Error langflow-shared-signing-key App".to_string()),
        "{stock:#?}"
    );
    assert!(
        !stock
            .iter()
            .any(|f| f.contains("shared-queue") || f.contains("not-sticky")),
        "direct event delivery needs no shared job queue: {stock:#?}"
    );
    let faults = langflow_findings("fixtures/cfn-replicas/reference-faults").await;
    for expected in [
        "Error langflow-files-on-task-disk Web",
        "Warning langflow-health-path-not-readiness Pool",
        "Error langflow-several-tasks-not-sticky Web",
    ] {
        assert!(
            faults.iter().any(|f| f == expected),
            "{expected} missing: {faults:#?}"
        );
    }
    assert!(
        !faults.iter().any(|f| f.contains("signing-key")),
        "the key seed derives one key per tenant for every task: {faults:#?}"
    );
}

/// The Control Tower rules (the pinned PyPI package, in the cache) run on aws/: every finding is
/// decided in aws/validate.toml with a reason, so aws/ has no error, and the decisions stay
/// visible — in the report and in SARIF as suppressed results naming the tool and the rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_libraries_run_and_aws_carries_reasoned_suppressions() {
    let root = common::repo_root();
    let config = Config::load(&root).unwrap();
    let options = ValidateOptions {
        dir: root.join("aws"),
        lint: true,
        rules: root.join("rules"),
        extra_rules: Vec::new(),
        image: None,
    };
    let report = run(&config, &options).await.unwrap();
    assert_eq!(report.errors(), 0, "{:#?}", report.findings);
    assert!(
        report
            .timings
            .iter()
            .any(|(part, _)| part == "control-tower"),
        "{:?}",
        report.timings
    );
    let decided: Vec<&str> = report
        .suppressed
        .iter()
        .filter(|s| s.finding.check == "control-tower")
        .map(|s| s.finding.rule.as_str())
        .collect();
    assert!(
        decided.contains(&"s3_bucket_object_lock_enabled_check"),
        "{decided:?}"
    );
    // checkov (pinned, optional) ran too, and its findings are decided the same way; where it
    // reports a control another tool reports too, the two are one row listing both sources.
    assert!(
        report
            .suppressed
            .iter()
            .any(|s| s.finding.check == "checkov" && s.finding.rule == "CKV_AWS_103"),
        "{:#?}",
        report.suppressed
    );
    let merged = report
        .suppressed
        .iter()
        .find(|s| s.finding.rule == "alb_http_to_https_redirection_check")
        .expect("the HTTP listener's control");
    assert_eq!(merged.finding.sources, ["checkov/CKV_AWS_2"]);
    assert!(!report
        .suppressed
        .iter()
        .any(|s| s.finding.check == "checkov" && s.finding.rule == "CKV_AWS_2"));
    assert!(report
        .suppressed
        .iter()
        .all(|s| !s.reason.trim().is_empty()));
    let controls = report
        .suppressed
        .iter()
        .filter(|s| s.finding.message.contains("CT.S3.PR.9"))
        .count();
    assert_eq!(
        controls, 1,
        "one finding per rule and resource, in the rule's words"
    );
    let sarif: serde_json::Value =
        serde_json::from_str(&harness::validate::formats::sarif(&report)).unwrap();
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    let lock = results
        .iter()
        .find(|r| r["ruleId"] == "control-tower/s3_bucket_object_lock_enabled_check")
        .expect("the suppressed result is in SARIF");
    assert_eq!(lock["properties"]["source"], "control-tower");
    assert!(lock["suppressions"][0]["justification"]
        .as_str()
        .unwrap()
        .contains("Object Lock"));
}
