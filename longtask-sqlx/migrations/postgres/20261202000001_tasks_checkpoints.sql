-- Checkpoints: the state a job saved under its lease (serde JSON, kept byte for byte as text),
-- and what the record shows of it (JSON: attempt, time, progress). Both go with the task's row
-- at purge. Adding nullable columns without a default rewrites nothing: instant on any table.
ALTER TABLE tasks
    ADD COLUMN IF NOT EXISTS checkpoint text,
    ADD COLUMN IF NOT EXISTS checkpoint_info text;
