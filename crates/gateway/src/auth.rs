//! Producer authentication by bearer token, and the organizations each token may send for.
//! Tokens are compared in constant time and never logged; a failure says only that the
//! token is missing or wrong.

use std::{collections::HashSet, sync::Arc};

use auditstream_telemetry::Secret;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// One accepted producer token. In configuration either a bare string (a token for every
/// organization) or `{"token": "…", "orgs": ["acme", …], "name": "…"}`; `orgs` empty or
/// absent also means every organization.
#[derive(Clone, Serialize, Deserialize)]
#[serde(from = "TokenEntry")]
pub struct ProducerToken {
    pub token: Secret,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orgs: Vec<String>,
    /// Shown in logs instead of the token.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

impl std::fmt::Debug for ProducerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerToken")
            .field("name", &self.name)
            .field("orgs", &self.orgs)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TokenEntry {
    Plain(Secret),
    Scoped {
        token: Secret,
        #[serde(default)]
        orgs: Vec<String>,
        #[serde(default)]
        name: String,
    },
}

impl From<TokenEntry> for ProducerToken {
    fn from(entry: TokenEntry) -> Self {
        match entry {
            TokenEntry::Plain(token) => ProducerToken {
                token,
                orgs: vec![],
                name: String::new(),
            },
            TokenEntry::Scoped { token, orgs, name } => ProducerToken { token, orgs, name },
        }
    }
}

impl ProducerToken {
    pub fn any_org(token: impl Into<String>) -> Self {
        ProducerToken {
            token: Secret::new(token),
            orgs: vec![],
            name: String::new(),
        }
    }
}

/// The organizations a request may send events for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgScope {
    All,
    Only(Arc<HashSet<String>>),
}

impl OrgScope {
    pub fn allows(&self, org: &str) -> bool {
        match self {
            OrgScope::All => true,
            OrgScope::Only(orgs) => orgs.contains(org),
        }
    }
}

/// Who sent a request: which configured token, and the organizations it may send for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's position in `auth.tokens`, or [`ANONYMOUS`]; the key of its rate limit.
    pub token: usize,
    pub scope: OrgScope,
}

/// The caller of a gateway that runs without tokens (`auth.allow_unauthenticated`).
pub const ANONYMOUS: usize = usize::MAX;

impl Caller {
    /// Any organization, as the unauthenticated caller (tests and tools).
    pub fn anonymous() -> Self {
        Caller {
            token: ANONYMOUS,
            scope: OrgScope::All,
        }
    }
}

#[derive(Clone)]
pub struct Auth {
    tokens: Vec<(Secret, OrgScope)>,
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
    pub fn new(tokens: &[ProducerToken], allow_unauthenticated: bool) -> Self {
        let tokens = tokens
            .iter()
            .map(|t| {
                let scope = if t.orgs.is_empty() {
                    OrgScope::All
                } else {
                    OrgScope::Only(Arc::new(t.orgs.iter().cloned().collect()))
                };
                (t.token.clone(), scope)
            })
            .collect();
        Auth {
            tokens,
            allow_unauthenticated,
        }
    }

    /// Checks an `Authorization` header value; on success, the organizations it may send for.
    pub fn check(&self, header: Option<&[u8]>) -> Result<OrgScope, AuthError> {
        self.identify(header).map(|caller| caller.scope)
    }

    /// As [`Auth::check`], also saying which token it was (for its rate limit).
    pub fn identify(&self, header: Option<&[u8]>) -> Result<Caller, AuthError> {
        if self.allow_unauthenticated && self.tokens.is_empty() {
            return Ok(Caller {
                token: ANONYMOUS,
                scope: OrgScope::All,
            });
        }
        let header = header.ok_or(AuthError::Missing)?;
        let presented = header
            .strip_prefix(b"Bearer ")
            .or_else(|| header.strip_prefix(b"bearer "))
            .ok_or(AuthError::Missing)?;
        // Every configured token is compared, so timing does not reveal which one matched.
        let mut matched = None;
        for (index, (token, scope)) in self.tokens.iter().enumerate() {
            if bool::from(token.expose().as_bytes().ct_eq(presented)) {
                matched = Some((index, scope));
            }
        }
        matched
            .map(|(token, scope)| Caller {
                token,
                scope: scope.clone(),
            })
            .ok_or(AuthError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_any_configured_token_and_nothing_else() {
        let auth = Auth::new(
            &[
                ProducerToken::any_org("token-aaaaaaaaaaaa"),
                ProducerToken::any_org("token-bbbbbbbbbbbb"),
            ],
            false,
        );
        assert_eq!(
            auth.check(Some(b"Bearer token-bbbbbbbbbbbb")),
            Ok(OrgScope::All)
        );
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
    fn scoped_tokens_allow_their_orgs_only() {
        let tokens: Vec<ProducerToken> = serde_json::from_str(
            r#"["plain-token-aaaaaaaa", {"token": "scoped-token-bbbbbbb", "orgs": ["acme", "globex"], "name": "acme-shipper"}]"#,
        )
        .unwrap();
        assert_eq!(tokens[1].name, "acme-shipper");
        assert!(
            !format!("{tokens:?}").contains("scoped-token"),
            "Debug hides tokens"
        );
        let auth = Auth::new(&tokens, false);
        assert_eq!(
            auth.check(Some(b"Bearer plain-token-aaaaaaaa")),
            Ok(OrgScope::All)
        );
        let scope = auth.check(Some(b"Bearer scoped-token-bbbbbbb")).unwrap();
        assert!(scope.allows("acme") && scope.allows("globex"));
        assert!(!scope.allows("initech"));
    }

    #[test]
    fn open_only_when_explicitly_allowed_without_tokens() {
        assert_eq!(Auth::new(&[], true).check(None), Ok(OrgScope::All));
        assert_eq!(Auth::new(&[], false).check(None), Err(AuthError::Missing));
    }
}
