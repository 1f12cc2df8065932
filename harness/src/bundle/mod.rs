//! Tenant export / import: a tenant's state (its schema with its data and Alembic revision, its
//! S3 objects) as one file, and that file — or a plain `pg_dump -n '<schema>'` of a production
//! tenant, with its objects from a directory or an `s3://` prefix on the emulator — turned into a
//! new tenant of the running stack under the harness's tenant contract.
//!
//! - [`archive`]: the `.tar.zst` bundle and its manifest (prefix, schema, Langflow version,
//!   Alembic revision, rows per table, object digests). No secrets: users' bcrypt hashes travel
//!   with the data, the instance's secret key does not (`--secret-key-out` writes it to a separate
//!   0600 file, `--secret-key-from` gives it to the imported tenant).
//! - [`dump`]: the dump checked statement by statement and renamed to the new schema.
//! - [`restore`]: pg_dump as the tenant role; restore as the new tenant's role, one transaction.
//! - [`objects`]: the tenant's objects in the emulator's bucket.
//!
//! Invariants: everything that can be checked is checked before anything is created (bundle
//! digests, names, keys, every statement, the Alembic revision against the Langflow the stack
//! runs); after that, any failure removes what the import made (schema, role, secrets, objects,
//! instance), so an import either yields a serving tenant or leaves the stack as it was.

pub mod archive;
pub mod dump;
pub mod objects;
pub mod restore;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use crate::progress::Step;
use crate::stack::{Stack, TenantEndpoint};
use crate::tenancy::{naming, Tenancy, TenantSchema};
use archive::{Manifest, ObjectEntry};
use objects::ObjectSource;

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    /// The bundle file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Tenant prefix.
    pub prefix: String,
    /// Schema id exported.
    pub schema: String,
    /// Alembic revision of the schema.
    pub alembic_revision: Option<String>,
    /// Rows per table.
    pub rows: BTreeMap<String, u64>,
    /// Number of S3 objects.
    pub objects: usize,
    /// Their total size in bytes.
    pub object_bytes: u64,
    /// Where the instance's secret key was written (`--secret-key-out`), if asked.
    pub secret_key_file: Option<PathBuf>,
}

/// What to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// A bundle (`.tar.zst`) or a plain SQL `pg_dump -n '<schema>'`.
    pub input: PathBuf,
    /// Prefix of the new tenant (default: the bundle's / the dump's schema's prefix).
    pub prefix: Option<String>,
    /// For a plain dump: where the tenant's objects are (`DIR` or `s3://bucket/prefix`).
    pub objects: Option<String>,
    /// A file holding the source instance's `LANGFLOW_SECRET_KEY`.
    pub secret_key_from: Option<PathBuf>,
}

/// What an import made.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// New tenant prefix.
    pub prefix: String,
    /// New schema id.
    pub schema: String,
    /// Schema the dump was made of.
    pub source_schema: String,
    /// `bundle` or `pg_dump`.
    pub source_kind: String,
    /// Langflow version the bundle came from (bundles only).
    pub source_langflow_version: Option<String>,
    /// Alembic revision of the dump.
    pub from_revision: String,
    /// Alembic head the tenant is at now.
    pub to_revision: String,
    /// Migration steps run (0: the dump was at head).
    pub migration_steps: usize,
    /// Rows per table after the restore.
    pub rows: BTreeMap<String, u64>,
    /// S3 objects written below the tenant's prefix.
    pub objects: usize,
    /// Statements of the dump left out, by kind (ownership, privileges, the schema itself).
    pub skipped: BTreeMap<String, usize>,
    /// Which secret key the instance runs with and what that means for encrypted data.
    pub secret_key: String,
    /// Where the tenant is served, when the stack's gateway runs.
    pub endpoint: Option<TenantEndpoint>,
}

/// The emulator's port of the running stack.
fn aws_port(stack: &Stack) -> Result<u16> {
    Stack::service_port(&stack.running_state()?, "aws")
}

