-- Tasks and their numbered event log. Timestamps are epoch milliseconds (UTC); JSON is TEXT.
CREATE TABLE tasks (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    owner            TEXT,
    state            TEXT NOT NULL,
    reason           TEXT,
    payload          TEXT NOT NULL,
    progress         TEXT NOT NULL DEFAULT '{}',
    result           TEXT,
    error            TEXT,
    parent_id        TEXT,
    created_ms       INTEGER NOT NULL,
    updated_ms       INTEGER NOT NULL,
    started_ms       INTEGER,
    ended_ms         INTEGER,
    last_progress_ms INTEGER,
    expires_ms       INTEGER,
    retention_ms     INTEGER NOT NULL,
    purge_ms         INTEGER,
    last_seq         INTEGER NOT NULL,
    epoch            INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tasks_created ON tasks (created_ms, id);
CREATE INDEX tasks_state ON tasks (state, created_ms);
CREATE INDEX tasks_owner ON tasks (owner, created_ms) WHERE owner IS NOT NULL;
CREATE INDEX tasks_parent ON tasks (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX tasks_expires ON tasks (expires_ms) WHERE expires_ms IS NOT NULL AND ended_ms IS NULL;
CREATE INDEX tasks_purge ON tasks (purge_ms) WHERE purge_ms IS NOT NULL;

CREATE TABLE events (
    task_id TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    at_ms   INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    data    TEXT NOT NULL,
    PRIMARY KEY (task_id, seq)
) WITHOUT ROWID;
