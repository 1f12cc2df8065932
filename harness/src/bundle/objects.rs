//! A tenant's S3 objects in the emulator's tenant bucket (`tenants/<schema>/…`): read for an
//! export, written for an import (and removed again when the import fails), and the sources a
//! production repro can bring them from: a directory, or an `s3://bucket/prefix` on the emulator.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::archive::check_key;

/// Where an import's objects come from when the input is a plain dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectSource {
    /// Files below a directory; keys are their relative paths.
    Dir(PathBuf),
    /// Objects below `s3://bucket/prefix` on the emulator; keys are relative to the prefix.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix (ending in `/` or empty).
        prefix: String,
    },
}

impl ObjectSource {
    /// Parses `--objects`: `s3://bucket[/prefix]` or a directory.
    pub fn parse(text: &str) -> Result<Self> {
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                bail!("--objects {text}: no bucket; use s3://BUCKET/PREFIX");
            }
            let mut prefix = prefix.to_string();
            if !prefix.is_empty() && !prefix.ends_with('/') {
                prefix.push('/');
            }
            return Ok(Self::S3 {
                bucket: bucket.to_string(),
                prefix,
            });
        }
        let dir = PathBuf::from(text);
        if !dir.is_dir() {
            bail!("--objects {text}: not a directory (pass a directory of the tenant's files or s3://BUCKET/PREFIX)");
        }
        Ok(Self::Dir(dir))
    }
}

/// The key prefix of a tenant's objects (Langflow's `LANGFLOW_OBJECT_STORAGE_PREFIX`).
pub fn tenant_prefix(schema: &str) -> String {
    format!("tenants/{schema}/")
}

/// Every object below `prefix` of `bucket`: (key relative to the prefix, bytes), sorted by key.
pub async fn download_all(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut keys: Vec<String> = list_keys(s3, bucket, prefix)
        .await?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    keys.sort();
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let object = s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .map_err(aws_sdk_s3::Error::from)
            .with_context(|| format!("cannot read s3://{bucket}/{key}"))?;
        let bytes = object.body.collect().await?.into_bytes().to_vec();
        let relative = key[prefix.len()..].to_string();
        check_key(&relative).with_context(|| format!("s3://{bucket}/{key}"))?;
        out.push((relative, bytes));
    }
    Ok(out)
}

/// Every regular file below `dir`: (relative path with `/`, bytes). Symbolic links are refused.
pub fn read_dir_tree(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current)
            .with_context(|| format!("cannot read {}", current.display()))?
        {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_symlink() {
                bail!(
                    "{} is a symbolic link; --objects takes regular files only",
                    path.display()
                );
            } else if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                let relative = path
                    .strip_prefix(dir)?
                    .to_str()
                    .with_context(|| format!("{} is not a UTF-8 path", path.display()))?
                    .to_string();
                check_key(&relative)?;
                let bytes = std::fs::read(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                out.push((relative, bytes));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes `objects` below `prefix`; on failure removes what it wrote and fails.
pub async fn upload_all(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    objects: &[(String, Vec<u8>)],
) -> Result<()> {
    for (key, bytes) in objects {
        let full = format!("{prefix}{key}");
        let put = s3
            .put_object()
            .bucket(bucket)
            .key(&full)
            .body(bytes.clone().into())
            .send()
            .await
            .map_err(aws_sdk_s3::Error::from)
            .with_context(|| format!("cannot write s3://{bucket}/{full}"));
        if let Err(e) = put {
            let _ = delete_all(s3, bucket, prefix).await;
            return Err(e);
        }
    }
    Ok(())
}

/// Removes every object below `prefix` (an import that failed, a discarded tenant).
pub async fn delete_all(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Result<()> {
    for (key, _) in list_keys(s3, bucket, prefix).await? {
        s3.delete_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .map_err(aws_sdk_s3::Error::from)
            .with_context(|| format!("cannot delete s3://{bucket}/{key}"))?;
    }
    Ok(())
}

/// Keys (and sizes) below `prefix`.
pub async fn list_keys(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<(String, i64)>> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.clone())
            .send()
            .await
            .map_err(aws_sdk_s3::Error::from)
            .with_context(|| format!("cannot list s3://{bucket}/{prefix} in the emulator"))?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| Some((o.key()?.to_string(), o.size().unwrap_or(0)))),
        );
        token = page.next_continuation_token().map(String::from);
        if token.is_none() {
            return Ok(keys);
        }
    }
}
