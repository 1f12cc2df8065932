//! The bundle file: a zstd-compressed tar of `manifest.json`, `schema.sql` (plain pg_dump of the
//! tenant's schema) and `objects/<n>` (the tenant's S3 objects, named by index: keys live in the
//! manifest, so no archive path ever becomes a file path on import).
//!
//! Reading never extracts to disk: entries are read into memory by exact name, with size limits,
//! and every digest is checked against the manifest. A bundle is written to `<out>.partial`
//! (0600: it holds users' password hashes) and renamed when complete.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `format` of every bundle manifest.
pub const FORMAT: &str = "langflow-infra-tenant-bundle";
/// Newest manifest version this harness reads and the one it writes.
pub const FORMAT_VERSION: u32 = 1;
/// Largest `manifest.json` read.
const MAX_MANIFEST: u64 = 16 << 20;
/// Largest `schema.sql` read.
const MAX_SCHEMA_SQL: u64 = 2 << 30;
/// Largest single object read.
const MAX_OBJECT: u64 = 1 << 30;
/// Longest object key accepted (S3's own limit).
const MAX_KEY: usize = 1024;

/// What a bundle holds, written as `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] of the harness that wrote it.
    pub format_version: u32,
    /// When it was made (UTC, RFC 3339).
    pub created_at: String,
    /// Tenant prefix.
    pub prefix: String,
    /// Schema id it was exported from.
    pub schema: String,
    /// Langflow version of the stack it came from.
    pub langflow_version: String,
    /// Alembic revision of the schema.
    pub alembic_revision: Option<String>,
    /// Rows per table.
    pub rows: std::collections::BTreeMap<String, u64>,
    /// sha256 (hex) of `schema.sql`.
    pub schema_sql_sha256: String,
    /// The tenant's S3 objects, keys relative to its prefix `tenants/<schema>/`.
    pub objects: Vec<ObjectEntry>,
}

/// One S3 object of a bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectEntry {
    /// Key below the tenant's prefix (`<user id>/<file name>`).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256 (hex) of its bytes.
    pub sha256: String,
}

/// A bundle read and verified.
#[derive(Debug)]
pub struct Bundle {
    /// Its manifest.
    pub manifest: Manifest,
    /// The plain dump of the schema.
    pub schema_sql: String,
    /// Object bytes, in manifest order.
    pub objects: Vec<Vec<u8>>,
}

/// sha256 as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks an object key: relative, no `..`/`.` segments, no empty segments, printable, bounded.
pub fn check_key(key: &str) -> Result<()> {
    let bad = key.is_empty()
        || key.len() > MAX_KEY
        || key.starts_with('/')
        || key.chars().any(char::is_control)
        || key
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..");
    if bad {
        bail!("object key {key:?} is not a safe relative key (no '..', no leading '/', no control characters, at most {MAX_KEY} bytes)");
    }
    Ok(())
}

impl Manifest {
    /// Checks the format, version, names and keys before anything is created.
    pub fn check(&self) -> Result<()> {
        if self.format != FORMAT {
            bail!(
                "not a tenant bundle (manifest format {:?}, expected {FORMAT:?})",
                self.format
            );
        }
        if self.format_version > FORMAT_VERSION {
            bail!(
                "bundle format version {} is newer than this harness reads ({FORMAT_VERSION}); update langflow-infra",
                self.format_version
            );
        }
        let prefix = crate::tenancy::naming::parse_schema_id(&self.schema)
            .context("the bundle's manifest names a bad schema")?;
        if prefix != self.prefix {
            bail!(
                "the bundle's manifest is inconsistent: schema {} does not belong to prefix {}",
                self.schema,
                self.prefix
            );
        }
        for object in &self.objects {
            check_key(&object.key).context("the bundle's manifest")?;
        }
        Ok(())
    }
}

