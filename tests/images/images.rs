//! The harness's own images: the base (pulled, or bootstrapped from Debian packages without a
//! registry) and the Postgres stand-in are built, a second build is skipped because nothing
//! changed, and the Postgres image behaves like the official one for testcontainers' Postgres
//! module: it becomes ready, takes a password login and answers queries.
//!
//! Needs a Docker engine (skipped with a note when none answers); bootstrapping the base needs
//! root and debootstrap (`.ci/run` installs it).

#[path = "../common/mod.rs"]
mod common;

use std::collections::HashMap;

use harness::config::Config;
use harness::docker::images;
use testcontainers::core::IntoContainerPort;
use testcontainers::runners::AsyncRunner;
use testcontainers::ImageExt;
use testcontainers_modules::postgres::Postgres;

#[tokio::test(flavor = "multi_thread")]
async fn base_and_postgres_build_once_and_serve_queries() {
    let docker = match harness::docker::connect().await {
        Ok(docker) => docker,
        Err(e) => {
            eprintln!("skipping: {e}");
            return;
        }
    };
    let root = common::repo_root();
    let config = Config::load(&root).expect("configuration");

    let first = images::build(&docker, &config, &["base", "postgres"], false, true)
        .await
        .expect("build base + postgres");
    let services: Vec<&str> = first.iter().map(|r| r.service.as_str()).collect();
    assert_eq!(services, ["base", "postgres"]);
    assert_eq!(first[1].tag, "langflow-infra/postgres:15");
    assert!(first.iter().all(|r| r.size_bytes > 0), "{first:?}");

    // Nothing changed: both are skipped, with the digests the first build produced.
    let second = images::build(&docker, &config, &["base", "postgres"], false, false)
        .await
        .expect("second build");
    assert!(second.iter().all(|r| r.skipped), "{second:?}");
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(a.inputs_digest, b.inputs_digest);
    }

    // `resolve` picks the local build (no registry here) or the public image (where one is
    // present or pullable); either way it names an image the engine has.
    let picked = images::resolve(&docker, &config, "postgres")
        .await
        .expect("postgres image resolves");
    assert!(
        picked == "langflow-infra/postgres:15" || picked == "postgres:15",
        "{picked}"
    );

    // The official image's contract, as testcontainers' Postgres module uses it; published on
    // 127.0.0.1 only.
    let container = Postgres::default()
        .with_password("s3cret-pw")
        .with_db_name("langflow")
        .with_name("langflow-infra/postgres")
        .with_tag("15")
        .with_host_config_modifier(|host| {
            host.publish_all_ports = Some(false);
            host.port_bindings = Some(HashMap::from([(
                "5432/tcp".to_string(),
                Some(vec![bollard::models::PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                }]),
            )]));
        })
        .start()
        .await
        .expect("postgres container becomes ready");
    let port = container
        .get_host_port_ipv4(5432.tcp())
        .await
        .expect("published port");

    let connect = |password: &str| {
        format!("host=127.0.0.1 port={port} user=postgres password={password} dbname=langflow")
    };
    let (client, connection) =
        tokio_postgres::connect(&connect("s3cret-pw"), tokio_postgres::NoTls)
            .await
            .expect("password login");
    tokio::spawn(connection);
    let row = client
        .query_one("SELECT version(), current_database()", &[])
        .await
        .expect("query");
    let version: String = row.get(0);
    let database: String = row.get(1);
    assert!(version.starts_with("PostgreSQL 15"), "{version}");
    assert_eq!(database, "langflow");
    let method: String = client
        .query_one("SHOW password_encryption", &[])
        .await
        .expect("setting")
        .get(0);
    assert_eq!(method, "scram-sha-256");

    let wrong = tokio_postgres::connect(&connect("wrong"), tokio_postgres::NoTls).await;
    let error = wrong.err().expect("a wrong password is refused");
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "{error:?}"
    );
}
