//! Producer authentication by bearer token. Tokens are compared in constant time and never
//! logged; a failure says only that the token is missing or wrong.

use auditstream_telemetry::Secret;
use subtle::ConstantTimeEq;

#[derive(Clone)]
pub struct Auth {
    tokens: Vec<Secret>,
    allow_unauthenticated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Invalid,
}

impl AuthError {
    pub fn message(self) -> &'static str {
        match self {
            AuthError::Missing => "missing bearer token: send 'Authorization: Bearer <token>'",
            AuthError::Invalid => "invalid bearer token",
        }
    }
}

impl Auth {
    pub fn new(tokens: Vec<Secret>, allow_unauthenticated: bool) -> Self {
        Auth {
            tokens,
            allow_unauthenticated,
        }
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, header: Option<&[u8]>) -> Result<(), AuthError> {
        if self.allow_unauthenticated && self.tokens.is_empty() {
            return Ok(());
        }
        let header = header.ok_or(AuthError::Missing)?;
        let presented = header
            .strip_prefix(b"Bearer ")
            .or_else(|| header.strip_prefix(b"bearer "))
            .ok_or(AuthError::Missing)?;
        // Every configured token is compared, so timing does not reveal which one matched.
        let matched = self.tokens.iter().fold(subtle::Choice::from(0), |acc, t| {
            acc | t.expose().as_bytes().ct_eq(presented)
        });
        if bool::from(matched) {
            Ok(())
        } else {
            Err(AuthError::Invalid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_any_configured_token_and_nothing_else() {
        let auth = Auth::new(
            vec![
                Secret::new("token-aaaaaaaaaaaa"),
                Secret::new("token-bbbbbbbbbbbb"),
            ],
            false,
        );
        assert_eq!(auth.check(Some(b"Bearer token-bbbbbbbbbbbb")), Ok(()));
        assert_eq!(
            auth.check(Some(b"Bearer token-cccccccccccc")),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.check(Some(b"Bearer token-aaaaaaaaaaa")),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.check(Some(b"Basic dXNlcjpwYXNz")),
            Err(AuthError::Missing)
        );
        assert_eq!(auth.check(None), Err(AuthError::Missing));
    }

    #[test]
    fn open_only_when_explicitly_allowed_without_tokens() {
        assert_eq!(Auth::new(vec![], true).check(None), Ok(()));
        assert_eq!(
            Auth::new(vec![], false).check(None),
            Err(AuthError::Missing)
        );
    }
}
