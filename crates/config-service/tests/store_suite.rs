//! One store test suite, run against SQLite and against Postgres (a schema of its own per
//! test on the server named by DATABASE_URL).

use std::sync::Arc;

use auditstream_config_service::{
    crypto::Sealed,
    error::ServiceError,
    store::{Mutation, Plan, Store, StoredConnection},
};
use auditstream_proto::v1::{
    AppliesTo, Connection, Destination, HealthState, Node, NodeKind, Stream, StreamStatus,
    config_change::Change,
};
use auditstream_testkit::PgSchema;

/// Keeps the database alive for the test.
enum Guard {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Pg(#[allow(dead_code)] PgSchema),
}

async fn sqlite() -> (Guard, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
    (Guard::Dir(dir), url)
}

async fn postgres() -> (Guard, String) {
    let pg = PgSchema::create().await;
    let url = pg.url();
    (Guard::Pg(pg), url)
}

fn node(id: &str, parent: &str, kind: NodeKind) -> Node {
    Node {
        id: id.into(),
        parent_id: parent.into(),
        kind: kind as i32,
        name: format!("Node {id}"),
        ..Default::default()
    }
}

fn stream(id: &str, node: &str, connection: &str) -> Stream {
    Stream {
        id: id.into(),
        node_id: node.into(),
        applies_to: AppliesTo::Descendants as i32,
        enabled: true,
        destination: Some(Destination {
            connection_id: connection.into(),
            target: None,
        }),
        version: 1,
        ..Default::default()
    }
}

fn connection(id: &str, node: &str) -> StoredConnection {
    StoredConnection {
        public: Connection {
            id: id.into(),
            node_id: node.into(),
            version: 1,
            ..Default::default()
        },
        sealed: Sealed {
            key_id: "k1".into(),
            blob: vec![1, 2, 3, 4],
        },
    }
}

fn plan(mutations: Vec<Mutation>) -> Plan<()> {
    Plan {
        mutations,
        audit: vec![],
        output: (),
    }
}

async fn starts_empty_at_revision_zero(url: String) {
    let store = Store::connect(&url, 4).await.unwrap();
    let world = store.load().await.unwrap();
    assert_eq!(world.revision, 0);
    assert!(world.nodes.is_empty() && world.streams.is_empty() && world.connections.is_empty());
    // Migrations are embedded and idempotent: connecting again changes nothing.
    let again = Store::connect(&url, 4).await.unwrap();
    assert_eq!(again.revision().await.unwrap(), 0);
}

async fn writes_get_consecutive_revisions_and_feed_the_outbox(url: String) {
    let store = Store::connect(&url, 4).await.unwrap();
    let (changes, ()) = store
        .write(|_| {
            Ok(Plan {
                mutations: vec![
                    Mutation::PutNode(node("org", "", NodeKind::Organization)),
                    Mutation::PutNode(node("ws", "org", NodeKind::Workspace)),
                ],
                audit: vec![br#"{"a":1}"#.to_vec(), br#"{"b":2}"#.to_vec()],
                output: (),
            })
        })
        .await
        .unwrap();
    assert_eq!(
        changes.iter().map(|c| c.revision).collect::<Vec<_>>(),
        vec![1, 2]
    );
    store
        .write(|w| {
            assert_eq!(w.revision, 2);
            Ok(plan(vec![
                Mutation::PutConnection(connection("c1", "org")),
                Mutation::PutStream(stream("s1", "org", "c1")),
            ]))
        })
        .await
        .unwrap();
    let world = store.load().await.unwrap();
    assert_eq!(world.revision, 4);
    assert_eq!(
        world.nodes["ws"].revision, 2,
        "a node records the revision of its last change"
    );
    assert_eq!(world.connections["c1"].sealed.blob, vec![1, 2, 3, 4]);
    assert_eq!(world.streams["s1"].revision, 4);
    let effective: Vec<_> = world
        .tree
        .resolve("ws")
        .unwrap()
        .iter()
        .map(|s| s.id.clone())
        .collect();
    assert_eq!(effective, vec!["s1"]);

    let pending = store.pending_changes(10).await.unwrap();
    assert_eq!(
        pending.iter().map(|p| p.revision).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert!(matches!(&pending[0].change.change, Some(Change::NodePut(n)) if n.id == "org"));
    assert_eq!(
        pending[0].audit,
        vec![br#"{"a":1}"#.to_vec(), br#"{"b":2}"#.to_vec()]
    );
    assert!(pending[1].audit.is_empty());
    store.mark_published(1).await.unwrap();
    store.mark_published(2).await.unwrap();
    let pending = store.pending_changes(10).await.unwrap();
    assert_eq!(
        pending.iter().map(|p| p.revision).collect::<Vec<_>>(),
        vec![3, 4]
    );
}

async fn a_refused_write_stores_nothing(url: String) {
    let store = Store::connect(&url, 4).await.unwrap();
    let err = store
        .write(|_| -> Result<Plan<()>, ServiceError> {
            Err(ServiceError::FailedPrecondition("no".into()))
        })
        .await
        .unwrap_err();
    assert_eq!(err, ServiceError::FailedPrecondition("no".into()));
    assert_eq!(store.revision().await.unwrap(), 0);
    assert!(store.pending_changes(10).await.unwrap().is_empty());
}

async fn puts_replace_and_deletes_remove(url: String) {
    let store = Store::connect(&url, 4).await.unwrap();
    store
        .write(|_| {
            Ok(plan(vec![Mutation::PutNode(node(
                "org",
                "",
                NodeKind::Organization,
            ))]))
        })
        .await
        .unwrap();
    let mut renamed = node("org", "", NodeKind::Organization);
    renamed.name = "Renamed".into();
    store
        .write(|_| Ok(plan(vec![Mutation::PutNode(renamed.clone())])))
        .await
        .unwrap();
    assert_eq!(store.load().await.unwrap().nodes["org"].name, "Renamed");
    store
        .write(|_| {
            Ok(plan(vec![
                Mutation::PutConnection(connection("c1", "org")),
                Mutation::PutStream(stream("s1", "org", "c1")),
            ]))
        })
        .await
        .unwrap();
    let status = StreamStatus {
        stream_id: "s1".into(),
        state: HealthState::Broken as i32,
        last_error: "403".into(),
        ..Default::default()
    };
    store.put_status(&status).await.unwrap();
    store
        .put_status(&StreamStatus {
            backlog_depth: 7,
            ..status.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        store.get_status("s1").await.unwrap().unwrap().backlog_depth,
        7
    );
    store
        .write(|_| {
            Ok(plan(vec![
                Mutation::DeleteStream("s1".into()),
                Mutation::DeleteConnection("c1".into()),
                Mutation::DeleteNode("org".into()),
            ]))
        })
        .await
        .unwrap();
    let world = store.load().await.unwrap();
    assert!(world.nodes.is_empty() && world.streams.is_empty() && world.connections.is_empty());
    assert_eq!(
        store.get_status("s1").await.unwrap(),
        None,
        "a deleted stream's status goes with it"
    );
    assert_eq!(world.revision, 7);
}

async fn concurrent_writers_never_share_a_revision(url: String) {
    let store = Arc::new(Store::connect(&url, 4).await.unwrap());
    store
        .write(|_| {
            Ok(plan(vec![Mutation::PutNode(node(
                "org",
                "",
                NodeKind::Organization,
            ))]))
        })
        .await
        .unwrap();
    let writers = (0..12).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .write(move |_| {
                    Ok(plan(vec![Mutation::PutNode(node(
                        &format!("w{i}"),
                        "org",
                        NodeKind::Workspace,
                    ))]))
                })
                .await
                .map(|(changes, ())| changes[0].revision)
        })
    });
    let mut revisions = Vec::new();
    for w in writers {
        revisions.push(w.await.unwrap().expect("every writer commits"));
    }
    revisions.sort();
    assert_eq!(revisions, (2..=13).collect::<Vec<u64>>());
    assert_eq!(store.load().await.unwrap().nodes.len(), 13);
}

async fn a_cycle_is_refused_before_writing(url: String) {
    let store = Store::connect(&url, 4).await.unwrap();
    store
        .write(|_| {
            Ok(plan(vec![
                Mutation::PutNode(node("a", "", NodeKind::Organization)),
                Mutation::PutNode(node("b", "a", NodeKind::Partner)),
            ]))
        })
        .await
        .unwrap();
    let err = store
        .write(|w| {
            let m = vec![Mutation::PutNode(node("a", "b", NodeKind::Organization))];
            w.with(&m)?;
            Ok(plan(m))
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, ServiceError::FailedPrecondition(ref m) if m.contains("cycle")),
        "{err:?}"
    );
    assert_eq!(store.revision().await.unwrap(), 2);
}

/// A tree stored before the kind rules (a partner root) keeps loading, so the router keeps
/// routing it; writing one of its misplaced nodes again is refused until it is placed well.
async fn a_tree_from_before_the_kind_rules_still_loads(url: String) {
    let store = Store::connect(&url, 4).await.unwrap();
    // Stored without `World::with`, as an older version did.
    store
        .write(|_| {
            Ok(plan(vec![
                Mutation::PutNode(node("p-old", "", NodeKind::Partner)),
                Mutation::PutNode(node("c-old", "p-old", NodeKind::Customer)),
            ]))
        })
        .await
        .unwrap();
    let world = store.load().await.expect("loads");
    assert!(world.tree.is_within("c-old", "p-old"));
    let renamed = Node {
        name: "Renamed".into(),
        ..node("p-old", "", NodeKind::Partner)
    };
    let err = world.with(&[Mutation::PutNode(renamed)]).unwrap_err();
    assert_eq!(
        err,
        ServiceError::InvalidArgument(
            "node p-old: every root is an organization; a partner must sit under an organization"
                .into()
        )
    );
    // Placed under an organization, it is well again; its customer too.
    let fixed = world
        .with(&[
            Mutation::PutNode(node("org", "", NodeKind::Organization)),
            Mutation::PutNode(node("p-old", "org", NodeKind::Partner)),
        ])
        .expect("placed well");
    assert!(fixed.tree.is_within("c-old", "org"));
}

async fn the_mail_outbox_retries_until_sent(url: String) {
    use auditstream_config_service::store::Mail;
    let store = Store::connect(&url, 4).await.unwrap();
    let mail = Mail {
        recipients: vec!["a@x.example".into(), "b@x.example".into()],
        subject: "broken".into(),
        body: "what to fix".into(),
    };
    store.enqueue_mail(&mail, 1_000).await.unwrap();
    assert!(
        store.due_mails(999).await.unwrap().is_empty(),
        "not due yet"
    );
    let due = store.due_mails(1_000).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].mail.clone(), due[0].attempts), (mail, 0));
    store
        .mail_failed(&due[0].id, "connection refused", 5_000)
        .await
        .unwrap();
    assert!(
        store.due_mails(4_999).await.unwrap().is_empty(),
        "backed off"
    );
    let due = store.due_mails(5_000).await.unwrap();
    assert_eq!(due[0].attempts, 1);
    store.mail_sent(&due[0].id).await.unwrap();
    assert!(store.due_mails(i64::MAX).await.unwrap().is_empty());

    assert_eq!(store.last_broken_mail("s1").await.unwrap(), None);
    store.set_last_broken_mail("s1", 7).await.unwrap();
    store.set_last_broken_mail("s1", 9).await.unwrap();
    assert_eq!(store.last_broken_mail("s1").await.unwrap(), Some(9));
}

