-- PostgreSQL twin of ../0001_core.sql: the same tables, columns and indexes; BYTEA for BLOB, BIGINT for INTEGER (SQLite integers are 64-bit).
-- kubetrail core schema: entries (one row per trail leaf), source positions, ingest counters.
-- Both engines run this file; keep to the SQL that SQLite and PostgreSQL share.

CREATE TABLE entries (
    leaf_index   BIGINT PRIMARY KEY,      -- trail position, 0-based, contiguous
    key          TEXT NOT NULL UNIQUE,    -- content hash (stages/extract.py)
    time         BIGINT NOT NULL,         -- event time, ns since the epoch (UTC)
    kind         TEXT NOT NULL,
    source       TEXT NOT NULL,           -- cluster/node/stream
    seq          BIGINT NOT NULL,
    format       TEXT NOT NULL,
    audit_id     TEXT NOT NULL,
    stage        TEXT NOT NULL,
    level        TEXT NOT NULL,
    verb         TEXT NOT NULL,
    username     TEXT NOT NULL,
    groups_json  TEXT NOT NULL,           -- JSON array
    impersonated TEXT NOT NULL,
    resource     TEXT NOT NULL,
    subresource  TEXT NOT NULL,
    api_group    TEXT NOT NULL,
    namespace    TEXT NOT NULL,
    name         TEXT NOT NULL,
    code         BIGINT,
    source_ips   TEXT NOT NULL,           -- JSON array; the last one is the trusted peer
    source_ip    TEXT NOT NULL,           -- last of source_ips
    user_agent   TEXT NOT NULL,
    request_uri  TEXT NOT NULL,
    credential_id TEXT NOT NULL,
    meta         BYTEA NOT NULL,           -- StoredMeta (store/sqlite.py): metadata without a column, redactions
    entry        BYTEA NOT NULL,           -- canonical trail entry header (trail/entry.py)
    leaf_hash    BYTEA NOT NULL,           -- SHA-256(0x00 || entry)
    body         BYTEA                     -- zstd frame of the redacted body (store/codec.py); NULL after retention
);
CREATE INDEX entries_time ON entries (time);
CREATE INDEX entries_user ON entries (username, time);
CREATE INDEX entries_verb_resource ON entries (resource, verb, time);
CREATE INDEX entries_namespace ON entries (namespace, time);
CREATE INDEX entries_audit_id ON entries (audit_id);
CREATE INDEX entries_credential ON entries (credential_id);

CREATE TABLE source_positions (
    source     TEXT PRIMARY KEY,          -- e.g. audit_file:/var/log/kubernetes/audit.log
    position   TEXT NOT NULL,             -- JSON owned by the source (file identity + offset …)
    updated_ns BIGINT NOT NULL
);

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,               -- read, stored, duplicates, rejected
    value BIGINT NOT NULL
);

CREATE TABLE zstd_dictionaries (
    dict_id    BIGINT PRIMARY KEY,        -- the id zstd writes into every frame that uses it
    data       BYTEA NOT NULL,
    created_ns BIGINT NOT NULL
);

-- Later migrations that have no PostgreSQL twin run here as written: BLOB is bytea.
CREATE DOMAIN blob AS BYTEA;
