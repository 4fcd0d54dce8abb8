//! The worker's job registry: each job's types erased once, keyed by its stable name.

use std::{collections::HashMap, fmt, sync::Arc};

use futures::future::BoxFuture;

use crate::{
    context::TaskContext,
    job::{Job, JobError, JobOptions},
    queue::JobLimits,
};

/// A job's output, type-erased until the worker encodes it.
pub(crate) type ErasedOutput = Box<dyn erased_serde::Serialize + Send>;

/// A running attempt of an erased job.
pub(crate) type AttemptFuture = BoxFuture<'static, Result<ErasedOutput, JobError>>;

/// A job with its parameter and output types erased.
pub(crate) trait ErasedJob: Send + Sync {
    /// The job's policy.
    fn options(&self) -> &JobOptions;

    /// Decodes the parameters from any serde format and starts a run.
    fn start(
        &self,
        params: &mut dyn erased_serde::Deserializer<'_>,
        cx: TaskContext,
    ) -> Result<AttemptFuture, erased_serde::Error>;
}

struct Entry<J> {
    job: Arc<J>,
    options: JobOptions,
}

impl<J: Job> ErasedJob for Entry<J> {
    fn options(&self) -> &JobOptions {
        &self.options
    }

    fn start(
        &self,
        params: &mut dyn erased_serde::Deserializer<'_>,
        cx: TaskContext,
    ) -> Result<AttemptFuture, erased_serde::Error> {
        let params: J::Params = erased_serde::deserialize(params)?;
        let job = Arc::clone(&self.job);
        Ok(Box::pin(async move {
            let output = job.run(params, cx).await?;
            Ok(Box::new(output) as ErasedOutput)
        }))
    }
}

/// Jobs by name.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    jobs: HashMap<&'static str, Arc<dyn ErasedJob>>,
}

impl Registry {
    /// Adds a job; `false` if one of the same name is already there.
    pub(crate) fn insert<J: Job>(&mut self, job: J) -> bool {
        if self.jobs.contains_key(J::NAME) {
            return false;
        }
        let entry = Entry {
            job: Arc::new(job),
            options: J::options(),
        };
        self.jobs.insert(J::NAME, Arc::new(entry));
        true
    }

    pub(crate) fn get(&self, name: &str) -> Option<(&'static str, &Arc<dyn ErasedJob>)> {
        self.jobs.get_key_value(name).map(|(k, v)| (*k, v))
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.jobs.keys().copied()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// The concurrency limits of the jobs that set any.
    pub(crate) fn limits(&self) -> Vec<JobLimits> {
        let mut limits: Vec<JobLimits> = self
            .jobs
            .iter()
            .map(|(name, job)| JobLimits {
                job: (*name).to_owned(),
                max_running: job.options().max_running,
                max_running_per_key: job.options().max_running_per_key,
            })
            .filter(JobLimits::is_limited)
            .collect();
        limits.sort_by(|a, b| a.job.cmp(&b.job));
        limits
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.jobs.keys()).finish()
    }
}
