-- Tasks and their numbered event log. Timestamps are epoch milliseconds (UTC).
-- JSON keeps the writer's text (and so its key order); progress is JSONB for the `||` merge.
CREATE TABLE tasks (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    owner            TEXT,
    state            TEXT NOT NULL,
    reason           TEXT,
    payload          JSON  NOT NULL,
    progress         JSONB NOT NULL DEFAULT '{}',
    result           JSON ,
    error            JSON ,
    parent_id        TEXT,
    created_ms       BIGINT NOT NULL,
    updated_ms       BIGINT NOT NULL,
    started_ms       BIGINT,
    ended_ms         BIGINT,
    last_progress_ms BIGINT,
    expires_ms       BIGINT,
    retention_ms     BIGINT NOT NULL,
    purge_ms         BIGINT,
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
    at_ms   BIGINT NOT NULL,
    kind    TEXT NOT NULL,
    data    JSON  NOT NULL,
    PRIMARY KEY (task_id, seq)
);
