-- Attempt history (TaskRecord::attempts): a JSON array of the attempts that ended without
-- success, oldest first, at most the last 20, each {attempt, started_at, ended_at (epoch
-- milliseconds), worker, outcome ("failed", "lost" or "cancelled"), error}. Written by
-- finish.sql and recover.sql in the same statement as the outcome; NULL until an attempt fails.
-- (Adding a nullable column without a default rewrites nothing.)
ALTER TABLE tasks ADD COLUMN attempts jsonb;
