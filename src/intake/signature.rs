//! The webhook signature: HMAC-SHA256 of the raw body under the webhook secret, sent as
//! `X-Hub-Signature-256: sha256=<hex>`, checked in constant time.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Checks `sha256=<hex>` against HMAC-SHA256 of `body` under any of `secrets`
/// (several during a rotation), in constant time.
pub fn verify_signature(secrets: &[SecretString], header: Option<&str>, body: &[u8]) -> bool {
    let Some(sig) = header
        .and_then(|h| h.trim().strip_prefix("sha256="))
        .and_then(|hex_sig| hex::decode(hex_sig).ok())
    else {
        return false;
    };
    secrets.iter().any(|s| {
        let mut mac = HmacSha256::new_from_slice(s.expose_secret().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(body);
        mac.verify_slice(&sig).is_ok()
    })
}

/// `sha256=<hex>` for `body` (replay, tests, benchmarks).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's published test vector (docs: "Validating webhook deliveries").
    #[test]
    fn github_signature_test_vector() {
        let secret = "It's a Secret to Everybody";
        let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign(secret, b"Hello, World!"), expected);
        let secrets = [SecretString::from(secret.to_string())];
        assert!(verify_signature(&secrets, Some(expected), b"Hello, World!"));
        assert!(!verify_signature(
            &secrets,
            Some(expected),
            b"Hello, World?"
        ));
        assert!(!verify_signature(&secrets, None, b"Hello, World!"));
        assert!(!verify_signature(
            &secrets,
            Some("sha256=zz"),
            b"Hello, World!"
        ));
        assert!(!verify_signature(
            &secrets,
            Some(&expected[7..]),
            b"Hello, World!"
        ));
    }

    #[test]
    fn any_secret_of_a_rotation_verifies() {
        let secrets = [
            SecretString::from("old".to_string()),
            SecretString::from("new".to_string()),
        ];
        assert!(verify_signature(&secrets, Some(&sign("new", b"x")), b"x"));
        assert!(verify_signature(&secrets, Some(&sign("old", b"x")), b"x"));
        assert!(!verify_signature(
            &secrets,
            Some(&sign("other", b"x")),
            b"x"
        ));
    }
}