/// Writes a bundle to `out` (via `<out>.partial`, 0600); the previous file, if any, is replaced
/// only when the new one is complete.
pub fn write(
    out: &Path,
    manifest: &Manifest,
    schema_sql: &str,
    objects: &[Vec<u8>],
) -> Result<u64> {
    let mut partial_name = out.file_name().unwrap_or_default().to_os_string();
    partial_name.push(".partial");
    let partial = out.with_file_name(partial_name);
    let result = write_partial(&partial, manifest, schema_sql, objects);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, out)
        .with_context(|| format!("cannot move {} to {}", partial.display(), out.display()))?;
    Ok(std::fs::metadata(out)?.len())
}

fn write_partial(
    partial: &Path,
    manifest: &Manifest,
    schema_sql: &str,
    objects: &[Vec<u8>],
) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    let encoder = zstd::stream::write::Encoder::new(file, 9)?;
    let mut tar = tar::Builder::new(encoder);
    let mut add = |name: &str, bytes: &[u8]| -> Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes)?;
        Ok(())
    };
    add("manifest.json", &serde_json::to_vec_pretty(manifest)?)?;
    add("schema.sql", schema_sql.as_bytes())?;
    for (n, bytes) in objects.iter().enumerate() {
        add(&format!("objects/{n:06}"), bytes)?;
    }
    let encoder = tar.into_inner()?;
    let mut file = encoder.finish()?;
    file.flush()?;
    file.sync_all()?;
    Ok(())
}

/// Whether `path` starts like a zstd frame (a bundle) rather than a plain SQL dump.
pub fn looks_like_bundle(path: &Path) -> Result<bool> {
    let mut magic = [0u8; 4];
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let n = file.read(&mut magic)?;
    Ok(n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd])
}

