//! Who may do what. Callers present a bearer token; configuration maps each token to a
//! principal. Every RPC asks one of the questions below before touching data.
//!
//! | role | reads | writes | data plane |
//! |---|---|---|---|
//! | `service` of kind `router` | everything | nothing | the routing snapshot |
//! | `service` of kind `sink_<type>` | everything | nothing | the routing snapshot; destinations with secrets and status reports, of streams and connections of its own destination type only |
//! | `platform_admin` | everything | everything, and `Reseal` | no |
//! | `directory_sync` | everything | the tenant directory: creates, moves, deletes nodes (not their streams or connections), sets every node field | no |
//! | `partner_admin` of N | N's subtree | connections, streams (`descendants` too) and the name and contacts of the nodes in N's subtree | no |
//! | `workspace_admin` of N | N | N's own `self` streams and connections, and N's name/contacts, only while N is neither governed nor managed | no |
//! | `auditor` | everything | nothing | no |
//!
//! The directory (which nodes exist, where, of which kind, `managed`, `external_id`) is the
//! platform's (DESIGN.md §3): only `platform_admin` and `directory_sync` shape it
//! ([`Principal::check_directory`]). A `descendants` stream at N captures the events of every
//! node below N, so it needs a principal that may read them all: never a `workspace_admin`
//! ([`Principal::check_descendants_stream`]).
//!
//! A `service` token names the one service kind that presents it ([`ServiceKind`], L9): a
//! router's token cannot fetch secrets, and sink-s3's cannot fetch an Azure connection's, so a
//! compromised data-plane pod yields only what its own kind already handles.
//!
//! An id the caller may not read gets the answer of an id that does not exist, in code and
//! text ([`Principal::unknown`]), so other tenants' ids cannot be probed. Principals that read
//! everything are told NOT_FOUND instead.

use auditstream_telemetry::Secret;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use auditstream_model::SinkType;

use crate::{error::ServiceError, store::World};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Service,
    PlatformAdmin,
    /// The platform's directory-sync service: shapes the tenant tree, reads everything.
    DirectorySync,
    PartnerAdmin,
    WorkspaceAdmin,
    Auditor,
}