/// Exports tenant `schema` of the running stack to `out`.
pub async fn export(
    stack: &Stack,
    schema: &str,
    out: &Path,
    secret_key_out: Option<&Path>,
) -> Result<ExportReport> {
    naming::parse_schema_id(schema)?;
    let config = stack.config();
    let tenancy = Tenancy::for_running_stack(config, stack.files())?;
    let prefix = tenancy.require_tenant(schema).await?;
    let aws_port = aws_port(stack)?;
    let step = Step::start(format!("exporting {schema}"));
    let result = async {
        let target = tenancy.tenant_target(schema)?;
        step.set_message(format!("pg_dump of {schema}"));
        let bin_dir = crate::services::postgres::find_bin_dir(config)?;
        let sql = {
            let (bin_dir, target, schema) = (bin_dir, target.clone(), schema.to_string());
            tokio::task::spawn_blocking(move || restore::pg_dump(&bin_dir, &target, &schema))
                .await??
        };
        // The export is checked like an import would check it: a bundle that cannot be
        // imported is never written.
        let checked = dump::check(&sql, schema, &[])
            .context("the harness's own dump did not pass the import checks (a bug)")?;
        let rows = restore::row_counts(&target, schema).await?;
        step.set_message(format!("objects of {schema}"));
        let s3 = crate::services::aws::s3_client(aws_port, &config.aws.region).await;
        let downloaded = objects::download_all(
            &s3,
            &config.aws.tenant_bucket,
            &objects::tenant_prefix(schema),
        )
        .await?;
        let manifest = Manifest {
            format: archive::FORMAT.into(),
            format_version: archive::FORMAT_VERSION,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            prefix: prefix.clone(),
            schema: schema.to_string(),
            langflow_version: config.langflow.version.clone(),
            alembic_revision: checked.alembic_revision.clone(),
            rows: rows.clone(),
            schema_sql_sha256: archive::sha256_hex(sql.as_bytes()),
            objects: downloaded
                .iter()
                .map(|(key, bytes)| ObjectEntry {
                    key: key.clone(),
                    size: bytes.len() as u64,
                    sha256: archive::sha256_hex(bytes),
                })
                .collect(),
        };
        step.set_message(format!("writing {}", out.display()));
        let bodies: Vec<Vec<u8>> = downloaded.into_iter().map(|(_, b)| b).collect();
        let object_bytes = bodies.iter().map(|b| b.len() as u64).sum();
        let bytes = {
            let (out, manifest) = (out.to_path_buf(), manifest.clone());
            let bodies = bodies.clone();
            tokio::task::spawn_blocking(move || archive::write(&out, &manifest, &sql, &bodies))
                .await??
        };
        if let Some(path) = secret_key_out {
            let key = tenancy.tenant_secrets(schema)?.secret_key;
            crate::state::write_private(path, format!("{key}\n").as_bytes())?;
        }
        Ok(ExportReport {
            path: out.to_path_buf(),
            bytes,
            prefix: prefix.clone(),
            schema: schema.to_string(),
            alembic_revision: manifest.alembic_revision,
            rows,
            objects: manifest.objects.len(),
            object_bytes,
            secret_key_file: secret_key_out.map(Path::to_path_buf),
        })
    }
    .await;
    match &result {
        Ok(r) => step.finish(format!("{} bytes, {} objects", r.bytes, r.objects)),
        Err(_) => step.fail(),
    }
    result
}

/// The input of an import, read and checked up to the point where the target is needed.
struct Input {
    kind: &'static str,
    sql: String,
    manifest: Option<Manifest>,
    objects: Vec<(String, Vec<u8>)>,
}

async fn read_input(stack: &Stack, options: &ImportOptions, aws_port: u16) -> Result<Input> {
    let path = &options.input;
    if !path.is_file() {
        bail!("{}: no such file; pass a bundle from `cargo xtask tenant export` or a plain `pg_dump -n '<schema>'`", path.display());
    }
    if archive::looks_like_bundle(path)? {
        if options.objects.is_some() {
            bail!(
                "--objects is for plain dumps; the bundle {} carries its own objects",
                path.display()
            );
        }
        let bundle = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || archive::read(&path)).await??
        };
        let objects = bundle
            .manifest
            .objects
            .iter()
            .map(|o| o.key.clone())
            .zip(bundle.objects)
            .collect();
        return Ok(Input {
            kind: "bundle",
            sql: bundle.schema_sql,
            manifest: Some(bundle.manifest),
            objects,
        });
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.starts_with(b"PGDMP") {
        bail!(
            "{} is a pg_dump custom-format archive; convert it to plain SQL with `pg_restore -f dump.sql {}` and import dump.sql",
            path.display(),
            path.display()
        );
    }
    let sql = String::from_utf8(bytes).map_err(|_| {
        anyhow!(
            "{} is neither a bundle nor a UTF-8 plain SQL dump",
            path.display()
        )
    })?;
    let objects = match options
        .objects
        .as_deref()
        .map(ObjectSource::parse)
        .transpose()?
    {
        None => Vec::new(),
        Some(ObjectSource::Dir(dir)) => {
            tokio::task::spawn_blocking(move || objects::read_dir_tree(&dir)).await??
        }
        Some(ObjectSource::S3 { bucket, prefix }) => {
            let s3 = crate::services::aws::s3_client(aws_port, &stack.config().aws.region).await;
            objects::download_all(&s3, &bucket, &prefix).await?
        }
    };
    Ok(Input {
        kind: "pg_dump",
        sql,
        manifest: None,
        objects,
    })
}

