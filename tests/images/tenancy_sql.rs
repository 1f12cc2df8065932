//! tenantmgr's SQL side against a throwaway Postgres container per test (testcontainers-modules'
//! Postgres module on the image the docker runtime uses: the public one where it can be had, else
//! the harness's own build): hostile names are refused before any SQL and create nothing, and a
//! schema-add whose migration fails leaves no role, schema or secret behind. Fast and independent:
//! no Langflow, no emulator, no state shared between tests. (Schema-add that succeeds, users and
//! their passwords are covered with real Langflow in `tenancy.rs`.)

#[path = "../common/mod.rs"]
mod common;

use std::path::Path;

use harness::config::Config;
use harness::state::StateFiles;
use harness::tenancy::Tenancy;
use testcontainers::core::IntoContainerPort;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ImageExt};
use testcontainers_modules::postgres::Postgres;

const PASSWORD: &str = "tenancy-sql-test";

/// A fresh Postgres container, published on 127.0.0.1 only; its host port.
async fn throwaway_postgres(config: &Config) -> (ContainerAsync<Postgres>, u16) {
    let docker = harness::docker::connect()
        .await
        .expect("these tests need the Docker engine (`.ci/run` has one)");
    // The test gets its image itself: the public one, or the harness's build (made once per
    // test binary when missing, as `cargo xtask images build --only postgres` would).
    static BUILT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    if harness::docker::images::resolve(&docker, config, "postgres")
        .await
        .is_err()
    {
        BUILT
            .get_or_init(|| async {
                harness::docker::images::build(&docker, config, &["postgres"], false, false)
                    .await
                    .expect("build the Postgres image");
            })
            .await;
    }
    let image = harness::docker::images::resolve(&docker, config, "postgres")
        .await
        .expect("a Postgres image");
    let (name, tag) = image.rsplit_once(':').unwrap_or((image.as_str(), "latest"));
    let container = Postgres::default()
        .with_password(PASSWORD)
        .with_db_name(&config.postgres.database)
        .with_name(name)
        .with_tag(tag)
        .with_host_config_modifier(|host| {
            // testcontainers publishes on 0.0.0.0 by default: keep it on loopback.
            if let Some(bindings) = host.port_bindings.as_mut() {
                for binding in bindings.values_mut().flatten().flatten() {
                    binding.host_ip = Some("127.0.0.1".into());
                }
            }
        })
        .start()
        .await
        .expect("the Postgres container starts");
    let port = container
        .get_host_port_ipv4(5432.tcp())
        .await
        .expect("published port");
    (container, port)
}

fn isolated_config(dir: &Path) -> Config {
    Config::isolated(&common::repo_root(), &dir.join("state")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_refused_before_any_sql_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = isolated_config(dir.path());
    // No stack running: a clear message, not a connection error.
    let err = Tenancy::for_running_stack(&config, &StateFiles::new(&config.state_dir))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("cargo xtask up"), "{err}");

    let (_postgres, port) = throwaway_postgres(&config).await;
    let files = StateFiles::new(&config.state_dir);
    let tenancy = Tenancy::new(&config, &files, port, PASSWORD);
    let hostile = [
        "",
        "a b",
        "x\"; DROP SCHEMA public CASCADE; --",
        "acme'--",
        "../etc",
        "tenant/acme",
        &"a".repeat(51),
        "ünicode",
    ];
    for prefix in hostile {
        let err = format!("{:#}", tenancy.schema_add(prefix).await.unwrap_err());
        assert!(err.starts_with("invalid prefix"), "{prefix:?}: {err}");
    }
    for schema in ["acme\"; DROP TABLE x; --", "acme-12345", "acme-ghijkl"] {
        let err = format!("{:#}", tenancy.user_list(schema).await.unwrap_err());
        assert!(err.contains("invalid schema id"), "{schema:?}: {err}");
    }
    let err = format!(
        "{:#}",
        tenancy.user_list("nosuch-abcdef").await.unwrap_err()
    );
    assert!(err.contains("unknown schema nosuch-abcdef"), "{err}");
    let err = format!(
        "{:#}",
        tenancy
            .user_add("nosuch-abcdef", " ", None, false)
            .await
            .unwrap_err()
    );
    assert!(err.contains("invalid username"), "{err}");

    // Nothing was created: no tenant schema, no role besides the superuser, public intact.
    assert!(tenancy.schema_list().await.unwrap().is_empty());
    let admin = tenancy.admin_target().connect().await.unwrap();
    let roles: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname NOT LIKE 'pg\\_%' AND rolname <> current_user",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(roles, 0);
    let public: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(public, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_migration_rolls_back_role_schema_and_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = isolated_config(dir.path());
    // Langflow cannot be installed (no such interpreter, empty cache): the migration step fails
    // after the role and schema were created, which must then be rolled back.
    config.cache_dir = dir.path().join("empty-cache");
    config.tools.python = dir.path().join("no-python").display().to_string();
    let (_postgres, port) = throwaway_postgres(&config).await;
    let files = StateFiles::new(&config.state_dir);
    files.ensure_dir().unwrap();
    let tenancy = Tenancy::new(&config, &files, port, PASSWORD);
    let err = format!("{:#}", tenancy.schema_add("doomed").await.unwrap_err());
    assert!(err.contains("nothing was left behind"), "{err}");
    assert!(tenancy.schema_list().await.unwrap().is_empty());
    let admin = tenancy.admin_target().connect().await.unwrap();
    let leftovers: i64 = admin
        .query_one(
            "SELECT (SELECT count(*) FROM pg_roles WHERE rolname LIKE 'doomed-%') \
                  + (SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'doomed-%')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0);
    assert!(files.read_secrets().unwrap().tenants.is_empty());
}
