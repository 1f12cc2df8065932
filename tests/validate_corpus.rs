//! `validate` on any template: no input aborts the report.
//!
//! - the hand-written corpus under fixtures/cfn-corpus/ (shapes public templates use: imports
//!   named with Fn::Sub/Fn::Join from parameters, conditions and nested Fn::If, SAM, custom
//!   resources, Fn::ForEach, Rules, JSON and YAML, a guard report far over 8 KiB), with cfn-lint
//!   and with a rule pack of the user's own (fixtures/cfn-corpus-rules/, one file broken);
//! - mutated variants of our own aws/ templates generated here (every top-level, resource and
//!   property key deleted, types swapped, deep nesting, a 5 MB file and one just under
//!   CloudFormation's 1 MiB limit, invalid UTF-8, YAML bombs, truncations, garbage), each through
//!   the validate library function with its stage parameter files;
//! - a few inputs through the real `xtask validate` binary under a memory limit.
//!
//! Every run must return a report (exit 0 or 1 for the binary, JSON on stdout), list or reject
//! every template with a finding, never panic, and stay within the time bounds below.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness::config::Config;
use harness::validate::{run, Severity, ValidateOptions, ValidateReport};
use serde_json::{json, Value};

/// Longest one variant may take through `validate::run` (guard for two stages, wiring, params;
/// debug build on a shared 2-core machine). The near-limit template is the slowest (~3 s).
const PER_VARIANT: Duration = Duration::from_secs(15);

/// Longest one run of the binary may take (cfn-lint off).
const PER_BINARY_RUN: Duration = Duration::from_secs(30);

/// Address-space limit for the binary runs (`ulimit -v`, KiB): bounded memory.
const BINARY_MEMORY_KIB: u64 = 4 * 1024 * 1024;

fn options(dir: &Path, lint: bool, extra_rules: Vec<PathBuf>) -> ValidateOptions {
    ValidateOptions {
        dir: dir.to_path_buf(),
        lint,
        rules: common::repo_root().join("rules"),
        extra_rules,
        image: None,
    }
}

/// `severity check rule file:line` lines of a report.
fn lines(report: &ValidateReport) -> Vec<String> {
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

/// Findings saying a check could not do its work.
fn check_failures(report: &ValidateReport) -> Vec<String> {
    report
        .findings
        .iter()
        .filter(|f| {
            f.rule == "internal-error"
                || f.rule == "could-not-run"
                || f.message.contains("could not be evaluated")
        })
        .map(|f| format!("{} {} {}: {}", f.check, f.rule, f.file, f.message))
        .collect()
}

#[tokio::test]
async fn hand_written_corpus_gets_every_finding_with_cfn_lint() {
    let root = common::repo_root();
    let config = Config::load(&root).unwrap();
    let started = Instant::now();
    let report = run(
        &config,
        &options(&root.join("fixtures/cfn-corpus"), true, Vec::new()),
    )
    .await
    .unwrap();
    eprintln!(
        "hand-written corpus with cfn-lint: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        report.templates,
        [
            "cfn-corpus/apps/conditions-and-rules.json",
            "cfn-corpus/apps/custom-resource.json",
            "cfn-corpus/apps/foreach.yml",
            "cfn-corpus/apps/many-listeners.yaml",
            "cfn-corpus/apps/sam-function.yaml",
            "cfn-corpus/apps/service.yaml",
            "cfn-corpus/network/endpoints.template",
            "cfn-corpus/network/network.yaml",
        ]
    );
    assert_eq!(report.skipped, ["cfn-corpus/not-cloudformation.yaml"]);
    assert!(check_failures(&report).is_empty(), "{:#?}", lines(&report));
    let found = lines(&report);
    let has = |line: &str| found.iter().any(|f| f == line);
    // Imports: resolved through parameter defaults against exports of an unknown stack name.
    for line in [
        "Warning wiring import-not-in-set cfn-corpus/apps/service.yaml:52",
        "Warning wiring import-not-in-set cfn-corpus/apps/service.yaml:54",
        "Info wiring import-unresolvable cfn-corpus/apps/service.yaml:50",
    ] {
        assert!(has(line), "{line} missing in {found:#?}");
    }
    let wiring: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.check == "wiring")
        .collect();
    assert_eq!(wiring.len(), 3, "{wiring:#?}");
    assert!(
        wiring[0].message.contains("corpus-legacy-QueueArn")
            || wiring[1].message.contains("corpus-legacy-QueueArn")
    );
    // 40 violations of each of two rules: cfn-guard's report is far over 8 KiB and still read.
    let count = |rule: &str| {
        report
            .findings
            .iter()
            .filter(|f| f.rule == rule && f.file.ends_with("many-listeners.yaml"))
            .count()
    };
    assert_eq!(count("alb_http_only_redirects"), 40);
    assert_eq!(count("sg_no_world_ingress_except_web"), 40);
    // Guard findings are located in JSON templates too.
    assert!(
        has("Error guard s3_encrypted_versioned_private cfn-corpus/apps/conditions-and-rules.json:51"),
        "{found:#?}"
    );
    // cfn-lint ran over the whole set (SAM and language extensions included) without failing.
    assert!(
        report.timings.iter().any(|(part, _)| part == "cfn-lint"),
        "{:?}",
        report.timings
    );
}