/// Reads a `--secret-key-from` file: one line, printable, no spaces.
fn read_secret_key(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the secret key file {}", path.display()))?;
    let key = text.trim();
    if key.is_empty() || key.len() > 512 || key.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        bail!(
            "{} does not hold one secret key (one line: the source instance's LANGFLOW_SECRET_KEY, as `tenant export --secret-key-out` writes it)",
            path.display()
        );
    }
    Ok(key.to_string())
}

/// Langflow's Alembic revisions (head first), asked of the Langflow the stack runs.
async fn langflow_revisions(stack: &Stack) -> Result<Vec<String>> {
    const SCRIPT: &str = include_str!("../../python/alembic_revisions.py");
    let config = stack.config();
    let state = stack.running_state()?;
    let runtime = crate::runtime::for_run(&state.runtime, config)?;
    let launcher =
        crate::services::langflow::Launcher::prepare(config, runtime.placement()).await?;
    let scratch = config.state_dir.join("tenants");
    std::fs::create_dir_all(&scratch)?;
    let env = BTreeMap::from([("HOME".to_string(), scratch.display().to_string())]);
    let spec = launcher.python_spec(
        "alembic-revisions",
        vec!["-c".into(), SCRIPT.into()],
        env,
        scratch,
        Vec::new(),
    );
    let marker = crate::runtime::run_marker(config);
    let output = tokio::task::spawn_blocking(move || {
        runtime.run_to_completion(&spec, &marker, Duration::from_secs(300))
    })
    .await??;
    if !output.success {
        let last = output
            .stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        bail!(
            "cannot read Langflow's Alembic revisions ({}): {last}",
            output.status
        );
    }
    let parsed: serde_json::Value = serde_json::from_str(output.stdout.trim())
        .context("Langflow's Alembic revisions were not JSON")?;
    let revisions: Vec<String> = parsed["revisions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if revisions.is_empty() {
        bail!("Langflow reported no Alembic revisions");
    }
    Ok(revisions)
}

/// How far `revision` is behind Langflow's head (0 = at head); an unknown (newer) revision is
/// refused with what to do.
pub fn migration_steps(
    revision: &str,
    revisions: &[String],
    langflow_version: &str,
) -> Result<usize> {
    revisions.iter().position(|r| r == revision).ok_or_else(|| {
        anyhow!(
            "the dump is at Alembic revision {revision}, which Langflow {langflow_version} does not \
             know (head {}): it comes from a newer Langflow. Import it into a stack running that \
             Langflow version ([langflow] version in harness.toml); a schema is never migrated down",
            revisions.first().map(String::as_str).unwrap_or("?")
        )
    })
}

