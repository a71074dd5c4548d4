//! Secrets at rest: AES-256-GCM under a key from configuration, with the key id stored
//! beside every ciphertext so keys can be rotated (new writes use the active key; old rows
//! stay readable while their key is configured).
//!
//! The row id is bound in as associated data, so a ciphertext copied onto another row does
//! not decrypt. Fingerprints are HMACs (not plain hashes) so that a short secret cannot be
//! recovered by hashing guesses.
//!
//! The fingerprint key is not derived from the active key (L3): that would change every
//! fingerprint on rotation. It is a key of its own, sealed and stored like the feed signing
//! key ([`load_fingerprint_key`]), so it survives rotations and is shared by replicas.
//!
//! Keys that are plainly not random (all one byte, few distinct bytes) or that repeat another
//! configured key are refused at start: a test key like `[0u8; 32]` in production would seal
//! every tenant's credentials under a guessable key.

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

/// Fewest distinct byte values a 32-byte key may have. 32 random bytes have about 30; fewer
/// than 16 happens by chance with probability below 1e-9, so a key under it was typed, not
/// drawn (`[7u8; 32]`, an ASCII phrase, a repeated pattern).
const MIN_DISTINCT_BYTES: usize = 16;

/// The `feed_keys` row holding the fingerprint key (also its AAD when sealed).
pub const FINGERPRINT_KEY_ROW: &str = "fingerprint-key";

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
        let mut seen: BTreeMap<Vec<u8>, &str> = BTreeMap::new();
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
            // The active key seals everything new, so it must be strong and its own. An older
            // key only opens what it sealed: weak or repeated, it is kept (with a warning) so
            // that its rows can be resealed under a strong active key and it can be removed.
            let mut problem = check_strength(id, &bytes).err();
            let twin = seen.insert(bytes.clone(), id);
            if let Some(other) = twin {
                problem = Some(format!(
                    "secrets.keys.{id} is the same key as secrets.keys.{other}; every key id needs its own key (rotate by adding a new random key: head -c 32 /dev/urandom | base64)"
                ));
            }
            if let Some(problem) = problem {
                let active = config.active_key.as_str();
                if id == active || twin == Some(active) {
                    return Err(problem);
                }
                tracing::warn!(
                    key = %id,
                    "{problem}; it is not the active key, so it is only used to open rows sealed with it: run `auditctl reseal`, then remove it"
                );
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
        // Until the stored fingerprint key is loaded (`with_fingerprint_key`): the derivation
        // used before it existed, which is also what seeds the stored key of a database that
        // already holds connections (see `load_fingerprint_key`).
        let fingerprint_key = legacy_fingerprint_key(active);
        Ok(Sealer {
            active_id: config.active_key.clone(),
            keys,
            fingerprint_key,
        })
    }

    /// The same sealer with `key` (from [`load_fingerprint_key`]) as its fingerprint key.
    pub fn with_fingerprint_key(mut self, key: Vec<u8>) -> Sealer {
        self.fingerprint_key = key;
        self
    }

    /// Id of the key new secrets are sealed with.
    pub fn active_key_id(&self) -> &str {
        &self.active_id
    }

    /// `sealed` under the active key: as is when it already is, else opened and sealed
    /// again (for `Reseal`). `None` when it was already current.
    pub fn reseal(&self, sealed: &Sealed, row_id: &str) -> Result<Option<Sealed>, CryptoError> {
        if sealed.key_id == self.active_id {
            return Ok(None);
        }
        let plain = self.open(sealed, row_id)?;
        Ok(Some(self.seal(&plain, row_id)))
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

/// Refuses a key that was evidently not drawn at random.
fn check_strength(id: &str, bytes: &[u8]) -> Result<(), String> {
    let distinct = bytes
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if distinct == 1 {
        return Err(format!(
            "secrets.keys.{id} is one byte repeated, not a random key; generate one with head -c 32 /dev/urandom | base64"
        ));
    }
    if distinct < MIN_DISTINCT_BYTES {
        return Err(format!(
            "secrets.keys.{id} has only {distinct} distinct byte values (random keys have about 30; at least {MIN_DISTINCT_BYTES} are required), so it is not a random key; generate one with head -c 32 /dev/urandom | base64"
        ));
    }
    Ok(())
}

/// The fingerprint key of releases before the stored one: derived from the active key's
/// configured (base64) text, so it changed whenever the active key did.
fn legacy_fingerprint_key(active: &Secret) -> Vec<u8> {
    Sha256::new()
        .chain_update(b"auditstream fingerprint v1\0")
        .chain_update(active.expose().trim().as_bytes())
        .finalize()
        .to_vec()
}

/// The stored fingerprint key, created (and stored, sealed) first if there is none yet;
/// every replica ends up with the first one stored.
///
/// A new database gets a random key. A database that already holds connections gets the key
/// their fingerprints were computed with (the derivation from the active key, as before):
/// the upgrade changes no fingerprint, and from then on rotations change none either.
pub async fn load_fingerprint_key(
    store: &crate::store::Store,
    sealer: &Sealer,
) -> Result<Vec<u8>, crate::error::ServiceError> {
    let fresh: Vec<u8> = if store.has_connections().await? {
        sealer.fingerprint_key.clone()
    } else {
        rand::random::<[u8; 32]>().to_vec()
    };
    let sealed = store
        .service_key(
            FINGERPRINT_KEY_ROW,
            sealer.seal(&fresh, FINGERPRINT_KEY_ROW),
        )
        .await?;
    sealer.open(&sealed, FINGERPRINT_KEY_ROW).map_err(|e| {
        crate::error::ServiceError::Internal(format!("the secrets' fingerprint key: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed key per `seed` that passes the strength check (a SHA-256 digest).
    fn key(seed: u8) -> Secret {
        Secret::new(base64::engine::general_purpose::STANDARD.encode(Sha256::digest([seed])))
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
    fn weak_and_repeated_keys_are_refused() {
        let with = |bytes: &[u8]| SecretsConfig {
            active_key: "k".into(),
            keys: [(
                "k".to_string(),
                Secret::new(base64::engine::general_purpose::STANDARD.encode(bytes)),
            )]
            .into(),
        };
        let zeros = Sealer::new(&with(&[0u8; 32])).unwrap_err();
        assert!(
            zeros.contains("secrets.keys.k is one byte repeated"),
            "{zeros}"
        );
        assert!(Sealer::new(&with(&[7u8; 32])).is_err());
        // An ASCII phrase has too few distinct bytes.
        let phrase = Sealer::new(&with(b"local-only-demo-key-not-secret!!")).unwrap_err();
        assert!(phrase.contains("only 15 distinct byte values"), "{phrase}");
        let pattern: Vec<u8> = (0..32).map(|i| i % 8).collect();
        assert!(Sealer::new(&with(&pattern)).unwrap_err().contains("only 8"));
        // The same key under two ids, one of them active.
        let mut twice = config("k1", &[("k1", 1)]);
        twice.keys.insert("k2".into(), key(1));
        let err = Sealer::new(&twice).unwrap_err();
        assert!(
            err.contains("secrets.keys.k2 is the same key as secrets.keys.k1"),
            "{err}"
        );
        twice.active_key = "k2".into();
        assert!(Sealer::new(&twice).is_err());
        // A random-looking key passes.
        Sealer::new(&config("k1", &[("k1", 1), ("k2", 2)])).unwrap();
        // A weak or repeated key that is not active only opens old rows, so that they can be
        // resealed away from it: accepted.
        let mut retiring = config("k3", &[("k3", 3)]);
        retiring
            .keys
            .insert("k0".into(), with(&[0u8; 32]).keys["k"].clone());
        retiring.keys.insert("k1".into(), key(1));
        retiring.keys.insert("k2".into(), key(1));
        Sealer::new(&retiring).unwrap();
    }

    #[test]
    fn reseal_moves_a_row_to_the_active_key() {
        let old = Sealer::new(&config("k1", &[("k1", 1)])).unwrap();
        let sealed = old.seal(b"v1", "c");
        let rotated = Sealer::new(&config("k2", &[("k1", 1), ("k2", 2)])).unwrap();
        let moved = rotated.reseal(&sealed, "c").unwrap().expect("resealed");
        assert_eq!(moved.key_id, "k2");
        assert_eq!(
            rotated.reseal(&moved, "c").unwrap(),
            None,
            "already current"
        );
        let only_k2 = Sealer::new(&config("k2", &[("k2", 2)])).unwrap();
        assert_eq!(only_k2.open(&moved, "c").unwrap(), b"v1");
    }

    #[test]
    fn the_fingerprint_key_is_the_one_given_not_the_active_key() {
        let stored = vec![5u8; 32];
        let before = Sealer::new(&config("k1", &[("k1", 1)]))
            .unwrap()
            .with_fingerprint_key(stored.clone());
        let after = Sealer::new(&config("k2", &[("k1", 1), ("k2", 2)]))
            .unwrap()
            .with_fingerprint_key(stored);
        assert_eq!(before.fingerprint("s3cret"), after.fingerprint("s3cret"));
        // Without it, the old derivation (which a rotation changes).
        let derived = Sealer::new(&config("k2", &[("k2", 2)])).unwrap();
        assert_ne!(derived.fingerprint("s3cret"), before.fingerprint("s3cret"));
    }

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        let s = Sealer::new(&config("k1", &[("k1", 1)])).unwrap();
        assert_eq!(s.fingerprint("a"), s.fingerprint("a"));
        assert_ne!(s.fingerprint("a"), s.fingerprint("b"));
        assert!(s.fingerprint("a").starts_with("hmac-sha256:"));
    }
}