/// The data-plane service a `service` token stands for; each kind gets only the data-plane
/// calls it makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    Router,
    SinkS3,
    SinkAzureBlob,
    SinkAzureMonitor,
    SinkHttp,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 5] = [
        ServiceKind::Router,
        ServiceKind::SinkS3,
        ServiceKind::SinkAzureBlob,
        ServiceKind::SinkAzureMonitor,
        ServiceKind::SinkHttp,
    ];

    /// The sink kind of destination type `t`.
    pub fn sink(t: SinkType) -> ServiceKind {
        match t {
            SinkType::S3 => ServiceKind::SinkS3,
            SinkType::AzureBlob => ServiceKind::SinkAzureBlob,
            SinkType::AzureMonitor => ServiceKind::SinkAzureMonitor,
            SinkType::Http => ServiceKind::SinkHttp,
        }
    }

    /// The destination type a sink kind delivers to; `None` for the router.
    pub fn sink_type(self) -> Option<SinkType> {
        SinkType::ALL
            .into_iter()
            .find(|t| ServiceKind::sink(*t) == self)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Router => "router",
            ServiceKind::SinkS3 => "sink_s3",
            ServiceKind::SinkAzureBlob => "sink_azure_blob",
            ServiceKind::SinkAzureMonitor => "sink_azure_monitor",
            ServiceKind::SinkHttp => "sink_http",
        }
    }
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
    /// The service kind a `service` token stands for (required for that role, refused for
    /// the others): each kind of data-plane service presents a token of its own.
    #[serde(default)]
    pub service: Option<ServiceKind>,
    /// Shown as the actor in self-audit events and logs, e.g. an e-mail or a service name.
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub node: Option<String>,
    /// For `service` principals.
    pub service: Option<ServiceKind>,
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
            let needs_kind = t.role == Role::Service;
            if needs_kind != t.service.is_some() {
                return Err(format!(
                    "auth.tokens: {:?} ({:?}) {}",
                    t.name,
                    t.role,
                    if needs_kind {
                        "needs `service`, the kind of service that presents it: router, sink_s3, sink_azure_blob, sink_azure_monitor or sink_http (one token per kind)"
                    } else {
                        "must not name a service kind"
                    }
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in &tokens {
            if !seen.insert(t.token.expose()) {
                return Err(format!(
                    "auth.tokens: the token of {:?} is also another entry's; every principal needs its own",
                    t.name
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
            service: t.service,
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
            (Role::Service, _) => match self.service {
                Some(kind) => format!("service {}", kind.as_str()),
                None => "service".into(),
            },
            (Role::PlatformAdmin, _) => "platform_admin".into(),
            (Role::DirectorySync, _) => "directory_sync".into(),
            (Role::Auditor, _) => "auditor".into(),
            (r, None) => format!("{r:?}"),
        }
    }

    /// Reads every node, so nothing is hidden from it and a missing id is NOT_FOUND.
    pub fn reads_everything(&self) -> bool {
        match self.role {
            Role::Service | Role::PlatformAdmin | Role::DirectorySync | Role::Auditor => true,
            Role::PartnerAdmin | Role::WorkspaceAdmin => false,
        }
    }

    /// The one answer for `<what> <id>` (the id the caller asked about) that does not exist
    /// or that the caller may not read. Both cases give this same code and text, so ids in
    /// other tenants cannot be probed for existence.
    pub fn unknown(&self, what: &str, id: &str) -> ServiceError {
        if self.reads_everything() {
            ServiceError::NotFound(format!("{what} {id} does not exist"))
        } else {
            self.denied(&format!("read {what} {id}"))
        }
    }

    /// May read node `id` and what is configured at it. The refusal is [`Principal::unknown`]
    /// for the node.
    pub fn check_read(&self, world: &World, id: &str) -> Result<(), ServiceError> {
        let allowed = match (self.role, self.node.as_deref()) {
            _ if self.reads_everything() => true,
            (Role::PartnerAdmin, Some(n)) => world.tree.is_within(id, n),
            (Role::WorkspaceAdmin, Some(n)) => id == n,
            _ => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(self.unknown("node", id))
        }
    }

    /// May change what is configured at node `id`: its streams and connections, and the
    /// node's name and contacts. Callers check read access first, so a refusal here is only
    /// ever about a node the caller may see.
    pub fn check_write(&self, world: &World, id: &str) -> Result<(), ServiceError> {
        let allowed = match (self.role, self.node.as_deref()) {
            (Role::PlatformAdmin, _) => true,
            (Role::PartnerAdmin, Some(n)) => world.tree.is_within(id, n),
            (Role::WorkspaceAdmin, Some(n)) if id == n => {
                // The node's own settings are refused exactly when a `self` stream is: the
                // refusal names the governing stream to change instead.
                if let Err(refusal) = world.tree.check_self_stream_allowed(n) {
                    return Err(self.denied(&format!("change node {n}: {refusal}")));
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

    /// May shape the tenant directory: create, move, retype or delete nodes, and set
    /// `managed` and `external_id`. `what` says what was asked, e.g. "delete node c1".
    pub fn check_directory(&self, what: &str) -> Result<(), ServiceError> {
        if self.shapes_directory() {
            Ok(())
        } else {
            Err(self.directory_refusal(what))
        }
    }

    /// The refusal of [`Principal::check_directory`].
    pub fn directory_refusal(&self, what: &str) -> ServiceError {
        self.denied(&format!(
            "{what}: the tenant directory is the platform's; only platform_admin and directory_sync create, move or delete nodes or set managed and external_id"
        ))
    }

    /// `platform_admin` or `directory_sync`.
    pub fn shapes_directory(&self) -> bool {
        matches!(self.role, Role::PlatformAdmin | Role::DirectorySync)
    }

    /// May create, change or enable a `descendants` stream at `node_id` (write access is
    /// checked separately). Such a stream governs, and captures the events of, every node
    /// below: a `workspace_admin` reads its own node only, so it may not (M4).
    pub fn check_descendants_stream(&self, node_id: &str) -> Result<(), ServiceError> {
        match self.role {
            Role::WorkspaceAdmin => Err(self.denied(&format!(
                "create, change or enable a stream that applies to descendants at node {node_id}: it would capture the events of nodes below it, which a workspace_admin may not read"
            ))),
            Role::Service
            | Role::PlatformAdmin
            | Role::DirectorySync
            | Role::PartnerAdmin
            | Role::Auditor => Ok(()),
        }
    }

    /// The routing snapshot: every service kind.
    pub fn check_service(&self) -> Result<(), ServiceError> {
        if self.role == Role::Service {
            Ok(())
        } else {
            Err(self.denied("call data-plane RPCs"))
        }
    }

    /// Destinations with secrets and status reports of destination type `t`: only the sink
    /// of that type (L9).
    pub fn check_sink_of(&self, t: Option<SinkType>) -> Result<(), ServiceError> {
        self.check_service()?;
        match (self.service.and_then(ServiceKind::sink_type), t) {
            (Some(own), Some(t)) if own == t => Ok(()),
            (_, t) => Err(self.denied(&format!(
                "fetch secrets of, or report about, {} destinations",
                t.map_or("these", |t| t.as_str())
            ))),
        }
    }

    /// Operations on the service itself, such as resealing every tenant's secrets: only
    /// `platform_admin`.
    pub fn check_platform_admin(&self, what: &str) -> Result<(), ServiceError> {
        if self.role == Role::PlatformAdmin {
            Ok(())
        } else {
            Err(self.denied(&format!("{what}: only platform_admin may")))
        }
    }

    /// The node a scoped admin administers.
    pub fn scope(&self) -> Option<&str> {
        match self.role {
            Role::PartnerAdmin | Role::WorkspaceAdmin => self.node.as_deref(),
            _ => None,
        }
    }
}
