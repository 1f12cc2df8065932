//! Tenant export/import and `env` on one real stack (Postgres, the emulator with IAM enforced,
//! real Langflow 1.13 behind the gateway): a tenant with flows, variables, API keys, files and
//! two users is exported and imported under a new prefix; everything the e2e suite sees is the
//! same, users log in with their old passwords, and the isolation suite passes with the copy in
//! it. Bad inputs (truncated bundle, prefix collision, a newer Alembic revision, hostile dumps,
//! a statement only the database refuses) fail with a clear error and leave nothing behind.
//! Then `env`'s script is eval'ed by bash and the real AWS CLI (PyPI, managed venv) and psql
//! use it. (Statement-level checks of hostile dumps: unit tests in `bundle::dump`.)

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::Running;
use harness::bundle::{self, ImportOptions};
use harness::config::Config;
use harness::e2e::client::{Auth, TenantClient};
use harness::stack::{GatewayCommand, Stack};
use harness::tenancy::Tenancy;

const TENANTS: &str = "tenants:
  - prefix: acme
    users:
      - username: admin@acme.com
        password: admin-old-password
        superuser: true
      - username: user@acme.com
        password: user-old-password
  - prefix: widgetco
    users:
      - username: admin@widgetco.com
        password: widgetco-password
        superuser: true
";
const USERS: [(&str, &str); 2] = [
    ("admin@acme.com", "admin-old-password"),
    ("user@acme.com", "user-old-password"),
];

fn isolated_stack() -> (tempfile::TempDir, Running) {
    let dir = tempfile::Builder::new()
        .prefix("lfi-bundle-")
        .tempdir()
        .unwrap();
    let mut config =
        Config::isolated_with_tenants(&common::repo_root(), dir.path(), TENANTS).unwrap();
    config.langflow.login_rate_limit_per_minute = 600;
    let gateway = GatewayCommand::standalone(env!("CARGO_BIN_EXE_langflow-infra-gateway"));
    (
        dir,
        Running(Stack::new(config).with_gateway_command(gateway)),
    )
}

/// What the e2e suite can see of a tenant, per user: flows, variables, files (with content),
/// whether the user's API key works.
async fn seen(url: &str, api_keys: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let client = TenantClient::new(url);
    let mut out = BTreeMap::new();
    for (user, password) in USERS {
        let token = client.token(user, password).await.unwrap();
        let id = client.user_id(&token).await.unwrap();
        let flows = client
            .get("api/v1/flows/?get_all=true", &Auth::Bearer(&token))
            .await
            .unwrap();
        let mut flows: Vec<String> = flows
            .json()
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["name"].as_str().unwrap_or("").starts_with("bundle-"))
            .map(|f| format!("{} {} {}", f["id"], f["name"], f["data"]))
            .collect();
        flows.sort();
        let (_, mut variables) = client.variable_names(&token).await.unwrap();
        variables.sort();
        let files = client
            .get("api/v2/files/", &Auth::Bearer(&token))
            .await
            .unwrap();
        let mut contents = Vec::new();
        for file in files.json().as_array().unwrap() {
            let fid = file["id"].as_str().unwrap();
            let body = client
                .get(&format!("api/v2/files/{fid}"), &Auth::Bearer(&token))
                .await
                .unwrap();
            contents.push(format!(
                "{fid} {} {} -> {} {}",
                file["name"], file["size"], body.status, body.body
            ));
        }
        contents.sort();
        let key_status = client
            .get("api/v1/users/whoami", &Auth::ApiKey(&api_keys[user]))
            .await
            .unwrap()
            .status;
        out.insert(
            user.to_string(),
            format!("id {id}\nflows {flows:?}\nvariables {variables:?}\nfiles {contents:?}\napi key {key_status}"),
        );
    }
    out
}

fn tenancy_of(stack: &Stack) -> Tenancy {
    Tenancy::for_running_stack(stack.config(), stack.files()).unwrap()
}

