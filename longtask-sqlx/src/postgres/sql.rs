//! The backend's SQL, kept in `sql/*.sql` and bound to one schema at construction.

/// Every statement the backend runs, with `{schema}` replaced by the quoted schema name.
pub(crate) struct Queries {
    pub(crate) insert: String,
    pub(crate) existing_keys: String,
    pub(crate) get: String,
    pub(crate) list: String,
    pub(crate) list_group: String,
    pub(crate) retry: String,
    pub(crate) delete: String,
    pub(crate) task_states: String,
    pub(crate) register_worker: String,
    pub(crate) unregister_worker: String,
    pub(crate) expire_workers: String,
    pub(crate) workers: String,
    pub(crate) lock_roots: String,
    pub(crate) join_groups: String,
    pub(crate) cancel_lock: String,
    pub(crate) cancel_running: String,
    pub(crate) cancel_waiting: String,
    pub(crate) purge: String,
    pub(crate) claim: String,
    pub(crate) claim_after: String,
    pub(crate) heartbeat: String,
    pub(crate) finish: String,
    pub(crate) release: String,
    pub(crate) recover: String,
    pub(crate) report: String,
    pub(crate) running_counts: String,
    pub(crate) claim_candidates_after: String,
    pub(crate) claim_ids: String,
    pub(crate) save_checkpoint: String,
    pub(crate) load_checkpoint: String,
    pub(crate) latest: String,
    pub(crate) watch_add: String,
    pub(crate) watch_remove: String,
    pub(crate) statuses: String,
    pub(crate) stats_waiting: String,
    pub(crate) stats_counts: String,
    pub(crate) stats_throughput: String,
    pub(crate) stats_oldest: String,
    pub(crate) fold_throughput: String,
}

impl Queries {
    /// The statements for schema `schema` (already validated as a plain identifier).
    pub(crate) fn new(schema: &str) -> Self {
        let quoted = super::quote_ident(schema);
        let columns = include_str!("sql/columns.sql").trim();
        // The lines of the lease tail are comments up to the first statement line.
        let claim_lease = include_str!("sql/claim_lease.sql")
            .lines()
            .skip_while(|line| line.starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        let leave_groups = include_str!("sql/leave_groups.sql")
            .lines()
            .skip_while(|line| line.starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        let leave = |ended: &str, now: &str, max: &str, channel: &str| {
            leave_groups
                .trim_end()
                .replace("{ended}", ended)
                .replace("{now}", now)
                .replace("{max}", max)
                .replace("{channel}", channel)
        };
        let discount_template = include_str!("sql/discount.sql")
            .lines()
            .skip_while(|line| line.starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        let discount = |gone: &str| discount_template.trim_end().replace("{gone}", gone);
        let finish_groups = leave("finished", "$8", "$9", "$10");
        let recover_groups = leave("recovered", "$1", "$3", "$4");
        let cancel_groups = leave("cancelled", "$2", "$3", "$4");
        let bind = |sql: &str| {
            sql.replace("{claim_lease}", claim_lease.trim_end())
                .replace("{columns}", columns)
                .replace("{schema}", &quoted)
        };
        Self {
            insert: bind(include_str!("sql/insert.sql")),
            existing_keys: bind(include_str!("sql/existing_keys.sql")),
            get: bind(include_str!("sql/get.sql")),
            list: bind(include_str!("sql/list.sql")),
            list_group: bind(include_str!("sql/list_group.sql")),
            retry: bind(&include_str!("sql/retry.sql").replace("{discount}", &discount("retried"))),
            delete: bind(&include_str!("sql/delete.sql").replace("{discount}", &discount("deleted"))),
            task_states: bind(include_str!("sql/task_states.sql")),
            register_worker: bind(
                "INSERT INTO {schema}.workers (id, info, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET info = excluded.info, expires_at = excluded.expires_at",
            ),
            unregister_worker: bind("DELETE FROM {schema}.workers WHERE id = $1"),
            expire_workers: bind("DELETE FROM {schema}.workers WHERE expires_at <= $1"),
            workers: bind("SELECT info FROM {schema}.workers WHERE expires_at > $1 ORDER BY id"),
            lock_roots: bind(include_str!("sql/lock_roots.sql")),
            join_groups: bind(include_str!("sql/join_groups.sql")),
            cancel_lock: bind(include_str!("sql/cancel_lock.sql")),
            cancel_running: bind(include_str!("sql/cancel_running.sql")),
            cancel_waiting: bind(
                &include_str!("sql/cancel_waiting.sql").replace("{leave_groups}", &cancel_groups),
            ),
            purge: bind(&include_str!("sql/purge.sql").replace("{discount}", &discount("purged"))),
            claim: bind(include_str!("sql/claim.sql")),
            claim_after: bind(include_str!("sql/claim_after.sql")),
            heartbeat: bind(include_str!("sql/heartbeat.sql")),
            finish: bind(&include_str!("sql/finish.sql").replace("{leave_groups}", &finish_groups)),
            release: bind(include_str!("sql/release.sql")),
            recover: bind(
                &include_str!("sql/recover.sql").replace("{leave_groups}", &recover_groups),
            ),
            report: bind(include_str!("sql/report.sql")),
            running_counts: bind(include_str!("sql/running_counts.sql")),
            claim_candidates_after: bind(include_str!("sql/claim_candidates_after.sql")),
            claim_ids: bind(include_str!("sql/claim_ids.sql")),
            save_checkpoint: bind(include_str!("sql/save_checkpoint.sql")),
            load_checkpoint: bind(include_str!("sql/load_checkpoint.sql")),
            latest: bind(include_str!("sql/latest.sql")),
            watch_add: bind(include_str!("sql/watch_add.sql")),
            watch_remove: bind(include_str!("sql/watch_remove.sql")),
            statuses: bind(include_str!("sql/statuses.sql")),
            stats_waiting: bind(include_str!("sql/stats_waiting.sql")),
            stats_counts: bind(include_str!("sql/stats_counts.sql")),
            stats_throughput: bind(include_str!("sql/stats_throughput.sql")),
            stats_oldest: bind(include_str!("sql/stats_oldest.sql")),
            fold_throughput: bind(include_str!("sql/fold_throughput.sql")),
        }
    }
}
