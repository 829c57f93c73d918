//! Identity verification helpers shared by the server and SDKs.
//!
//! A tenant's backend proves who a visitor is by computing
//! `HMAC-SHA256(signing_secret, user_id)` over the UTF-8 bytes of its own user id and
//! handing the 32-byte result to the app, which sends it in [`crate::Auth::Verified`].

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// `HMAC-SHA256(key, message)`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("hmac takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Constant-time check of `signature == HMAC-SHA256(key, message)`.
pub fn verify_hmac_sha256(key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("hmac takes any key length");
    mac.update(message);
    mac.verify_slice(signature).is_ok()
}

/// The signature a tenant backend computes for a verified visitor.
pub fn sign_user_id(signing_secret: &[u8], user_id: &str) -> [u8; 32] {
    hmac_sha256(signing_secret, user_id.as_bytes())
}

/// SHA-256 of a bearer secret (API key, agent token); only hashes are stored.
pub fn secret_digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let sig = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(sig),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verify_rejects_a_forged_signature() {
        let sig = sign_user_id(b"secret", "user-42");
        assert!(verify_hmac_sha256(b"secret", b"user-42", &sig));
        assert!(!verify_hmac_sha256(b"secret", b"user-43", &sig));
        assert!(!verify_hmac_sha256(b"other", b"user-42", &sig));
        assert!(!verify_hmac_sha256(b"secret", b"user-42", &sig[..31]));
    }
}
