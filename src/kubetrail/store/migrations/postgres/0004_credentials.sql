-- PostgreSQL twin of ../0004_credentials.sql: the same tables, columns and indexes; BYTEA for BLOB, BIGINT for INTEGER (SQLite integers are 64-bit).
-- Credential inventory (src/kubetrail/credentials/): credentials, their uses with per-credential
-- aggregates, risk flags, cluster-admin bindings seen in the trail, and the consumer's position.
-- Everything here is derived from entries and can be rebuilt with `kubetrail creds rebuild`.
-- Keep to the SQL that SQLite and PostgreSQL share.

CREATE TABLE credentials (
    id            TEXT PRIMARY KEY,       -- csr/NAME, x509/FP16, jti/JTI, legacy/NS/NAME … (model.py)
    kind          TEXT NOT NULL,          -- cert | token | legacy | bootstrap
    credential_id TEXT NOT NULL,          -- X509SHA256=… / JTI=… ; '' while unknown
    subject       TEXT NOT NULL,          -- username it authenticates as; '' while unknown
    lookup        TEXT NOT NULL,          -- csr:NAME | secret:NS/NAME | legacysa:NS/SA | ''
    accounted     BIGINT NOT NULL,       -- 1 when the issuance is in the trail
    created_at    BIGINT,
    expires_at    BIGINT,
    doc           TEXT NOT NULL,          -- JSON of credentials.model.Credential (versioned)
    updated_ns    BIGINT NOT NULL
);
CREATE INDEX credentials_credential_id ON credentials (credential_id);
CREATE INDEX credentials_subject ON credentials (subject);
CREATE INDEX credentials_lookup ON credentials (lookup);

CREATE TABLE credential_aggregates (
    credential    TEXT PRIMARY KEY,       -- credentials.id
    uses          BIGINT NOT NULL,        -- requests (distinct auditIDs), exact + probable
    exact_uses    BIGINT NOT NULL,
    probable_uses BIGINT NOT NULL,
    denied        BIGINT NOT NULL,        -- requests answered 401/403
    first_used    BIGINT,
    last_used     BIGINT,
    stats         TEXT NOT NULL           -- JSON: source IPs (first sighting), user agents, verbs, resources
);

CREATE TABLE credential_uses (
    credential  TEXT NOT NULL,
    request     TEXT NOT NULL,            -- auditID, or the entry key when there is none
    key         TEXT NOT NULL,            -- entries.key of the first stage seen
    audit_id    TEXT NOT NULL,
    stage       TEXT NOT NULL,
    leaf_index  BIGINT,
    time        BIGINT NOT NULL,
    code        BIGINT,
    verb        TEXT NOT NULL,
    resource    TEXT NOT NULL,            -- resource[/subresource]
    namespace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    source_ip   TEXT NOT NULL,
    user_agent  TEXT NOT NULL,
    link        TEXT NOT NULL,            -- exact | probable
    PRIMARY KEY (credential, request)
);
CREATE INDEX credential_uses_time ON credential_uses (credential, time);

CREATE TABLE credential_flags (
    credential  TEXT NOT NULL,
    flag        TEXT NOT NULL,
    priority    TEXT NOT NULL,
    explanation TEXT NOT NULL,
    time        BIGINT NOT NULL,
    key         TEXT NOT NULL,
    audit_id    TEXT NOT NULL,
    stage       TEXT NOT NULL,
    leaf_index  BIGINT,
    alerted     BIGINT NOT NULL DEFAULT 0,
    alert_id    BIGINT,
    PRIMARY KEY (credential, flag)
);
CREATE INDEX credential_flags_alerted ON credential_flags (alerted);

CREATE TABLE credential_admin_bindings (
    binding     TEXT NOT NULL,            -- ClusterRoleBinding/NAME or RoleBinding/NS/NAME
    subject     TEXT NOT NULL,            -- sa:NS/NAME | group:NAME
    key         TEXT NOT NULL,
    audit_id    TEXT NOT NULL,
    leaf_index  BIGINT,
    time        BIGINT NOT NULL,
    PRIMARY KEY (binding, subject)
);

CREATE TABLE credential_state (
    name   TEXT PRIMARY KEY,              -- next_leaf: the first trail index not yet processed
    value  TEXT NOT NULL
);
