-- Issue 18: the time index of credential_uses (0013) keeps only the uses whose time is not within 2 s
-- after their request's receive time — a request first seen at a late stage (a long watch or exec
-- whose earlier stages the policy omits) or stamped before it was received. The key (credential,
-- received, request) already orders the others by time to within 2 s: a credential's timeline reads
-- the key in order and merges these (store/credentials.py, `uses`), and every use costs one B-tree
-- insert instead of two (~1 µs of the credentials consumer per event).
-- The predicate is written as PostgreSQL prints it back (`verify --deep` compares the two).
-- Keep to the SQL that SQLite and PostgreSQL share.

DROP INDEX credential_uses_time;
CREATE INDEX credential_uses_outliers ON credential_uses (credential, time, leaf_index)
    WHERE (time < received) OR (time > (received + 2000000000));