fn read_limited(entry: &mut dyn Read, size: u64, limit: u64, what: &str) -> Result<Vec<u8>> {
    if size > limit {
        bail!("{what} is {size} bytes, more than the {limit} bytes a bundle may hold");
    }
    let mut bytes = Vec::with_capacity(size as usize);
    Read::take(entry, limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 != size {
        bail!("{what} is truncated ({} of {size} bytes)", bytes.len());
    }
    Ok(bytes)
}

/// Reads and verifies a bundle: every entry known, sizes bounded, digests matching the manifest,
/// nothing missing. Errors name the file and say how to get a good one.
pub fn read(path: &Path) -> Result<Bundle> {
    read_inner(path).with_context(|| {
        format!(
            "bundle {} cannot be imported; export it again with `cargo xtask tenant export`",
            path.display()
        )
    })
}

fn read_inner(path: &Path) -> Result<Bundle> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let decoder = zstd::stream::read::Decoder::new(file)?;
    let mut archive = tar::Archive::new(decoder);
    let mut manifest: Option<Manifest> = None;
    let mut schema_sql: Option<Vec<u8>> = None;
    let mut objects: std::collections::BTreeMap<usize, Vec<u8>> = Default::default();
    let corrupt = |e: std::io::Error| anyhow::anyhow!("it is truncated or corrupt ({e})");
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let size = entry.header().size().map_err(corrupt)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            bail!("entry {name:?} is not a regular file (links and devices are never imported)");
        }
        let read = |entry: &mut dyn Read, limit: u64, what: &str| {
            read_limited(entry, size, limit, what)
                .map_err(|e| anyhow::anyhow!("it is truncated or corrupt ({e:#})"))
        };
        match name.as_str() {
            "manifest.json" => {
                let bytes = read(&mut entry, MAX_MANIFEST, "manifest.json")?;
                manifest = Some(
                    serde_json::from_slice(&bytes)
                        .map_err(|e| anyhow::anyhow!("its manifest.json is not valid ({e})"))?,
                );
            }
            "schema.sql" => schema_sql = Some(read(&mut entry, MAX_SCHEMA_SQL, "schema.sql")?),
            other => {
                let index = other
                    .strip_prefix("objects/")
                    .filter(|n| n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| anyhow::anyhow!("unexpected entry {other:?}"))?;
                objects.insert(index, read(&mut entry, MAX_OBJECT, other)?);
            }
        }
    }
    let manifest =
        manifest.ok_or_else(|| anyhow::anyhow!("it has no manifest.json (truncated?)"))?;
    manifest.check()?;
    let schema_sql =
        schema_sql.ok_or_else(|| anyhow::anyhow!("it has no schema.sql (truncated?)"))?;
    if sha256_hex(&schema_sql) != manifest.schema_sql_sha256 {
        bail!("schema.sql does not match the manifest's digest (corrupt or altered)");
    }
    let schema_sql =
        String::from_utf8(schema_sql).map_err(|_| anyhow::anyhow!("schema.sql is not UTF-8"))?;
    if objects.len() != manifest.objects.len()
        || objects.keys().any(|n| *n >= manifest.objects.len())
    {
        bail!(
            "it holds {} objects where its manifest lists {} (truncated?)",
            objects.len(),
            manifest.objects.len()
        );
    }
    let objects: Vec<Vec<u8>> = objects.into_values().collect();
    for (entry, bytes) in manifest.objects.iter().zip(&objects) {
        if bytes.len() as u64 != entry.size || sha256_hex(bytes) != entry.sha256 {
            bail!(
                "object {:?} does not match the manifest's digest (corrupt or altered)",
                entry.key
            );
        }
    }
    Ok(Bundle {
        manifest,
        schema_sql,
        objects,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(sql: &str, objects: &[Vec<u8>]) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            created_at: "2026-01-01T00:00:00Z".into(),
            prefix: "acme".into(),
            schema: "acme-1a2b3c".into(),
            langflow_version: "1.13.0".into(),
            alembic_revision: Some("e5a7c9b1d3f2".into()),
            rows: Default::default(),
            schema_sql_sha256: sha256_hex(sql.as_bytes()),
            objects: objects
                .iter()
                .enumerate()
                .map(|(n, b)| ObjectEntry {
                    key: format!("u/{n}.txt"),
                    size: b.len() as u64,
                    sha256: sha256_hex(b),
                })
                .collect(),
        }
    }

    #[test]
    fn round_trip_and_damage_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.tar.zst");
        let objects = vec![b"hello".to_vec(), vec![0u8; 70_000]];
        let m = manifest("CREATE SCHEMA x;", &objects);
        write(&path, &m, "CREATE SCHEMA x;", &objects).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(looks_like_bundle(&path).unwrap());
        let b = read(&path).unwrap();
        assert_eq!(b.manifest, m);
        assert_eq!(b.objects, objects);

        // Truncated: every cut is an error naming the file, never a panic or a partial read.
        let bytes = std::fs::read(&path).unwrap();
        for cut in [10, bytes.len() / 2, bytes.len() - 3] {
            let cut_path = dir.path().join(format!("cut{cut}.tar.zst"));
            std::fs::write(&cut_path, &bytes[..cut]).unwrap();
            let e = format!("{:#}", read(&cut_path).unwrap_err());
            assert!(e.contains("cannot be imported") && e.contains("cut"), "{e}");
        }

        // Newer format, hostile key, wrong digest.
        type Change = (fn(&mut Manifest), &'static str);
        let changes: Vec<Change> = vec![
            (|m: &mut Manifest| m.format_version = 99, "newer"),
            (
                |m: &mut Manifest| m.objects[0].key = "../../etc/x".into(),
                "safe relative key",
            ),
            (
                |m: &mut Manifest| m.objects[1].sha256 = "00".into(),
                "digest",
            ),
            (
                |m: &mut Manifest| m.schema = "acme\"; DROP".into(),
                "bad schema",
            ),
            (|m: &mut Manifest| m.prefix = "other".into(), "inconsistent"),
        ];
        for (change, needle) in changes {
            let mut bad = m.clone();
            change(&mut bad);
            let p = dir.path().join("bad.tar.zst");
            write(&p, &bad, "CREATE SCHEMA x;", &objects).unwrap();
            let e = format!("{:#}", read(&p).unwrap_err());
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }
}
