-- Asks a running task to stop: its worker sees it at the next heartbeat. $1 id.
UPDATE {schema}.tasks SET cancel_requested = true WHERE id = $1
