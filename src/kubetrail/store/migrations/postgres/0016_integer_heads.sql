-- Issue 18: the integer heads of the key and the auditID (store/heads.py; SQLite's 0016 rebuilds its
-- table around them). Here `key` keeps its UNIQUE constraint, which the concurrent writers' duplicate
-- check relies on (store/postgres.py), and `key_head` is stored, not indexed: the shared lookups
-- compare `key` as well and PostgreSQL uses the key's index. The auditID's text index gives way to
-- its head's, as in SQLite. The heads are computed here as store/heads.py computes them.

ALTER TABLE entries ADD COLUMN key_head BIGINT;
ALTER TABLE entries ADD COLUMN audit_head BIGINT;
UPDATE entries SET key_head = CASE WHEN key ~ '^[0-9a-f]{15}'
        THEN ('x' || substr(key, 1, 15))::bit(60)::bigint
        ELSE (1::bigint << 60) | ('x' || substr(md5(key), 1, 15))::bit(60)::bigint END,
    audit_head = CASE WHEN audit_id = '' THEN NULL ELSE ('x' || substr(md5(audit_id), 1, 15))::bit(60)::bigint END;
DROP INDEX entries_audit_id_stage;
CREATE INDEX entries_audit_head ON entries (audit_head, stage) WHERE audit_head IS NOT NULL;
