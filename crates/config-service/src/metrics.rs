//! The config service's Prometheus metrics (`auditstream_config_*`, on the ops port).

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

#[derive(Debug, Default, Clone)]
pub struct Metrics {
    /// The newest committed configuration revision.
    pub revision: Gauge,
    /// 1 while the database and NATS are reachable (what `/readyz` says).
    pub ready: Gauge,
    /// Changes published on the feed (`audit.config.changes`).
    pub changes_published: Counter,
    /// E-mails the SMTP server accepted.
    pub mails_sent: Counter,
    /// E-mail attempts that failed (each is retried).
    pub mails_failed: Counter,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Metrics {
        let m = Metrics::default();
        let r = registry.sub_registry_with_prefix("auditstream_config");
        r.register(
            "revision",
            "The newest committed configuration revision",
            m.revision.clone(),
        );
        r.register(
            "ready",
            "1 while the database and NATS are reachable",
            m.ready.clone(),
        );
        r.register(
            "changes_published",
            "Configuration changes published on the change feed",
            m.changes_published.clone(),
        );
        r.register(
            "mails_sent",
            "E-mails the SMTP server accepted",
            m.mails_sent.clone(),
        );
        r.register(
            "mails_failed",
            "E-mail attempts that failed (retried)",
            m.mails_failed.clone(),
        );
        m
    }
}
