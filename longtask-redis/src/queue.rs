//! [`Queue`] for [`RedisBackend`]: claim, heartbeat, finish, release, recover, checkpoints,
//! the workers registry, wake-ups.

use std::time::Duration;

use longtask_core::{
    saturating_add, Ack, Checkpoint, CheckpointInfo, ClaimRequest, ClaimedTask, Completion, Error,
    JobLimits, Lease, LeaseState, Outcome, Result, TaskId, WorkSignal, WorkerInfo,
};

use crate::{
    backend::RedisBackend,
    record::{self, millis},
    scripts::SCRIPTS,
};

/// Tasks one claim script call leases at most: bounds how long one script blocks Redis
/// (larger requests take several calls).
const CLAIM_MAX: usize = 5_000;
/// Delayed tasks one claim call promotes to ready at most (at least the claim's limit).
const PROMOTE_CHUNK: usize = 1_000;
/// Expired leases recovered per script call, at most.
const RECOVER_CHUNK: usize = 1_000;

fn unexpected(doing: &'static str, reply: impl std::fmt::Debug) -> Error {
    Error::backend(doing, format!("unexpected reply from Redis: {reply:?}"))
}

fn parse_num<T: std::str::FromStr>(text: &str, doing: &'static str) -> Result<T> {
    text.parse().map_err(|_| unexpected(doing, text))
}

fn acks(replies: &[i64], expected: usize, doing: &'static str) -> Result<Vec<Ack>> {
    if replies.len() != expected {
        return Err(unexpected(doing, replies));
    }
    Ok(replies
        .iter()
        .map(|&r| if r == 1 { Ack::Applied } else { Ack::Stale })
        .collect())
}

impl RedisBackend {
    /// One claim script call for up to `limit` (at most [`CLAIM_MAX`]) tasks.
    async fn claim_chunk(
        &self,
        request: &ClaimRequest<'_>,
        limit: usize,
        claimed: &mut Vec<ClaimedTask>,
    ) -> Result<()> {
        const DOING: &str = "claiming tasks";
        let now = self.now();
        let expires = saturating_add(now, request.lease);
        let mut call = self.script(&SCRIPTS.claim);
        call.arg(millis(now))
            .arg(millis(expires))
            .arg(request.worker)
            .arg(limit)
            .arg(PROMOTE_CHUNK.max(limit));
        // The limits of the requested jobs that have any: none takes the claim's fast path.
        let limits: Vec<&JobLimits> = request
            .limits
            .iter()
            .filter(|l| l.is_limited() && request.jobs.contains(&l.job))
            .collect();
        call.arg(limits.len());
        for l in limits {
            call.arg(&l.job)
                .arg(l.max_running.map(|n| n.to_string()).unwrap_or_default())
                .arg(
                    l.max_running_per_key
                        .map(|n| n.to_string())
                        .unwrap_or_default(),
                );
        }
        for job in request.jobs {
            call.arg(job);
        }
        let out: Vec<String> = self.invoke(&call, DOING).await?;
        if out.len() % 7 != 0 {
            return Err(unexpected(DOING, out.len()));
        }
        let mut fields = out.into_iter();
        while let (
            Some(id),
            Some(token),
            Some(job),
            Some(params),
            Some(attempt),
            Some(max),
            Some(due),
        ) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) {
            let due: i64 = parse_num(&due, DOING)?;
            claimed.push(ClaimedTask {
                lease: Lease {
                    task: record::task_id(&id)?,
                    token: parse_num(&token, DOING)?,
                },
                job,
                params,
                attempt: parse_num(&attempt, DOING)?,
                max_attempts: parse_num(&max, DOING)?,
                due_at: chrono::DateTime::from_timestamp_millis(due)
                    .ok_or_else(|| unexpected(DOING, due))?,
            });
        }
        Ok(())
    }
}

impl RedisBackend {
    pub(crate) async fn direct_claim(&self, request: ClaimRequest<'_>) -> Result<Vec<ClaimedTask>> {
        if request.jobs.is_empty() {
            return Ok(Vec::new());
        }
        // Large requests are served in several bounded script calls.
        let mut claimed = Vec::with_capacity(request.limit.min(CLAIM_MAX));
        while claimed.len() < request.limit {
            let chunk = (request.limit - claimed.len()).min(CLAIM_MAX);
            let before = claimed.len();
            self.claim_chunk(&request, chunk, &mut claimed).await?;
            if claimed.len() - before < chunk {
                break;
            }
        }
        Ok(claimed)
    }