#[tokio::test]
async fn a_rule_pack_of_the_users_own_is_evaluated_like_ours() {
    let root = common::repo_root();
    let config = Config::load(&root).unwrap();
    let report = run(
        &config,
        &options(
            &root.join("fixtures/cfn-corpus"),
            false,
            vec![root.join("fixtures/cfn-corpus-rules")],
        ),
    )
    .await
    .unwrap();
    let found = lines(&report);
    for line in [
        // The broken file is a finding naming it, at the line cfn-guard stops at.
        "Error guard broken.guard cfn-corpus-rules/broken.guard:3",
        // The valid files of the pack (subfolders included) are evaluated...
        "Error guard corpus_sqs_encrypted cfn-corpus/apps/service.yaml:44",
        "Error guard corpus_lambda_concurrency cfn-corpus/apps/custom-resource.json:20",
        // A rules file cfn-guard cannot evaluate on a template: a finding naming both.
        "Error guard fails-at-evaluation.guard cfn-corpus/apps/service.yaml:1",
        "Error guard fails-at-evaluation.guard cfn-corpus/apps/many-listeners.yaml:1",
        // ...and so is the project's pack.
        "Error guard s3_tls_only cfn-corpus/apps/conditions-and-rules.json:1",
    ] {
        assert!(
            found.iter().any(|f| f == line),
            "{line} missing in {found:#?}"
        );
    }
    let broken = report
        .findings
        .iter()
        .find(|f| f.rule == "broken.guard")
        .unwrap();
    assert!(
        broken.message.contains("cannot parse"),
        "{}",
        broken.message
    );
    // Templates without security groups evaluate that file fine.
    assert!(!lines(&report)
        .iter()
        .any(|l| l.contains("fails-at-evaluation.guard cfn-corpus/apps/custom-resource.json")));

    // A missing pack is a finding too.
    let report = run(
        &config,
        &options(
            &root.join("fixtures/cfn-corpus"),
            false,
            vec![root.join("fixtures/no-such-rules")],
        ),
    )
    .await
    .unwrap();
    assert!(
        lines(&report).contains(&"Error guard no-rules no-such-rules:1".to_string()),
        "{:#?}",
        lines(&report)
    );
}

/// One input for `validate`: a file name and its bytes.
struct Variant {
    family: &'static str,
    name: String,
    bytes: Vec<u8>,
}

/// Our own templates: (stack type, file name, text, JSON form).
fn our_templates() -> Vec<(String, String, String, Value)> {
    let root = common::repo_root();
    let mut out = Vec::new();
    for path in [
        "aws/vpc-stack.cfn.yaml",
        "aws/rds-stack.cfn.yaml",
        "aws/ecr-stack.cfn.yaml",
        "aws/apps/fargate-stack.cfn.yaml",
    ] {
        let template = harness::validate::template::load(&root.join(path), path).unwrap();
        let name = template
            .path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        out.push((
            template.stack_type().unwrap(),
            name,
            template.text.clone(),
            template.body.clone(),
        ));
    }
    out
}

/// A value of another JSON type than `value` (`turn` picks which one).
fn swapped(value: &Value, turn: usize) -> Value {
    let others: Vec<Value> = [
        Value::Null,
        json!(true),
        json!(42),
        json!("swapped"),
        json!([1, "two", null]),
        json!({"Unexpected": {"Nested": [1]}}),
    ]
    .into_iter()
    .filter(|o| std::mem::discriminant(o) != std::mem::discriminant(value))
    .collect();
    others[turn % others.len()].clone()
}

