-- Alert aggregation (issue 15): an alert stands for every occurrence folded into it.
-- time (the first occurrence's event time) .. last_seen, occurrences = requests folded in;
-- occurrence = the request the alert's output describes (the earliest by event time, then id).
-- alert_events keeps every occurrence's evidence records, so suppressed events stay queryable.
-- Keep to the SQL that SQLite and PostgreSQL share.

ALTER TABLE alerts ADD COLUMN last_seen BIGINT;
ALTER TABLE alerts ADD COLUMN occurrences BIGINT NOT NULL DEFAULT 1;
ALTER TABLE alerts ADD COLUMN occurrence TEXT NOT NULL DEFAULT '';

CREATE TABLE alert_events (
    alert_id    BIGINT NOT NULL REFERENCES alerts (id),
    key         TEXT NOT NULL,            -- entries.key of one evidence record
    occurrence  TEXT NOT NULL,            -- the request it belongs to: auditID, or the record key
    time        BIGINT NOT NULL,          -- event time of that occurrence, ns
    audit_id    TEXT NOT NULL,
    stage       TEXT NOT NULL,
    leaf_index  BIGINT,
    PRIMARY KEY (alert_id, key)
);
CREATE INDEX alert_events_occurrence ON alert_events (alert_id, occurrence);
CREATE INDEX alert_events_time ON alert_events (alert_id, time);
