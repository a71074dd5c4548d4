-- The change feed's Ed25519 signing key (H7): one row, created by the first config service
-- that starts, shared by every replica. The 32-byte seed is sealed like a connection's
-- secrets (AES-256-GCM under `key_id`, the row id as AAD); followers get the public key in
-- the routing snapshot.
CREATE TABLE feed_keys (
    id     TEXT PRIMARY KEY,
    sealed BLOB NOT NULL,
    key_id TEXT NOT NULL
);
