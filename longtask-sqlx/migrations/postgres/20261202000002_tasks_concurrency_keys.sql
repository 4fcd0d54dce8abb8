-- Concurrency keys: tasks of a job with the same key are limited together
-- (JobOptions::max_running_per_key). No index: a claim under limits counts the running tasks of
-- its job through tasks_leased, which holds only the tasks running now, so claims and outcomes
-- without limits maintain no index more than before. Adding a nullable column is instant.
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS concurrency_key text;
