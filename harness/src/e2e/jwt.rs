//! HS256 JWTs shaped like Langflow 1.13's access tokens (`sub` = user id, `type` = access, `exp`),
//! for the forged-token check: a tenant must refuse a token signed with another tenant's key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// An access token for `user_id`, valid for an hour, signed with `secret_key` (HS256).
pub fn forge_access_token(user_id: &str, secret_key: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let exp = chrono::Utc::now().timestamp() + 3600;
    let claims = serde_json::json!({"sub": user_id, "type": "access", "exp": exp});
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret_key.as_bytes()).expect("HMAC takes any key length");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_known_hs256_vector() {
        // RFC 7515-style check: same input, same key → same signature; another key → another.
        let a = forge_access_token("u", "key-a");
        let b = forge_access_token("u", "key-b");
        assert_eq!(a.split('.').count(), 3);
        assert_ne!(a.rsplit('.').next(), b.rsplit('.').next());
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        mac.update(b"The quick brown fox jumps over the lazy dog");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }
}
