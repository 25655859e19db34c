-- Issue 18: the Merkle tree's interior nodes in one b-tree instead of two. A rowid table with a
-- composite PRIMARY KEY keeps every node twice: in the table (by a hidden rowid) and in the primary
-- key's own index. WITHOUT ROWID stores the row in the primary key's b-tree, which is the only way
-- nodes are ever looked up (level, idx). Every appended leaf adds about one node: ~1.8 µs of the
-- writer's CPU per event (bench/store_floor.py, "current + tree rows"). Same columns, same rows.
-- SQLite only: PostgreSQL tables have no rowid (migrations/postgres/0014_… is empty).

CREATE TABLE trail_nodes_0014 (
    level INTEGER NOT NULL,               -- >= 1; the node covers leaves [idx << level, (idx + 1) << level)
    idx   BIGINT NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
INSERT INTO trail_nodes_0014 (level, idx, hash) SELECT level, idx, hash FROM trail_nodes ORDER BY level, idx;
DROP TABLE trail_nodes;
ALTER TABLE trail_nodes_0014 RENAME TO trail_nodes;
