-- PostgreSQL twin of ../0005_entry_v2.sql: the same tables, columns and indexes; BYTEA for BLOB, BIGINT for INTEGER (SQLite integers are 64-bit).
-- Trail entries v2 (trail/entry.py): the entry is rebuilt from the row's columns, so every indexed
-- column is covered by the leaf. New rows keep an empty `entries.entry` and their body hash here;
-- rows written before keep their v1 header bytes in `entry` and NULL here.
ALTER TABLE entries ADD COLUMN body_sha256 BYTEA;
