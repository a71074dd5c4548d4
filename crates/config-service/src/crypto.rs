//! Secrets at rest: AES-256-GCM under a key from configuration, with the key id stored
//! beside every ciphertext so keys can be rotated (new writes use the active key; old rows
//! stay readable while their key is configured).
//!
//! The row id is bound in as associated data, so a ciphertext copied onto another row does
//! not decrypt. Fingerprints are HMACs (not plain hashes) so that a short secret cannot be
//! recovered by hashing guesses.

use std::collections::BTreeMap;

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use auditstream_telemetry::Secret;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const NONCE_LEN: usize = 12;

/// `secrets` configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// Id of the key new secrets are sealed with.
    pub active_key: String,
    /// Key id → base64 of 32 random bytes (`head -c 32 /dev/urandom | base64`).
    pub keys: BTreeMap<String, Secret>,
}

pub struct Sealer {
    active_id: String,
    keys: BTreeMap<String, Aes256Gcm>,
    fingerprint_key: Vec<u8>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key ids only: key material never reaches a log.
        f.debug_struct("Sealer")
            .field("active_key", &self.active_id)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A sealed secret: which key, and nonce ‖ ciphertext ‖ tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub blob: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("secrets.keys has no key {0:?}; it is needed to read a stored secret")]
    UnknownKey(String),
    #[error("a stored secret failed authentication (wrong key or tampered data)")]
    Corrupt,
}

impl Sealer {
    pub fn new(config: &SecretsConfig) -> Result<Sealer, String> {
        if config.keys.is_empty() {
            return Err("secrets.keys is empty: configure at least one 32-byte key (base64), e.g. AUDITSTREAM_SECRETS__KEYS='{\"k1\":\"<base64>\"}' and AUDITSTREAM_SECRETS__ACTIVE_KEY=k1".into());
        }
        let mut keys = BTreeMap::new();
        for (id, value) in &config.keys {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value.expose().trim())
                .map_err(|_| format!("secrets.keys.{id} is not valid base64"))?;
            if bytes.len() != 32 {
                return Err(format!(
                    "secrets.keys.{id} must decode to 32 bytes, got {}",
                    bytes.len()
                ));
            }
            keys.insert(
                id.clone(),
                Aes256Gcm::new_from_slice(&bytes).expect("32-byte key"),
            );
        }
        let active = config.keys.get(&config.active_key).ok_or_else(|| {
            format!(
                "secrets.active_key {:?} is not one of secrets.keys",
                config.active_key
            )
        })?;
        // A separate key for fingerprints, derived so that it is stable for this active key.
        let fingerprint_key = Sha256::new()
            .chain_update(b"auditstream fingerprint v1\0")
            .chain_update(active.expose().trim().as_bytes())
            .finalize()
            .to_vec();
        Ok(Sealer {
            active_id: config.active_key.clone(),
            keys,
            fingerprint_key,
        })
    }

    pub fn seal(&self, plaintext: &[u8], row_id: &str) -> Sealed {
        let cipher = &self.keys[&self.active_id];
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = Nonce::from_slice(&nonce_bytes);
        let ciphertext = cipher
            .encrypt(
                nonce,
                Payload {
                    msg: plaintext,
                    aad: row_id.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut blob = nonce_bytes.to_vec();
        blob.extend_from_slice(&ciphertext);
        Sealed {
            key_id: self.active_id.clone(),
            blob,
        }
    }

    pub fn open(&self, sealed: &Sealed, row_id: &str) -> Result<Vec<u8>, CryptoError> {
        let cipher = self
            .keys
            .get(&sealed.key_id)
            .ok_or_else(|| CryptoError::UnknownKey(sealed.key_id.clone()))?;
        if sealed.blob.len() < NONCE_LEN {
            return Err(CryptoError::Corrupt);
        }
        let (nonce, ciphertext) = sealed.blob.split_at(NONCE_LEN);
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: row_id.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Corrupt)
    }

    /// `hmac-sha256:<12 hex>`: enough to tell two secrets apart, useless for recovering one.
    pub fn fingerprint(&self, secret: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.fingerprint_key).expect("any key length");
        mac.update(secret.as_bytes());
        let digest = mac.finalize().into_bytes();
        let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("hmac-sha256:{hex}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Secret {
        Secret::new(base64::engine::general_purpose::STANDARD.encode([byte; 32]))
    }

    fn config(active: &str, keys: &[(&str, u8)]) -> SecretsConfig {
        SecretsConfig {
            active_key: active.into(),
            keys: keys
                .iter()
                .map(|(id, b)| (id.to_string(), key(*b)))
                .collect(),
        }
    }

    #[test]
    fn seals_and_opens_and_binds_the_row() {
        let s = Sealer::new(&config("k1", &[("k1", 1)])).unwrap();
        let sealed = s.seal(b"hunter2-secret", "conn-1");
        assert!(!sealed.blob.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(s.open(&sealed, "conn-1").unwrap(), b"hunter2-secret");
        assert!(matches!(
            s.open(&sealed, "conn-2"),
            Err(CryptoError::Corrupt)
        ));
        let mut tampered = sealed.clone();
        *tampered.blob.last_mut().unwrap() ^= 1;
        assert!(matches!(
            s.open(&tampered, "conn-1"),
            Err(CryptoError::Corrupt)
        ));
        // Fresh nonce each time.
        assert_ne!(s.seal(b"x", "c").blob, s.seal(b"x", "c").blob);
    }

    #[test]
    fn rotation_keeps_old_rows_readable() {
        let old = Sealer::new(&config("k1", &[("k1", 1)])).unwrap();
        let sealed = old.seal(b"v1", "c");
        let rotated = Sealer::new(&config("k2", &[("k1", 1), ("k2", 2)])).unwrap();
        assert_eq!(rotated.open(&sealed, "c").unwrap(), b"v1");
        assert_eq!(rotated.seal(b"v2", "c").key_id, "k2");
        let without_k1 = Sealer::new(&config("k2", &[("k2", 2)])).unwrap();
        assert!(
            matches!(without_k1.open(&sealed, "c"), Err(CryptoError::UnknownKey(k)) if k == "k1")
        );
    }

    #[test]
    fn bad_configuration_is_explained() {
        assert!(
            Sealer::new(&SecretsConfig::default())
                .unwrap_err()
                .contains("secrets.keys is empty")
        );
        assert!(
            Sealer::new(&config("k9", &[("k1", 1)]))
                .unwrap_err()
                .contains("not one of secrets.keys")
        );
        let short = SecretsConfig {
            active_key: "k".into(),
            keys: [("k".to_string(), Secret::new("c2hvcnQ="))].into(),
        };
        assert!(Sealer::new(&short).unwrap_err().contains("32 bytes"));
    }

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        let s = Sealer::new(&config("k1", &[("k1", 1)])).unwrap();
        assert_eq!(s.fingerprint("a"), s.fingerprint("a"));
        assert_ne!(s.fingerprint("a"), s.fingerprint("b"));
        assert!(s.fingerprint("a").starts_with("hmac-sha256:"));
    }
}
