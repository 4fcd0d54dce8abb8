//! `longtask migrate`: create or update the backend's schema.

use std::process::ExitCode;

use longtask::ConnectOptions;
use serde::Serialize;

use super::Context;
use crate::{error::Failure, render};

#[derive(Serialize)]
struct Migrated<'a> {
    url: &'a str,
    /// Whether the backend has a schema to migrate (SQLite, Postgres).
    migrated: bool,
}

pub(super) async fn run(cx: &Context) -> Result<ExitCode, Failure> {
    cx.connect(&ConnectOptions::new()).await?;
    let url = cx.secrets.masked_url();
    let scheme = url
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let migrated = matches!(scheme.as_str(), "sqlite" | "postgres" | "postgresql");
    if cx.json {
        render::print_json(&Migrated { url, migrated });
    } else if migrated {
        println!("{url}: the schema is up to date");
    } else {
        println!("{url}: nothing to migrate (this backend keeps no schema)");
    }
    Ok(ExitCode::SUCCESS)
}
