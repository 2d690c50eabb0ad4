-- The key-value table litedrive creates in a database (POST /db/create?init_kv=true, or the first
-- KV request). It is an ordinary table: any sqlite3 client on the drive can read and change it.
--   key         the key, any UTF-8 text
--   value       the JSON text of the value
--   version     incremented on every change; carried as the ETag and used by if_match (CAS)
--   expires_at  Unix time in seconds (fractions allowed) after which the key is gone; NULL = never
--   updated_at  Unix time in seconds of the last change
-- {table} is replaced by the table's name (default kv_store), quoted as an identifier.
CREATE TABLE IF NOT EXISTS {table} (
  key        TEXT    NOT NULL PRIMARY KEY,
  value      TEXT    NOT NULL,
  version    INTEGER NOT NULL DEFAULT 1,
  expires_at REAL,
  updated_at REAL    NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS {table_index_expires} ON {table}(expires_at) WHERE expires_at IS NOT NULL;
