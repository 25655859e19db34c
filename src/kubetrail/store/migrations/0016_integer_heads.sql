-- Issue 18: the key and the auditID indexed by 60-bit integer heads (store/heads.py) instead of their
-- text. Both are random: every batch of inserts dirtied leaf pages all over their two indexes, which
-- cost the writer as much as the rest of an insert (bench/index_cost.py: 26 -> 19 µs and 7.8 -> 4.8 KiB
-- written per row). `key_head` is UNIQUE and refuses a duplicate as `key`'s own index did (NULL only
-- for the second of two keys with one head); lookups by key or auditID compare the text as well.
-- The key's inline UNIQUE index cannot be dropped in SQLite, so the table is rebuilt, rows and leaf
-- indexes unchanged; `leaf_index INTEGER PRIMARY KEY` now names the rowid (no separate index of it).
-- The heads of existing rows come from the functions store/heads.py registers on the connection.
-- SQLite only: migrations/postgres/0016_integer_heads.sql adds the columns to PostgreSQL's table.

CREATE TABLE entries_0016 (
    leaf_index    INTEGER PRIMARY KEY,     -- trail position, 0-based, contiguous (the rowid)
    key           TEXT NOT NULL,           -- content hash (stages/identity.py)
    time          BIGINT NOT NULL,
    kind          TEXT NOT NULL,
    source        TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    format        TEXT NOT NULL,
    audit_id      TEXT NOT NULL,
    stage         TEXT NOT NULL,
    level         TEXT NOT NULL,
    verb          TEXT NOT NULL,
    username      TEXT NOT NULL,
    groups_json   TEXT NOT NULL,
    impersonated  TEXT NOT NULL,
    resource      TEXT NOT NULL,
    subresource   TEXT NOT NULL,
    api_group     TEXT NOT NULL,
    namespace     TEXT NOT NULL,
    name          TEXT NOT NULL,
    code          INTEGER,
    source_ips    TEXT NOT NULL,
    source_ip     TEXT NOT NULL,
    user_agent    TEXT NOT NULL,
    request_uri   TEXT NOT NULL,
    credential_id TEXT NOT NULL,
    meta          BLOB NOT NULL,
    entry         BLOB NOT NULL,
    leaf_hash     BLOB NOT NULL,
    body          BLOB,
    body_sha256   BLOB,
    node          TEXT NOT NULL DEFAULT '',
    pod_uid       TEXT NOT NULL DEFAULT '',
    container     TEXT NOT NULL DEFAULT '',
    workload      TEXT NOT NULL DEFAULT '',
    unit          TEXT NOT NULL DEFAULT '',
    stream        TEXT NOT NULL DEFAULT '',
    key_head      BIGINT,                  -- store/heads.py: UNIQUE; NULL for the second key of one head
    audit_head    BIGINT                   -- store/heads.py; NULL without an auditID
);
INSERT INTO entries_0016 SELECT leaf_index, key, time, kind, source, seq, format, audit_id, stage, level, verb,
    username, groups_json, impersonated, resource, subresource, api_group, namespace, name, code, source_ips,
    source_ip, user_agent, request_uri, credential_id, meta, entry, leaf_hash, body, body_sha256, node, pod_uid,
    container, workload, unit, stream, kubetrail_key_head(key), kubetrail_audit_head(audit_id)
    FROM entries ORDER BY leaf_index;
UPDATE entries_0016 SET key_head = NULL WHERE leaf_index IN (SELECT leaf_index FROM (SELECT leaf_index,
    ROW_NUMBER() OVER (PARTITION BY key_head ORDER BY leaf_index) AS n FROM entries_0016) WHERE n > 1);
DROP TABLE entries;
ALTER TABLE entries_0016 RENAME TO entries;
CREATE UNIQUE INDEX entries_key_head ON entries (key_head);
CREATE INDEX entries_audit_head ON entries (audit_head, stage) WHERE audit_head IS NOT NULL;
CREATE INDEX entries_time ON entries (time);
CREATE INDEX entries_kind_time ON entries (kind, time);
CREATE INDEX entries_workload ON entries (workload, time) WHERE workload <> '';
CREATE INDEX entries_pod_uid ON entries (pod_uid, time) WHERE pod_uid <> '';
CREATE INDEX entries_node ON entries (node, time) WHERE node <> '';
CREATE INDEX entries_unit ON entries (unit, time) WHERE unit <> '';
CREATE INDEX entries_credential ON entries (credential_id) WHERE credential_id <> '';
CREATE INDEX entries_namespace ON entries (namespace, time) WHERE namespace <> '';
CREATE INDEX entries_user_kind ON entries (username, kind, time) WHERE username <> '';
CREATE INDEX entries_verb_resource ON entries (resource, verb, time) WHERE resource <> '';
