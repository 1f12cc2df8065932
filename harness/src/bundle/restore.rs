//! Getting a schema out of and into the harness's Postgres: `pg_dump` of one tenant schema as the
//! tenant's own role, and the restore of a checked dump ([`super::dump`]) as the *new* tenant's
//! own role, in one transaction, over a plain connection (never psql, never the superuser). The
//! role has no right outside its schema, so even a statement the checks let through cannot reach
//! `public`, another tenant, a role or the server's files.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use futures::SinkExt;

use super::dump::{CheckedDump, Item};
use crate::services::postgres::PgTarget;
use crate::sql::quote_ident;

/// `pg_dump -n <schema>` (plain SQL, no owners, no privileges) as `target`'s role, with the
/// harness's Postgres binaries. The password goes through a 0600 passfile, never argv or logs.
pub fn pg_dump(bin_dir: &Path, target: &PgTarget, schema: &str) -> Result<String> {
    let dir = tempfile::Builder::new().prefix("lfi-pgdump-").tempdir()?;
    let passfile = dir.path().join("pgpass");
    crate::secret::write_secret_file(&passfile, pgpass_line(target).as_bytes())?;
    let out = dir.path().join("schema.sql");
    let mut command = Command::new(bin_dir.join("pg_dump"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            command.env_remove(key);
        }
    }
    let output = command
        .env("PGPASSFILE", &passfile)
        .env("PGCONNECT_TIMEOUT", "5")
        .args(["--host", "127.0.0.1", "--port"])
        .arg(target.port.to_string())
        .args(["--username", &target.user, "--dbname", &target.database])
        // Quoted, so the pattern matches exactly this name (case and '-' kept).
        .arg(format!("--schema={}", quote_ident(schema)))
        .args([
            "--strict-names",
            "--format=plain",
            "--no-owner",
            "--no-privileges",
            "--encoding=UTF8",
            "--no-password",
        ])
        .arg(format!("--file={}", out.display()))
        .output()
        .with_context(|| format!("cannot run {}", bin_dir.join("pg_dump").display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        bail!("pg_dump of schema {schema} failed: {last}");
    }
    std::fs::read_to_string(&out).context("pg_dump wrote a file that is not UTF-8")
}

/// One `.pgpass` line for `target` (`host:port:db:user:password`, `:` and `\` escaped).
pub fn pgpass_line(target: &PgTarget) -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
    format!(
        "127.0.0.1:{}:{}:{}:{}\n",
        target.port,
        esc(&target.database),
        esc(&target.user),
        esc(&target.password)
    )
}

/// Runs a checked dump as `target` (the new tenant's role) in one transaction: all of it or,
/// on the first failing statement, nothing (the error names the dump's line).
pub async fn restore(target: &PgTarget, dump: &CheckedDump) -> Result<()> {
    let client = target.connect().await?;
    client.batch_execute("BEGIN").await?;
    let run = async {
        for item in &dump.items {
            match item {
                Item::Sql { line, text } => client
                    .batch_execute(text)
                    .await
                    .map_err(|e| anyhow!("line {line} of the dump: {}", db_message(&e)))?,
                Item::Copy {
                    line, text, data, ..
                } => {
                    let sink = client
                        .copy_in::<_, bytes::Bytes>(text.as_str())
                        .await
                        .map_err(|e| anyhow!("line {line} of the dump: {}", db_message(&e)))?;
                    futures::pin_mut!(sink);
                    sink.send(bytes::Bytes::from(data.clone().into_bytes()))
                        .await
                        .map_err(|e| anyhow!("line {line} of the dump: {}", db_message(&e)))?;
                    sink.finish()
                        .await
                        .map_err(|e| anyhow!("line {line} of the dump: {}", db_message(&e)))?;
                }
            }
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    match run {
        Ok(()) => client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| anyhow!("commit failed: {}", db_message(&e))),
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// Rows per table of `schema`, as `target` sees them.
pub async fn row_counts(target: &PgTarget, schema: &str) -> Result<BTreeMap<String, u64>> {
    let client = target.connect().await?;
    let tables = client
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY 1",
            &[&schema],
        )
        .await?;
    let mut counts = BTreeMap::new();
    for row in tables {
        let table: String = row.get(0);
        let n: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {}.{}",
                    quote_ident(schema),
                    quote_ident(&table)
                ),
                &[],
            )
            .await?
            .get(0);
        counts.insert(table, n as u64);
    }
    Ok(counts)
}

fn db_message(error: &tokio_postgres::Error) -> String {
    error.as_db_error().map_or_else(
        || error.to_string(),
        |d| format!("{} ({})", d.message(), d.code().code()),
    )
}
