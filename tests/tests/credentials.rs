//! A secret only ever reaches the endpoint it was given for (issue 20, H2): a recording
//! receiver on a second host name and port never receives anything, whichever route a
//! tenant principal tries — TestDestination of an unsaved destination, CreateStream,
//! UpdateStream, UpdateConnection with "empty = keep" — and a request forged on the bus
//! straight to a sink is refused by the sink itself. Real nats-server, config service,
//! sink-http and sink-azure-monitor (with the Entra / Logs Ingestion stand-in).
//!
//! The tree: `org` > partner `p1` > customer `c1` > workspace `ws`; the connections live at
//! `p1`. The principals: the auditor (reads everything), the workspace admin of `c1` (reads
//! the inherited connections, may create streams with them, may not change them), the
//! partner admin of `p1` (may change them) and the partner admin of `p2` (another tenant).

mod common;

use std::time::Duration;

use auditstream_bus::{headers, subjects};
use auditstream_config_service::authz::Role;
use auditstream_model::SinkType;
use auditstream_proto::v1::{
    self as pb, Connection, NodeKind::*, connection::Credentials, destination::Target,
    http_credentials,
};
use auditstream_sink_azure_monitor::{AzureMonitorSink, AzureMonitorSinkConfig};
use auditstream_sink_http::HttpSink;
use auditstream_testkit::{
    AzureMonitorStandIn, Behavior, ConfigClient, ConfigHarness, Database, HttpReceiver,
    MonitorContract, NatsServer, SinkHarness, test_sink_config,
};
use common::{config::*, sink::loopback_http};
use prost::Message;

const BEARER: &str = "bearer-secret-0001";
const PASSWORD: &str = "basic-password-0002";
const HEADER_VALUE: &str = "header-secret-0003";
const SEALED_HEADER: &str = "sealed-header-0004";
const URL_TOKEN: &str = "url-token-0005";
const SAS: &str = "sv=2024&sig=sas-secret-0006";
const S3_SECRET: &str = "s3-secret-key-0007";

struct Stack {
    nats: NatsServer,
    config: ConfigHarness,
    /// Where the connections' secrets were given for.
    legit: HttpReceiver,
    /// The second host name and port a tenant would like the secrets sent to.
    attacker: HttpReceiver,
    _sink: SinkHarness,
}

impl Stack {
    /// `localhost:<port>`: another host name and another port than the legit receiver's.
    fn attacker_url(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.attacker.addr().port())
    }

    fn legit_url(&self, path: &str) -> String {
        self.legit.url(path)
    }
}

fn origin_of(url: &str) -> String {
    common::sink::origin_of(url)
}

async fn tree(config: &ConfigHarness) -> ConfigClient {
    let mut admin = config.client_as(Role::PlatformAdmin, None).await;
    for (id, parent, kind) in [
        ("org", "", Organization),
        ("p1", "org", Partner),
        ("p2", "org", Partner),
        ("c1", "p1", Customer),
        ("ws", "c1", Workspace),
    ] {
        put(&mut admin, node(id, parent, kind)).await;
    }
    admin
}

fn connection(id: &str, credentials: Credentials) -> Connection {
    Connection {
        id: id.into(),
        node_id: "p1".into(),
        name: format!("connection {id}"),
        credentials: Some(credentials),
        ..Default::default()
    }
}

fn http_credentials(origin: &str, auth: http_credentials::Auth) -> Credentials {
    Credentials::Http(pb::HttpCredentials {
        auth: Some(auth),
        origin: origin.into(),
        ..Default::default()
    })
}

fn http_destination(connection: &str, url: &str) -> pb::Destination {
    pb::Destination {
        connection_id: connection.into(),
        target: Some(Target::Http(pb::HttpTarget {
            url: url.into(),
            ..Default::default()
        })),
    }
}

/// A `user_activity` stream of its node only, to `destination`.
fn stream(id: &str, node: &str, destination: pb::Destination) -> pb::Stream {
    pb::Stream {
        destination: Some(destination),
        ..common::sink::http_stream(id, node, "", "")
    }
}