async fn status_updates_never_lose_concurrent_increments(url: String) {
    let store = Arc::new(Store::connect(&url, 4).await.unwrap());
    let add = |stored: Option<&StreamStatus>, n: u64| StreamStatus {
        stream_id: "s1".into(),
        delivered_events: stored.map_or(0, |s| s.delivered_events) + n,
        ..Default::default()
    };
    let (before, after) = store.update_status("s1", |s| add(s, 5)).await.unwrap();
    assert_eq!((before, after.delivered_events), (None, 5));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.update_status("s1", |s| add(s, 1)).await.unwrap() })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        store
            .get_status("s1")
            .await
            .unwrap()
            .unwrap()
            .delivered_events,
        21
    );
    // A stream nothing reported on has no status, even after another stream's first report.
    assert_eq!(store.get_status("s2").await.unwrap(), None);

    use auditstream_config_service::store::MailKind;
    assert_eq!(store.last_mail(MailKind::Expiry, "s1").await.unwrap(), None);
    store
        .set_last_mail(MailKind::Expiry, "s1", 3)
        .await
        .unwrap();
    store
        .set_last_mail(MailKind::Expiry, "s1", 4)
        .await
        .unwrap();
    assert_eq!(
        store.last_mail(MailKind::Expiry, "s1").await.unwrap(),
        Some(4)
    );
    assert_eq!(
        store.last_broken_mail("s1").await.unwrap(),
        None,
        "kept apart"
    );
}

