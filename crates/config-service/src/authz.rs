//! Who may do what. Callers present a bearer token; configuration maps each token to a
//! principal. Every RPC asks one of the questions below before touching data.
//!
//! | role | reads | writes | data plane |
//! |---|---|---|---|
//! | `service` | everything | nothing | snapshot, destinations with secrets, status reports |
//! | `platform_admin` | everything | everything | no |
//! | `partner_admin` of N | N's subtree | N's subtree (N itself: not its parent or kind, not delete) | no |
//! | `workspace_admin` of N | N | N's own streams and connections, and N's name/contacts, only while N is neither governed nor managed | no |
//! | `auditor` | everything | nothing | no |

use auditstream_telemetry::Secret;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::{error::ServiceError, store::World};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Service,
    PlatformAdmin,
    PartnerAdmin,
    WorkspaceAdmin,
    Auditor,
}

/// One `[[auth.tokens]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub token: Secret,
    pub role: Role,
    /// The node a `partner_admin` or `workspace_admin` administers.
    #[serde(default)]
    pub node: Option<String>,
    /// Shown as the actor in self-audit events and logs, e.g. an e-mail or a service name.
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub node: Option<String>,
}

pub struct Authenticator {
    tokens: Vec<TokenConfig>,
}

impl Authenticator {
    pub fn new(tokens: Vec<TokenConfig>) -> Result<Authenticator, String> {
        for t in &tokens {
            if t.token.expose().len() < 16 {
                return Err(format!(
                    "auth.tokens: the token of {:?} must be at least 16 characters",
                    t.name
                ));
            }
            let needs_node = matches!(t.role, Role::PartnerAdmin | Role::WorkspaceAdmin);
            if needs_node != t.node.is_some() {
                return Err(format!(
                    "auth.tokens: {:?} ({:?}) {}",
                    t.name,
                    t.role,
                    if needs_node {
                        "needs a node"
                    } else {
                        "must not name a node"
                    }
                ));
            }
        }
        Ok(Authenticator { tokens })
    }

    /// Resolves an `authorization` header value to its principal.
    pub fn authenticate(&self, header: Option<&[u8]>) -> Result<Principal, ServiceError> {
        let presented = header
            .and_then(|h| {
                h.strip_prefix(b"Bearer ")
                    .or_else(|| h.strip_prefix(b"bearer "))
            })
            .ok_or_else(|| ServiceError::Unauthenticated("missing bearer token".into()))?;
        // Compare against every token so timing does not reveal which one matched.
        let mut found = None;
        for t in &self.tokens {
            if bool::from(t.token.expose().as_bytes().ct_eq(presented)) {
                found = Some(t);
            }
        }
        let t =
            found.ok_or_else(|| ServiceError::Unauthenticated("invalid bearer token".into()))?;
        Ok(Principal {
            name: t.name.clone(),
            role: t.role,
            node: t.node.clone(),
        })
    }
}

impl Principal {
    fn denied(&self, what: &str) -> ServiceError {
        ServiceError::PermissionDenied(format!(
            "{} ({}) may not {what}",
            self.name,
            self.role_name()
        ))
    }

    pub fn role_name(&self) -> String {
        match (&self.role, &self.node) {
            (Role::PartnerAdmin, Some(n)) => format!("partner_admin of {n}"),
            (Role::WorkspaceAdmin, Some(n)) => format!("workspace_admin of {n}"),
            (Role::Service, _) => "service".into(),
            (Role::PlatformAdmin, _) => "platform_admin".into(),
            (Role::Auditor, _) => "auditor".into(),
            (r, None) => format!("{r:?}"),
        }
    }

    /// May read node `id` and what is configured at it.
    pub fn check_read(&self, world: &World, id: &str) -> Result<(), ServiceError> {
        let allowed = match (self.role, self.node.as_deref()) {
            (Role::Service | Role::PlatformAdmin | Role::Auditor, _) => true,
            (Role::PartnerAdmin, Some(n)) => world.tree.is_within(id, n),
            (Role::WorkspaceAdmin, Some(n)) => id == n,
            _ => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(self.denied(&format!("read node {id}")))
        }
    }

    /// May change what is configured at node `id` (its streams and connections, or the node).
    pub fn check_write(&self, world: &World, id: &str) -> Result<(), ServiceError> {
        let allowed = match (self.role, self.node.as_deref()) {
            (Role::PlatformAdmin, _) => true,
            (Role::PartnerAdmin, Some(n)) => world.tree.is_within(id, n),
            (Role::WorkspaceAdmin, Some(n)) if id == n => {
                if world.nodes.get(n).is_some_and(|node| node.managed) {
                    return Err(self.denied(&format!("change node {n}: it is managed")));
                }
                if let Some((gov, streams)) = world.tree.governing(n) {
                    let stream = streams.first().map(|s| s.id.as_str()).unwrap_or_default();
                    return Err(self.denied(&format!(
                        "change node {n}: {} {} governs it with stream {stream}",
                        gov.kind, gov.id
                    )));
                }
                true
            }
            _ => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(self.denied(&format!("change node {id}")))
        }
    }

    /// Data-plane RPCs: the routing snapshot, destinations with secrets, status reports.
    pub fn check_service(&self) -> Result<(), ServiceError> {
        if self.role == Role::Service {
            Ok(())
        } else {
            Err(self.denied("call data-plane RPCs"))
        }
    }

    /// Only platform admins create or delete roots, or move nodes across subtrees.
    pub fn is_platform_admin(&self) -> bool {
        self.role == Role::PlatformAdmin
    }

    /// The node a scoped admin administers.
    pub fn scope(&self) -> Option<&str> {
        match self.role {
            Role::PartnerAdmin | Role::WorkspaceAdmin => self.node.as_deref(),
            _ => None,
        }
    }
}
