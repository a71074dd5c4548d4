//! E-mail notifications (DESIGN §6): when a stream's destination enters *broken*, its scope's
//! admins get one mail per stream per `repeat_after` (24 h by default) naming the
//! destination, the error and what to fix; when it recovers, a mail saying how many events
//! were replayed; when backlog events start to near the end of the backlog retention, one
//! warning per stream per `repeat_after` saying how many expire when. Mails go through the
//! `mail_outbox` table and a mailer task that retries with backoff, so an SMTP outage delays
//! mail but never loses it or blocks anything else.

use std::time::Duration;

use auditstream_proto::v1::{HealthState, Stream, StreamStatus, destination::Target};
use auditstream_sink_core::retry::Backoff;
use auditstream_telemetry::Secret;
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor, message::header::ContentType,
    transport::smtp::authentication::Credentials,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::{
    error::ServiceError,
    store::{Mail, MailKind, Notice, NoticeKind, QueuedMail, Store, World},
};

/// `notifications` configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// SMTP server host; empty disables e-mail (status is still recorded).
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_username: String,
    pub smtp_password: Secret,
    pub from: String,
    /// At most one "broken" mail per stream within this period.
    #[serde(with = "humantime_serde")]
    pub repeat_after: Duration,
    #[serde(with = "humantime_serde")]
    pub smtp_timeout: Duration,
    /// Retry schedule for mails the SMTP server did not take.
    pub retry: Backoff,
    /// How long a replica's claim on a mail it is sending holds: several replicas share the
    /// outbox, and a mail claimed by one is not sent by another (exactly once) unless the
    /// claimant died without sending it for this long. Keep it well above `smtp_timeout`.
    #[serde(with = "humantime_serde")]
    pub claim_lease: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            smtp_host: String::new(),
            smtp_port: 25,
            smtp_username: String::new(),
            smtp_password: Secret::new(""),
            from: "auditstream@localhost".into(),
            repeat_after: Duration::from_secs(24 * 3600),
            smtp_timeout: Duration::from_secs(10),
            retry: Backoff::default(),
            claim_lease: Duration::from_secs(5 * 60),
        }
    }
}

pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Queues the mails that the change from `previous` to `status` (both as stored, after the
/// report was merged) calls for.
pub async fn on_status(
    store: &Store,
    world: &World,
    config: &NotifyConfig,
    previous: Option<&StreamStatus>,
    status: &StreamStatus,
) -> Result<(), ServiceError> {
    let Some(stream) = world.streams.get(&status.stream_id) else {
        return Ok(());
    };
    let was = previous.map_or(HealthState::Unspecified, |p| p.state());
    let now = status.state();
    let entered_broken = now == HealthState::Broken && was != HealthState::Broken;
    let recovered =
        now == HealthState::Healthy && matches!(was, HealthState::Broken | HealthState::Recovering);
    let started_expiring =
        status.expiring_events > 0 && previous.is_none_or(|p| p.expiring_events == 0);
    if !entered_broken && !recovered && !started_expiring {
        return Ok(());
    }
    let recipients = recipients(world, &stream.node_id);
    if recipients.is_empty() {
        tracing::warn!(stream = %stream.id, "no admin e-mail on the stream's node or its ancestors; nobody notified");
        return Ok(());
    }
    let at = now_ms();
    let notice = |kind| Notice {
        kind,
        stream_id: stream.id.clone(),
        status: status.clone(),
    };
    if entered_broken {
        let notice = notice(NoticeKind::Broken);
        let mail = render(world, stream, &notice, status, recipients.clone(), config);
        once_per_period(store, config, MailKind::Broken, &notice, &mail, at).await?;
    } else if recovered {
        let notice = notice(NoticeKind::Recovered);
        let mail = render(world, stream, &notice, status, recipients.clone(), config);
        store.enqueue_notice(&mail, &notice, at).await?;
    }
    if started_expiring {
        let notice = notice(NoticeKind::Expiry);
        let mail = render(world, stream, &notice, status, recipients, config);
        once_per_period(store, config, MailKind::Expiry, &notice, &mail, at).await?;
    }
    Ok(())
}

/// The mail about `notice`, with the figures of `now` (the status at send time).
fn render(
    world: &World,
    stream: &Stream,
    notice: &Notice,
    now: &StreamStatus,
    recipients: Vec<String>,
    config: &NotifyConfig,
) -> Mail {
    match notice.kind {
        NoticeKind::Broken => broken_mail(world, stream, &notice.status, now, recipients),
        NoticeKind::Recovered => recovered_mail(world, stream, now, recipients),
        NoticeKind::Expiry => expiry_mail(
            world,
            stream,
            &notice.status,
            now,
            recipients,
            config.repeat_after,
        ),
    }
}

/// Queues `mail` unless one of its kind went out for the stream within `repeat_after`.
async fn once_per_period(
    store: &Store,
    config: &NotifyConfig,
    kind: MailKind,
    notice: &Notice,
    mail: &Mail,
    at: i64,
) -> Result<(), ServiceError> {
    let last = store.last_mail(kind, &notice.stream_id).await?;
    if last.is_some_and(|last| at - last < config.repeat_after.as_millis() as i64) {
        return Ok(()); // Already told within the period.
    }
    store.enqueue_notice(mail, notice, at).await?;
    store.set_last_mail(kind, &notice.stream_id, at).await
}

/// The admins of the stream's node, or of its nearest ancestor that has some.
fn recipients(world: &World, node_id: &str) -> Vec<String> {
    let path = world.tree.path(node_id).unwrap_or_default();
    path.iter()
        .rev()
        .filter_map(|n| world.nodes.get(&n.id))
        .map(|n| n.admin_emails.clone())
        .find(|emails| !emails.is_empty())
        .unwrap_or_default()
}

fn destination(stream: &Stream) -> String {
    match stream.destination.as_ref().and_then(|d| d.target.as_ref()) {
        Some(Target::S3(t)) => format!("S3 bucket {}", t.bucket),
        Some(Target::AzureBlob(t)) => format!("Azure Blob container {}", t.container),
        Some(Target::AzureMonitor(t)) => {
            format!(
                "Azure Monitor data collection rule {} (stream {})",
                t.dcr_immutable_id, t.stream_name
            )
        }
        Some(Target::Http(t)) => format!("HTTP endpoint {}", t.url),
        None => "its destination".into(),
    }
}

fn scope(world: &World, stream: &Stream) -> String {
    world.nodes.get(&stream.node_id).map_or_else(
        || stream.node_id.clone(),
        |n| {
            if n.name.is_empty() {
                n.id.clone()
            } else {
                format!("{} ({})", n.name, n.id)
            }
        },
    )
}

/// `event`: the status that made the destination broken (its error and hint); `now`: the
/// figures when the mail is sent.
fn broken_mail(
    world: &World,
    stream: &Stream,
    event: &StreamStatus,
    now: &StreamStatus,
    recipients: Vec<String>,
) -> Mail {
    let hint = if event.hint.is_empty() {
        "see the error above".to_owned()
    } else {
        event.hint.clone()
    };
    Mail {
        recipients,
        subject: format!(
            "[Auditstream] Audit log streaming to {} is failing: {}",
            destination(stream),
            stream.id
        ),
        body: format!(
            "Audit log streaming for {scope} cannot deliver to {dest}.\n\n\
             Stream: {name} ({id})\n\
             Error: {error}\n\
             What to fix: {hint}\n\n\
             Nothing is lost: events are kept in the backlog ({backlog} so far) and delivered \
             in order as soon as the destination works again. Check the stream with\n  \
             auditctl stream status {id}\n\n\
             You will get at most one such message per stream per day, and one when it recovers.\n",
            scope = scope(world, stream),
            dest = destination(stream),
            name = stream.name,
            id = stream.id,
            error = event.last_error,
            backlog = now.backlog_depth,
        ),
    }
}

/// `now`: the figures when the mail is sent.
fn recovered_mail(
    world: &World,
    stream: &Stream,
    now: &StreamStatus,
    recipients: Vec<String>,
) -> Mail {
    Mail {
        recipients,
        subject: format!(
            "[Auditstream] Audit log streaming to {} recovered: {}",
            destination(stream),
            stream.id
        ),
        body: format!(
            "Audit log streaming for {scope} delivers to {dest} again.\n\n\
             Stream: {name} ({id})\n\
             Events replayed from the backlog: {replayed}\n",
            scope = scope(world, stream),
            dest = destination(stream),
            name = stream.name,
            id = stream.id,
            replayed = now.replayed_events,
        ),
    }
}

/// `event`: the status that started the expiry (its error and hint); `now`: the figures
/// when the mail is sent.
fn expiry_mail(
    world: &World,
    stream: &Stream,
    event: &StreamStatus,
    now: &StreamStatus,
    recipients: Vec<String>,
    repeat_after: Duration,
) -> Mail {
    let at = if now.oldest_expires_at.is_empty() {
        "the end of the backlog retention".to_owned()
    } else {
        now.oldest_expires_at.clone()
    };
    let or_none = |s: &str| {
        if s.is_empty() {
            "(none reported)".to_owned()
        } else {
            s.to_owned()
        }
    };
    Mail {
        recipients,
        subject: format!(
            "[Auditstream] Audit events for {} are about to expire: {}",
            destination(stream),
            stream.id
        ),
        body: format!(
            "{count} events in the backlog of stream {id} expire at {at} unless the destination \
             is fixed; expired events are moved to the dead-letter queue (replay with \
             `auditctl dlq replay {id}`).\n\n\
             Scope: {scope}\n\
             Stream: {name} ({id})\n\
             Destination: {dest}\n\
             Error: {error}\n\
             What to fix: {hint}\n\n\
             Check the stream with\n  \
             auditctl stream status {id}\n\n\
             You will get at most one such message per stream per {period}.\n",
            count = now.expiring_events,
            id = stream.id,
            scope = scope(world, stream),
            name = stream.name,
            dest = destination(stream),
            error = or_none(&event.last_error),
            hint = or_none(&event.hint),
            period = period(repeat_after),
        ),
    }
}

/// `24h`, `30m`, `45s`: the repeat period as configured.
fn period(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => format!("{}ms", d.as_millis()),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Sends queued mails until `shutdown`; failures are retried on `config.retry`'s schedule.
///
/// Every replica runs one, on the shared outbox: a mail is sent only by the replica that
/// claimed it ([`Store::claim_mails`]), so two replicas send each mail once. The mail is
/// written when it is sent, from the stream and status of that moment (the backlog depth
/// read live from JetStream), so a mail held back by an SMTP outage does not report stale
/// figures.
pub async fn run_mailer(
    store: std::sync::Arc<Store>,
    config: NotifyConfig,
    js: async_nats::jetstream::Context,
    request_timeout: Duration,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    shutdown: CancellationToken,
) {
    if config.smtp_host.is_empty() {
        return;
    }
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.smtp_host)
        .port(config.smtp_port)
        .timeout(Some(config.smtp_timeout));
    if !config.smtp_username.is_empty() {
        transport = transport.credentials(Credentials::new(
            config.smtp_username.clone(),
            config.smtp_password.expose().to_owned(),
        ));
    }
    let transport = transport.build();
    // Names this replica's claims (only for the record: a claim is won by the update).
    let owner = auditstream_model::new_event_id();
    let lease_ms = config.claim_lease.as_millis() as i64;
    loop {
        match store.claim_mails(now_ms(), lease_ms, &owner).await {
            Ok(mails) => {
                for queued in mails {
                    let mail = current_mail(&store, &js, request_timeout, &config, &queued).await;
                    let result = match message(&config.from, &mail) {
                        Ok(m) => transport
                            .send(m)
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e),
                    };
                    let outcome = match result {
                        Ok(()) => {
                            metrics.mails_sent.inc();
                            store.mail_sent(&queued.id).await
                        }
                        Err(e) => {
                            metrics.mails_failed.inc();
                            let delay = config.retry.delay(queued.attempts, None, &mut rand::rng());
                            tracing::warn!(mail = %queued.id, attempt = queued.attempts + 1, error = %e, ?delay, "e-mail not sent; will retry");
                            store
                                .mail_failed(&queued.id, &e, now_ms() + delay.as_millis() as i64)
                                .await
                        }
                    };
                    if let Err(e) = outcome {
                        tracing::warn!(error = %e, "cannot record the e-mail outcome");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the mail outbox"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// The mail as it reads now: written again from the current stream, recipients and status,
/// with the backlog depth read live. The mail as queued when its stream is gone (or the
/// configuration cannot be read), or when it is not a notice.
async fn current_mail(
    store: &Store,
    js: &async_nats::jetstream::Context,
    request_timeout: Duration,
    config: &NotifyConfig,
    queued: &QueuedMail,
) -> Mail {
    let Some(notice) = &queued.notice else {
        return queued.mail.clone();
    };
    let world = match store.load().await {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the configuration; sending the mail as queued");
            return queued.mail.clone();
        }
    };
    let Some(stream) = world.streams.get(&notice.stream_id) else {
        return queued.mail.clone();
    };
    let stored = match store.get_status(&notice.stream_id).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the stream status; using the one of the report");
            None
        }
    };
    let mut now = notice.status.clone();
    if let Some(stored) = &stored {
        now.backlog_depth = stored.backlog_depth;
        // Replays only add up until the next break resets the count: the larger one is
        // this recovery's.
        now.replayed_events = now.replayed_events.max(stored.replayed_events);
        if stored.expiring_events > 0 {
            now.expiring_events = stored.expiring_events;
            now.oldest_expires_at = stored.oldest_expires_at.clone();
        }
    }
    let sink = stream
        .destination
        .as_ref()
        .and_then(|d| d.target.as_ref())
        .map(crate::credentials::target_type);
    if let Some(sink) = sink {
        match tokio::time::timeout(request_timeout, crate::dlq::depths(js, sink, stream.key()))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {request_timeout:?}")))
        {
            Ok((backlog, dlq)) => {
                now.backlog_depth = backlog;
                now.dlq_depth = dlq;
            }
            Err(e) => tracing::warn!(
                stream = %stream.id,
                error = %e,
                "cannot read the backlog depth from JetStream; the mail shows the last reported one"
            ),
        }
    }
    let mut recipients = recipients(&world, &stream.node_id);
    if recipients.is_empty() {
        recipients = queued.mail.recipients.clone();
    }
    render(&world, stream, notice, &now, recipients, config)
}

fn message(from: &str, mail: &Mail) -> Result<Message, String> {
    let mut builder = Message::builder()
        .from(
            from.parse()
                .map_err(|e| format!("notifications.from {from:?}: {e}"))?,
        )
        .subject(mail.subject.clone())
        .header(ContentType::TEXT_PLAIN);
    for to in &mail.recipients {
        builder = builder.to(to.parse().map_err(|e| format!("recipient {to:?}: {e}"))?);
    }
    builder.body(mail.body.clone()).map_err(|e| e.to_string())
}
