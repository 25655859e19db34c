-- The audit-ID reuse check (detect/reuse.py, KeysRepo.by_audit_id) groups by (audit_id, stage) for
-- every batch: an index on both answers it from the index alone. It also serves lookups by audit_id.
-- Keep to the SQL that SQLite and PostgreSQL share.

DROP INDEX entries_audit_id;
CREATE INDEX entries_audit_id_stage ON entries (audit_id, stage);