/// Config-service replicas starting at once all end up signing the feed with one key: the
/// first one stored.
async fn replicas_share_the_first_feed_signing_key(url: String) {
    use auditstream_config_service::{
        crypto::{Sealer, SecretsConfig},
        signing::FeedSigner,
    };
    let mut secrets = SecretsConfig {
        active_key: "k1".into(),
        ..Default::default()
    };
    secrets.keys.insert(
        "k1".into(),
        auditstream_telemetry::Secret::new("qis5xz5uXA56/mtMkLGPqHielWs0WF5VyGXLKOFpCPg="),
    );
    let sealer = Arc::new(Sealer::new(&secrets).unwrap());
    let store = Arc::new(Store::connect(&url, 8).await.unwrap());
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let (store, sealer) = (store.clone(), sealer.clone());
            tokio::spawn(async move {
                FeedSigner::load_or_create(&store, &sealer)
                    .await
                    .unwrap()
                    .public_key()
            })
        })
        .collect();
    let mut keys = Vec::new();
    for s in starts {
        keys.push(s.await.unwrap());
    }
    keys.dedup();
    assert_eq!(keys.len(), 1, "one key for every replica");
    assert_eq!(keys[0].len(), 32);
    let again = Store::connect(&url, 1).await.unwrap();
    assert_eq!(
        FeedSigner::load_or_create(&again, &sealer)
            .await
            .unwrap()
            .public_key(),
        keys[0],
        "and it survives a restart"
    );
}

