//! Who may do what on NATS (security review H7): one NATS user per service kind, each with
//! the publish/subscribe allow lists it needs and nothing more.
//!
//! This table is the one source: [`authorization_block`] renders it as a nats-server
//! `authorization { users = [...] }` block (the chart's `files/nats-authorization.conf` and
//! the test server use it) and [`markdown_table`] as the README's table; a test keeps both
//! files equal to what this module renders.
//!
//! Least privilege, from the subjects in [`crate::subjects`] and the JetStream API calls each
//! service makes:
//! - the internet-facing gateway only publishes `audit.ingest.>` and reads stream info;
//! - only the config service publishes the control feed `audit.ctl.>`, sends `audit.rpc.>`
//!   requests, owns the streams (create/update/purge) and reads or deletes dead letters;
//! - a sink type consumes only its own `audit.deliver.<type>.>` through its own durable,
//!   writes only its own backlog and DLQ subjects, reads and acks only its own backlog
//!   stream (`AUDIT_BACKLOG_<TYPE>`), and answers only `audit.rpc.<type>.>` (its replies
//!   go through `allow_responses`, so it cannot publish into another service's inbox);
//! - a service reads the stream info (settings, counts, subjects) only of the streams it
//!   works on ([`Service::streams`]), which are also the streams it verifies;
//! - every service receives replies only on its own inbox prefix `_INBOX.<kind>`
//!   ([`Service::inbox_prefix`]): JetStream delivers pulled messages to the puller's inbox, so
//!   a shared `_INBOX.>` would let any service read every consumer's messages.
//!
//! JetStream API subjects name the stream and the consumer, and a consumer-create subject
//! also names its filter (`$JS.API.CONSUMER.CREATE.<stream>.<consumer>.<filter>`; the server
//! refuses a request whose filter differs from the subject's), which is how consumer creation
//! is scoped to a sink type's own subjects. Names are whole tokens in NATS permissions, so
//! the defaults below (`router`, `sink-<type>`) are part of the contract: a service run with
//! another `consumer.durable_name` needs its permissions edited to match.

use auditstream_model::SinkType;

use crate::{subjects, topology};

/// A kind of Auditstream service, as NATS knows it: one user each (replicas share it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Gateway,
    Router,
    ConfigService,
    Sink(SinkType),
}

/// What one NATS user may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
    /// May publish one reply to the reply subject of a request it received (sinks answer
    /// `audit.rpc` requests), without a publish grant on anyone's inbox.
    pub allow_responses: bool,
}

/// Durable consumer of the router on AUDIT_INGEST (`router.consumer.durable_name`'s
/// default).
pub const ROUTER_CONSUMER: &str = "router";

/// The default durable consumer of sink type `t` on AUDIT_DELIVER.
pub fn sink_consumer(t: SinkType) -> String {
    format!("sink-{}", t.as_str())
}

const JS_API: &str = "$JS.API";

impl Service {
    pub const ALL: [Service; 7] = [
        Service::Gateway,
        Service::Router,
        Service::ConfigService,
        Service::Sink(SinkType::S3),
        Service::Sink(SinkType::AzureBlob),
        Service::Sink(SinkType::AzureMonitor),
        Service::Sink(SinkType::Http),
    ];