fn yaml(value: &Value) -> Vec<u8> {
    serde_norway::to_string(value).unwrap().into_bytes()
}

/// Every mutation of our templates, plus the hostile inputs.
fn variants() -> Vec<Variant> {
    let mut out = Vec::new();
    let mut add = |family: &'static str, name: String, bytes: Vec<u8>| {
        out.push(Variant {
            family,
            name,
            bytes,
        })
    };
    for (_, file, text, body) in our_templates() {
        let top: Vec<String> = body.as_object().unwrap().keys().cloned().collect();
        let resources: Vec<String> = body["Resources"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        // Every top-level key deleted, and swapped to three other types.
        for key in &top {
            let mut v = body.clone();
            v.as_object_mut().unwrap().remove(key);
            add("delete-top-level", file.clone(), yaml(&v));
            for turn in 0..3 {
                let mut v = body.clone();
                v[key] = swapped(&body[key], turn);
                let bytes = if turn % 2 == 0 {
                    yaml(&v)
                } else {
                    serde_json::to_vec_pretty(&v).unwrap()
                };
                add("swap-top-level", file.clone(), bytes);
            }
        }
        for (r, resource) in resources.iter().enumerate() {
            let keys: Vec<String> = body["Resources"][resource]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            // Every key of every resource deleted, and swapped to another type (rotating, so
            // every type stands in for every kind of key somewhere).
            for (k, key) in keys.iter().enumerate() {
                let mut v = body.clone();
                v["Resources"][resource]
                    .as_object_mut()
                    .unwrap()
                    .remove(key);
                add("delete-resource-key", file.clone(), yaml(&v));
                let mut v = body.clone();
                v["Resources"][resource][key] = swapped(&body["Resources"][resource][key], r + k);
                add("swap-resource-key", file.clone(), yaml(&v));
            }
            // Every property deleted, and swapped to one other type.
            let properties: Vec<String> = body["Resources"][resource]["Properties"]
                .as_object()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            for (p, property) in properties.iter().enumerate() {
                let mut v = body.clone();
                v["Resources"][resource]["Properties"]
                    .as_object_mut()
                    .unwrap()
                    .remove(property);
                add("delete-property", file.clone(), yaml(&v));
                let mut v = body.clone();
                v["Resources"][resource]["Properties"][property] =
                    swapped(&body["Resources"][resource]["Properties"][property], r + p);
                add(
                    "swap-property",
                    file.clone(),
                    serde_json::to_vec(&v).unwrap(),
                );
            }
        }
        // Deep nesting inside the first resource's properties: allowed depth, then too deep.
        let first = &resources[0];
        for depth in [100, 5000] {
            // (built as text: a 5000-deep value would overflow this thread's stack)
            let mut nested = String::from("\"leaf\"");
            for i in 0..depth {
                nested = if i % 2 == 0 {
                    format!("[{nested}]")
                } else {
                    format!("{{\"Deeper\": {nested}}}")
                };
            }
            let mut v = body.clone();
            v["Resources"][first]["Properties"]["Deep"] = json!("DEEP-PLACEHOLDER");
            let text = serde_json::to_string(&v)
                .unwrap()
                .replace("\"DEEP-PLACEHOLDER\"", &nested);
            add("deep-nesting", file.clone(), text.into_bytes());
        }
        // Text-level damage to the original YAML (tags included).
        for cut in 1..=8 {
            let at = text.len() * cut / 9;
            let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap();
            add("truncated", file.clone(), text.as_bytes()[..at].to_vec());
        }
        for (from, to) in [
            ("!Ref ", "!Reff "),
            ("!GetAtt ", "!GetAtt\n"),
            ("!Sub ", "!Sub {a: [b]} # "),
            ("  ", "\t"),
            (": ", ":: "),
            ("- ", "-"),
        ] {
            add(
                "mangled",
                file.clone(),
                text.replacen(from, to, 3).into_bytes(),
            );
        }
        let mut bytes = text.clone().into_bytes();
        bytes.insert(bytes.len() / 2, 0xff);
        bytes.insert(bytes.len() / 2, 0xfe);
        add("invalid-utf8", file.clone(), bytes);
        let latin1: Vec<u8> = format!("# caf\u{e9}\n{text}")
            .chars()
            .map(|c| if (c as u32) < 256 { c as u8 } else { b'?' })
            .collect();
        add("invalid-utf8", file.clone(), latin1);
        let mut crlf = vec![0xef, 0xbb, 0xbf];
        crlf.extend(text.replace('\n', "\r\n").into_bytes());
        add("bom-crlf", file.clone(), crlf);
        let mut nul = text.clone().into_bytes();
        nul.insert(nul.len() / 3, 0);
        add("nul-byte", file.clone(), nul);
    }
    // Hostile inputs under our stack names (so their parameter files apply).
    let file = "vpc-stack.cfn.yaml".to_string();
    let laughs = {
        let mut s = String::from("Resources:\n  Bucket:\n    Type: AWS::S3::Bucket\n    Properties:\n      Tags: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\nLaughs:\n");
        for level in 1..=9 {
            s += &format!(
                "  l{level}: &l{level} [{}]\n",
                vec![format!("*l{}", level - 1); 9].join(", ")
            );
        }
        s
    };
    add("yaml-bomb", file.clone(), laughs.into_bytes());
    let quadratic = {
        // Under serde_norway's repetition limit, but 3000 copies of a 3000-key mapping.
        let mut s = String::from("Resources:\n  Bucket:\n    Type: AWS::S3::Bucket\nBase: &base\n");
        for i in 0..3000 {
            s += &format!("  k{i}: v\n");
        }
        s += "Copies:\n";
        for _ in 0..3000 {
            s += "  - *base\n";
        }
        s
    };
    add("yaml-bomb", file.clone(), quadratic.into_bytes());
    add(
        "deep-nesting",
        file.clone(),
        format!(
            "Resources: {}{}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        )
        .into_bytes(),
    );
    add(
        "deep-nesting",
        file.clone(),
        format!(
            "{{\"Resources\": {}1{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        )
        .into_bytes(),
    );
    let mut block = String::from("Resources:\n");
    for depth in 1..400 {
        block += &format!("{}k{depth}:\n", "  ".repeat(depth));
    }
    add("deep-nesting", file.clone(), block.into_bytes());
    let buckets = |limit: usize| {
        let mut s = String::from("Resources:\n");
        let mut i = 0;
        loop {
            let entry = format!("  Bucket{i}:\n    Type: AWS::S3::Bucket\n    Properties:\n      BucketName: corpus-bucket-{i}\n      Tags:\n        - Key: owner\n          Value: corpus\n");
            if s.len() + entry.len() > limit {
                return s;
            }
            s += &entry;
            i += 1;
        }
    };
    add("huge", file.clone(), buckets(5 * 1024 * 1024).into_bytes());
    add("near-limit", file.clone(), buckets(1_000_000).into_bytes());
    add(
        "long-line",
        file.clone(),
        format!(
            "Resources:\n  Topic:\n    Type: AWS::SNS::Topic\n    Properties:\n      DisplayName: \"{}\"\n",
            "x".repeat(900_000)
        )
        .into_bytes(),
    );
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let garbage: Vec<u8> = (0..65536)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect();
    add("garbage", file.clone(), garbage);
    for odd in [
        "",
        "# only a comment\n",
        "Resources: ~\n",
        "Resources: []\n",
        "Resources: {}\n",
        "---\nResources: {}\n---\nResources: {}\n",
        "Resources:\n  A: {Type: AWS::SNS::Topic}\n  A: {Type: AWS::SQS::Queue}\n",
        "Resources:\n  ? [a, b]\n  : {Type: AWS::SNS::Topic}\n  1: {Type: AWS::SNS::Topic}\n  true: {Type: AWS::SNS::Topic}\n  ~: x\n",
        "Resources:\n  T:\n    Type: AWS::SNS::Topic\n    Properties: {DisplayName: 1e400, Big: 99999999999999999999999999, Inf: .inf, NaN: .nan}\n",
        "Base: &b {Type: AWS::SNS::Topic}\nResources:\n  T:\n    <<: *b\n",
        "{\"Resources\": {\"T\": {\"Type\": \"AWS::SNS::Topic\",}}}",
        "{\"Resources\": {\"T\": {\"Type\": \"AWS::SNS::Topic\"}}} trailing",
        "Resources:\n  T:\n    Type: !GetAtt\n    Properties: !Ref\n",
        "Resources:\n  T:\n    Type: AWS::SNS::Topic\nOutputs:\n  O:\n    Value: x\n    Export:\n      Name: !ImportValue !ImportValue !ImportValue x\n",
        "AWSTemplateFormatVersion: 2010-09-09\nResources:\n  T: 5\n",
    ] {
        add("odd", file.clone(), odd.as_bytes().to_vec());
    }
    out
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_templates_never_abort_the_report() {
    let root = common::repo_root();
    let config = Config::load(&root).unwrap();
    let variants = variants();
    let work = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut slowest: Vec<(Duration, String)> = Vec::new();
    let mut problems = Vec::new();
    let mut by_family: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    // Each variant alone under its stack name, with that stack's stage parameter files.
    let mut dirs = Vec::new();
    for (n, variant) in variants.iter().enumerate() {
        let dir = work
            .path()
            .join(format!("{n:04}-{}", variant.family))
            .join("aws");
        std::fs::create_dir_all(dir.join("params")).unwrap();
        std::fs::write(dir.join(&variant.name), &variant.bytes).unwrap();
        let stack_type = variant.name.trim_end_matches("-stack.cfn.yaml");
        for stage in ["dev", "prd"] {
            let params = format!("{stack_type}-{stage}.json");
            std::fs::copy(
                root.join("aws/params").join(&params),
                dir.join("params").join(&params),
            )
            .unwrap();
        }
        dirs.push(dir);
    }
    // Two at a time (the machine has two cores).
    let mut results = Vec::new();
    let mut running = tokio::task::JoinSet::new();
    for (n, dir) in dirs.iter().enumerate() {
        if running.len() == 2 {
            results.push(running.join_next().await.unwrap());
        }
        let (config, options) = (config.clone(), options(dir, false, Vec::new()));
        running.spawn(async move {
            let t = Instant::now();
            // (a panic inside run() ends this task: join_next reports it below)
            let report = run(&config, &options).await;
            (n, t.elapsed(), report)
        });
    }
    while let Some(done) = running.join_next().await {
        results.push(done);
    }
    for result in results {
        let (n, elapsed, report) = match result {
            Ok(done) => done,
            Err(panic) => {
                problems.push(format!("a variant panicked: {panic}"));
                continue;
            }
        };
        let variant = &variants[n];
        let label = format!("#{n} {} {}", variant.family, variant.name);
        slowest.push((elapsed, label.clone()));
        let report = match report {
            Err(e) => {
                problems.push(format!("{label}: no report: {e:#}"));
                continue;
            }
            Ok(report) => report,
        };
        if elapsed > PER_VARIANT {
            problems.push(format!("{label}: took {elapsed:?}"));
        }
        // The template is either checked or rejected with a parse finding naming it.
        let shown = format!("aws/{}", variant.name);
        let checked = report.templates.contains(&shown);
        let rejected = report
            .findings
            .iter()
            .any(|f| f.check == "parse" && f.file == shown && f.severity == Severity::Error);
        if checked == rejected {
            problems.push(format!(
                "{label}: checked={checked} rejected={rejected}: {:#?}",
                lines(&report)
            ));
        }
        let failures = check_failures(&report);
        if !failures.is_empty() {
            problems.push(format!("{label}: {failures:#?}"));
        }
        let entry = by_family.entry(variant.family).or_default();
        entry.0 += 1;
        entry.1 += usize::from(rejected);
        // The report serialises (what --format json prints).
        serde_json::to_string(&report).unwrap();
    }
    slowest.sort_by_key(|s| std::cmp::Reverse(s.0));
    slowest.truncate(3);
    let total = started.elapsed();
    let peak = vm_hwm_kib();
    eprintln!(
        "{} variants in {:.1}s (slowest: {:?}), peak RSS {} MiB; per family (variants, rejected by parse): {by_family:?}",
        variants.len(),
        total.as_secs_f64(),
        slowest,
        peak / 1024
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The hostile inputs are rejected for the right reason.
    for (family, must_reject) in [
        ("yaml-bomb", true),
        ("huge", true),
        ("invalid-utf8", true),
        ("garbage", true),
        ("near-limit", false),
        ("long-line", false),
        ("bom-crlf", false),
    ] {
        let (count, rejected) = by_family[family];
        assert_eq!(
            rejected == count,
            must_reject,
            "{family}: {rejected} of {count} rejected"
        );
    }
    assert!(peak < 2 * 1024 * 1024, "peak RSS {peak} KiB");
}

#[test]
fn parse_findings_name_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let load = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        harness::validate::template::load(&path, name)
            .err()
            .map(|f| (f.rule, f.line))
    };
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
    for level in 1..=9 {
        bomb += &format!(
            "l{level}: &l{level} [{}]\n",
            vec![
                if level == 1 {
                    "*a".to_string()
                } else {
                    format!("*l{}", level - 1)
                };
                9
            ]
            .join(", ")
        );
    }
    assert_eq!(
        load("bomb.yaml", bomb.as_bytes()).map(|(rule, _)| rule),
        Some("alias-expansion".to_string())
    );
    assert_eq!(
        load("latin1.yaml", b"Resources:\n  T:\n    Type: caf\xe9\n"),
        Some(("not-utf8".to_string(), 3))
    );
    let big = vec![b'#'; 2 * 1024 * 1024];
    assert_eq!(load("big.yaml", &big), Some(("too-large".to_string(), 1)));
    assert_eq!(
        load(
            "deep.json",
            format!(
                "{{\"Resources\": {}{}}}",
                "[".repeat(1000),
                "]".repeat(1000)
            )
            .as_bytes()
        ),
        Some(("too-deep".to_string(), 1))
    );
    assert_eq!(
        load("list.yaml", b"Resources: []\n"),
        Some(("not-a-template".to_string(), 1))
    );
    assert_eq!(load("ok.json", b"{\"Resources\": {}}"), None);
}

/// Runs `xtask validate ARGS` under the memory limit; (exit code, stdout, seconds).
fn validate_binary(binary: &Path, args: &[&str]) -> (i32, String, f64) {
    let started = Instant::now();
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {BINARY_MEMORY_KIB} && exec \"$0\" validate \"$@\""
        ))
        .arg(binary)
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        started.elapsed().as_secs_f64(),
    )
}