/// Two strong test keys: `k1` (the key before a rotation) and `k2` (after).
const K1: &str = "qis5xz5uXA56/mtMkLGPqHielWs0WF5VyGXLKOFpCPg=";
const K2: &str = "gdL7OYKKN9UYFYTKtcCac0XcjTGsFwsDCqKOoHk1HxY=";

/// A sealer with `keys` (ids `k1`, `k2`) and `active` the active one.
fn sealer(active: &str, keys: &[&str]) -> auditstream_config_service::crypto::Sealer {
    use auditstream_config_service::crypto::{Sealer, SecretsConfig};
    let mut secrets = SecretsConfig {
        active_key: active.into(),
        ..Default::default()
    };
    for id in keys {
        let key = if *id == "k1" { K1 } else { K2 };
        secrets
            .keys
            .insert((*id).into(), auditstream_telemetry::Secret::new(key));
    }
    Sealer::new(&secrets).unwrap()
}

/// After a rotation, Reseal leaves no row under the old key: a store that has only the new
/// key opens every connection, the feed signing key (same public key) and the fingerprint
/// key (same fingerprints). A second Reseal finds everything current.
async fn reseal_moves_every_sealed_row_to_the_active_key(url: String) {
    use auditstream_config_service::{
        crypto::load_fingerprint_key, signing::FeedSigner, store::ResealCounts,
    };
    let store = Store::connect(&url, 4).await.unwrap();
    let old = sealer("k1", &["k1"]);
    let feed_key = FeedSigner::load_or_create(&store, &old)
        .await
        .unwrap()
        .public_key();
    let fingerprint_key = load_fingerprint_key(&store, &old).await.unwrap();
    let old = old.with_fingerprint_key(fingerprint_key.clone());
    let secrets = [("a", "secret-of-a"), ("b", "secret-of-b")];
    store
        .write(|_| {
            let mut mutations = vec![Mutation::PutNode(node("org", "", NodeKind::Organization))];
            for (id, secret) in secrets {
                let mut c = connection(id, "org");
                c.sealed = old.seal(secret.as_bytes(), id);
                mutations.push(Mutation::PutConnection(c));
            }
            Ok(plan(mutations))
        })
        .await
        .unwrap();
    let revision = store.revision().await.unwrap();
    // Warm the world cache with the old ciphertexts: Reseal must not leave it stale.
    assert_eq!(
        store.load().await.unwrap().connections["a"].sealed.key_id,
        "k1"
    );

    let rotated = sealer("k2", &["k1", "k2"]);
    assert_eq!(
        store.reseal(&rotated).await.unwrap(),
        ResealCounts {
            resealed: 4,
            already_current: 0
        },
        "two connections, the feed signing key and the fingerprint key"
    );
    assert_eq!(
        store.reseal(&rotated).await.unwrap(),
        ResealCounts {
            resealed: 0,
            already_current: 4
        }
    );
    let left: Vec<_> = store
        .sealed_key_ids()
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, _, key)| key != "k2")
        .collect();
    assert_eq!(left, vec![], "nothing is left under k1");
    assert_eq!(
        store.revision().await.unwrap(),
        revision,
        "no revision, so nothing for the data plane"
    );

    // Only the new key from here on, and a fresh connection to the database.
    let store = Store::connect(&url, 1).await.unwrap();
    let new = sealer("k2", &["k2"]);
    let world = store.load().await.unwrap();
    for (id, secret) in secrets {
        let sealed = &world.connections[id].sealed;
        assert_eq!(new.open(sealed, id).unwrap(), secret.as_bytes(), "{id}");
    }
    assert_eq!(
        FeedSigner::load_or_create(&store, &new)
            .await
            .unwrap()
            .public_key(),
        feed_key,
        "the same feed signing key"
    );
    assert_eq!(
        load_fingerprint_key(&store, &new).await.unwrap(),
        fingerprint_key
    );
    let new = new.with_fingerprint_key(fingerprint_key);
    assert_eq!(
        new.fingerprint("secret-of-a"),
        old.fingerprint("secret-of-a"),
        "fingerprints do not change with the secrets key"
    );
    // A row whose key is not configured stops the reseal, saying which, and changes nothing.
    let err = store
        .reseal(&sealer("k1", &["k1"]))
        .await
        .expect_err("k2 is missing");
    assert!(
        matches!(&err, ServiceError::FailedPrecondition(m) if m.contains("connections row a is sealed with key \"k2\", which secrets.keys lacks")),
        "{err:?}"
    );
    assert!(
        store
            .sealed_key_ids()
            .await
            .unwrap()
            .iter()
            .all(|(_, _, key)| key == "k2")
    );
}

