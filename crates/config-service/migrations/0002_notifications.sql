-- E-mail notifications. The outbox holds every mail until the SMTP server accepted it, so a
-- mail that cannot be sent yet is retried (with backoff), never lost and never blocking.
CREATE TABLE mail_outbox (
    id           TEXT PRIMARY KEY,
    recipients   TEXT NOT NULL,
    subject      TEXT NOT NULL,
    body         TEXT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    next_attempt BIGINT NOT NULL,
    last_error   TEXT,
    sent         BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX mail_outbox_due ON mail_outbox (sent, next_attempt);

-- When a stream's "broken" mail was last sent: at most one per stream per repeat period.
CREATE TABLE mail_state (
    stream_id        TEXT PRIMARY KEY,
    last_broken_mail BIGINT NOT NULL
);