/// Roles, schemas, secrets and objects: what a failed import must not change.
async fn footprint(stack: &Stack) -> String {
    let tenancy = tenancy_of(stack);
    let admin = tenancy.admin_target().connect().await.unwrap();
    let row = admin
        .query_one(
            "SELECT (SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolname NOT LIKE 'pg\\_%'), \
                    (SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%')",
            &[],
        )
        .await
        .unwrap();
    let secrets: Vec<String> = stack
        .files()
        .read_secrets()
        .unwrap()
        .tenants
        .into_keys()
        .collect();
    let s3 = harness::services::aws::s3_client(aws_port(stack), &stack.config().aws.region).await;
    let objects = bundle::objects::list_keys(&s3, &stack.config().aws.tenant_bucket, "tenants/")
        .await
        .unwrap();
    format!(
        "roles {:?}\nschemas {:?}\nsecrets {secrets:?}\nobjects {}",
        row.get::<_, Option<String>>(0),
        row.get::<_, Option<String>>(1),
        objects.len()
    )
}

fn aws_port(stack: &Stack) -> u16 {
    stack.files().read_state().unwrap().unwrap().services["aws"].port
}

async fn import_err(stack: &Stack, options: ImportOptions) -> String {
    format!("{:#}", bundle::import(stack, &options).await.unwrap_err())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn export_import_round_trip_bad_inputs_and_env() {
    let (dir, stack) = isolated_stack();
    let up = stack.up().await.expect("up");
    assert!(up.status.healthy(), "{:#?}", up.status);
    let acme = up
        .tenants
        .iter()
        .find(|t| t.prefix == "acme")
        .unwrap()
        .clone();
    let client = TenantClient::new(&acme.url);

    // A tenant with flows, credential variables, API keys and files of two users.
    let mut api_keys = BTreeMap::new();
    for (n, (user, password)) in USERS.iter().enumerate() {
        let token = client.token(user, password).await.unwrap();
        for f in 0..2 {
            client
                .create_flow(&token, &format!("bundle-{n}-{f}"))
                .await
                .unwrap();
        }
        client
            .create_variable(&token, &format!("BUNDLE_SECRET_{n}"), &format!("value-{n}"))
            .await
            .unwrap();
        api_keys.insert(
            user.to_string(),
            client.create_api_key(&token, "bundle").await.unwrap(),
        );
        client
            .upload_file(
                &token,
                &format!("notes-{n}.txt"),
                format!("file of user {n}\n").as_bytes(),
            )
            .await
            .unwrap();
    }
    let before = seen(&acme.url, &api_keys).await;

    // Export (and the key, separately).
    let bundle_path = dir.path().join("acme.tar.zst");
    let key_path = dir.path().join("acme.key");
    let exported = bundle::export(&stack, &acme.schema, &bundle_path, Some(&key_path))
        .await
        .expect("export");
    assert_eq!(exported.objects, 2, "{exported:?}");
    assert_eq!(
        exported.rows["user"], 3,
        "two users + the operator: {exported:?}"
    );
    assert!(
        exported.rows["flow"] >= 4
            && exported.rows["variable"] >= 2
            && exported.rows["apikey"] >= 2,
        "{exported:?}"
    );
    let sql = bundle::archive::read(&bundle_path).unwrap().schema_sql;
    assert!(!sql.contains(&stack.files().read_secrets().unwrap().tenants[&acme.schema].secret_key));

    // Bad inputs, each with nothing left behind.
    let clean = footprint(&stack).await;
    let bytes = std::fs::read(&bundle_path).unwrap();
    let truncated = dir.path().join("truncated.tar.zst");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let e = import_err(
        &stack,
        ImportOptions {
            input: truncated,
            prefix: Some("cut".into()),
            ..Default::default()
        },
    )
    .await;
    assert!(
        e.contains("truncated") && e.contains("export it again"),
        "{e}"
    );
    let e = import_err(
        &stack,
        ImportOptions {
            input: bundle_path.clone(),
            ..Default::default()
        },
    )
    .await;
    assert!(
        e.contains("prefix 'acme' already exists") && e.contains("--prefix"),
        "{e}"
    );
    let revision = exported.alembic_revision.clone().unwrap();
    let dump = |name: &str, sql: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, sql).unwrap();
        path
    };
    let newer = dump(
        "newer.sql",
        sql.replace(&format!("\n{revision}\n"), "\nffffffffffff\n"),
    );
    let e = import_err(
        &stack,
        ImportOptions {
            input: newer,
            prefix: Some("newer".into()),
            ..Default::default()
        },
    )
    .await;
    assert!(
        e.contains("ffffffffffff") && e.contains("newer Langflow"),
        "{e}"
    );
    let at = sql.find("\nCOPY ").unwrap();
    for (name, injected, needle) in [
        (
            "public.sql",
            "CREATE TABLE public.stolen (a int);\n",
            "schema \"public\"",
        ),
        (
            "other.sql",
            &format!(
                "CREATE TABLE \"{}\".x (a int);\n",
                up.tenants
                    .iter()
                    .find(|t| t.prefix == "widgetco")
                    .unwrap()
                    .schema
            ) as &str,
            "outside the tenant's schema",
        ),
        (
            "role.sql",
            "ALTER ROLE postgres PASSWORD 'x';\n",
            "not allowed",
        ),
        (
            "program.sql",
            "COPY (SELECT 1) TO PROGRAM 'touch /tmp/lfi-pwned';\n",
            "COPY",
        ),
        ("meta.sql", "\\! touch /tmp/lfi-pwned\n", "meta-command"),
        ("path.sql", "SET search_path = public;\n", "search_path"),
    ] {
        let path = dump(name, format!("{}\n{injected}{}", &sql[..at], &sql[at..]));
        let e = import_err(
            &stack,
            ImportOptions {
                input: path,
                prefix: Some("hostile".into()),
                ..Default::default()
            },
        )
        .await;
        assert!(e.contains(needle) && e.contains("line "), "{name}: {e}");
    }
    // Passes the checks, refused by the database (untrusted language, the tenant role is no
    // superuser): the restore is rolled back and the new schema, role and secrets removed.
    let c_function = dump(
        "c-function.sql",
        format!(
            "{}\nCREATE FUNCTION \"{}\".pwn() RETURNS int LANGUAGE c AS '/lib/x.so', 'f';\n{}",
            &sql[..at],
            acme.schema,
            &sql[at..]
        ),
    );
    let e = import_err(
        &stack,
        ImportOptions {
            input: c_function,
            prefix: Some("cfunc".into()),
            ..Default::default()
        },
    )
    .await;
    assert!(
        e.contains("language c") && e.contains("were removed"),
        "{e}"
    );
    assert!(!Path::new("/tmp/lfi-pwned").exists());
    assert_eq!(footprint(&stack).await, clean);

    // The round trip, with the source's key: everything the suite sees is the same.
    let t0 = std::time::Instant::now();
    let imported = bundle::import(
        &stack,
        &ImportOptions {
            input: bundle_path.clone(),
            prefix: Some("acme-repro".into()),
            secret_key_from: Some(key_path.clone()),
            ..Default::default()
        },
    )
    .await
    .expect("import");
    println!(
        "import with instance start: {:.1} s; {}",
        t0.elapsed().as_secs_f64(),
        bundle::import_table(&imported)
    );
    assert_eq!(imported.migration_steps, 0);
    assert_eq!(imported.objects, 2);
    assert_eq!(imported.rows, exported.rows);
    let copy = imported.endpoint.clone().expect("the copy is served");
    assert_eq!(seen(&copy.url, &api_keys).await, before);
    // The operator of the copy has the copy's own password (reset at import).
    let copy_secrets = tenancy_of(&stack).tenant_secrets(&imported.schema).unwrap();
    TenantClient::new(&copy.url)
        .token(
            harness::tenancy::OPERATOR_USERNAME,
            &copy_secrets.operator_password,
        )
        .await
        .expect("operator login on the copy");

    // The isolation suite with the copy in it. (The copy runs with its source's key and user
    // ids, so a token of acme is valid at acme-repro by design: the copy is checked against the
    // other tenant, as acme itself is by the e2e suite.)
    let widgetco = up.tenants.iter().find(|t| t.prefix == "widgetco").unwrap();
    let creds = |prefix: &str, user: &str, password: &str| harness::e2e::TenantCredentials {
        prefix: prefix.into(),
        username: user.into(),
        password: password.into(),
        shared_username: None,
        shared_password: None,
    };
    let gateway = up
        .status
        .services
        .iter()
        .find(|s| s.name == "gateway")
        .unwrap()
        .port;
    let input = harness::e2e::SuiteInput {
        gateway: format!("http://127.0.0.1:{gateway}"),
        tenants: vec![
            creds("acme-repro", USERS[1].0, USERS[1].1),
            creds(&widgetco.prefix, "admin@widgetco.com", "widgetco-password"),
        ],
        local: Some(harness::e2e::LocalAccess {
            tenancy: tenancy_of(&stack),
            schemas: BTreeMap::from([
                ("acme-repro".to_string(), imported.schema.clone()),
                (widgetco.prefix.clone(), widgetco.schema.clone()),
            ]),
            secret_keys: BTreeMap::from([
                ("acme-repro".to_string(), copy_secrets.secret_key.clone()),
                (
                    widgetco.prefix.clone(),
                    tenancy_of(&stack)
                        .tenant_secrets(&widgetco.schema)
                        .unwrap()
                        .secret_key,
                ),
            ]),
            s3: harness::services::aws::s3_client(aws_port(&stack), &stack.config().aws.region)
                .await,
            bucket: stack.config().aws.tenant_bucket.clone(),
            task_urls: Vec::new(),
            credentials: None,
        }),
        concurrency: 4,
        suite: harness::e2e::Suite::Isolation,
        browser: None,
    };
    let (results, _, _) = harness::e2e::run_suite(&input).await;
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r.outcome == harness::e2e::Outcome::Fail)
        .map(|r| format!("{} {}: {:?}", r.check, r.pair, r.evidence))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(
        results
            .iter()
            .filter(|r| r.pair.contains("acme-repro"))
            .count()
            > 5
    );

    // `env --tenant acme-repro`, eval'ed by bash; the real AWS CLI and psql use it.
    let env = harness::devenv::prepare(&stack, Some("acme-repro"))
        .await
        .expect("env");
    for file in &env.files {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(file).unwrap().permissions().mode() & 0o777,
            0o600,
            "{}",
            file.display()
        );
    }
    let script = harness::devenv::render(&env, harness::devenv::Shell::Bash);
    let awscli = harness::devenv::awscli_venv(stack.config());
    awscli
        .ensure(&stack.config().tools.python)
        .expect("the AWS CLI installs");
    let pg_bin = harness::services::postgres::find_bin_dir(stack.config()).unwrap();
    let home = tempfile::tempdir().unwrap();
    let shell = |commands: &str| {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("set -e\n{script}\n{commands}"))
            .env_clear()
            .env("HOME", home.path())
            .env(
                "PATH",
                format!(
                    "{}:{}:/usr/bin:/bin",
                    awscli.dir().join("bin").display(),
                    pg_bin.display()
                ),
            )
            // Set before the eval: the script must override these.
            .env("AWS_ACCESS_KEY_ID", "AKIAWRONG")
            .env("AWS_SECRET_ACCESS_KEY", "wrong")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, out) = shell("aws sts get-caller-identity --profile dev --query Arn --output text");
    assert!(ok && out.contains(":user/langflow-developer"), "{out}");
    let (ok, out) = shell("aws sts get-caller-identity --query Arn --output text");
    assert!(
        ok && out.contains(":assumed-role/LangflowLocalRole/"),
        "{out}"
    );
    let (ok, out) = shell(
        "aws sts assume-role --profile dev --role-arn \"$(aws configure get role_arn --profile local)\" \
         --role-session-name repro --query Credentials.AccessKeyId --output text",
    );
    assert!(ok && !out.trim().is_empty(), "{out}");
    let (ok, out) = shell("aws s3 ls --recursive \"s3://$LANGFLOW_INFRA_TENANT_BUCKET/tenants/$LANGFLOW_INFRA_TENANT_SCHEMA/\"");
    assert!(
        ok && out.contains("notes-0.txt") && out.contains("notes-1.txt"),
        "{out}"
    );
    let (ok, out) = shell("psql -XAtc 'SELECT current_user, count(*) FROM \"user\"'");
    assert!(
        ok && out.trim() == format!("{}|3", imported.schema),
        "{out}"
    );
    let (ok, out) = shell(&format!(
        "psql -XAtc 'SELECT count(*) FROM \"{}\".\"user\"'",
        acme.schema
    ));
    assert!(!ok && out.contains("permission denied"), "{out}");
    let (ok, out) = shell("psql -XAtc \"SELECT count(*) FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog','information_schema') AND table_schema <> current_user\"");
    assert!(
        ok && out.trim() == "0",
        "the tenant role sees only its schema: {out}"
    );
    // LANGFLOW_URL + LANGFLOW_API_KEY as a client would use them.
    let (ok, out) = shell("printf '%s %s' \"$LANGFLOW_URL\" \"$LANGFLOW_API_KEY\"");
    let (url, key) = out.trim().split_once(' ').unwrap();
    assert!(ok && url == copy.url, "{out}");
    let whoami = TenantClient::new(url)
        .get("api/v1/users/whoami", &Auth::ApiKey(key))
        .await
        .unwrap();
    assert_eq!(whoami.status, 200, "{}", whoami.evidence());
    // A production tenant one Alembic revision behind, as a plain `pg_dump -n` made by a
    // superuser, with its objects in a directory: acme's schema is put back to the previous
    // revision exactly as Langflow 1.13's own downgrade of e5a7c9b1d3f2 does it (drop the two
    // flow_version columns it adds), then dumped and imported; the import migrates it to head.
    let tenancy = tenancy_of(&stack);
    let admin = tenancy.admin_target().connect().await.unwrap();
    admin
        .batch_execute(&format!(
            "ALTER TABLE \"{s}\".flow_version DROP COLUMN retained_reason, DROP COLUMN retained; \
             UPDATE \"{s}\".alembic_version SET version_num = 'c4d8e2f6a1b7'",
            s = acme.schema
        ))
        .await
        .unwrap();
    let older_sql = bundle::restore::pg_dump(
        &harness::services::postgres::find_bin_dir(stack.config()).unwrap(),
        tenancy.admin_target(),
        &acme.schema,
    )
    .unwrap();
    assert!(older_sql.contains("c4d8e2f6a1b7") && !older_sql.contains("retained_reason"));
    let older = dump("prod-acme.sql", older_sql);
    let objects_dir = dir.path().join("prod-objects");
    std::fs::create_dir_all(objects_dir.join("uploads")).unwrap();
    std::fs::write(objects_dir.join("uploads/report.csv"), "a,b\n1,2\n").unwrap();
    let migrated = bundle::import(
        &stack,
        &ImportOptions {
            input: older,
            prefix: Some("acme-prod".into()),
            objects: Some(objects_dir.display().to_string()),
            ..Default::default()
        },
    )
    .await
    .expect("import of an older plain pg_dump");
    println!("{}", bundle::import_table(&migrated));
    assert_eq!(migrated.source_kind, "pg_dump");
    assert_eq!(migrated.from_revision, "c4d8e2f6a1b7");
    assert_eq!(migrated.to_revision, revision);
    assert_eq!(migrated.migration_steps, 1);
    assert_eq!(migrated.objects, 1);
    let columns: i64 = admin
        .query_one(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = $1 \
             AND table_name = 'flow_version' AND column_name IN ('retained', 'retained_reason')",
            &[&migrated.schema],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        columns, 2,
        "the migration to head ran on the imported schema"
    );
    let s3 = harness::services::aws::s3_client(aws_port(&stack), &stack.config().aws.region).await;
    let keys = bundle::objects::list_keys(
        &s3,
        &stack.config().aws.tenant_bucket,
        &bundle::objects::tenant_prefix(&migrated.schema),
    )
    .await
    .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].0.ends_with("uploads/report.csv"), "{keys:?}");
    let prod = migrated
        .endpoint
        .clone()
        .expect("the migrated copy is served");
    TenantClient::new(&prod.url)
        .token(USERS[0].0, USERS[0].1)
        .await
        .expect("a user of the production dump logs in with the old password");
}
