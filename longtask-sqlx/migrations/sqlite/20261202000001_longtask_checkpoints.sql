-- Checkpoints: the state a job saved under its lease (JSON), and what the record shows of it
-- (JSON: attempt, time, progress). Both go with the task's row at purge.
ALTER TABLE longtask_tasks ADD COLUMN checkpoint TEXT;
ALTER TABLE longtask_tasks ADD COLUMN checkpoint_info TEXT;