    /// The kind's name, as in config-service's service tokens: `gateway`, `router`,
    /// `config_service`, `sink_<type>`.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Gateway => "gateway",
            Service::Router => "router",
            Service::ConfigService => "config_service",
            Service::Sink(SinkType::S3) => "sink_s3",
            Service::Sink(SinkType::AzureBlob) => "sink_azure_blob",
            Service::Sink(SinkType::AzureMonitor) => "sink_azure_monitor",
            Service::Sink(SinkType::Http) => "sink_http",
        }
    }

    /// The NATS user name of this kind.
    pub fn user(self) -> String {
        format!("auditstream_{}", self.as_str())
    }

    /// The client name shown in NATS' monitoring (`auditstream-sink-s3`).
    pub fn client_name(self) -> String {
        format!("auditstream-{}", self.as_str().replace('_', "-"))
    }

    /// Where this kind's replies (PubAcks, API responses, pulled messages) arrive. Only its
    /// own user may subscribe there.
    pub fn inbox_prefix(self) -> String {
        format!("_INBOX.{}", self.as_str())
    }

    /// The upper-case environment name of this kind (`SINK_S3`), for variables that carry
    /// its password.
    pub fn env_name(self) -> String {
        self.as_str().to_uppercase()
    }

    /// The JetStream streams this kind works on, in topology order: it reads their info
    /// and verifies their settings (the config service owns them all).
    pub fn streams(self) -> Vec<String> {
        use topology::*;
        match self {
            Service::Gateway => vec![INGEST.into()],
            Service::Router => vec![
                INGEST.into(),
                DELIVER.into(),
                CONTROL.into(),
                HISTORY.into(),
                PARKED.into(),
                DLQ.into(),
            ],
            Service::ConfigService => stream_names(),
            Service::Sink(t) => vec![DELIVER.into(), backlog(t), DLQ.into(), CONTROL.into()],
        }
    }

    /// What this kind needs on NATS (see the module doc).
    pub fn permissions(self) -> Permissions {
        let mut publish: Vec<String> = Vec::new();
        let mut subscribe = vec![format!("{}.>", self.inbox_prefix())];
        let mut allow_responses = false;
        let api = |s: String| format!("{JS_API}.{s}");
        // Every service checks the topology it works on (stream info: settings and counts,
        // no messages).
        for stream in self.streams() {
            publish.push(api(format!("STREAM.INFO.{stream}")));
        }
        match self {
            Service::Gateway => {
                publish.push(format!("{}.>", subjects::INGEST_PREFIX));
            }
            Service::Router => {
                publish.push(format!("{}.>", subjects::DELIVER_PREFIX));
                // Every routed ingest message is kept in AUDIT_HISTORY before its ack.
                publish.push(format!("{}.>", subjects::HISTORY_PREFIX));
                // Events of unknown workspaces wait in AUDIT_PARKED; once the workspace is
                // known they go back to AUDIT_INGEST (read and deleted one by one), and
                // after the parking window, like any message that can never be routed, to
                // the router's dead letters.
                publish.extend([
                    format!("{}.>", subjects::PARKED_PREFIX),
                    format!("{}.>", subjects::INGEST_PREFIX),
                    format!("{}.{}.>", subjects::DLQ_PREFIX, subjects::ROUTER_DLQ),
                    api(format!("DIRECT.GET.{}", topology::PARKED)),
                    api(format!("STREAM.MSG.DELETE.{}", topology::PARKED)),
                ]);
                publish.extend(durable_consumer(
                    topology::INGEST,
                    ROUTER_CONSUMER,
                    &format!("{}.>", subjects::INGEST_PREFIX),
                ));
                publish.extend(control_feed_reader());
            }
            Service::ConfigService => {
                publish.extend([
                    format!("{}.>", subjects::CONTROL_PREFIX),
                    format!("{}.>", subjects::RPC_PREFIX),
                    // Self-audit events of configuration changes.
                    format!("{}.>", subjects::INGEST_PREFIX),
                    // DLQ replay republishes dead letters to their delivery subject.
                    format!("{}.>", subjects::DELIVER_PREFIX),
                ]);
                // The topology's owner.
                for stream in topology::stream_names() {
                    publish.push(api(format!("STREAM.CREATE.{stream}")));
                    publish.push(api(format!("STREAM.UPDATE.{stream}")));
                }
                // Deleting a stream with discard_pending purges its backlog and dead letters;
                // ListDeadLetters/Replay read and delete single dead letters.
                for t in SinkType::ALL {
                    publish.push(api(format!("STREAM.PURGE.{}", topology::backlog(t))));
                }
                publish.push(api(format!("STREAM.PURGE.{}", topology::DLQ)));
                // Moving an earlier version's shared backlog into the per-type streams
                // (`topology::migrate_shared_backlog`).
                let shared = topology::SHARED_BACKLOG;
                publish.extend([
                    format!("{}.>", subjects::BACKLOG_PREFIX),
                    api(format!("STREAM.INFO.{shared}")),
                    api(format!("STREAM.UPDATE.{shared}")),
                    api(format!("STREAM.MSG.GET.{shared}")),
                    api(format!("STREAM.MSG.DELETE.{shared}")),
                    api(format!("STREAM.DELETE.{shared}")),
                ]);
                publish.extend([
                    api(format!("STREAM.MSG.GET.{}", topology::DLQ)),
                    api(format!("DIRECT.GET.{}", topology::DLQ)),
                    api(format!("STREAM.MSG.DELETE.{}", topology::DLQ)),
                ]);
            }
            Service::Sink(sink) => {
                let t = sink.as_str();
                let backlog = topology::backlog(sink);
                publish.extend(durable_consumer(
                    topology::DELIVER,
                    &sink_consumer(sink),
                    &format!("{}.{t}.>", subjects::DELIVER_PREFIX),
                ));
                publish.extend([
                    format!("{}.{t}.>", subjects::BACKLOG_PREFIX),
                    format!("{}.{t}.>", subjects::DLQ_PREFIX),
                    // Backlog consumers (one per stream, `backlog-<type>-<key>`, and a
                    // throwaway one to count expiring events) on this type's own backlog
                    // stream, which holds nothing of another type.
                    api(format!("CONSUMER.CREATE.{backlog}.>")),
                    api(format!("CONSUMER.INFO.{backlog}.*")),
                    api(format!("CONSUMER.MSG.NEXT.{backlog}.*")),
                    format!("$JS.ACK.{backlog}.>"),
                    // The oldest backlog event of a stream (expiry warnings).
                    api(format!("DIRECT.GET.{backlog}")),
                ]);
                publish.extend(control_feed_reader());
                subscribe.push(format!("{}.{t}.>", subjects::RPC_PREFIX));
                allow_responses = true;
            }
        }
        Permissions {
            publish,
            subscribe,
            allow_responses,
        }
    }

    pub fn sink_type(self) -> Option<SinkType> {
        match self {
            Service::Sink(t) => Some(t),
            _ => None,
        }
    }
}

