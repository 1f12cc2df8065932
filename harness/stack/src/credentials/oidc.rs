//! The cluster's OIDC issuer, as EKS runs one: an RSA signing key, the discovery document, the
//! JWKS, and projected-service-account-style tokens (RS256) for `system:serviceaccount:<ns>:<sa>`.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, KeyPair, RsaKeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The audience EKS puts in IRSA tokens and the IAM OIDC provider lists as its client id.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";

/// The issuer's RSA signing key (2048 bit, kept as PKCS#8 DER in a 0600 file).
pub struct SigningKey {
    pair: RsaKeyPair,
    kid: String,
}

impl SigningKey {
    /// A fresh key (not stored).
    pub fn generate() -> Result<Self> {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| anyhow::anyhow!("cannot generate an RSA key"))?;
        Ok(Self::from_pair(pair))
    }

    /// Loads the key at `path`, creating it (mode 0600) when absent.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        if path.exists() {
            let der = std::fs::read(path)
                .with_context(|| format!("cannot read the OIDC key {}", path.display()))?;
            let pair = RsaKeyPair::from_pkcs8(&der).map_err(|e| {
                anyhow::anyhow!(
                    "{} is not an RSA PKCS#8 key ({e}); delete it to generate a new one",
                    path.display()
                )
            })?;
            return Ok(Self::from_pair(pair));
        }
        let key = Self::generate()?;
        let der = key
            .pair
            .as_der()
            .map_err(|_| anyhow::anyhow!("cannot encode the RSA key"))?;
        harness_core::state::write_private(path, der.as_ref())?;
        Ok(key)
    }

    fn from_pair(pair: RsaKeyPair) -> Self {
        let modulus = pair
            .public_key()
            .modulus()
            .big_endian_without_leading_zero();
        let kid = B64URL.encode(&Sha256::digest(modulus)[..12]);
        Self { pair, kid }
    }

    /// Key id, as it appears in token headers and the JWKS.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A 32-hex-digit id in the style of an EKS cluster's OIDC id, derived from the key, so the
    /// issuer URL stays the same for as long as the key does.
    pub fn cluster_id(&self) -> String {
        let modulus = self.pair.public_key().modulus();
        Sha256::digest(modulus.big_endian_without_leading_zero())[..16]
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect()
    }

    /// The issuer URL when served on `127.0.0.1:port`: `http://127.0.0.1:<port>/id/<cluster id>`.
    pub fn issuer_url(&self, port: u16) -> String {
        format!("http://127.0.0.1:{port}/id/{}", self.cluster_id())
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> Value {
        let public = self.pair.public_key();
        json!({
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": B64URL.encode(public.modulus().big_endian_without_leading_zero()),
            "e": B64URL.encode(public.exponent().big_endian_without_leading_zero()),
        })
    }

    /// The JWKS document (`{"keys": [jwk]}`).
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk()] })
    }

    /// Signs `claims` as an RS256 JWT.
    pub fn sign(&self, claims: &TokenClaims) -> Result<String> {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            B64URL.encode(serde_json::to_vec(&header)?),
            B64URL.encode(serde_json::to_vec(claims)?)
        );
        let mut signature = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| anyhow::anyhow!("RSA signing failed"))?;
        Ok(format!("{signing_input}.{}", B64URL.encode(signature)))
    }
}

/// The claims of a projected service-account token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenClaims {
    /// Issuer URL.
    pub iss: String,
    /// `system:serviceaccount:<namespace>:<name>`.
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Issued at.
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
}

impl TokenClaims {
    /// Claims for `namespace`/`service_account`, valid from now for `ttl_secs` (negative: already
    /// expired that long ago).
    pub fn service_account(
        issuer: &str,
        namespace: &str,
        service_account: &str,
        audience: &str,
        ttl_secs: i64,
    ) -> Self {
        let now = unix_now();
        let exp = (now as i64 + ttl_secs).max(1) as u64;
        let iat = if ttl_secs < 0 { exp - 3600 } else { now };
        Self {
            iss: issuer.to_string(),
            sub: service_account_subject(namespace, service_account),
            aud: audience.to_string(),
            exp,
            iat,
            nbf: iat,
        }
    }
}