/// A database from before the stored fingerprint key (connections, no key row) gets the key
/// its fingerprints were made with; a new database a random one.
async fn the_fingerprint_key_of_an_existing_database_keeps_its_fingerprints(url: String) {
    use auditstream_config_service::crypto::load_fingerprint_key;
    let store = Store::connect(&url, 1).await.unwrap();
    let legacy = sealer("k1", &["k1"]);
    store
        .write(|_| {
            Ok(plan(vec![
                Mutation::PutNode(node("org", "", NodeKind::Organization)),
                Mutation::PutConnection(connection("a", "org")),
            ]))
        })
        .await
        .unwrap();
    let stored = load_fingerprint_key(&store, &legacy).await.unwrap();
    let before = legacy.fingerprint("s3cret");
    assert_eq!(
        sealer("k1", &["k1"])
            .with_fingerprint_key(stored.clone())
            .fingerprint("s3cret"),
        before
    );
    // Stored: a rotation (another active key) loads the same one.
    let rotated = sealer("k2", &["k1", "k2"]);
    assert_eq!(
        load_fingerprint_key(&store, &rotated).await.unwrap(),
        stored
    );

    let (_guard, fresh_url) = sqlite().await;
    let fresh = Store::connect(&fresh_url, 1).await.unwrap();
    let random = load_fingerprint_key(&fresh, &legacy).await.unwrap();
    assert_eq!(random.len(), 32);
    assert_ne!(random, stored);
}

