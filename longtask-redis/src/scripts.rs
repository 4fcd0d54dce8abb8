//! The Lua scripts, each prefixed with the shared helpers of `lua/common.lua`.

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("../lua/common.lua"),
            "\n",
            include_str!(concat!("../lua/", $file))
        ))
    };
}

/// Every script the backend runs, loaded once per process (redis-rs sends `EVALSHA` and falls
/// back to loading the script when the server does not know it yet).
pub(crate) struct Scripts {
    pub(crate) insert: Script,
    pub(crate) claim: Script,
    pub(crate) heartbeat: Script,
    pub(crate) finish: Script,
    pub(crate) release: Script,
    pub(crate) recover: Script,
    pub(crate) cancel: Script,
    pub(crate) purge: Script,
    pub(crate) report: Script,
    pub(crate) save_checkpoint: Script,
    pub(crate) list: Script,
    pub(crate) retry: Script,
    pub(crate) delete: Script,
    pub(crate) register_worker: Script,
    pub(crate) unregister_worker: Script,
    pub(crate) workers: Script,
    pub(crate) stats: Script,
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    insert: script!("insert.lua"),
    claim: script!("claim.lua"),
    heartbeat: script!("heartbeat.lua"),
    finish: script!("finish.lua"),
    release: script!("release.lua"),
    recover: script!("recover.lua"),
    cancel: script!("cancel.lua"),
    purge: script!("purge.lua"),
    report: script!("report.lua"),
    save_checkpoint: script!("save_checkpoint.lua"),
    list: script!("list.lua"),
    retry: script!("retry.lua"),
    delete: script!("delete.lua"),
    register_worker: script!("register_worker.lua"),
    unregister_worker: script!("unregister_worker.lua"),
    workers: script!("workers.lua"),
    stats: script!("stats.lua"),
});

#[cfg(test)]
mod tests {
    /// The scripts fire a group's root by its job: the name must be core's.
    #[test]
    fn the_scripts_know_the_group_job() {
        let common = include_str!("../lua/common.lua");
        let line = format!("local GROUP_JOB = '{}'", longtask_core::GROUP_JOB);
        assert!(common.contains(&line), "lua/common.lua lacks {line:?}");
    }
}
