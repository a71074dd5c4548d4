-- M14: the self-audit events get an outbox cursor of their own, so the change feed to
-- AUDIT_CONTROL never waits for AUDIT_INGEST (a full AUDIT_INGEST used to freeze the whole
-- data plane's configuration). The events stay in `changes.audit`; this row says how far
-- their publication got: every event of the changes before `revision`, and the first
-- `event_index` events of change `revision`, are in AUDIT_INGEST. Kept per event, not per
-- change, so a change whose second event failed does not publish its first one again once
-- JetStream's duplicate window has passed.
CREATE TABLE audit_cursor (
    id          TEXT PRIMARY KEY,
    revision    BIGINT NOT NULL,
    event_index BIGINT NOT NULL
);
-- Before this migration a change's events were published before the change itself, so the
-- events of every published change are out; start at the first unpublished change.
INSERT INTO audit_cursor (id, revision, event_index)
SELECT 'self-audit',
       COALESCE((SELECT MIN(revision) FROM changes WHERE published = 0),
                (SELECT value FROM meta WHERE key = 'revision') + 1),
       0;
