//! IDs that end up in NATS subjects (`audit.ingest.<org>.<workspace>.<event_type>`).
//!
//! A subject token must never contain `.`, `*`, `>` or whitespace, or an ID could address
//! another tenant's subjects; the rule is deliberately narrower than NATS allows.

use std::fmt;

/// Longest ID accepted, in bytes (all allowed characters are ASCII).
pub const MAX_ID_LEN: usize = 64;

/// Why an ID was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("is {0} characters long; at most {MAX_ID_LEN} are allowed")]
    TooLong(usize),
    #[error("contains {0}; only letters A-Z a-z, digits, '_' and '-' are allowed")]
    BadChar(BadChar),
}

/// The first offending character, shown so a producer can find it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadChar(pub char);

impl fmt::Display for BadChar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            ' ' => f.write_str("a space"),
            c if c.is_control() || c.is_whitespace() => write!(f, "{:?}", c),
            c => write!(f, "'{c}'"),
        }
    }
}

/// Checks the rule `[A-Za-z0-9_-]{1,64}`.
pub fn validate_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(IdError::BadChar(BadChar(c)));
    }
    if id.len() > MAX_ID_LEN {
        return Err(IdError::TooLong(id.len()));
    }
    Ok(())
}

/// A new event ID: a UUIDv7, so IDs sort by creation time and stay unique across replicas.
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().hyphenated().to_string()
}

/// A new stream uid (`Stream.uid` in the config API): a UUIDv7 without hyphens, a valid
/// subject token, never reused.
pub fn new_stream_uid() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_id_alphabet() {
        assert_eq!(validate_id("org-ACME_17"), Ok(()));
        assert_eq!(validate_id(&"a".repeat(64)), Ok(()));
    }

    #[test]
    fn rejects_subject_metacharacters_and_length() {
        for (id, want) in [
            ("a.b", IdError::BadChar(BadChar('.'))),
            ("a*", IdError::BadChar(BadChar('*'))),
            (">", IdError::BadChar(BadChar('>'))),
            ("a b", IdError::BadChar(BadChar(' '))),
            ("é", IdError::BadChar(BadChar('é'))),
            ("", IdError::Empty),
        ] {
            assert_eq!(validate_id(id), Err(want), "{id:?}");
        }
        assert_eq!(validate_id(&"a".repeat(65)), Err(IdError::TooLong(65)));
        assert_eq!(
            validate_id("a b").unwrap_err().to_string(),
            "contains a space; only letters A-Z a-z, digits, '_' and '-' are allowed"
        );
    }

    #[test]
    fn generated_ids_follow_the_rule_and_are_v7() {
        let id = new_event_id();
        assert_eq!(validate_id(&id), Ok(()));
        let parsed = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        assert_ne!(id, new_event_id());
    }
}
