//! Stats for [`RedisBackend`]: every task is counted in its job's status counts by the scripts
//! that change its status, and finished tasks in their minute (see `lua/common.lua`); the stats
//! script reads those, and the earliest due task of each job from the heads of its ready sets
//! and submission lists.

use longtask_core::{minute_of, Error, Result, Stats, MINUTE_MS, THROUGHPUT_MINUTES};

use crate::{backend::RedisBackend, record, scripts::SCRIPTS};

fn number(text: &str) -> Result<i64> {
    text.parse()
        .map_err(|err| Error::backend("reading stats", format!("not a number: {text:?}: {err}")))
}

impl RedisBackend {
    pub(crate) async fn direct_stats(&self) -> Result<Stats> {
        let now = self.now_ms();
        let first_minute = minute_of(now) - (THROUGHPUT_MINUTES as i64 - 1) * MINUTE_MS;
        let mut call = self.script(&SCRIPTS.stats);
        call.arg(now).arg(first_minute);
        let (counts, oldest, minutes): (Vec<String>, Vec<String>, Vec<String>) =
            self.invoke(&call, "reading stats").await?;
        let counts = counts
            .chunks_exact(3)
            .map(|c| {
                let n = u64::try_from(number(&c[2])?).unwrap_or(0);
                Ok((c[0].clone(), record::status(&c[1])?, n))
            })
            .collect::<Result<Vec<_>>>()?;
        let oldest = oldest
            .chunks_exact(2)
            .map(|c| Ok((c[0].clone(), number(&c[1])?)))
            .collect::<Result<Vec<_>>>()?;
        let minutes = minutes
            .chunks_exact(2)
            .map(|c| {
                // "<minute>|<status>|<job>": the job last, as it may hold any character.
                let mut parts = c[0].splitn(3, '|');
                let (Some(minute), Some(status), Some(job)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Err(Error::backend(
                        "reading stats",
                        format!("a malformed throughput field: {:?}", c[0]),
                    ));
                };
                let n = u64::try_from(number(&c[1])?).unwrap_or(0);
                Ok((job.to_owned(), number(minute)?, record::status(status)?, n))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Stats::assemble(now, counts, oldest, minutes))
    }
}
