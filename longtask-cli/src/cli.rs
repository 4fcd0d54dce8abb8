//! The command line: global options and one subcommand per operation.
//!
//! A new operation is a new [`Command`] variant with its own args struct and module under
//! `commands/`; `commands::run` dispatches on it.

use clap::{Args, Parser, Subcommand};
use longtask::{TaskId, TaskStatus};

/// The exit statuses, for `--help` and the README.
const EXIT_CODES: &str = "\
Exit status:
  0  success (for `watch`: the task succeeded)
  1  any other error
  2  usage: a bad option, a malformed backend URL, task id or address; `dashboard` on a
     non-loopback address without `--allow-anyone` or `--token`
  3  no such task (never submitted, or purged after its retention)
  4  the backend cannot be reached or opened
  5  `watch`: the task failed
  6  `watch`: the task was cancelled

Backend URLs: memory://, sqlite://path.db, postgres://user:password@host/db,
redis://[:password@]host[:port][/db], redis+cluster://host:port,host:port.
Passwords in URLs are never printed.";

/// See and steer longtask tasks on any backend.
#[derive(Debug, Parser)]
#[command(name = "longtask", version, about, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    /// The backend's URL (sqlite://, postgres://, redis://, redis+cluster://, memory://).
    #[arg(long, env = "LONGTASK_URL", hide_env_values = true, global = true)]
    pub(crate) url: Option<String>,

    /// Print one JSON document instead of tables and text (for scripts).
    #[arg(long, global = true)]
    pub(crate) json: bool,

    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The operations.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create or update the backend's schema (SQLite, Postgres; a no-op elsewhere).
    ///
    /// The other commands never migrate, nor create a missing SQLite file.
    Migrate,
    /// List tasks, oldest first, with filters and paging.
    List(ListArgs),
    /// Show everything stored about one task.
    Show(IdArg),
    /// Follow a task until it ends, with a live progress bar (plain lines when stdout is not
    /// a terminal).
    ///
    /// Exits 0 when the task succeeds, 5 when it fails, 6 when it is cancelled.
    Watch(IdArg),
    /// Cancel a task: at once if it is waiting, else at its worker's next heartbeat.
    Cancel(IdArg),
    /// Delete finished tasks whose retention has ended.
    Purge(PurgeArgs),
    /// Run a failed or cancelled task again now, with a fresh attempt budget; or, with
    /// `--failed --job J`, every failed task of a job.
    Retry(RetryArgs),
    /// Delete a finished task now (its output and progress with it).
    Delete(IdArg),
    /// List the live workers: host, process, jobs, busy slots, last heartbeat.
    Workers,
    /// Each job's tasks per status, its oldest waiting task, and its tasks finished in the
    /// last hour (with a sparkline of each minute); then the totals and the live workers.
    Stats(StatsArgs),
    /// Serve the operators' dashboard (every queue, the workers, the tasks and their actions)
    /// over HTTP until Ctrl-C.
    ///
    /// On a loopback address (the default, 127.0.0.1:8080) it answers only requests that name
    /// a loopback host, so that no web page elsewhere reaches it through DNS rebinding. It
    /// refuses any other address unless `--token` or `--allow-anyone` is given.
    Dashboard(DashboardArgs),
}

/// `stats`' options.
#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Only this job (and the workers that run it). A job without tasks shows an empty table.
    #[arg(long)]
    pub(crate) job: Option<String>,
}

/// `dashboard`'s options.
#[derive(Debug, Args)]
pub(crate) struct DashboardArgs {
    /// The address to listen on: IP:PORT (`127.0.0.1:8080`, `[::1]:8080`, `0.0.0.0:8080`),
    /// `localhost:PORT`, or a port alone (on 127.0.0.1). Port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_bind, value_name = "ADDRESS")]
    pub(crate) bind: std::net::SocketAddr,

    /// The path to serve the dashboard under, such as `/admin` (default: the root). Other
    /// paths answer 404.
    #[arg(long, value_parser = parse_prefix, value_name = "PATH")]
    pub(crate) prefix: Option<String>,

    /// Require this secret with every request: `Authorization: Bearer <token>`, or as the
    /// password of a browser's login prompt (any user name). At least 16 visible ASCII
    /// characters. Prefer the environment variable: a command line shows in `ps`.
    #[arg(
        long,
        env = "LONGTASK_DASHBOARD_TOKEN",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub(crate) token: Option<String>,

    /// Admit requests whatever host they name and, without `--token`, from anyone who can
    /// reach the address: its actions retry, cancel and delete tasks. Required to listen on
    /// a non-loopback address without `--token`.
    #[arg(long)]
    pub(crate) allow_anyone: bool,
}

fn parse_bind(text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::{Ipv4Addr, SocketAddr};
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    if let Some(port) = text
        .rsplit_once(':')
        .filter(|(host, _)| host.eq_ignore_ascii_case("localhost"))
        .and_then(|(_, port)| port.parse::<u16>().ok())
    {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    Err(format!(
        "`{}` is not an address to listen on: give IP:PORT (127.0.0.1:8080, [::1]:8080), \
         localhost:PORT or a port",
        crate::render::clean(text)
    ))
}

fn parse_prefix(text: &str) -> Result<String, String> {
    let trimmed = text.trim_matches('/');
    let plain = |c: char| c.is_ascii_alphanumeric() || "-._~/".contains(c);
    let dots = trimmed
        .split('/')
        .any(|segment| segment == "." || segment == "..");
    if !text.starts_with('/') || !trimmed.chars().all(plain) || trimmed.contains("//") || dots {
        return Err(format!(
            "`{}` is not a path prefix: give one such as /admin (letters, digits, `-._~` and `/`)",
            crate::render::clean(text)
        ));
    }
    Ok(if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    })
}

/// `retry`'s target: one task, or every failed task of a job.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["id", "failed"])))]
pub(crate) struct RetryArgs {
    /// The task's id (a UUID).
    pub(crate) id: Option<TaskId>,

    /// Retry every failed task of the job named by `--job`, in batches.
    #[arg(long, requires = "job")]
    pub(crate) failed: bool,

    /// The job whose failed tasks `--failed` retries.
    #[arg(long, requires = "failed")]
    pub(crate) job: Option<String>,
}

/// The one argument of `show`, `watch` and `cancel`.
#[derive(Debug, Args)]
pub(crate) struct IdArg {
    /// The task's id (a UUID).
    pub(crate) id: TaskId,
}

/// The most `list --limit` accepts: what every backend serves in one page.
pub(crate) const MAX_LIMIT: u64 = 10_000;

/// `list`'s filters.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only tasks of this job.
    #[arg(long)]
    pub(crate) job: Option<String>,

    /// Only tasks in this status (repeat, or separate with commas, for several): queued,
    /// scheduled, running, retrying, succeeded, failed, cancelled.
    #[arg(long, value_delimiter = ',')]
    pub(crate) status: Vec<TaskStatus>,

    /// Only tasks of this owner.
    #[arg(long)]
    pub(crate) owner: Option<String>,

    /// Only tasks submitted after this one (the last id of the previous page).
    #[arg(long, value_name = "ID")]
    pub(crate) after: Option<TaskId>,

    /// At most this many tasks (1 to 10000).
    #[arg(long, default_value_t = 100, allow_negative_numbers = true, value_parser = clap::value_parser!(u64).range(1..=MAX_LIMIT))]
    pub(crate) limit: u64,
}

/// `purge`'s options.
#[derive(Debug, Args)]
pub(crate) struct PurgeArgs {
    /// Delete at most this many tasks (default: every task past its retention).
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) limit: Option<u64>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
