-- Issue 18: every `entries` index is justified by a query (docs/storage.md, "Indexes"), and none is
-- dropped; the five that look records up by a value stop holding the records that have no value.
-- Log lines (migration 0009) have no auditID, user, resource or credential; cluster-scoped requests
-- and node/journald lines no namespace; most requests of clusters before Kubernetes 1.29 no credential
-- ID. Those rows were all filed under '' (never looked up: a filter on '' is not a CLI filter), and
-- each cost an index insert per record. Queries filtering on these columns add `column <> ''`
-- (store/queries.py, store/keys.py), which is what lets both planners use a partial index.
-- Keep to the SQL that SQLite and PostgreSQL share.

DROP INDEX entries_audit_id_stage;
CREATE INDEX entries_audit_id_stage ON entries (audit_id, stage) WHERE audit_id <> '';
DROP INDEX entries_credential;
CREATE INDEX entries_credential ON entries (credential_id) WHERE credential_id <> '';
DROP INDEX entries_namespace;
CREATE INDEX entries_namespace ON entries (namespace, time) WHERE namespace <> '';
DROP INDEX entries_user_kind;
CREATE INDEX entries_user_kind ON entries (username, kind, time) WHERE username <> '';
DROP INDEX entries_verb_resource;
CREATE INDEX entries_verb_resource ON entries (resource, verb, time) WHERE resource <> '';
