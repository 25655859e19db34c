-- Log lines (kinds container, node, k8s_event: the node agent, issue 12) are entries like audit events.
-- Their metadata is in entries.meta (covered by the trail leaf) and in `namespace` (the pod's namespace)
-- and `name` (the pod); the columns below copy what `kubetrail logs` filters on, for its indexes.
-- `logs` re-checks every row against the covered meta, so an edited copy can hide a line from a
-- query but never show a wrong one, and `verify --deep` reports any copy that differs from its meta.
-- Keep to the SQL that SQLite and PostgreSQL share.

ALTER TABLE entries ADD COLUMN node TEXT NOT NULL DEFAULT '';
ALTER TABLE entries ADD COLUMN pod_uid TEXT NOT NULL DEFAULT '';
ALTER TABLE entries ADD COLUMN container TEXT NOT NULL DEFAULT '';
ALTER TABLE entries ADD COLUMN workload TEXT NOT NULL DEFAULT '';
ALTER TABLE entries ADD COLUMN unit TEXT NOT NULL DEFAULT '';
ALTER TABLE entries ADD COLUMN stream TEXT NOT NULL DEFAULT '';

CREATE INDEX entries_kind_time ON entries (kind, time);
CREATE INDEX entries_workload ON entries (workload, time) WHERE workload <> '';
CREATE INDEX entries_pod_uid ON entries (pod_uid, time) WHERE pod_uid <> '';
CREATE INDEX entries_node ON entries (node, time) WHERE node <> '';
CREATE INDEX entries_unit ON entries (unit, time) WHERE unit <> '';