/// Imports a bundle or a plain dump as a new tenant of the running stack and starts its instance.
pub async fn import(stack: &Stack, options: &ImportOptions) -> Result<ImportReport> {
    let config = stack.config();
    if let Some(prefix) = &options.prefix {
        naming::validate_prefix(prefix)?;
    }
    let secret_key = options
        .secret_key_from
        .as_deref()
        .map(read_secret_key)
        .transpose()?;
    let aws_port = aws_port(stack)?;
    let tenancy = Tenancy::for_running_stack(config, stack.files())?;
    let step = Step::start(format!("importing {}", options.input.display()));
    let checked = async {
        let input = read_input(stack, options, aws_port).await?;
        // The prefix: asked for, else the bundle's, else the dump's schema's.
        let prefix = match (&options.prefix, &input.manifest) {
            (Some(p), _) => p.clone(),
            (None, Some(m)) => m.prefix.clone(),
            (None, None) => {
                let source = dump::check(&input.sql, "probe-000000", &[])?.source_schema;
                naming::parse_schema_id(&source)
                    .map(String::from)
                    .or_else(|_| naming::validate_prefix(&source).map(|_| source.clone()))
                    .map_err(|_| {
                        anyhow!("schema {source:?} of the dump is no tenant prefix; pass --prefix NAME")
                    })?
            }
        };
        let schema = Tenancy::new_schema_id(&prefix)?;
        // Checked again under the lock when the tenant is made; here so a collision is
        // reported before Langflow is asked anything.
        if let Some(existing) = tenancy.find_prefix(&prefix).await? {
            bail!(
                "prefix '{prefix}' already exists as schema {}; import under another prefix with --prefix NEW",
                existing.schema
            );
        }
        let foreign = tenancy.all_schemas().await?;
        step.set_message("checking the dump");
        let dump = {
            let (sql, schema) = (input.sql.clone(), schema.clone());
            tokio::task::spawn_blocking(move || dump::check(&sql, &schema, &foreign)).await?
        }
        .with_context(|| format!("{} cannot be imported", options.input.display()))?;
        if let Some(manifest) = &input.manifest {
            if manifest.schema != dump.source_schema {
                bail!(
                    "the bundle is inconsistent: its manifest names schema {} but its dump is of {}; export it again",
                    manifest.schema,
                    dump.source_schema
                );
            }
            if manifest.alembic_revision != dump.alembic_revision {
                bail!("the bundle is inconsistent: manifest and dump disagree on the Alembic revision; export it again");
            }
            let dumped: BTreeMap<String, u64> = dump
                .rows
                .iter()
                .filter_map(|(t, n)| Some((t.split_once('.')?.1.to_string(), *n)))
                .collect();
            let listed: BTreeMap<String, u64> =
                manifest.rows.iter().filter(|(_, n)| **n > 0).map(|(t, n)| (t.clone(), *n)).collect();
            if dumped.into_iter().filter(|(_, n)| *n > 0).collect::<BTreeMap<_, _>>() != listed {
                bail!("the bundle is inconsistent: the dump's rows differ from the manifest's counts; export it again");
            }
        }
        let revision = dump.alembic_revision.clone().ok_or_else(|| {
            anyhow!(
                "{}: the dump has no alembic_version row, so it is not a Langflow schema (dump the tenant's schema with `pg_dump -n '<schema>'`)",
                options.input.display()
            )
        })?;
        step.set_message("asking Langflow for its Alembic revisions");
        let revisions = langflow_revisions(stack).await?;
        let steps = migration_steps(&revision, &revisions, &config.langflow.version)?;
        Ok::<_, anyhow::Error>((input, prefix, schema, dump, revision, revisions, steps))
    }
    .await;
    let (input, prefix, schema, dump, revision, revisions, steps) = match checked {
        Ok(v) => v,
        Err(e) => {
            step.fail();
            return Err(e);
        }
    };

    // From here on, everything made is removed again on failure.
    let lock = tenancy.lock_for_change()?;
    step.set_message(format!("creating {schema}"));
    if let Err(e) = tenancy
        .create_empty(&prefix, &schema, secret_key.clone())
        .await
    {
        step.fail();
        return Err(e);
    }
    let s3 = crate::services::aws::s3_client(aws_port, &config.aws.region).await;
    let bucket = config.aws.tenant_bucket.clone();
    let object_prefix = objects::tenant_prefix(&schema);
    let filled = async {
        step.set_message(format!("restoring into {schema} as its own role"));
        let target = tenancy.tenant_target(&schema)?;
        restore::restore(&target, &dump).await.with_context(|| {
            format!(
                "{} cannot be restored (nothing was kept)",
                options.input.display()
            )
        })?;
        let rows = restore::row_counts(&target, &schema).await?;
        for (table, expected) in &dump.rows {
            let name = table.split_once('.').map_or(table.as_str(), |(_, t)| t);
            let got = rows.get(name).copied().unwrap_or(0);
            if got != *expected {
                bail!(
                    "table {name} has {got} rows after the restore where the dump has {expected}"
                );
            }
        }
        step.set_message(format!("{} objects", input.objects.len()));
        objects::upload_all(&s3, &bucket, &object_prefix, &input.objects).await?;
        if steps > 0 {
            step.set_message(format!(
                "migrating {schema} from {revision} ({steps} revisions)"
            ));
            tenancy.migrate(&schema).await?;
        }
        tenancy.mark_complete(&schema).await?;
        tenancy.ensure_operator(&schema).await?;
        restore::row_counts(&target, &schema).await
    }
    .await;
    let rows = match filled {
        Ok(rows) => rows,
        Err(e) => {
            step.fail();
            let _ = objects::delete_all(&s3, &bucket, &object_prefix).await;
            let cleanup = tenancy.discard(&schema).await;
            return Err(with_cleanup(e, &schema, cleanup));
        }
    };
    drop(lock);
    step.set_message(format!("starting the instance of {prefix}"));
    let tenant = TenantSchema {
        schema: schema.clone(),
        prefix: prefix.clone(),
        users: rows.get("user").copied().unwrap_or(0) as i64,
        revision: revisions.first().cloned(),
    };
    let endpoint = match stack.attach_tenant(&tenant).await {
        Ok(endpoint) => endpoint,
        Err(e) => {
            step.fail();
            let _ = stack.detach_tenant(&prefix);
            let _ = objects::delete_all(&s3, &bucket, &object_prefix).await;
            let cleanup = tenancy.discard(&schema).await;
            return Err(with_cleanup(
                e.context(format!("the imported tenant {prefix} did not start")),
                &schema,
                cleanup,
            ));
        }
    };
    step.finish(format!(
        "{schema}: {} rows, {} objects",
        rows.values().sum::<u64>(),
        input.objects.len()
    ));
    Ok(ImportReport {
        secret_key: match &options.secret_key_from {
            Some(path) => format!("from {} (encrypted variables decrypt as in the source)", path.display()),
            None => "new (credential variables stored encrypted by the source cannot be decrypted; pass --secret-key-from FILE for a faithful repro)".into(),
        },
        prefix,
        schema,
        source_schema: dump.source_schema.clone(),
        source_kind: input.kind.into(),
        source_langflow_version: input.manifest.as_ref().map(|m| m.langflow_version.clone()),
        from_revision: revision,
        to_revision: revisions.first().cloned().unwrap_or_default(),
        migration_steps: steps,
        rows,
        objects: input.objects.len(),
        skipped: dump.skipped.clone(),
        endpoint,
    })
}

