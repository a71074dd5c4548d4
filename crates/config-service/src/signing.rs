//! The change feed's signature (H7). Any NATS client that may publish on `audit.ctl.config`
//! could otherwise hand routers and sinks a forged revision (disable a tenant's stream,
//! delete it), and the genuine change would then be skipped as already seen. Every change
//! the publisher puts on the bus carries an Ed25519 signature of its payload; followers get
//! the public key in the routing snapshot (an authenticated gRPC call) and apply only what
//! verifies.
//!
//! One key serves every replica: the first config service to start creates it, seals it
//! with the secrets key like a connection's secrets and stores it (`feed_keys`); the others
//! read that row. A public key cannot forge, so a compromised router or sink cannot sign.

use auditstream_proto::v1::ConfigChange;
use base64::Engine as _;
use prost::Message as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _};

use crate::{
    crypto::Sealer,
    error::ServiceError,
    store::{FEED_KEY_ROW, Store},
};

pub struct FeedSigner {
    key: Ed25519KeyPair,
}

impl std::fmt::Debug for FeedSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The public half only.
        f.debug_struct("FeedSigner")
            .field("public_key", &self.public_key_base64())
            .finish()
    }
}

impl FeedSigner {
    /// The stored key, created (and stored) first if there is none yet.
    pub async fn load_or_create(
        store: &Store,
        sealer: &Sealer,
    ) -> Result<FeedSigner, ServiceError> {
        let fresh: [u8; 32] = rand::random();
        let sealed = store
            .feed_signing_key(sealer.seal(&fresh, FEED_KEY_ROW))
            .await?;
        let seed = sealer
            .open(&sealed, FEED_KEY_ROW)
            .map_err(|e| ServiceError::Internal(format!("the change feed's signing key: {e}")))?;
        Self::from_seed(&seed)
    }

    pub fn from_seed(seed: &[u8]) -> Result<FeedSigner, ServiceError> {
        let key = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| {
            ServiceError::Internal("the change feed's signing key is not a 32-byte seed".into())
        })?;
        Ok(FeedSigner { key })
    }

    /// What followers verify with (`RoutingSnapshot.feed_public_key`).
    pub fn public_key(&self) -> Vec<u8> {
        self.key.public_key().as_ref().to_vec()
    }

    fn public_key_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.public_key())
    }

    /// The change's payload and the value of its `Auditstream-Signature` header.
    pub fn sign(&self, change: &ConfigChange) -> (Vec<u8>, String) {
        let payload = change.encode_to_vec();
        let signature = self.key.sign(&payload);
        (
            payload,
            base64::engine::general_purpose::STANDARD.encode(signature.as_ref()),
        )
    }
}

#[cfg(test)]
mod tests {
    use auditstream_config_client::verify_change;
    use auditstream_proto::v1::config_change::Change;

    use super::*;

    fn change(revision: u64) -> ConfigChange {
        ConfigChange {
            revision,
            change: Some(Change::StreamDeleted("s1".into())),
        }
    }

    #[test]
    fn a_signed_change_verifies_and_nothing_else_does() {
        let signer = FeedSigner::from_seed(&[3; 32]).unwrap();
        let other = FeedSigner::from_seed(&[4; 32]).unwrap();
        let (payload, signature) = signer.sign(&change(7));
        assert!(verify_change(&signer.public_key(), &payload, &signature));
        // Another key, another payload, a mangled or missing signature: refused.
        assert!(!verify_change(&other.public_key(), &payload, &signature));
        let (forged, _) = signer.sign(&change(8));
        assert!(!verify_change(&signer.public_key(), &forged, &signature));
        assert!(!verify_change(
            &signer.public_key(),
            &payload,
            "not base64!"
        ));
        assert!(!verify_change(&signer.public_key(), &payload, ""));
        let (_, other_signature) = other.sign(&change(7));
        assert!(!verify_change(
            &signer.public_key(),
            &payload,
            &other_signature
        ));
    }
}