async fn http_stack() -> Stack {
    let nats = NatsServer::start();
    let config = ConfigHarness::start(&nats.url(), Database::Sqlite, |c| {
        c.http.allow_insecure_http = true;
        c.http.allowed_networks = vec!["127.0.0.0/8".into(), "localhost".into()];
    })
    .await;
    let legit = HttpReceiver::start().await;
    let attacker = HttpReceiver::start().await;
    let mut admin = tree(&config).await;
    let origin = origin_of(&legit.url("/"));
    let with_headers = {
        let mut c = http_credentials(
            &origin,
            http_credentials::Auth::Header(pb::HttpHeaderAuth {
                name: "X-Api-Key".into(),
                value: HEADER_VALUE.into(),
            }),
        );
        if let Credentials::Http(h) = &mut c {
            h.headers.insert("X-Extra-Key".into(), SEALED_HEADER.into());
        }
        c
    };
    let connections = [
        connection(
            "bearer",
            http_credentials(
                &origin,
                http_credentials::Auth::Bearer(pb::HttpBearerAuth {
                    token: BEARER.into(),
                }),
            ),
        ),
        connection(
            "basic",
            http_credentials(
                &origin,
                http_credentials::Auth::Basic(pb::HttpBasicAuth {
                    username: "ops".into(),
                    password: PASSWORD.into(),
                }),
            ),
        ),
        connection("header", with_headers),
        connection(
            "url",
            http_credentials(
                "",
                http_credentials::Auth::Url(pb::HttpUrlAuth {
                    url: legit.url(&format!("/receiver/v1/http/{URL_TOKEN}")),
                }),
            ),
        ),
        connection(
            "blob",
            Credentials::AzureBlob(pb::AzureBlobCredentials {
                account: String::new(),
                endpoint: legit.url("/devstoreaccount1"),
                method: Some(pb::azure_blob_credentials::Method::Sas(pb::AzureSasToken {
                    sas_token: SAS.into(),
                })),
            }),
        ),
        connection(
            "s3",
            Credentials::S3(pb::S3Credentials {
                endpoint: origin.clone(),
                region: "us-east-1".into(),
                method: Some(pb::s3_credentials::Method::StaticKeys(pb::S3StaticKeys {
                    access_key_id: "AKIAEXAMPLE".into(),
                    secret_access_key: S3_SECRET.into(),
                    session_token: String::new(),
                })),
                ..Default::default()
            }),
        ),
    ];
    for c in connections {
        create_connection(&mut admin, c).await;
    }
    let mut sink_config = test_sink_config(SinkType::Http, &nats.url(), &config.url());
    sink_config.sink = loopback_http();
    sink_config.sink.allowed_networks.push("::1/128".into());
    let sink = HttpSink::new(sink_config.sink.clone()).unwrap();
    let sink = SinkHarness::start(sink, sink_config).await;
    Stack {
        nats,
        config,
        legit,
        attacker,
        _sink: sink,
    }
}

/// Every tenant principal, with what it is called in messages.
async fn principals(config: &ConfigHarness) -> Vec<(&'static str, ConfigClient)> {
    vec![
        ("auditor", config.client_as(Role::Auditor, None).await),
        (
            "workspace admin (reads the inherited connections)",
            config.client_as(Role::WorkspaceAdmin, Some("c1")).await,
        ),
        (
            "partner admin of the connections' node",
            config.client_as(Role::PartnerAdmin, Some("p1")).await,
        ),
        (
            "partner admin of another partner",
            config.client_as(Role::PartnerAdmin, Some("p2")).await,
        ),
    ]
}