fn with_cleanup(error: anyhow::Error, schema: &str, cleanup: Result<()>) -> anyhow::Error {
    match cleanup {
        Ok(()) => error.context(format!(
            "import failed; schema {schema}, its role, secrets and objects were removed"
        )),
        Err(c) => error.context(format!(
            "import failed and removing schema {schema} failed too ({c:#})"
        )),
    }
}

/// The export as a table.
pub fn export_table(report: &ExportReport) -> String {
    let mut table = crate::report::table(&[
        "bundle", "schema", "revision", "tables", "rows", "objects", "size",
    ]);
    table.add_row(vec![
        report.path.display().to_string(),
        report.schema.clone(),
        report.alembic_revision.clone().unwrap_or_default(),
        report.rows.len().to_string(),
        report.rows.values().sum::<u64>().to_string(),
        format!("{} ({} bytes)", report.objects, report.object_bytes),
        format!("{} bytes", report.bytes),
    ]);
    table.to_string()
}

/// The import as a table.
pub fn import_table(report: &ImportReport) -> String {
    let mut table = crate::report::table(&["", ""]);
    let migration = if report.migration_steps == 0 {
        format!("{} (at head, nothing to migrate)", report.from_revision)
    } else {
        format!(
            "{} -> {} ({} revisions migrated)",
            report.from_revision, report.to_revision, report.migration_steps
        )
    };
    let skipped = report
        .skipped
        .iter()
        .map(|(k, n)| format!("{k} x{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    for (k, v) in [
        (
            "tenant",
            format!("{} (schema {})", report.prefix, report.schema),
        ),
        (
            "from",
            format!("{} of schema {}", report.source_kind, report.source_schema),
        ),
        ("alembic", migration),
        (
            "rows",
            format!(
                "{} in {} tables",
                report.rows.values().sum::<u64>(),
                report.rows.len()
            ),
        ),
        (
            "users",
            report.rows.get("user").copied().unwrap_or(0).to_string(),
        ),
        ("objects", report.objects.to_string()),
        (
            "left out",
            if skipped.is_empty() {
                "nothing".into()
            } else {
                skipped
            },
        ),
        ("secret key", report.secret_key.clone()),
        (
            "url",
            report
                .endpoint
                .as_ref()
                .map(|e| e.url.clone())
                .unwrap_or_else(|| "the stack's gateway is not running".into()),
        ),
    ] {
        table.add_row(vec![k.to_string(), v]);
    }
    table.to_string()
}
