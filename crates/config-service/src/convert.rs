//! Mapping between the wire types and the model's override-rule types.

use auditstream_model::routing::{AppliesTo as RAppliesTo, NodeKind as RNodeKind, StreamScope};
use auditstream_proto::v1::{AppliesTo, NodeKind, Stream};

pub fn node_kind(kind: NodeKind) -> RNodeKind {
    match kind {
        NodeKind::Organization => RNodeKind::Organization,
        NodeKind::Partner => RNodeKind::Partner,
        NodeKind::Customer => RNodeKind::Customer,
        // Validation refuses UNSPECIFIED before anything is stored.
        NodeKind::Workspace | NodeKind::Unspecified => RNodeKind::Workspace,
    }
}

pub fn stream_scope(s: &Stream) -> StreamScope {
    StreamScope {
        id: s.id.clone(),
        node_id: s.node_id.clone(),
        applies_to: match s.applies_to() {
            AppliesTo::Descendants => RAppliesTo::Descendants,
            AppliesTo::SelfOnly | AppliesTo::Unspecified => RAppliesTo::SelfOnly,
        },
        enabled: s.enabled,
    }
}

pub fn kind_name(kind: NodeKind) -> &'static str {
    node_kind(kind).as_str()
}