    pub(crate) async fn direct_heartbeat(
        &self,
        leases: &[Lease],
        extend: Duration,
    ) -> Result<Vec<LeaseState>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let expires = saturating_add(self.now(), extend);
        let mut call = self.script(&SCRIPTS.heartbeat);
        call.arg(millis(expires));
        for lease in leases {
            call.arg(lease.task.to_string()).arg(lease.token);
        }
        const DOING: &str = "extending leases";
        let out: Vec<i64> = self.invoke(&call, DOING).await?;
        if out.len() != leases.len() {
            return Err(unexpected(DOING, out));
        }
        Ok(out
            .into_iter()
            .map(|r| match r {
                r if r < 0 => LeaseState::Lost,
                r => LeaseState::Held {
                    cancel_requested: r == 1,
                },
            })
            .collect())
    }

    pub(crate) async fn direct_finish(&self, completions: Vec<Completion>) -> Result<Vec<Ack>> {
        if completions.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let mut call = self.script(&SCRIPTS.finish);
        call.arg(millis(now));
        for completion in &completions {
            let progress = match &completion.progress {
                Some(p) => {
                    serde_json::to_string(p).map_err(|e| Error::backend("encoding progress", e))?
                }
                None => String::new(),
            };
            call.arg(completion.lease.task.to_string())
                .arg(completion.lease.token);
            match &completion.outcome {
                Outcome::Succeeded { output } => {
                    call.arg("s").arg(output).arg("");
                }
                Outcome::Failed { error, retry_after } => {
                    let retry_at = retry_after
                        .map(|d| millis(saturating_add(now, d)).to_string())
                        .unwrap_or_default();
                    call.arg("f").arg(error).arg(retry_at);
                }
                Outcome::Cancelled { reason } => {
                    call.arg("c").arg(reason).arg("");
                }
            }
            call.arg(progress);
        }
        let out: Vec<i64> = self.invoke(&call, "recording outcomes").await?;
        acks(&out, completions.len(), "recording outcomes")
    }

    pub(crate) async fn direct_release(&self, leases: &[Lease]) -> Result<Vec<Ack>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = self.script(&SCRIPTS.release);
        call.arg(self.now_ms());
        for lease in leases {
            call.arg(lease.task.to_string()).arg(lease.token);
        }
        let out: Vec<i64> = self.invoke(&call, "releasing tasks").await?;
        acks(&out, leases.len(), "releasing tasks")
    }

    pub(crate) async fn direct_recover_expired(&self, limit: usize) -> Result<u64> {
        let now_ms = self.now_ms();
        let mut recovered = 0_u64;
        let mut left = limit;
        while left > 0 {
            let chunk = left.min(RECOVER_CHUNK);
            let mut call = self.script(&SCRIPTS.recover);
            call.arg(now_ms).arg(chunk);
            let n: u64 = self.invoke(&call, "recovering expired leases").await?;
            recovered += n;
            if n < chunk as u64 {
                break;
            }
            left -= chunk;
        }
        Ok(recovered)
    }

    pub(crate) async fn direct_save_checkpoint(&self, checkpoint: Checkpoint) -> Result<Ack> {
        const DOING: &str = "saving a checkpoint";
        let info = CheckpointInfo::new(&checkpoint, self.now()).to_json();
        let progress = match &checkpoint.progress {
            Some(p) => {
                serde_json::to_string(p).map_err(|e| Error::backend("encoding progress", e))?
            }
            None => String::new(),
        };
        let mut call = self.script(&SCRIPTS.save_checkpoint);
        call.arg(checkpoint.lease.task.to_string())
            .arg(checkpoint.lease.token)
            .arg(&checkpoint.state)
            .arg(info)
            .arg(progress);
        match self.invoke::<i64>(&call, DOING).await? {
            1 => Ok(Ack::Applied),
            0 => Ok(Ack::Stale),
            other => Err(unexpected(DOING, other)),
        }
    }

    pub(crate) async fn direct_load_checkpoint(&self, task: TaskId) -> Result<Option<String>> {
        self.query(
            redis::cmd("HGET")
                .arg(self.keys.task(task))
                .arg("checkpoint"),
            "loading a checkpoint",
        )
        .await
    }

    pub(crate) async fn direct_register_worker(
        &self,
        info: &WorkerInfo,
        ttl: Duration,
    ) -> Result<()> {
        let now = self.now();
        let mut info = info.clone();
        info.last_seen = now;
        let json =
            serde_json::to_string(&info).map_err(|e| Error::backend("encoding a worker", e))?;
        let mut call = self.script(&SCRIPTS.register_worker);
        call.arg(&info.id)
            .arg(json)
            .arg(millis(saturating_add(now, ttl)));
        self.invoke::<i64>(&call, "registering a worker").await?;
        Ok(())
    }

    pub(crate) async fn direct_unregister_worker(&self, id: &str) -> Result<()> {
        let mut call = self.script(&SCRIPTS.unregister_worker);
        call.arg(id);
        self.invoke::<i64>(&call, "unregistering a worker").await?;
        Ok(())
    }

    pub(crate) async fn direct_workers(&self) -> Result<Vec<WorkerInfo>> {
        let mut call = self.script(&SCRIPTS.workers);
        call.arg(self.now_ms());
        let entries: Vec<String> = self.invoke(&call, "listing workers").await?;
        let mut workers = entries
            .iter()
            .map(|json| {
                serde_json::from_str::<WorkerInfo>(json)
                    .map_err(|e| Error::backend("decoding a worker's entry", e))
            })
            .collect::<Result<Vec<_>>>()?;
        workers.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(workers)
    }

    pub(crate) fn direct_work_signal(&self) -> WorkSignal {
        self.hub().work_signal()
    }
}
