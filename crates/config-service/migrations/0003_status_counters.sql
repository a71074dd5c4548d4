-- When a stream's "events will expire" mail was last queued: at most one per stream per
-- repeat period, independent of the "broken" mail.
CREATE TABLE expiry_mail_state (
    stream_id        TEXT PRIMARY KEY,
    last_expiry_mail BIGINT NOT NULL
);