/// The `sub` EKS puts in a service account's token.
pub fn service_account_subject(namespace: &str, service_account: &str) -> String {
    format!("system:serviceaccount:{namespace}:{service_account}")
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// The discovery document of `issuer` (its JWKS at `<issuer>/keys`, as on EKS).
pub fn discovery(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/keys"),
        "authorization_endpoint": "urn:kubernetes:programmatic_authorization",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "claims_supported": ["sub", "iss"],
        "id_token_signing_alg_values_supported": ["RS256"],
    })
}

/// The issuer host and path as IAM names the provider (`https://` stripped):
/// `arn:aws:iam::<account>:oidc-provider/<this>`.
pub fn provider_host_path(issuer: &str) -> &str {
    issuer
        .split_once("://")
        .map_or(issuer, |(_, rest)| rest)
        .trim_end_matches('/')
}

/// A token's header and claims, not verified.
pub fn decode_unverified(token: &str) -> Result<(Value, Value)> {
    let mut parts = token.trim().split('.');
    let (Some(header), Some(claims), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        bail!("not a JWT (expected three dot-separated parts)");
    };
    let decode = |part: &str, what: &str| -> Result<Value> {
        let bytes = B64URL
            .decode(part)
            .with_context(|| format!("the JWT {what} is not base64url"))?;
        serde_json::from_slice(&bytes).with_context(|| format!("the JWT {what} is not JSON"))
    };
    Ok((decode(header, "header")?, decode(claims, "payload")?))
}

/// Verifies an RS256 token's signature against a JWKS (the key named by its `kid`).
pub fn verify_signature(token: &str, jwks: &Value) -> Result<()> {
    let (header, _) = decode_unverified(token)?;
    if header["alg"] != "RS256" {
        bail!("token algorithm {} is not RS256", header["alg"]);
    }
    let kid = header["kid"].as_str().unwrap_or_default();
    let key = jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["kid"].as_str() == Some(kid))
        .with_context(|| format!("no key with kid {kid:?} in the issuer's JWKS"))?;
    let component = |name: &str| -> Result<Vec<u8>> {
        B64URL
            .decode(key[name].as_str().unwrap_or_default())
            .with_context(|| format!("JWK {name} is not base64url"))
    };
    let public = signature::RsaPublicKeyComponents {
        n: component("n")?,
        e: component("e")?,
    };
    let (signing_input, signature_b64) = token.trim().rsplit_once('.').context("not a JWT")?;
    let signature_bytes = B64URL
        .decode(signature_b64)
        .context("the JWT signature is not base64url")?;
    public
        .verify(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            signing_input.as_bytes(),
            &signature_bytes,
        )
        .map_err(|_| anyhow::anyhow!("signature does not verify with the issuer's key {kid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_tokens_verify_only_with_their_own_key() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let claims = TokenClaims::service_account(
            "http://127.0.0.1:1/id/X",
            "langflow",
            "langflow-sa",
            STS_AUDIENCE,
            600,
        );
        let token = key.sign(&claims).unwrap();
        let (header, decoded) = decode_unverified(&token).unwrap();
        assert_eq!(header["kid"], key.kid());
        assert_eq!(decoded["sub"], "system:serviceaccount:langflow:langflow-sa");
        assert!(verify_signature(&token, &key.jwks()).is_ok());
        let err = verify_signature(&token, &other.jwks()).unwrap_err();
        assert!(err.to_string().contains("no key with kid"), "{err}");
        // Same kid, different key material: the signature check itself must fail.
        let mut forged = other.jwks();
        forged["keys"][0]["kid"] = json!(key.kid());
        assert!(verify_signature(&token, &forged).is_err());
    }

    #[test]
    fn keys_persist_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oidc-key.der");
        let first = SigningKey::load_or_create(&path).unwrap();
        let again = SigningKey::load_or_create(&path).unwrap();
        assert_eq!(first.kid(), again.kid());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn expired_claims_and_provider_names() {
        let claims = TokenClaims::service_account("https://x/id/A", "n", "s", "aud", -60);
        assert!(claims.exp < unix_now());
        assert_eq!(
            provider_host_path("https://oidc.eks.us-east-1.amazonaws.com/id/AB/"),
            "oidc.eks.us-east-1.amazonaws.com/id/AB"
        );
    }
}
