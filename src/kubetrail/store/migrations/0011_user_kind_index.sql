-- `kubetrail query --user U` reads audit records only (every query without --kind adds
-- kind = 'audit', migration 0009 put log lines in the same table): with kind between username and
-- time, `query --user U --since T --count` is answered from the index alone, where (username, time)
-- had to read each row for its kind, and the planners preferred entries_kind_time (every audit
-- record since T) over it. bench/store.py at 1,000,000 events: bench/RESULTS.md, "Store (issue 11)".
-- (username, kind, time) serves every lookup (username, time) did, so that index goes.
-- Keep to the SQL that SQLite and PostgreSQL share.

DROP INDEX entries_user;
CREATE INDEX entries_user_kind ON entries (username, kind, time);
