-- Durable workers: what a worker needs (job), when and in what order it runs, and its lease.
-- Submission order is the table's rowid: it grows with each insert (a new row gets one more
-- than the largest), and VACUUM, which may renumber rowids, keeps their order.
ALTER TABLE tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN fire_ms INTEGER;
ALTER TABLE tasks ADD COLUMN idempotency_key TEXT;
ALTER TABLE tasks ADD COLUMN serial_key TEXT;
ALTER TABLE tasks ADD COLUMN job TEXT;
ALTER TABLE tasks ADD COLUMN lease_owner TEXT;
ALTER TABLE tasks ADD COLUMN lease_ms INTEGER;
ALTER TABLE tasks ADD COLUMN recoveries INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX tasks_idempotency ON tasks (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- the due tasks a claim takes, in the order it takes them (an index ends with the rowid)
CREATE INDEX tasks_due ON tasks (priority DESC, coalesce(fire_ms, created_ms))
    WHERE state = 'submitted' AND job IS NOT NULL;
-- the leases a claim may take over, oldest (or released: NULL sorts first) first
CREATE INDEX tasks_leases ON tasks (lease_ms)
    WHERE (state = 'working' OR state = 'input_required') AND job IS NOT NULL;
CREATE INDEX tasks_serial ON tasks (serial_key, state) WHERE serial_key IS NOT NULL;
