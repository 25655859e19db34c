-- Retention runs and the trail's signing state (trail/retention.py, trail/checkpointer.py, trail/verify.py).
-- A body is NULL either because a recorded retention run pruned it, or because someone deleted it: verify
-- reports a pruned body that no run explains as modified. trail_state remembers that checkpoints were
-- signed, so a store whose checkpoints were all deleted is not mistaken for one that never signed.
-- Keep to the SQL that SQLite and PostgreSQL share.

CREATE TABLE retention_runs (
    id          INTEGER PRIMARY KEY,
    run_ns      BIGINT NOT NULL,          -- when the run committed; 0 = recorded by this migration
    before_ns   BIGINT,                   -- age rule: bodies with time < before_ns were pruned (NULL: no age rule)
    upto_index  BIGINT,                   -- size rule: bodies with leaf_index <= upto_index were pruned (NULL: none)
    size        BIGINT NOT NULL,          -- entries in the store when it ran: later entries are not covered
    pruned      BIGINT NOT NULL           -- bodies it set to NULL
);

-- Bodies pruned before runs were recorded: one run that covers every one of them.
INSERT INTO retention_runs (run_ns, before_ns, upto_index, size, pruned)
    SELECT 0, NULL, MAX(leaf_index), MAX(leaf_index) + 1, COUNT(*) FROM entries WHERE body IS NULL
    HAVING COUNT(*) > 0;

CREATE TABLE trail_state (
    name   TEXT PRIMARY KEY,              -- signed_size: the largest tree size ever signed
    value  BIGINT NOT NULL
);

INSERT INTO trail_state (name, value)
    SELECT 'signed_size', MAX(size) FROM trail_checkpoints HAVING COUNT(*) > 0;
