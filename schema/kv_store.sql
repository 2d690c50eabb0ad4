-- The key-value table litedrive creates in a database (POST /db/create?init_kv=true, or the first
-- KV request for a table). It is an ordinary table: any sqlite3 client on the drive can read and
-- change it, and the HTTP API sees those changes.
--   key         the key, any UTF-8 text
--   value       the JSON text of the value (text that is not JSON is served as a JSON string)
--   version     1 on creation, +1 on every change (also for changes made with plain SQL, by the
--               trigger below); carried as the ETag and compared by if_match (CAS)
--   expires_at  Unix time in seconds (fractions allowed) after which the key is gone; NULL = never
--   updated_at  Unix time in seconds of the last change
-- {table} and {name} are replaced by the table's name (default kv_store): {table} quoted as an
-- identifier, {name} as part of the names of its index and trigger.
CREATE TABLE IF NOT EXISTS {table} (
  key        TEXT    NOT NULL PRIMARY KEY,
  value      TEXT    NOT NULL,
  version    INTEGER NOT NULL DEFAULT 1,
  expires_at REAL,
  updated_at REAL    NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS "{name}_expires" ON {table}(expires_at) WHERE expires_at IS NOT NULL;
CREATE TRIGGER IF NOT EXISTS "{name}_version" AFTER UPDATE OF value ON {table}
  WHEN NEW.version = OLD.version
BEGIN
  UPDATE {table} SET version = OLD.version + 1,
                     updated_at = (julianday('now') - 2440587.5) * 86400.0
   WHERE key = NEW.key;
END;
-- The history of {table}: one row per change made through litedrive (set, partial set, delete,
-- incr/decr, push/pop/remove, batch items, TTL expiry, rollback), written in the same transaction
-- as the change itself. A write with ?history=false records nothing (such a change cannot be seen
-- or undone through the history).
--   op_number  monotonic per table
--   operation  set, set_path, delete, incr, push, pop, remove, batch_set, batch_delete, expire,
--              rollback
--   old_value  the JSON text before the change, NULL if the key did not exist
--   new_value  the JSON text after the change, NULL if the key was deleted
--   ts         Unix time in seconds (fractions) of the change
--   source     who changed it: http or expiry
CREATE TABLE IF NOT EXISTS "{name}_history" (
  op_number INTEGER PRIMARY KEY AUTOINCREMENT,
  key       TEXT    NOT NULL,
  operation TEXT    NOT NULL,
  old_value TEXT,
  new_value TEXT,
  ts        REAL    NOT NULL,
  source    TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS "{name}_history_ts" ON "{name}_history"(ts);
-- The history by key, for time travel on one key. Not an index of the history table: an index
-- would be written at a random place on every change (one more page in every group commit, ~a
-- quarter of a SET's cost). litedrive adds the new history rows here in batches, in key order
-- (--history-index-batch), and always before it reads a key's history, so reads see every row.
-- litedrive_history_indexed says up to which op_number a table's rows are here.
CREATE TABLE IF NOT EXISTS "{name}_history_keys" (
  key       TEXT    NOT NULL,
  op_number INTEGER NOT NULL,
  PRIMARY KEY (key, op_number)
) WITHOUT ROWID;
DROP INDEX IF EXISTS "{name}_history_key";
-- How far back the history of each table reaches: retention (history-max-age-s,
-- history-max-rows) deletes the oldest rows and moves the horizon; time travel to before it is an
-- error, never a silently wrong answer.
CREATE TABLE IF NOT EXISTS litedrive_history_horizon (
  tbl       TEXT NOT NULL PRIMARY KEY,
  op_number INTEGER NOT NULL,   -- the newest op_number deleted
  ts        REAL    NOT NULL    -- its time
);
CREATE TABLE IF NOT EXISTS litedrive_history_indexed (
  tbl       TEXT NOT NULL PRIMARY KEY,
  op_number INTEGER NOT NULL    -- every history row up to here is in TABLE_history_keys
);
