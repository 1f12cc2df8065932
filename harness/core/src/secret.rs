//! Generated secrets: passwords and keys from the operating system's CSPRNG, and 0600 files.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use rand::rngs::OsRng;
use rand::TryRngCore;

const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Random bytes from the OS CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the OS random source is available");
    bytes
}

/// A password of `len` letters and digits from the OS CSPRNG (rejection sampling, no modulo bias).
pub fn password(len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for byte in random_bytes::<64>() {
            // 248 = 4 * 62: bytes at or above it would bias the first characters.
            if byte < 248 && out.len() < len {
                out.push(ALPHANUMERIC[(byte % 62) as usize] as char);
            }
        }
    }
    out
}

/// Lower-case hex of `n` random bytes.
pub fn hex(n: usize) -> String {
    let mut out = String::with_capacity(n * 2);
    while out.len() < n * 2 {
        for byte in random_bytes::<32>() {
            if out.len() < n * 2 {
                out.push_str(&format!("{byte:02x}"));
            }
        }
    }
    out
}

/// A Langflow-style secret key: urlsafe base64 of 32 random bytes (what `secrets.token_urlsafe(32)`
/// makes), so Langflow can derive its Fernet key from it.
pub fn urlsafe_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// Writes `contents` to `path`, created with mode 0600 (truncating an existing file).
pub fn write_secret_file(path: &Path, contents: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_have_length_alphabet_and_differ() {
        let a = password(16);
        let b = password(16);
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn hex_has_requested_length() {
        let h = hex(3);
        assert_eq!(h.len(), 6);
        assert!(h.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
