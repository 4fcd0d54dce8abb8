//! Jobs and helpers for the group tests: members that wait on a gate the test opens, and a
//! completion job that sums what they returned.

use std::{sync::Arc, time::Duration};

use longtask_core::{
    Backend, Client, GroupStatus, Job, JobError, JobOptions, MemoryBackend, TaskContext, TaskId,
    TaskStatus, Worker, WorkerHandle,
};
use longtask_tower::GroupService;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

/// A member's parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Step {
    pub n: u32,
    /// The message of its first progress report (default "Month {n}: half way").
    #[serde(default)]
    pub message: Option<String>,
    /// Fail (for good) once through the gate.
    #[serde(default)]
    pub fail: bool,
}

/// Reports step 1 of 2, waits until the test lets one member through the gate (or the task is
/// cancelled), then finishes with `n * 100`.
pub struct Gated {
    pub gate: Arc<Semaphore>,
}

impl Job for Gated {
    const NAME: &'static str = "gated";
    type Params = Step;
    type Output = u64;

    async fn run(&self, step: Step, cx: TaskContext) -> Result<u64, JobError> {
        let message = step
            .message
            .clone()
            .unwrap_or_else(|| format!("Month {}: half way", step.n));
        cx.progress(1, Some(2), message)?;
        tokio::select! {
            permit = self.gate.acquire() => permit.expect("gate open").forget(),
            () = cx.cancelled() => return Err(JobError::fatal("cancelled")),
        }
        if step.fail {
            return Err(JobError::fatal(format!(
                "month {} could not be read",
                step.n
            )));
        }
        cx.progress(2, Some(2), format!("Month {}: done", step.n))?;
        Ok(u64::from(step.n) * 100)
    }

    fn options() -> JobOptions {
        JobOptions::default().max_attempts(1)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SumParams {
    #[serde(default)]
    pub fail: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sum {
    pub total: u64,
    pub failed: usize,
}

/// The completion job: sums the members that succeeded, counts those that did not.
pub struct YearTotal;

impl Job for YearTotal {
    const NAME: &'static str = "year-total";
    type Params = SumParams;
    type Output = Sum;

    async fn run(&self, params: SumParams, cx: TaskContext) -> Result<Sum, JobError> {
        if params.fail {
            return Err(JobError::fatal("the ledger is closed"));
        }
        let mut sum = Sum {
            total: 0,
            failed: 0,
        };
        for member in cx.group_members().await? {
            match (member.status, member.output.as_deref()) {
                (TaskStatus::Succeeded, Some(out)) => {
                    sum.total += out.parse::<u64>().unwrap_or(0);
                }
                _ => sum.failed += 1,
            }
        }
        Ok(sum)
    }

    fn options() -> JobOptions {
        JobOptions::default().max_attempts(1)
    }
}

pub const GROUPS: &str = "/groups";

/// A backend, a worker running [`Gated`] and [`YearTotal`], and the group service at `/groups`
/// (members of `gated` link to `/gated/{id}`).
pub struct GroupApp {
    pub client: Client,
    pub service: GroupService,
    pub gate: Arc<Semaphore>,
    pub worker: Option<WorkerHandle>,
}

impl GroupApp {
    pub fn memory() -> Self {
        Self::on(Backend::new(MemoryBackend::new()), true)
    }

    /// Without a worker: every task stays queued.
    pub fn idle() -> Self {
        Self::on(Backend::new(MemoryBackend::new()), false)
    }

    pub fn on(backend: Backend, with_worker: bool) -> Self {
        let gate = Arc::new(Semaphore::new(0));
        let worker = with_worker.then(|| {
            Worker::builder(backend.clone())
                .register(Gated {
                    gate: Arc::clone(&gate),
                })
                .register(YearTotal)
                .concurrency(32)
                .poll_interval(Duration::from_millis(20))
                .progress_interval(Duration::from_millis(10))
                .heartbeat(Duration::from_millis(100))
                .build()
                .expect("worker")
                .spawn()
        });
        let client = Client::new(backend);
        let service = Self::service(client.clone());
        Self {
            client,
            service,
            gate,
            worker,
        }
    }

    /// The service as the tests mount it.
    pub fn service(client: Client) -> GroupService {
        GroupService::new(client)
            .at(GROUPS)
            .with_title("Yearly export")
            .with_job_at::<Gated>("/gated")
            .with_poll_interval(Duration::from_millis(50))
    }

    /// Submits a group of `months` gated members (`1..=months`), with the completion job when
    /// `completion` says how, owned by `owner` when given.
    pub async fn submit(
        &self,
        months: u32,
        completion: Option<SumParams>,
        owner: Option<&str>,
    ) -> TaskId {
        self.submit_steps(
            (1..=months).map(|n| Step {
                n,
                ..Step::default()
            }),
            completion,
            owner,
        )
        .await
    }

    pub async fn submit_steps(
        &self,
        steps: impl IntoIterator<Item = Step>,
        completion: Option<SumParams>,
        owner: Option<&str>,
    ) -> TaskId {
        let mut group = self.client.group();
        for step in steps {
            group.add::<Gated>(&step).expect("member");
        }
        if let Some(params) = completion {
            group.on_complete::<YearTotal>(&params).expect("completion");
        }
        if let Some(owner) = owner {
            group.owner(owner);
        }
        group.submit().await.expect("group submitted")
    }

    /// Lets `n` members through the gate.
    pub fn open(&self, n: usize) {
        self.gate.add_permits(n);
    }

    /// Waits (up to a generous minute) until `check` holds for the group.
    pub async fn wait_group(
        &self,
        id: TaskId,
        check: impl Fn(&GroupStatus) -> bool,
    ) -> GroupStatus {
        for _ in 0..6000 {
            let group = self.client.group_status(id).await.expect("group status");
            if check(&group) {
                return group;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("group {id} never reached the expected state");
    }

    /// Waits until every member is running (each has reported its first step).
    pub async fn wait_running(&self, id: TaskId) -> GroupStatus {
        self.wait_group(id, |g| {
            g.members.iter().all(|m| {
                m.status == TaskStatus::Running && m.progress.as_ref().is_some_and(|p| p.step >= 1)
            })
        })
        .await
    }

    /// Waits until the group and every member are final.
    pub async fn wait_final(&self, id: TaskId) -> GroupStatus {
        self.wait_group(id, |g| {
            g.is_final() && g.members.iter().all(|m| m.status.is_final())
        })
        .await
    }
}