/// The connection as stored (public fields), with `change` applied and no secret given.
async fn changed(
    admin: &mut ConfigClient,
    id: &str,
    change: impl FnOnce(&mut Credentials),
) -> Connection {
    let mut c = admin
        .get_connection(pb::GetConnectionRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner();
    change(c.credentials.as_mut().unwrap());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_tenant_route_sends_a_connections_secret_to_another_host() {
    let s = http_stack().await;
    let mut admin = s.config.client_as(Role::PlatformAdmin, None).await;
    let steal = s.attacker_url("/steal");

    // Control: the route works where the secret belongs, so the refusals below mean something.
    let mut partner = s.config.client_as(Role::PartnerAdmin, Some("p1")).await;
    let answer = partner
        .test_destination(pb::TestDestinationRequest {
            stream_id: String::new(),
            destination: Some(http_destination("bearer", &s.legit_url("/intake"))),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(answer.ok, "{answer:?}");
    assert!(
        s.legit
            .requests()
            .iter()
            .any(|r| r.header("authorization") == Some(&format!("Bearer {BEARER}"))),
        "the legit receiver got the token"
    );
    let saved = stream(
        "legit",
        "ws",
        http_destination("bearer", &s.legit_url("/intake")),
    );
    create_stream(&mut admin, saved).await.unwrap();

    let mut tried = 0;
    for (who, mut client) in principals(&s.config).await {
        for conn in ["bearer", "basic", "header", "url"] {
            // 1. TestDestination of an unsaved destination on the other host.
            let err = client
                .test_destination(pb::TestDestinationRequest {
                    stream_id: String::new(),
                    destination: Some(http_destination(conn, &steal)),
                })
                .await
                .expect_err(&format!("{who}: TestDestination {conn} -> attacker"));
            assert_ne!(err.code(), tonic::Code::Ok);
            // 2. A new stream there, at the workspace (the workspace admin may create it).
            let err = create_stream(
                &mut client,
                stream(&format!("x-{conn}"), "ws", http_destination(conn, &steal)),
            )
            .await
            .expect_err(&format!("{who}: CreateStream {conn} -> attacker"));
            assert_ne!(err.code(), tonic::Code::Ok);
            tried += 2;
        }
        // 3. The saved stream pointed at the other host.
        let mut moved = stream("legit", "ws", http_destination("bearer", &steal));
        moved.version = 1;
        let err = client
            .update_stream(pb::UpdateStreamRequest {
                stream: Some(moved),
                update_mask: vec!["destination".into()],
            })
            .await
            .expect_err(&format!("{who}: UpdateStream -> attacker"));
        assert_ne!(err.code(), tonic::Code::Ok);
        // 4. The connection's endpoint moved, keeping the stored secret ("empty = keep").
        let attacker_origin = origin_of(&steal);
        let moves: Vec<Connection> = vec![
            changed(&mut admin, "bearer", |c| {
                if let Credentials::Http(h) = c {
                    h.origin = attacker_origin.clone();
                }
            })
            .await,
            changed(&mut admin, "header", |c| {
                if let Credentials::Http(h) = c {
                    h.origin = attacker_origin.clone();
                }
            })
            .await,
            changed(&mut admin, "blob", |c| {
                if let Credentials::AzureBlob(b) = c {
                    b.endpoint = format!("{attacker_origin}/devstoreaccount1");
                }
            })
            .await,
            changed(&mut admin, "s3", |c| {
                if let Credentials::S3(x) = c {
                    x.endpoint = attacker_origin.clone();
                }
            })
            .await,
        ];
        for m in moves {
            let id = m.id.clone();
            let err = client
                .update_connection(pb::UpdateConnectionRequest {
                    connection: Some(m),
                })
                .await
                .expect_err(&format!("{who}: UpdateConnection {id} -> attacker"));
            assert_ne!(err.code(), tonic::Code::Ok);
            tried += 1;
        }
    }
    assert_eq!(tried, 4 * (8 + 4));

    // The writer gets told why: the secret must be entered again with a new endpoint.
    let m = changed(&mut admin, "bearer", |c| {
        if let Credentials::Http(h) = c {
            h.origin = origin_of(&steal);
        }
    })
    .await;
    let err = partner
        .update_connection(pb::UpdateConnectionRequest {
            connection: Some(m),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message()
            .starts_with("connection.http.bearer.token: connection.http.origin changed"),
        "{}",
        err.message()
    );

    // 5. A request forged on the bus straight to the sink. NATS permissions let only the
    // config service send it; this client bypasses them (the test's superuser, as a stolen
    // config-service identity would): the sink's own binding check still refuses.
    let nats = s.nats.connect().await;
    for conn in ["bearer", "basic", "header", "url"] {
        let forged = pb::TestDestinationRequest {
            stream_id: String::new(),
            destination: Some(http_destination(conn, &steal)),
        };
        let reply = nats
            .request(
                subjects::rpc(SinkType::Http, "test_destination"),
                forged.encode_to_vec().into(),
            )
            .await
            .unwrap();
        let answer = pb::TestDestinationResponse::decode(reply.payload.as_ref()).unwrap();
        assert!(
            !answer.ok && answer.result == "configuration",
            "{conn}: {answer:?} {:?}",
            reply.headers.as_ref().and_then(|h| h.get(headers::ERROR))
        );
        assert!(
            answer.detail.contains("not the connection's origin")
                || answer.detail.contains("must be empty"),
            "{conn}: {answer:?}"
        );
    }

    // Nothing at all reached the other host: no secret, no token, no request.
    assert!(
        s.attacker.requests().is_empty(),
        "the attacker's receiver got {:?}",
        s.attacker.requests()
    );
    // And the stored rows are unchanged (nothing was half-applied).
    for id in ["bearer", "header"] {
        let c = admin
            .get_connection(pb::GetConnectionRequest { id: id.into() })
            .await
            .unwrap()
            .into_inner();
        match c.credentials {
            Some(Credentials::Http(h)) => assert_eq!(h.origin, origin_of(&s.legit_url("/"))),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_headers_and_url_tokens_are_sent_only_where_they_belong_and_never_shown() {
    let s = http_stack().await;
    let mut admin = s.config.client_as(Role::PlatformAdmin, None).await;
    // The answers never carry the secrets, only fingerprints.
    for id in ["header", "url"] {
        let c = admin
            .get_connection(pb::GetConnectionRequest { id: id.into() })
            .await
            .unwrap()
            .into_inner();
        let shown = format!("{c:?}");
        for secret in [HEADER_VALUE, SEALED_HEADER, URL_TOKEN] {
            assert!(!shown.contains(secret), "{id} shows a secret: {shown}");
        }
        assert!(!c.secret_fingerprints.is_empty(), "{c:?}");
    }
    let header = admin
        .get_connection(pb::GetConnectionRequest {
            id: "header".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        header
            .secret_fingerprints
            .contains_key("http.headers.X-Extra-Key")
    );

    // A stream of each connection delivers with its secrets to the legit receiver only.
    for (id, conn, url) in [
        ("h", "header", s.legit_url("/headers")),
        ("u", "url", String::new()),
    ] {
        let answer = admin
            .test_destination(pb::TestDestinationRequest {
                stream_id: String::new(),
                destination: Some(http_destination(conn, &url)),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(answer.ok, "{id}: {answer:?}");
        assert!(!format!("{answer:?}").contains(URL_TOKEN), "{answer:?}");
    }
    let requests = s.legit.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.header("x-api-key") == Some(HEADER_VALUE)
                && r.header("x-extra-key") == Some(SEALED_HEADER))
    );
    assert!(
        requests
            .iter()
            .any(|r| r.path_and_query.ends_with(URL_TOKEN))
    );

    // An update with the header's value left empty keeps it; one without the name drops it.
    let mut keep = header.clone();
    if let Some(Credentials::Http(h)) = keep.credentials.as_mut() {
        h.headers.insert("X-Extra-Key".into(), String::new());
    }
    let kept = admin
        .update_connection(pb::UpdateConnectionRequest {
            connection: Some(keep),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        kept.secret_fingerprints.get("http.headers.X-Extra-Key"),
        header.secret_fingerprints.get("http.headers.X-Extra-Key")
    );
    // A target may not carry request headers any more: they belong in the connection.
    let mut with_header = http_destination("header", &s.legit_url("/x"));
    if let Some(Target::Http(t)) = with_header.target.as_mut() {
        t.headers.insert("DD-API-KEY".into(), "plain".into());
    }
    let err = create_stream(&mut admin, stream("hdr", "ws", with_header))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(s.attacker.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_tokens_and_client_secrets_go_only_to_the_connections_endpoints() {
    let nats = NatsServer::start();
    let config = ConfigHarness::start(&nats.url(), Database::Sqlite, |c| {
        c.http.allow_insecure_http = true;
        c.http.allowed_networks = vec!["127.0.0.0/8".into(), "localhost".into()];
    })
    .await;
    let standin = AzureMonitorStandIn::start(MonitorContract::default()).await;
    let attacker = HttpReceiver::start().await;
    let steal = format!("http://localhost:{}", attacker.addr().port());
    let contract = standin.contract();
    let mut admin = tree(&config).await;
    create_connection(
        &mut admin,
        connection(
            "monitor",
            Credentials::AzureMonitor(pb::AzureMonitorCredentials {
                ingestion_endpoint: standin.ingestion_endpoint(),
                method: Some(pb::azure_monitor_credentials::Method::ClientCredentials(
                    pb::AzureClientCredentials {
                        tenant_id: contract.tenant_id.clone(),
                        client_id: contract.client_id.clone(),
                        client_secret: contract.client_secret.clone(),
                        authority_host: standin.authority_host(),
                    },
                )),
            }),
        ),
    )
    .await;
    let mut sink_config = test_sink_config::<AzureMonitorSinkConfig>(
        SinkType::AzureMonitor,
        &nats.url(),
        &config.url(),
    );
    sink_config.sink.allow_insecure_http = true;
    sink_config.sink.allowed_networks = vec!["127.0.0.0/8".into(), "::1/128".into()];
    let sink = AzureMonitorSink::new(sink_config.sink.clone()).unwrap();
    let _sink = SinkHarness::start(sink, sink_config).await;

    let target = |endpoint: &str| pb::Destination {
        connection_id: "monitor".into(),
        target: Some(Target::AzureMonitor(pb::AzureMonitorTarget {
            ingestion_endpoint: endpoint.into(),
            dcr_immutable_id: contract.dcr_immutable_id.clone(),
            stream_name: contract.stream_name.clone(),
            log_type: "AuditLogs".into(),
            ..Default::default()
        })),
    };
    // Control: the connection's own endpoint gets a token.
    let mut partner = config.client_as(Role::PartnerAdmin, Some("p1")).await;
    let answer = partner
        .test_destination(pb::TestDestinationRequest {
            stream_id: String::new(),
            destination: Some(target("")),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(answer.ok, "{answer:?}");
    assert!(!standin.token_requests().is_empty());

    for (who, mut client) in principals(&config).await {
        let err = client
            .test_destination(pb::TestDestinationRequest {
                stream_id: String::new(),
                destination: Some(target(&steal)),
            })
            .await
            .expect_err(who);
        assert_ne!(err.code(), tonic::Code::Ok);
        let err = create_stream(&mut client, stream("x", "ws", target(&steal)))
            .await
            .expect_err(who);
        assert_ne!(err.code(), tonic::Code::Ok);
        let changes: [fn(&mut pb::AzureMonitorCredentials, &str); 2] = [
            |m, to| m.ingestion_endpoint = to.into(),
            |m, to| {
                if let Some(pb::azure_monitor_credentials::Method::ClientCredentials(c)) =
                    m.method.as_mut()
                {
                    c.authority_host = to.into();
                }
            },
        ];
        for change in changes {
            let moved = changed(&mut admin, "monitor", |c| {
                if let Credentials::AzureMonitor(m) = c {
                    change(m, &steal);
                }
            })
            .await;
            let err = client
                .update_connection(pb::UpdateConnectionRequest {
                    connection: Some(moved),
                })
                .await
                .expect_err(who);
            assert_ne!(err.code(), tonic::Code::Ok);
        }
    }
    // Forged on the bus past the NATS permissions (superuser): the sink itself refuses.
    let raw = nats.connect().await;
    let forged = pb::TestDestinationRequest {
        stream_id: String::new(),
        destination: Some(target(&steal)),
    };
    let reply = raw
        .request(
            subjects::rpc(SinkType::AzureMonitor, "test_destination"),
            forged.encode_to_vec().into(),
        )
        .await
        .unwrap();
    let answer = pb::TestDestinationResponse::decode(reply.payload.as_ref()).unwrap();
    assert!(!answer.ok && answer.result == "configuration", "{answer:?}");
    assert!(
        attacker.requests().is_empty(),
        "the attacker got {:?}",
        attacker.requests()
    );
}

/// L2: an assume-role connection that gains source keys on update used to panic the handler
/// (the stored connection had no slot for them); and a URL-borne credential replaced by a
/// new URL does not take the stored sealed headers with it.
#[tokio::test]
async fn updates_that_add_secret_slots_or_replace_a_url_credential_are_answered() {
    let nats = NatsServer::start();
    let config = ConfigHarness::start(&nats.url(), Database::Sqlite, |c| {
        c.http.allowed_networks = vec!["127.0.0.0/8".into()];
        // An assume-role without source keys calls STS as the platform.
        c.connections.platform_identity_nodes = vec!["p1".into()];
    })
    .await;
    let mut admin = tree(&config).await;
    let role = |source_keys: Option<pb::S3StaticKeys>| {
        connection(
            "role",
            Credentials::S3(pb::S3Credentials {
                region: "us-east-1".into(),
                method: Some(pb::s3_credentials::Method::AssumeRole(pb::S3AssumeRole {
                    role_arn: "arn:aws:iam::123456789012:role/auditstream-writer".into(),
                    source_keys,
                    ..Default::default()
                })),
                ..Default::default()
            }),
        )
    };
    create_connection(&mut admin, role(None)).await;
    // Source keys with their secret left empty: slots the stored row does not have.
    let err = admin
        .update_connection(pb::UpdateConnectionRequest {
            connection: Some(role(Some(pb::S3StaticKeys {
                access_key_id: "AKIAFIRST".into(),
                secret_access_key: String::new(),
                session_token: String::new(),
            }))),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message()
            .starts_with("connection.s3.assume_role.source_keys.secret_access_key: required"),
        "{}",
        err.message()
    );
    let updated = admin
        .update_connection(pb::UpdateConnectionRequest {
            connection: Some(role(Some(pb::S3StaticKeys {
                access_key_id: "AKIAFIRST".into(),
                secret_access_key: S3_SECRET.into(),
                session_token: String::new(),
            }))),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        updated
            .secret_fingerprints
            .contains_key("s3.assume_role.source_keys.secret_access_key"),
        "{updated:?}"
    );

    let url_connection = |url: &str, header: &str| {
        let mut c = http_credentials(
            "",
            http_credentials::Auth::Url(pb::HttpUrlAuth { url: url.into() }),
        );
        if let Credentials::Http(h) = &mut c {
            h.headers.insert("X-Extra-Key".into(), header.into());
        }
        connection("sumo", c)
    };
    create_connection(
        &mut admin,
        url_connection(
            &format!("https://8.8.8.8/receiver/v1/http/{URL_TOKEN}"),
            SEALED_HEADER,
        ),
    )
    .await;
    let err = admin
        .update_connection(pb::UpdateConnectionRequest {
            connection: Some(url_connection("https://8.8.4.4/receiver/v1/http/other", "")),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message()
            .starts_with("connection.http.headers.X-Extra-Key: connection.http.url.url changed"),
        "{}",
        err.message()
    );
    assert!(!err.message().contains(URL_TOKEN));
}

/// A stream whose URL credential and sealed header are refused (403) breaks, reports and
/// mails its admins: none of it repeats the URL's token or the header's value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_url_credential_stream_reports_and_mails_without_its_secrets() {
    let receiver = HttpReceiver::start().await;
    receiver.set_behavior(Behavior::Status {
        status: 403,
        retry_after: None,
        body: String::new(),
    });
    let mut credentials = http_credentials(
        "",
        http_credentials::Auth::Url(pb::HttpUrlAuth {
            url: receiver.url(&format!("/receiver/v1/http/{URL_TOKEN}")),
        }),
    );
    if let Credentials::Http(h) = &mut credentials {
        h.headers.insert("X-Extra-Key".into(), SEALED_HEADER.into());
    }
    let mut stack =
        common::sink::stack_with(vec![(credentials, Target::Http(pb::HttpTarget::default()))])
            .await;
    stack
        .start_sink(
            loopback_http(),
            |_| {},
            |c| HttpSink::new(c.clone()).unwrap(),
        )
        .await;
    stack.send(0, "m", 5, None).await;
    let broken = stack
        .wait_status("s-0", "broken", |s| s.state() == pb::HealthState::Broken)
        .await;
    assert!(broken.last_error.contains("403"), "{broken:?}");
    let mails = stack.smtp.wait_for(1, Duration::from_secs(60)).await;
    // The requests did carry both secrets: the refusals below are not vacuous.
    let sent = receiver.requests();
    assert!(
        sent.iter().any(|r| r.path_and_query.ends_with(URL_TOKEN)
            && r.header("x-extra-key") == Some(SEALED_HEADER)),
        "{sent:?}"
    );
    let status = ctl_status(&stack).await;
    for (what, text) in mails
        .iter()
        .map(|m| ("mail", m.clone()))
        .chain([("status", format!("{broken:?}")), ("auditctl", status)])
    {
        for secret in [URL_TOKEN, SEALED_HEADER] {
            assert!(!text.contains(secret), "{what} shows a secret: {text}");
        }
    }
}

async fn ctl_status(stack: &common::sink::SinkStack) -> String {
    common::sink::ctl(stack, &["stream", "status", "s-0"]).await
        + &common::sink::ctl(stack, &["connection", "get", "c-0", "--json"]).await
}