/// M14: the self-audit events have a cursor of their own, per event, independent of the
/// change feed's `published` marks.
async fn self_audit_events_have_their_own_cursor(url: String) {
    let store = Store::connect(&url, 4).await.unwrap();
    store
        .write(|_| {
            Ok(Plan {
                mutations: vec![Mutation::PutNode(node("org", "", NodeKind::Organization))],
                audit: vec![b"a0".to_vec(), b"a1".to_vec()],
                output: (),
            })
        })
        .await
        .unwrap();
    store
        .write(|_| {
            Ok(plan(vec![Mutation::PutNode(node(
                "ws",
                "org",
                NodeKind::Workspace,
            ))]))
        })
        .await
        .unwrap();
    store
        .write(|_| {
            Ok(Plan {
                mutations: vec![Mutation::PutNode(node("w2", "org", NodeKind::Workspace))],
                audit: vec![b"c0".to_vec()],
                output: (),
            })
        })
        .await
        .unwrap();
    // The change feed goes on whatever the self-audit publisher does.
    for revision in 1..=3 {
        store.mark_published(revision).await.unwrap();
    }
    assert!(store.pending_changes(10).await.unwrap().is_empty());
    let pending = store.pending_audit(10).await.unwrap();
    assert_eq!(
        pending
            .iter()
            .map(|p| (p.revision, p.first_index, p.events.clone()))
            .collect::<Vec<_>>(),
        vec![
            (1, 0, vec![b"a0".to_vec(), b"a1".to_vec()]),
            (3, 0, vec![b"c0".to_vec()]),
        ]
    );
    // One event of revision 1 out: the next attempt starts at its second.
    store.advance_audit_cursor(1, 1).await.unwrap();
    let pending = store.pending_audit(10).await.unwrap();
    assert_eq!((pending[0].revision, pending[0].first_index), (1, 1));
    assert_eq!(pending[0].events, vec![b"a1".to_vec()]);
    // The cursor only moves forwards (another replica may be ahead).
    store.advance_audit_cursor(2, 0).await.unwrap();
    store.advance_audit_cursor(1, 2).await.unwrap();
    assert_eq!(store.audit_cursor().await.unwrap(), (2, 0));
    let pending = store.pending_audit(10).await.unwrap();
    assert_eq!(
        pending.iter().map(|p| p.revision).collect::<Vec<_>>(),
        vec![3]
    );
    store.advance_audit_cursor(4, 0).await.unwrap();
    assert!(store.pending_audit(10).await.unwrap().is_empty());
}

