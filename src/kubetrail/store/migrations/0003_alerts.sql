-- Detection and alerting: alerts with their evidence, the delivery outbox, detector state.
-- Keep to the SQL that SQLite and PostgreSQL share.

CREATE TABLE alerts (
    id           INTEGER PRIMARY KEY,     -- assigned by the store, increasing
    rule         TEXT NOT NULL,
    priority     TEXT NOT NULL,           -- Falco's names: Emergency … Debug
    level        INTEGER NOT NULL,        -- 0 = Emergency … 7 = Debug
    time         BIGINT NOT NULL,         -- event time of the first evidence, ns
    subject      TEXT NOT NULL,           -- who: user name, or anonymous@IP
    output       TEXT NOT NULL,
    fields_json  TEXT NOT NULL,           -- JSON object
    tags_json    TEXT NOT NULL,           -- JSON array; MITRE ATT&CK tags included
    origin       TEXT NOT NULL,           -- rule | stateful | credentials
    dedup_key    TEXT NOT NULL UNIQUE,
    suppressed   BIGINT NOT NULL DEFAULT 0, -- later occurrences folded in by the rate limit
    created_ns   BIGINT NOT NULL
);
CREATE INDEX alerts_time ON alerts (time);
CREATE INDEX alerts_rule_subject ON alerts (rule, subject, time);

CREATE TABLE alert_evidence (
    alert_id    BIGINT NOT NULL REFERENCES alerts (id),
    key         TEXT NOT NULL,            -- entries.key
    audit_id    TEXT NOT NULL,
    stage       TEXT NOT NULL,
    leaf_index  BIGINT,
    PRIMARY KEY (alert_id, key)
);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    alert_id        BIGINT NOT NULL REFERENCES alerts (id),
    sink            TEXT NOT NULL,        -- sink name from DATA/detect.yaml
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ns BIGINT NOT NULL,
    last_error      TEXT NOT NULL DEFAULT '',
    delivered_ns    BIGINT,               -- NULL until delivered
    created_ns      BIGINT NOT NULL,
    UNIQUE (alert_id, sink)
);
CREATE INDEX outbox_due ON outbox (delivered_ns, next_attempt_ns);

CREATE TABLE detector_state (
    detector    TEXT NOT NULL,            -- e.g. first_seen.ip
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,            -- JSON owned by the detector
    updated_ns  BIGINT NOT NULL,
    PRIMARY KEY (detector, key)
);
