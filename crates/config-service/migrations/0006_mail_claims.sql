-- Several config-service replicas share one database and each runs a mailer. A mail is
-- claimed before it is sent: a replica sets `claimed_until` (ms since the epoch) with a
-- conditional update that only one replica can win, so each mail goes out once; a claim
-- left by a replica that died expires after `notifications.claim_lease`.
--
-- `kind`, `stream_id` and `status` let the mailer write the mail when it sends it, with
-- the figures of that moment (the backlog depth read live from JetStream), rather than
-- those of the report that queued it. Rows from before this migration have no kind and are
-- sent as stored.
ALTER TABLE mail_outbox ADD COLUMN claimed_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE mail_outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE mail_outbox ADD COLUMN kind TEXT;
ALTER TABLE mail_outbox ADD COLUMN stream_id TEXT;
ALTER TABLE mail_outbox ADD COLUMN status BLOB;