/// Two replicas' mailers on one outbox: a due mail is claimed by one of them only, until
/// its lease runs out; a failed attempt ends the claim.
async fn a_mail_is_claimed_by_one_mailer_until_its_lease_ends(url: String) {
    use auditstream_config_service::store::{Mail, Notice, NoticeKind};
    let (a, b) = (
        Store::connect(&url, 4).await.unwrap(),
        Store::connect(&url, 4).await.unwrap(),
    );
    let mail = Mail {
        recipients: vec!["a@x.example".into()],
        subject: "broken".into(),
        body: "what to fix".into(),
    };
    let notice = Notice {
        kind: NoticeKind::Broken,
        stream_id: "s1".into(),
        status: StreamStatus {
            stream_id: "s1".into(),
            last_error: "403".into(),
            ..Default::default()
        },
    };
    for _ in 0..20 {
        a.enqueue_notice(&mail, &notice, 1_000).await.unwrap();
    }
    // Both claim at once: every mail goes to exactly one of them.
    let (mine, theirs) = tokio::join!(
        a.claim_mails(1_000, 60_000, "a"),
        b.claim_mails(1_000, 60_000, "b")
    );
    let (mine, theirs) = (mine.unwrap(), theirs.unwrap());
    assert_eq!(
        mine.len() + theirs.len(),
        20,
        "{} + {}",
        mine.len(),
        theirs.len()
    );
    let mut ids: Vec<_> = mine.iter().chain(&theirs).map(|m| m.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "a mail claimed twice");
    assert_eq!(
        mine.first().or(theirs.first()).unwrap().notice,
        Some(notice)
    );
    // Claimed: nobody else gets them within the lease...
    assert!(b.claim_mails(60_999, 60_000, "b").await.unwrap().is_empty());
    let first = ids[0].clone();
    a.mail_sent(&first).await.unwrap();
    let failed = ids[1].clone();
    a.mail_failed(&failed, "refused", 2_000).await.unwrap();
    // ...a failed one is free again at its next attempt...
    let again = b.claim_mails(2_000, 60_000, "b").await.unwrap();
    assert_eq!(
        again.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
        vec![failed]
    );
    // ...and a claimant that died leaves the rest to whoever comes after the lease; a sent
    // mail is never claimed again.
    let later = b.claim_mails(61_000, 60_000, "b").await.unwrap();
    assert_eq!(later.len(), 18);
    assert!(later.iter().all(|m| m.id != first));
}

/// A bulk import lands at one revision without feed entries, and only into an empty store.
async fn an_import_fills_an_empty_store_at_one_revision(url: String) {
    let store = Store::connect(&url, 4).await.unwrap();
    let mut nodes = vec![node("org", "", NodeKind::Organization)];
    let mut streams = vec![];
    for i in 0..450 {
        nodes.push(node(&format!("w{i}"), "org", NodeKind::Workspace));
        streams.push(stream(&format!("s{i}"), &format!("w{i}"), "c1"));
    }
    let revision = store
        .import(nodes.clone(), vec![connection("c1", "org")], streams)
        .await
        .unwrap();
    assert_eq!(revision, 1);
    let world = store.load().await.unwrap();
    assert_eq!(
        (world.revision, world.nodes.len(), world.streams.len()),
        (1, 451, 450)
    );
    assert_eq!(world.nodes["w7"].revision, 1);
    assert_eq!(world.streams["s449"].node_id, "w449");
    assert!(world.connections.contains_key("c1"));
    assert!(store.pending_changes(10).await.unwrap().is_empty());
    let err = store.import(nodes, vec![], vec![]).await.unwrap_err();
    assert!(
        matches!(err, ServiceError::FailedPrecondition(_)),
        "{err:?}"
    );
}

macro_rules! store_suite {
    ($($test:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test]
            async fn $test() {
                let (_guard, url) = super::sqlite().await;
                super::$test(url).await;
            })*
        }
        mod on_postgres {
            $(#[tokio::test]
            async fn $test() {
                let (_guard, url) = super::postgres().await;
                super::$test(url).await;
            })*
        }
    };
}

store_suite!(
    starts_empty_at_revision_zero,
    writes_get_consecutive_revisions_and_feed_the_outbox,
    a_refused_write_stores_nothing,
    puts_replace_and_deletes_remove,
    concurrent_writers_never_share_a_revision,
    a_cycle_is_refused_before_writing,
    a_tree_from_before_the_kind_rules_still_loads,
    the_mail_outbox_retries_until_sent,
    status_updates_never_lose_concurrent_increments,
    replicas_share_the_first_feed_signing_key,
    reseal_moves_every_sealed_row_to_the_active_key,
    the_fingerprint_key_of_an_existing_database_keeps_its_fingerprints,
    self_audit_events_have_their_own_cursor,
    a_mail_is_claimed_by_one_mailer_until_its_lease_ends,
    an_import_fills_an_empty_store_at_one_revision,
);
