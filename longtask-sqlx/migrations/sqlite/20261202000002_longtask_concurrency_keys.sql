-- Concurrency keys: tasks of a job with the same key are limited together
-- (JobOptions::max_running_per_key). No index: a claim under limits counts the running tasks of
-- its job through the index of running tasks (longtask_tasks_lease), which holds only the tasks
-- running now, so that claims and outcomes without limits update no index more than before.
ALTER TABLE longtask_tasks ADD COLUMN concurrency_key TEXT;
