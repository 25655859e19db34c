-- Record keys across key versions (docs/specs/event-identity.md §5). Entries stored before this
-- migration carry key v1; `kubetrail store rekey` adds each one's current key as an alias, so a
-- later delivery of the same event is still refused as a duplicate. Leaves are never rewritten.
-- Keep to the SQL that SQLite and PostgreSQL share.

CREATE TABLE key_aliases (
    alias       TEXT PRIMARY KEY,         -- the entry's key under the current key version
    leaf_index  BIGINT NOT NULL           -- the entry (entries.leaf_index)
);

CREATE TABLE key_state (
    name   TEXT PRIMARY KEY,              -- legacy_below, rekeyed_upto, stored_twice, without_body
    value  BIGINT NOT NULL
);

-- Entries [0, legacy_below) were keyed with key v1.
INSERT INTO key_state (name, value)
    SELECT 'legacy_below', MAX(leaf_index) + 1 FROM entries HAVING COUNT(*) > 0;