#[test]
fn the_binary_always_prints_a_report_and_exits_0_or_1() {
    let root = common::repo_root();
    let binary = common::xtask_binary();
    let hostile = tempfile::tempdir().unwrap();
    let dir = hostile.path().join("hostile");
    std::fs::create_dir_all(&dir).unwrap();
    for variant in variants().into_iter().filter(|v| {
        matches!(
            v.family,
            "yaml-bomb" | "huge" | "invalid-utf8" | "garbage" | "deep-nesting" | "odd"
        )
    }) {
        let n = std::fs::read_dir(&dir).unwrap().count();
        std::fs::write(
            dir.join(format!("{n:03}-{}.cfn.yaml", variant.family)),
            variant.bytes,
        )
        .unwrap();
    }
    let empty = hostile.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let corpus = root.join("fixtures/cfn-corpus");
    let extra = root.join("fixtures/cfn-corpus-rules");
    let cases: Vec<(Vec<String>, i32)> = vec![
        (
            vec![
                "--dir".into(),
                corpus.display().to_string(),
                "--rules".into(),
                extra.display().to_string(),
                "--no-lint".into(),
            ],
            1,
        ),
        (
            vec![
                "--dir".into(),
                dir.display().to_string(),
                "--no-lint".into(),
            ],
            1,
        ),
        (
            vec![
                "--dir".into(),
                empty.display().to_string(),
                "--no-lint".into(),
            ],
            1,
        ),
        // Our own templates stay clean (cfn-lint included; its result is cached).
        (
            vec!["--dir".into(), root.join("aws").display().to_string()],
            0,
        ),
    ];
    for (args, expected) in cases {
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.extend(["--format", "json"]);
        let (code, stdout, secs) = validate_binary(&binary, &args);
        eprintln!(
            "xtask validate {}: exit {code} in {secs:.1}s",
            args.join(" ")
        );
        assert_eq!(code, expected, "{args:?}: {stdout}");
        let report: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not a JSON report ({e}): {stdout}"));
        assert!(report["findings"].is_array(), "{stdout}");
        assert!(
            secs < PER_BINARY_RUN.as_secs_f64() || args.iter().all(|a| *a != "--no-lint"),
            "{args:?} took {secs:.1}s"
        );
    }
    // SARIF of the hostile folder is JSON too.
    let (code, stdout, _) = validate_binary(
        &binary,
        &[
            "--dir",
            &dir.display().to_string(),
            "--no-lint",
            "--format",
            "sarif",
        ],
    );
    assert_eq!(code, 1);
    let sarif: Value = serde_json::from_str(&stdout).unwrap();
    assert!(!sarif["runs"][0]["results"].as_array().unwrap().is_empty());
}
