-- Durable workers: what a worker needs (job), when and in what order it runs, and its lease.
-- `n` is the submission order (taken from a sequence at insert).
ALTER TABLE tasks
    ADD COLUMN n               BIGINT GENERATED ALWAYS AS IDENTITY,
    ADD COLUMN priority        INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN fire_ms         BIGINT,
    ADD COLUMN idempotency_key TEXT,
    ADD COLUMN serial_key      TEXT,
    ADD COLUMN job             JSON,
    ADD COLUMN lease_owner     TEXT,
    ADD COLUMN lease_ms        BIGINT,
    ADD COLUMN recoveries      INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX tasks_idempotency ON tasks (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- the due tasks a claim takes, in the order it takes them
CREATE INDEX tasks_due ON tasks (priority DESC, (coalesce(fire_ms, created_ms)), n)
    WHERE state = 'submitted' AND job IS NOT NULL;
-- the leases a claim may take over, oldest (or released) first
CREATE INDEX tasks_leases ON tasks (lease_ms NULLS FIRST)
    WHERE state IN ('working', 'input_required') AND job IS NOT NULL;
CREATE INDEX tasks_serial ON tasks (serial_key, state) WHERE serial_key IS NOT NULL;
