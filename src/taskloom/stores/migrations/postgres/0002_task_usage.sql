-- What an agent task has used so far: tokens, calls and cost.
ALTER TABLE tasks ADD COLUMN usage JSON;
