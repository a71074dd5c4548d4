//! The override rules of DESIGN §3 through the real config service: the seed scenarios,
//! table-driven over Explain, and the write rules.

mod common;

use auditstream_proto::v1::{AppliesTo::*, NodeKind::*};
use common::config::*;
use tonic::Code;

type Expect<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)]);

/// Checks Explain for each `(workspace, effective, inactive (stream, reason))`.
async fn expect(client: &mut auditstream_testkit::ConfigClient, cases: &[Expect<'_>]) {
    for (ws, effective, inactive) in cases {
        let (got_effective, got_inactive) = explain(client, ws).await;
        assert_eq!(got_effective, *effective, "effective streams of {ws}");
        let want: Vec<(String, String)> = inactive
            .iter()
            .map(|(s, r)| (s.to_string(), r.to_string()))
            .collect();
        assert_eq!(got_inactive, want, "inactive streams of {ws}");
    }
}

#[tokio::test]
async fn automation_hq_org_stream_covers_a_workspace_created_after_it() {
    let mut s = config_stack().await;
    let a = &mut s.admin;
    tree(a, &[("hq", "", Organization), ("w1", "hq", Workspace)]).await;
    create_connection(a, s3_connection("conn", "hq", SECRET)).await;
    create_stream(a, s3_stream("s-hq", "hq", Descendants, "conn"))
        .await
        .unwrap();
    // Created after the stream: covered all the same.
    put(a, node("w-new", "hq", Workspace)).await;
    expect(
        a,
        &[
            ("w1", &["s-hq"], &[]),
            ("w-new", &["s-hq"], &[]),
            ("hq", &["s-hq"], &[]),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_managed_workspace_cannot_change_its_settings() {
    let mut s = config_stack().await;
    let a = &mut s.admin;
    tree(a, &[("hq", "", Organization)]).await;
    put(
        a,
        auditstream_proto::v1::Node {
            managed: true,
            ..node("m1", "hq", Workspace)
        },
    )
    .await;
    create_connection(a, s3_connection("conn", "hq", SECRET)).await;
    let err = create_stream(a, s3_stream("s-m1", "m1", SelfOnly, "conn"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("workspace m1 is managed") && !err.message().contains("governs"),
        "{}",
        err.message()
    );
    // The organization's setting is what applies to it.
    create_stream(a, s3_stream("s-hq", "hq", Descendants, "conn"))
        .await
        .unwrap();
    expect(a, &[("m1", &["s-hq"], &[])]).await;
    // Managed and governed: the refusal names the stream its settings come from.
    let err = create_stream(a, s3_stream("s-m1", "m1", SelfOnly, "conn"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message()
            .starts_with("stream s-m1: workspace m1 is managed")
            && err.message().ends_with(
                "organization hq governs it with stream s-hq: change that stream instead"
            ),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn partner_all_customers_stream_overrides_the_oem_admin_workspace_s3_stream() {
    let mut s = config_stack().await;
    let a = &mut s.admin;
    tree(
        a,
        &[
            ("org", "", Organization),
            ("p1", "org", Partner),
            ("c1", "p1", Customer),
        ],
    )
    .await;
    create_connection(a, s3_connection("p1-s3", "p1", SECRET)).await;
    // The OEM admin workspace (the partner node itself) streams to its own S3 bucket...
    create_stream(a, s3_stream("s-oem", "p1", SelfOnly, "p1-s3"))
        .await
        .unwrap();
    expect(a, &[("p1", &["s-oem"], &[])]).await;
    // ...until the partner's "all customer workspaces" setting takes over, itself included.
    create_stream(a, s3_stream("s-all", "p1", Descendants, "p1-s3"))
        .await
        .unwrap();
    expect(
        a,
        &[
            (
                "p1",
                &["s-all"],
                &[("s-oem", "overridden by partner p1 stream s-all")],
            ),
            // Explain accounts for every stream on the path, the OEM workspace's too.
            ("c1", &["s-all"], &[("s-oem", "applies to partner p1 only")]),
        ],
    )
    .await;
}

#[tokio::test]
async fn per_customer_streams_are_shadowed_not_deleted_and_restored() {
    let mut s = config_stack().await;
    let a = &mut s.admin;
    tree(
        a,
        &[
            ("org", "", Organization),
            ("p1", "org", Partner),
            ("c1", "p1", Customer),
            ("c2", "p1", Customer),
        ],
    )
    .await;
    create_connection(a, s3_connection("p1-s3", "p1", SECRET)).await;
    create_stream(a, s3_stream("s-c1", "c1", SelfOnly, "p1-s3"))
        .await
        .unwrap();
    create_stream(a, s3_stream("s-c2", "c2", SelfOnly, "p1-s3"))
        .await
        .unwrap();
    let steps: [(&str, Option<bool>, [Expect<'_>; 2]); 3] = [
        (
            "partner has no stream",
            None,
            [("c1", &["s-c1"], &[]), ("c2", &["s-c2"], &[])],
        ),
        (
            "partner enables one",
            Some(true),
            [
                (
                    "c1",
                    &["s-p1"],
                    &[("s-c1", "overridden by partner p1 stream s-p1")],
                ),
                (
                    "c2",
                    &["s-p1"],
                    &[("s-c2", "overridden by partner p1 stream s-p1")],
                ),
            ],
        ),
        (
            "partner disables it",
            Some(false),
            [
                ("c1", &["s-c1"], &[("s-p1", "disabled")]),
                ("c2", &["s-c2"], &[("s-p1", "disabled")]),
            ],
        ),
    ];
    for (step, partner, cases) in steps {
        match partner {
            Some(true) => {
                create_stream(a, s3_stream("s-p1", "p1", Descendants, "p1-s3"))
                    .await
                    .expect(step);
            }
            Some(false) => {
                set_enabled(a, "s-p1", false).await.expect(step);
            }
            None => {}
        }
        expect(a, &cases).await;
    }
    // Shadowed streams were kept all along.
    let listed = a
        .list_streams(auditstream_proto::v1::ListStreamsRequest {
            node_id: "c1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.streams.len(), 1);
}

#[tokio::test]
async fn self_streams_under_a_governing_partner_are_refused_naming_it() {
    let mut s = config_stack().await;
    let a = &mut s.admin;
    tree(
        a,
        &[
            ("org", "", Organization),
            ("p1", "org", Partner),
            ("c1", "p1", Customer),
            ("c2", "p1", Customer),
        ],
    )
    .await;
    create_connection(a, s3_connection("p1-s3", "p1", SECRET)).await;
    create_stream(a, s3_stream("s-c1", "c1", SelfOnly, "p1-s3"))
        .await
        .unwrap();
    create_stream(a, s3_stream("s-p1", "p1", Descendants, "p1-s3"))
        .await
        .unwrap();

    let refused = |e: tonic::Status| {
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert!(
            e.message()
                .contains("partner p1 governs this node with stream s-p1"),
            "{}",
            e.message()
        );
    };
    // Creating, enabling and changing a self stream on a governed node are all refused.
    refused(
        create_stream(a, s3_stream("s-c2", "c2", SelfOnly, "p1-s3"))
            .await
            .unwrap_err(),
    );
    set_enabled(a, "s-c1", false).await.unwrap();
    refused(set_enabled(a, "s-c1", true).await.unwrap_err());
    let mut renamed = s3_stream("s-c1", "c1", SelfOnly, "p1-s3");
    renamed.name = "new name".into();
    let update = auditstream_proto::v1::UpdateStreamRequest {
        stream: Some(renamed),
        update_mask: vec!["name".into()],
    };
    refused(a.update_stream(update).await.unwrap_err());
    // A self stream on the governing node itself is refused too.
    refused(
        create_stream(a, s3_stream("s-oem", "p1", SelfOnly, "p1-s3"))
            .await
            .unwrap_err(),
    );
    // Once the partner's stream is disabled, the customer may enable its own again.
    set_enabled(a, "s-p1", false).await.unwrap();
    set_enabled(a, "s-c1", true).await.unwrap();
}
