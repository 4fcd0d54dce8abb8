//! One module per command. Each takes its parsed arguments and the [`Context`] (the backend
//! URL and output format), and returns the exit status or a [`Failure`].

mod cancel;
mod dashboard;
mod delete;
mod list;
mod migrate;
mod purge;
mod retry;
mod show;
mod stats;
mod watch;
mod workers;

use std::process::ExitCode;

use longtask::{Backend, Client, ConnectOptions};

use crate::{
    cli::Command,
    error::{Failure, Secrets},
};

/// What every command needs: where the backend is, and how to print.
#[derive(Debug)]
pub(crate) struct Context {
    url: String,
    secrets: Secrets,
    json: bool,
}

impl Context {
    pub(crate) fn new(url: String, json: bool) -> Self {
        Self {
            secrets: Secrets::of(&url),
            url,
            json,
        }
    }

    /// `text` with the URL's password masked.
    pub(crate) fn mask(&self, text: &str) -> String {
        self.secrets.mask(text)
    }

    /// Opens the backend as it is: no migration, and a missing SQLite file is an error (a typo
    /// in a path must not leave an empty database behind).
    async fn client(&self) -> Result<Client, Failure> {
        let options = ConnectOptions::new()
            .migrate(false)
            .create_if_missing(false);
        Ok(Client::new(self.connect(&options).await?))
    }

    async fn connect(&self, options: &ConnectOptions) -> Result<Backend, Failure> {
        longtask::connect_with(&self.url, options)
            .await
            .map_err(|err| Failure::connecting(&err))
    }
}

/// Runs `command`.
pub(crate) async fn run(command: Command, cx: &Context) -> Result<ExitCode, Failure> {
    match command {
        Command::Migrate => migrate::run(cx).await,
        Command::List(args) => list::run(args, cx).await,
        Command::Show(args) => show::run(args.id, cx).await,
        Command::Watch(args) => watch::run(args.id, cx).await,
        Command::Cancel(args) => cancel::run(args.id, cx).await,
        Command::Purge(args) => purge::run(args, cx).await,
        Command::Retry(args) => retry::run(args, cx).await,
        Command::Delete(args) => delete::run(args.id, cx).await,
        Command::Workers => workers::run(cx).await,
        Command::Stats(args) => stats::run(args, cx).await,
        Command::Dashboard(args) => dashboard::run(args, cx).await,
    }
}
