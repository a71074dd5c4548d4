//! The kind rules of DESIGN §3 through the real config service: organizations are roots
//! (and every root is an organization); partners sit under an organization; customers under
//! a partner; workspaces are leaves under an organization or a customer. Every node write
//! is checked, by platform admin and directory sync alike, and a move or retype that would
//! misplace the node's children is refused too. A refused write changes nothing.

mod common;

use auditstream_config_service::authz::Role;
use auditstream_proto::v1::{self as pb, Node, NodeKind, NodeKind::*};
use common::config::*;
use tonic::Code;

/// org → p1 → c1 → w1, org → w0; and org2, an organization of its own.
async fn stack() -> ConfigStack {
    let mut s = config_stack().await;
    tree(
        &mut s.admin,
        &[
            ("org", "", Organization),
            ("w0", "org", Workspace),
            ("p1", "org", Partner),
            ("c1", "p1", Customer),
            ("w1", "c1", Workspace),
            ("org2", "", Organization),
        ],
    )
    .await;
    s
}

#[tokio::test]
async fn every_kind_rule_is_enforced_on_create() {
    let s = stack().await;
    // (id, parent, kind, code, the rule's text after "node <id>: "); Ok: accepted.
    #[rustfmt::skip]
    let cases: [(&str, &str, NodeKind, Code, &str); 16] = [
        // Organizations are roots, and every root is an organization.
        ("o-new", "", Organization, Code::Ok, ""),
        ("o-under", "org", Organization, Code::InvalidArgument,
         "an organization is a root; it cannot sit under organization org"),
        ("p-root", "", Partner, Code::InvalidArgument,
         "every root is an organization; a partner must sit under an organization"),
        ("c-root", "", Customer, Code::InvalidArgument,
         "every root is an organization; a customer must sit under a partner"),
        ("w-root", "", Workspace, Code::InvalidArgument,
         "every root is an organization; a workspace must sit under an organization or a customer"),
        // Partners sit under an organization.
        ("p-ok", "org", Partner, Code::Ok, ""),
        ("p-under-p", "p1", Partner, Code::InvalidArgument,
         "a partner must sit under an organization; p1 is a partner"),
        ("p-under-c", "c1", Partner, Code::InvalidArgument,
         "a partner must sit under an organization; c1 is a customer"),
        // Customers under a partner.
        ("c-ok", "p1", Customer, Code::Ok, ""),
        ("c-under-o", "org", Customer, Code::InvalidArgument,
         "a customer must sit under a partner; org is an organization"),
        ("c-under-w", "w0", Customer, Code::InvalidArgument,
         "a customer must sit under a partner; w0 is a workspace (workspaces are leaves)"),
        // Workspaces are leaves under an organization or a customer.
        ("w-under-o", "org", Workspace, Code::Ok, ""),
        ("w-under-c", "c1", Workspace, Code::Ok, ""),
        ("w-under-p", "p1", Workspace, Code::InvalidArgument,
         "a workspace must sit under an organization or a customer; p1 is a partner"),
        ("w-under-w", "w1", Workspace, Code::InvalidArgument,
         "a workspace must sit under an organization or a customer; w1 is a workspace (workspaces are leaves)"),
        ("p-under-w", "w0", Partner, Code::InvalidArgument,
         "a partner must sit under an organization; w0 is a workspace (workspaces are leaves)"),
    ];
    // The same rules for both principals that may shape the directory.
    for (n, role) in [Role::PlatformAdmin, Role::DirectorySync]
        .into_iter()
        .enumerate()
    {
        let mut c = s.config.client_as(role, None).await;
        for (id, parent, kind, code, text) in cases {
            let id = format!("{id}-{n}");
            let got = c
                .put_node(pb::PutNodeRequest {
                    node: Some(node(&id, parent, kind)),
                })
                .await;
            match got {
                Ok(_) => assert_eq!(code, Code::Ok, "{role:?} {id}: accepted"),
                Err(e) => {
                    assert_eq!(e.code(), code, "{role:?} {id}: {e:?}");
                    assert_eq!(e.message(), format!("node {id}: {text}"));
                    let lookup = c.get_node(pb::GetNodeRequest { id: id.clone() }).await;
                    assert_eq!(
                        lookup.unwrap_err().code(),
                        Code::NotFound,
                        "{role:?} {id}: stored although refused"
                    );
                }
            }
        }
    }
}

async fn try_put(
    client: &mut auditstream_testkit::ConfigClient,
    n: Node,
) -> Result<(), tonic::Status> {
    client
        .put_node(pb::PutNodeRequest { node: Some(n) })
        .await
        .map(drop)
}

#[tokio::test]
async fn moves_and_retypes_follow_the_rules_for_the_node_and_its_children() {
    let mut s = stack().await;
    let a = &mut s.admin;
    let refused = |e: tonic::Status, code: Code, text: &str| {
        assert_eq!(e.code(), code, "{e:?}");
        assert_eq!(e.message(), text);
    };
    // The moved node itself: a customer under an organization, a workspace under a partner.
    refused(
        try_put(a, node("c1", "org", Customer)).await.unwrap_err(),
        Code::InvalidArgument,
        "node c1: a customer must sit under a partner; org is an organization",
    );
    refused(
        try_put(a, node("w0", "p1", Workspace)).await.unwrap_err(),
        Code::InvalidArgument,
        "node w0: a workspace must sit under an organization or a customer; p1 is a partner",
    );
    // Its children: c1 turned into a workspace under the organization would sit well, but
    // its child w1 would then sit under a workspace.
    refused(
        try_put(a, node("c1", "org", Workspace)).await.unwrap_err(),
        Code::FailedPrecondition,
        "node c1 cannot be a workspace with its children: child w1: a workspace must sit \
         under an organization or a customer; c1 is a workspace (workspaces are leaves)",
    );
    // p1 retyped to a workspace: placed well under org, but its customer c1 is not.
    refused(
        try_put(a, node("p1", "org", Workspace)).await.unwrap_err(),
        Code::FailedPrecondition,
        "node p1 cannot be a workspace with its children: child c1: a customer must sit \
         under a partner; p1 is a workspace (workspaces are leaves)",
    );
    // Nothing of that was stored.
    for (id, parent, kind) in [
        ("c1", "p1", Customer),
        ("w0", "org", Workspace),
        ("p1", "org", Partner),
    ] {
        let n = a
            .get_node(pb::GetNodeRequest { id: id.into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((n.parent_id.as_str(), n.kind()), (parent, kind), "{id}");
    }

    // Moves within the rules: a customer to another partner (in another organization), a
    // workspace from an organization to a customer, a partner with its subtree.
    tree(a, &[("p2", "org2", Partner)]).await;
    try_put(a, node("c1", "p2", Customer))
        .await
        .expect("customer to p2");
    try_put(a, node("w0", "c1", Workspace))
        .await
        .expect("workspace under a customer");
    try_put(a, node("p1", "org2", Partner))
        .await
        .expect("partner to org2");
    // A childless workspace may become a customer under a partner.
    try_put(a, node("w-lone", "org", Workspace)).await.unwrap();
    try_put(a, node("w-lone", "p1", Customer))
        .await
        .expect("retyped and moved");
}
