//! Account SAS signing from a storage account key, and SAS redaction.
//!
//! `azure_storage_blob` 1.x has no shared-key credential (only Entra ID tokens and URLs that
//! already carry a SAS), so a connection with an account key gets an **account SAS** signed
//! here (<https://learn.microsoft.com/rest/api/storageservices/create-account-sas>, format of
//! version 2020-12-06 and later): HMAC-SHA256 with the base64-decoded key over
//!
//! ```text
//! account \n permissions \n services \n resource types \n start \n expiry \n IP \n protocol \n version \n encryption scope \n
//! ```
//!
//! The token allows the blob service (`ss=b`), service, container and object level
//! (`srt=sco`: list containers, container properties, blobs) with `rwdlac`; it never leaves
//! the sink (it is appended to the URLs of its own requests) and lives one hour.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::Sha256;
use time::{OffsetDateTime, UtcOffset};

/// `sv`: a version every Azure region and Azurite 3.x accept, with the 2020-12-06 string to sign.
pub const VERSION: &str = "2022-11-02";
/// `sp`: read (container properties), write, delete (the probe's test blob), list
/// (containers), add, create.
pub const PERMISSIONS: &str = "rwdlac";
const SERVICES: &str = "b";
const RESOURCE_TYPES: &str = "sco";

/// Query values are encoded as RFC 3986 unreserved characters plus `%XX`.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A storage account's name and key. `Debug` shows the name only.
#[derive(Clone)]
pub struct AccountKey {
    account: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountKey")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl AccountKey {
    /// `key` as the portal shows it (base64). Surrounding whitespace is ignored.
    pub fn new(account: &str, key: &str) -> Result<AccountKey, String> {
        let key = base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .map_err(|_| "the account key is not valid base64".to_owned())?;
        if key.is_empty() {
            return Err("the account key is empty".into());
        }
        Ok(AccountKey {
            account: account.to_owned(),
            key,
        })
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    /// The query string (no leading `?`) of an account SAS valid from `start` to `expiry`;
    /// `https_only` restricts it to https (`spr=https`), otherwise any protocol is allowed
    /// (an `http://` emulator endpoint).
    pub fn sign(&self, start: OffsetDateTime, expiry: OffsetDateTime, https_only: bool) -> String {
        let (st, se) = (timestamp(start), timestamp(expiry));
        let spr = if https_only { "https" } else { "" };
        let to_sign = string_to_sign(&self.account, &st, &se, spr);
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(to_sign.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let mut pairs = vec![
            ("sv", VERSION),
            ("ss", SERVICES),
            ("srt", RESOURCE_TYPES),
            ("sp", PERMISSIONS),
            ("st", st.as_str()),
            ("se", se.as_str()),
        ];
        if https_only {
            pairs.push(("spr", spr));
        }
        pairs.push(("sig", sig.as_str()));
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, QUERY_VALUE)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

fn string_to_sign(account: &str, start: &str, expiry: &str, protocol: &str) -> String {
    // IP range and encryption scope are empty; the trailing newline is part of the format.
    [
        account,
        PERMISSIONS,
        SERVICES,
        RESOURCE_TYPES,
        start,
        expiry,
        "",
        protocol,
        VERSION,
        "",
        "",
    ]
    .join("\n")
}

/// Replaces the value of every `sig=` (a SAS signature: whoever has it can use the token) with
/// `REDACTED`, so error texts that quote a request URL can be logged and shown.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    // ASCII lowercasing keeps byte offsets, so an index found in `lower` is one in `rest`.
    while let Some(i) = rest.to_ascii_lowercase().find("sig=") {
        out.push_str(&rest[..i + 4]);
        out.push_str("REDACTED");
        rest = &rest[i + 4..];
        let end = rest
            .find(['&', ' ', ')', '"', '\'', '<', '>', '\n'])
            .unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// `YYYY-MM-DDThh:mm:ssZ` (UTC, whole seconds), the form SAS times are signed in.
fn timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> OffsetDateTime {
        OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).unwrap()
    }

    #[test]
    fn known_answer() {
        // Key = the bytes 0..32; expected signature computed independently with
        //   python3 -c 'import hmac,hashlib,base64; print(base64.b64encode(hmac.new(bytes(range(32)),
        //     b"acmeaudit\nrwdlac\nb\nsco\n2026-11-21T10:00:00Z\n2026-11-21T11:00:00Z\n\nhttps\n2022-11-02\n\n",
        //     hashlib.sha256).digest()).decode())'
        let key =
            AccountKey::new("acmeaudit", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        let start = at("2026-11-21T10:00:00.750Z");
        let expiry = at("2026-11-21T12:00:00+01:00");
        assert_eq!(
            string_to_sign("acmeaudit", &timestamp(start), &timestamp(expiry), "https"),
            "acmeaudit\nrwdlac\nb\nsco\n2026-11-21T10:00:00Z\n2026-11-21T11:00:00Z\n\nhttps\n2022-11-02\n\n"
        );
        assert_eq!(
            key.sign(start, expiry, true),
            "sv=2022-11-02&ss=b&srt=sco&sp=rwdlac&st=2026-11-21T10%3A00%3A00Z\
             &se=2026-11-21T11%3A00%3A00Z&spr=https\
             &sig=JFYtAwfaA7ftag%2BWPlWoJUfPs3qUsD6UCcYF63xN3aM%3D"
        );
    }

    #[test]
    fn azurite_read_token_matches() {
        // The test kit reads Azurite with a SAS pre-signed (python3 hmac, see
        // crates/testkit/src/azurite.rs) with the emulator's well-known key: the same
        // algorithm must give the same signature.
        let key = AccountKey::new(
            auditstream_testkit::Azurite::ACCOUNT,
            auditstream_testkit::Azurite::KEY,
        )
        .unwrap();
        let string = string_to_sign("devstoreaccount1", "", "2099-12-31T23:59:59Z", "");
        let mut mac = Hmac::<Sha256>::new_from_slice(&key.key).unwrap();
        mac.update(string.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let encoded = utf8_percent_encode(&sig, QUERY_VALUE).to_string();
        assert!(
            auditstream_testkit::Azurite::SAS.ends_with(&format!("&sig={encoded}")),
            "{sig}"
        );
    }

    #[test]
    fn http_tokens_allow_any_protocol_and_keys_must_be_base64() {
        let key = AccountKey::new("a", "AAAA").unwrap();
        let q = key.sign(
            at("2026-01-01T00:00:00Z"),
            at("2026-01-01T01:00:00Z"),
            false,
        );
        assert!(!q.contains("spr="), "{q}");
        assert!(AccountKey::new("a", "not base64!").is_err());
        assert!(AccountKey::new("a", "").is_err());
        assert!(!format!("{key:?}").contains("AAAA"));
    }
}
