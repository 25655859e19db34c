-- Issue 18: a credential's uses are keyed by when each request was received, and keep only what the
-- trail does not: one row per request and credential, ~40 bytes instead of ~250.
--
-- The old key (credential, request) took random auditIDs, so every use dirtied another index page, and
-- the (credential, time) index a second one (~10 µs of SQLite per event, most of the credentials
-- consumer). `received` is the request's requestReceivedTimestamp, which every stage of one request
-- carries (the first stage's event time when there is none): uses are appended at the end of their
-- credential's range, and a later stage of the same request still meets the first one in the key
-- ("is this request new?" stays an INSERT … ON CONFLICT DO NOTHING). What a use showed of its record
-- (auditID, stage, verb, resource, namespace, name, source IP, user agent) is read from `entries` by
-- `leaf_index` (store/credentials.py); `time`, `code` and `link` stay here (the code is the last
-- stage's, the time orders the timeline through credential_uses_time).
-- Existing uses keep their first stage's time as `received` (the value is not in SQL-readable form):
-- a stage of a request whose first stage was applied before this migration and the next after it is
-- counted twice; `kubetrail creds rebuild` recomputes every use exactly.
-- The PostgreSQL twin of ../0013_credential_uses_by_time.sql (no WITHOUT ROWID: a heap and its primary key).

DROP INDEX credential_uses_time;
CREATE TABLE credential_uses_v13 (
    credential  TEXT NOT NULL,
    received    BIGINT NOT NULL,          -- requestReceivedTimestamp of the request, ns
    request     TEXT NOT NULL,            -- auditID, or the entry key when there is none
    time        BIGINT NOT NULL,          -- event time of the first stage seen (entries.time)
    leaf_index  BIGINT,                   -- that stage's trail position
    code        BIGINT,                   -- response code, from whichever stage carried one
    link        TEXT NOT NULL,            -- exact | probable | mismatched | none
    PRIMARY KEY (credential, received, request)
);
INSERT INTO credential_uses_v13 (credential, received, request, time, leaf_index, code, link)
    SELECT credential, time, request, time, leaf_index, code, link FROM credential_uses;
DROP TABLE credential_uses;
ALTER TABLE credential_uses_v13 RENAME TO credential_uses;
CREATE INDEX credential_uses_time ON credential_uses (credential, time, leaf_index);
