-- What an agent task has used so far: tokens, calls and cost, as JSON text.
ALTER TABLE tasks ADD COLUMN usage TEXT;
