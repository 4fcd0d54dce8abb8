//! `longtask`: see and steer longtask tasks on any backend, from a shell.
//!
//! ```text
//! longtask --url sqlite://longtask.db list --status failed
//! longtask --url postgres://app@db/app watch 0193f0d4-7c2a-7b1e-9d1c-5e2f3a4b5c6d
//! longtask --url redis://cache stats --job monthly-report
//! longtask --url sqlite://longtask.db dashboard --bind 127.0.0.1:8080
//! ```
//!
//! See the crate README for every command and the exit statuses.

mod cli;
mod commands;
mod error;
mod render;
mod server;

use std::process::ExitCode;

use clap::{error::ErrorKind, Parser};

use crate::{
    cli::Cli,
    commands::Context,
    error::{Exit, Failure},
};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage(&err),
    };
    let Some(url) = cli.url else {
        eprintln!("error: no backend URL: pass --url <URL> or set LONGTASK_URL (see --help)");
        return Exit::Usage.into();
    };
    let cx = Context::new(url, cli.json);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: could not start the async runtime: {err}");
            return Exit::Other.into();
        }
    };
    match runtime.block_on(commands::run(cli.command, &cx)) {
        Ok(code) => code,
        Err(Failure { exit, message }) => {
            eprintln!("error: {}", cx.mask(&message));
            exit.into()
        }
    }
}

/// Prints clap's answer to a command line it could not parse (or `--help`, `--version`). A bad
/// value (a malformed id, an unknown status, a limit out of range) is one line; other mistakes
/// get clap's usage hint.
fn usage(err: &clap::Error) -> ExitCode {
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                Exit::Usage.into()
            } else {
                ExitCode::SUCCESS
            }
        }
        ErrorKind::ValueValidation | ErrorKind::InvalidValue => {
            let text = err.render().to_string();
            let first = text.lines().next().unwrap_or("error: invalid value");
            eprintln!("{first}");
            Exit::Usage.into()
        }
        _ => {
            let _ = err.print();
            Exit::Usage.into()
        }
    }
}