/// Create (with its filter), read, pull from and ack one durable consumer.
fn durable_consumer(stream: &str, consumer: &str, filter: &str) -> [String; 4] {
    [
        format!("{JS_API}.CONSUMER.CREATE.{stream}.{consumer}.{filter}"),
        format!("{JS_API}.CONSUMER.INFO.{stream}.{consumer}"),
        format!("{JS_API}.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
        format!("$JS.ACK.{stream}.{consumer}.>"),
    ]
}

/// Following the change feed (config-client): an ordered consumer on AUDIT_CONTROL, created
/// unnamed, recreated as `<name>_<n>` after a gap (the old one deleted first). AUDIT_CONTROL
/// only holds the feed, which every reader may read in full.
fn control_feed_reader() -> [String; 5] {
    let c = topology::CONTROL;
    [
        format!("{JS_API}.CONSUMER.CREATE.{c}"),
        format!(
            "{JS_API}.CONSUMER.CREATE.{c}.*.{}",
            subjects::CONFIG_CHANGES
        ),
        format!("{JS_API}.CONSUMER.INFO.{c}.*"),
        format!("{JS_API}.CONSUMER.MSG.NEXT.{c}.*"),
        format!("{JS_API}.CONSUMER.DELETE.{c}.*"),
    ]
}

/// How [`authorization_block`] writes each password.
pub enum Passwords<'a> {
    /// A nats-server environment reference per kind, `$AUDITSTREAM_NATS_PASSWORD_<KIND>`:
    /// the block holds no secret and nats-server reads the passwords from its environment.
    Env,
    /// The given password of each kind (a test server's config file).
    Given(&'a dyn Fn(Service) -> String),
}

/// The environment variable [`Passwords::Env`] refers to for `service`.
pub fn password_env(service: Service) -> String {
    format!("AUDITSTREAM_NATS_PASSWORD_{}", service.env_name())
}

/// The nats-server `authorization` block with one user per service kind, plus `extra` users
/// without restrictions (a test superuser; never in production).
pub fn authorization_block(passwords: Passwords<'_>, extra: &[(&str, &str)]) -> String {
    let mut out = String::from(
        "# Generated from crates/bus/src/permissions.rs: one NATS user per Auditstream service kind.\n\
         authorization {\n  users = [\n",
    );
    for service in Service::ALL {
        let p = service.permissions();
        let password = match &passwords {
            Passwords::Env => format!("${}", password_env(service)),
            Passwords::Given(f) => quote(&f(service)),
        };
        out.push_str(&format!(
            "    {{\n      user: {}\n      password: {password}\n      permissions: {{\n        publish: {{ allow: {} }}\n        subscribe: {{ allow: {} }}\n{}      }}\n    }}\n",
            quote(&service.user()),
            list(&p.publish),
            list(&p.subscribe),
            if p.allow_responses {
                "        allow_responses: true\n"
            } else {
                ""
            },
        ));
    }
    for (user, password) in extra {
        out.push_str(&format!(
            "    {{ user: {}, password: {} }}\n",
            quote(user),
            quote(password)
        ));
    }
    out.push_str("  ]\n}\n");
    out
}

fn quote(s: &str) -> String {
    // JSON string syntax is valid nats-server config syntax.
    format!("{s:?}")
}

fn list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[\n          {}\n        ]", inner.join("\n          "))
}

