-- Claims no longer walk the dead entries at the head of tasks_waiting (they start after the last
-- key claimed, see src/postgres/cursor.rs; only a scan from the head, at most about once a
-- second, steps over them), so VACUUM need not run after every fixed number of changes. A fixed
-- threshold made vacuum cost per task grow with history (each run scans every index, whose size
-- is the whole history, however few rows changed): scale it with the table instead, so the work
-- per task stays flat. Vacuum after 10,000 + 5% of the table's rows changed (or inserted).
ALTER TABLE tasks SET (
    autovacuum_vacuum_scale_factor = 0.05,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_vacuum_insert_threshold = 10000
);
