-- Claims read the head of tasks_waiting, where every claimed task leaves a dead index entry
-- until VACUUM removes it; left alone (autovacuum's default waits for 20% of the table to be
-- dead, and then may skip the indexes), claims slow down as those pile up. Vacuum this table
-- after every 10,000 changed rows, unthrottled, always cleaning the indexes. With busy queues,
-- also lower the server's autovacuum_naptime (default 1 min; 10 s suits 10,000 tasks/s).
ALTER TABLE tasks SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 50000,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0,
    vacuum_index_cleanup = on
);
