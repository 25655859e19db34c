-- PostgreSQL twin of ../0002_trail.sql: the same tables, columns and indexes; BYTEA for BLOB, BIGINT for INTEGER (SQLite integers are 64-bit), identity columns for SQLite's INTEGER PRIMARY KEY.
-- kubetrail trail: the Merkle tree beside the entries, and the signed checkpoints (trail/tree.py).
-- Level 0 (leaf hashes) is the tree's own copy: verify compares it with the entries to name the first
-- removed, inserted, reordered or modified index. Nodes are complete subtrees only, so rows never change.

CREATE TABLE trail_leaves (
    idx   BIGINT PRIMARY KEY,            -- leaf index (= entries.leaf_index)
    hash  BYTEA NOT NULL                   -- SHA-256(0x00 || entry)
);

CREATE TABLE trail_nodes (
    level INTEGER NOT NULL,              -- >= 1 (a shift count: INTEGER, as `<<` wants); the node covers leaves [idx << level, (idx + 1) << level)
    idx   BIGINT NOT NULL,
    hash  BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);

CREATE TABLE trail_checkpoints (
    id        BIGINT PRIMARY KEY,         -- signing order
    size      BIGINT NOT NULL,
    root      BYTEA NOT NULL,
    note      TEXT NOT NULL,              -- the signed note, verbatim
    signed_ns BIGINT NOT NULL             -- when it was signed (the checkpoint itself has no time)
);
CREATE INDEX trail_checkpoints_size ON trail_checkpoints (size);
