//! Key and channel names of one namespace.
//!
//! Every key starts with the base `{prefix}:`; the braces are a Redis Cluster hash tag, so all
//! keys of a namespace share one slot. The scripts build the per-task and per-job keys from the
//! base themselves (`lua/common.lua`); Rust needs only the few below.

use longtask_core::TaskId;

/// The names of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    prefix: String,
    base: String,
}

impl Keys {
    /// The namespace of `prefix`. Braces and `%` in the prefix are percent-encoded, so the
    /// hash tag always covers the whole prefix.
    pub(crate) fn new(prefix: &str) -> Self {
        let mut escaped = String::with_capacity(prefix.len());
        for c in prefix.chars() {
            match c {
                '%' => escaped.push_str("%25"),
                '{' => escaped.push_str("%7B"),
                '}' => escaped.push_str("%7D"),
                c => escaped.push(c),
            }
        }
        Self {
            prefix: prefix.to_owned(),
            base: format!("{{{escaped}}}:"),
        }
    }

    /// The prefix as given.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}:`, passed to every script as `KEYS[1]`.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// The hash holding a task.
    pub(crate) fn task(&self, id: TaskId) -> String {
        format!("{}t:{id}", self.base)
    }

    /// The channel that wakes idle workers.
    pub(crate) fn work_channel(&self) -> String {
        format!("{}work", self.base)
    }

    /// The key whose existence tells the scripts that someone watches task events.
    pub(crate) fn watching(&self) -> String {
        format!("{}watching", self.base)
    }

    /// The channel of one task's events.
    pub(crate) fn task_channel(&self, id: TaskId) -> String {
        format!("{}ev:{id}", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_in_the_prefix_cannot_move_the_hash_tag() {
        let keys = Keys::new("a}b{c%");
        assert_eq!(keys.base(), "{a%7Db%7Bc%25}:");
        assert_eq!(keys.prefix(), "a}b{c%");
        assert_eq!(Keys::new("longtask").base(), "{longtask}:");
    }
}
