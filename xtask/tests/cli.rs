//! The command line as a user runs it: bad input gets one clear line on stderr and exit code 1,
//! and nothing is started or created. Each test uses its own empty state directory.

use std::process::{Command, Output};

fn xtask(state_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("LANGFLOW_INFRA_STATE_DIR", state_dir)
        .output()
        .expect("xtask runs")
}

/// Asserts a failure with exactly one stderr line containing `needle`.
fn assert_one_line_error(output: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(
        lines[0].contains(needle),
        "expected {needle:?} in: {stderr}"
    );
}

#[test]
fn bad_tenant_input_is_one_line_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cases: [(&[&str], &str); 8] = [
        (
            &["tenant", "schema-add", "--prefix", "bad;x"],
            "invalid prefix \"bad;x\": character ';'",
        ),
        (
            &["tenant", "schema-add", "--prefix", ""],
            "invalid prefix \"\"",
        ),
        (
            &["tenant", "schema-list"],
            "Postgres is not running; start the stack with `cargo xtask up`",
        ),
        (
            &["tenant", "schema-rm", "--schema", "acme-1a2b3c"],
            "add --yes to confirm",
        ),
        (
            &["tenant", "user-list", "--schema", "acme"],
            "invalid schema id \"acme\"",
        ),
        (
            &[
                "tenant",
                "user-add",
                "--schema",
                "acme-1a2b3c",
                "--username",
                " ",
            ],
            "invalid username",
        ),
        (
            &[
                "tenant",
                "user-reset",
                "--schema",
                "acme-1a2b3c",
                "--username",
                "bob",
                "--password",
                "",
            ],
            "password",
        ),
        (
            &[
                "e2e",
                "--target",
                "alb.example.com",
                "--credentials",
                "/nonexistent",
            ],
            "not an http(s) URL",
        ),
    ];
    for (args, needle) in cases {
        assert_one_line_error(&xtask(&state, args), needle);
    }
    assert!(
        !state.exists(),
        "bad input must not create the state directory"
    );
}

#[test]
fn unknown_fault_and_missing_credentials_are_rejected_by_the_parser() {
    let dir = tempfile::tempdir().unwrap();
    let output = xtask(dir.path(), &["e2e", "--inject-fault", "nope"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown fault \"nope\""));
    let output = xtask(dir.path(), &["e2e", "--target", "http://127.0.0.1:9"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--credentials"));
}

#[test]
fn docker_runtime_without_an_engine_is_one_line_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["up", "--infra-only", "--runtime", "docker"])
        .env("LANGFLOW_INFRA_STATE_DIR", &state)
        .env(
            "DOCKER_HOST",
            format!("unix://{}/no-engine.sock", dir.path().display()),
        )
        .output()
        .expect("xtask runs");
    assert_one_line_error(&output, "DOCKER_HOST=unix://");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("start the engine"), "{stderr}");
    assert!(!state.exists(), "a failed docker up created state");
}

#[test]
fn auto_runtime_without_an_engine_says_so_and_runs_natively() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .env("LANGFLOW_INFRA_STATE_DIR", &state)
            .env("LANGFLOW_INFRA_RUNTIME", "auto")
            .env(
                "DOCKER_HOST",
                format!("unix://{}/no-engine.sock", dir.path().display()),
            )
            .output()
            .expect("xtask runs")
    };
    let up = run(&["up", "--infra-only", "--json"]);
    let stderr = String::from_utf8_lossy(&up.stderr);
    let down = run(&["down", "--volumes"]);
    assert!(up.status.success(), "{stderr}");
    assert!(
        stderr.contains("runtime auto: using native") && stderr.contains("DOCKER_HOST"),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&up.stdout).unwrap();
    assert_eq!(report["status"]["runtime"], "native");
    assert!(down.status.success());
}

#[test]
fn bad_chaos_input_is_one_line_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    for (args, needle) in [
        (
            &["chaos", "--scenario", "kill-everything"][..],
            "unknown chaos scenario \"kill-everything\"; pick from kill-tenant,",
        ),
        (&["chaos", "--rps", "0"][..], "--rps 0 is out of range"),
    ] {
        let output = xtask(&state, args);
        assert_one_line_error(&output, needle);
    }
    assert!(!state.exists(), "nothing may be created on bad input");
}
