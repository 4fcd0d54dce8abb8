//! `longtask purge`: delete finished tasks whose retention has ended.

use std::process::ExitCode;

use serde::Serialize;

use super::Context;
use crate::{cli::PurgeArgs, error::Failure, render};

/// Tasks deleted per call to the backend.
const BATCH: u64 = 1000;

#[derive(Serialize)]
struct Purged {
    purged: u64,
}

pub(super) async fn run(args: PurgeArgs, cx: &Context) -> Result<ExitCode, Failure> {
    let client = cx.client().await?;
    let store = client.backend().store();
    let limit = args.limit.unwrap_or(u64::MAX);
    let mut purged = 0_u64;
    while purged < limit {
        let batch = BATCH.min(limit - purged);
        let deleted = store
            .purge(usize::try_from(batch).unwrap_or(usize::MAX))
            .await?;
        purged += deleted;
        if deleted < batch {
            break;
        }
    }
    if cx.json {
        render::print_json(&Purged { purged });
    } else {
        let s = if purged == 1 { "" } else { "s" };
        println!("purged {purged} finished task{s} past their retention");
    }
    Ok(ExitCode::SUCCESS)
}