/// The README's table: one row per kind.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| service | NATS user | may publish | may subscribe |\n| --- | --- | --- | --- |\n",
    );
    let code = |items: &[String]| {
        items
            .iter()
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join("<br>")
    };
    for service in Service::ALL {
        let p = service.permissions();
        let mut subscribe = code(&p.subscribe);
        if p.allow_responses {
            subscribe.push_str("<br>(replies to requests it received: `allow_responses`)");
        }
        out.push_str(&format!(
            "| {} | `{}` | {} | {} |\n",
            service.as_str(),
            service.user(),
            code(&p.publish),
            subscribe
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(patterns: &[String], subject: &str) -> bool {
        patterns.iter().any(|p| matches(p, subject))
    }

    /// NATS subject matching: `*` one token, `>` the rest.
    fn matches(pattern: &str, subject: &str) -> bool {
        let (mut p, mut s) = (pattern.split('.'), subject.split('.'));
        loop {
            match (p.next(), s.next()) {
                (Some(">"), Some(_)) => return true,
                (Some("*"), Some(_)) => {}
                (Some(a), Some(b)) if a == b => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }

    #[test]
    fn the_gateway_only_publishes_ingest() {
        let p = Service::Gateway.permissions();
        assert!(allows(&p.publish, "audit.ingest.o.w.user_activity"));
        for denied in [
            "audit.ctl.config",
            "audit.rpc.http.test_destination",
            "audit.deliver.http.s1",
            "$JS.API.STREAM.CREATE.AUDIT_INGEST",
            "$JS.API.STREAM.UPDATE.AUDIT_INGEST",
            "$JS.API.CONSUMER.CREATE.AUDIT_DELIVER.x",
        ] {
            assert!(!allows(&p.publish, denied), "{denied}");
        }
        assert!(!allows(&p.subscribe, "_INBOX.router.abc"));
        assert!(!allows(&p.subscribe, "audit.deliver.http.s1"));
        assert!(!p.allow_responses);
    }

    #[test]
    fn only_the_config_service_publishes_control_and_rpc() {
        for service in Service::ALL {
            let p = service.permissions();
            let owner = service == Service::ConfigService;
            assert_eq!(allows(&p.publish, subjects::CONFIG_CHANGES), owner);
            assert_eq!(
                allows(&p.publish, "audit.rpc.s3.test_destination"),
                owner,
                "{service:?}"
            );
            assert_eq!(
                allows(&p.publish, "$JS.API.STREAM.UPDATE.AUDIT_CONTROL"),
                owner
            );
        }
    }

    #[test]
    fn a_sink_is_confined_to_its_type() {
        let p = Service::Sink(SinkType::S3).permissions();
        assert!(allows(
            &p.publish,
            "$JS.API.CONSUMER.CREATE.AUDIT_DELIVER.sink-s3.audit.deliver.s3.>"
        ));
        for denied in [
            "$JS.API.CONSUMER.CREATE.AUDIT_DELIVER.sink-s3.audit.deliver.http.>",
            "$JS.API.CONSUMER.CREATE.AUDIT_DELIVER.sink-s3",
            "$JS.API.CONSUMER.MSG.NEXT.AUDIT_DELIVER.sink-http",
            "$JS.ACK.AUDIT_DELIVER.sink-http.1.2.3.4.5",
            "$JS.API.CONSUMER.CREATE.AUDIT_BACKLOG_HTTP.b.audit.backlog.http.s1",
            "$JS.API.CONSUMER.CREATE.AUDIT_BACKLOG_HTTP.b",
            "$JS.API.CONSUMER.MSG.NEXT.AUDIT_BACKLOG_HTTP.backlog-http-s1",
            "$JS.ACK.AUDIT_BACKLOG_HTTP.backlog-http-s1.1.2.3.4.5",
            "$JS.API.DIRECT.GET.AUDIT_BACKLOG_HTTP",
            "$JS.API.STREAM.INFO.AUDIT_BACKLOG_HTTP",
            "$JS.API.STREAM.INFO.AUDIT_INGEST",
            "audit.backlog.http.s1",
            "audit.dlq.http.s1",
            "audit.deliver.s3.s1",
            "_INBOX.config_service.x",
        ] {
            assert!(!allows(&p.publish, denied), "{denied}");
        }
        for allowed in [
            "$JS.API.CONSUMER.CREATE.AUDIT_BACKLOG_S3.backlog-s3-s1.audit.backlog.s3.s1",
            "$JS.API.CONSUMER.MSG.NEXT.AUDIT_BACKLOG_S3.backlog-s3-s1",
            "$JS.ACK.AUDIT_BACKLOG_S3.backlog-s3-s1.1.2.3.4.5",
            "$JS.API.DIRECT.GET.AUDIT_BACKLOG_S3",
            "audit.backlog.s3.s1",
        ] {
            assert!(allows(&p.publish, allowed), "{allowed}");
        }
        assert!(allows(&p.subscribe, "audit.rpc.s3.test_destination"));
        assert!(!allows(&p.subscribe, "audit.rpc.http.test_destination"));
        assert!(!allows(&p.subscribe, "audit.deliver.s3.s1"));
        assert!(p.allow_responses);
    }

    #[test]
    fn every_kind_has_its_own_inbox() {
        for a in Service::ALL {
            for b in Service::ALL {
                let inbox = format!("{}.x.y", b.inbox_prefix());
                assert_eq!(allows(&a.permissions().subscribe, &inbox), a == b);
            }
        }
    }

    /// The chart's block and the README's table are what this module renders
    /// (`UPDATE_GENERATED=1 cargo test -p auditstream-bus` rewrites them).
    #[test]
    fn generated_files_are_current() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let update = std::env::var_os("UPDATE_GENERATED").is_some();
        let conf = root.join("helm/auditstream/files/nats-authorization.conf");
        let want = authorization_block(Passwords::Env, &[]);
        if update {
            std::fs::write(&conf, &want).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(&conf).unwrap(),
            want,
            "{} is stale: run UPDATE_GENERATED=1 cargo test -p auditstream-bus",
            conf.display()
        );

        let readme = root.join("README.md");
        let text = std::fs::read_to_string(&readme).unwrap();
        let (begin, end) = (
            "<!-- nats-permissions:begin -->\n",
            "<!-- nats-permissions:end -->",
        );
        let start = text
            .find(begin)
            .expect("README has the permissions markers")
            + begin.len();
        let stop = start + text[start..].find(end).expect("end marker");
        let table = markdown_table();
        if update && text[start..stop] != table {
            let new = format!("{}{table}{}", &text[..start], &text[stop..]);
            std::fs::write(&readme, new).unwrap();
        } else {
            assert_eq!(
                &text[start..stop],
                table,
                "README's NATS permissions table is stale: run UPDATE_GENERATED=1 cargo test -p auditstream-bus"
            );
        }
    }
}
