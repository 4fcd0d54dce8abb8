//! Cancel-safe backend operations: work that runs to its end even when its caller stops waiting.
//!
//! A web handler's future is dropped when its client hangs up, at whatever `.await` it had
//! reached. A backend operation dropped between `BEGIN` and `COMMIT`, between two commands of a
//! multi-step write, or while a database driver was mid-way through a statement can leave a
//! connection inside a transaction nobody will finish, or half of a change written. Every longtask
//! backend therefore runs each operation with [`to_completion`]: the operation runs in the
//! caller's task while the caller waits (no hand-over to another thread), and if the caller is
//! dropped what is left of the operation moves to a task of its own and runs to its end, so it
//! happens entirely or (if it fails) not at all, and the connections it used go back to their pool
//! in a clean state.
//!
//! [`to_completion_or`] adds an undo step for operations whose effect only makes sense if someone
//! receives the answer: a claim whose caller is gone gives its tasks back at once instead of
//! leaving them leased to nobody until the lease expires.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
//! let answer = longtask_core::to_completion("adding numbers", async { Ok(40 + 2) }).await?;
//! assert_eq!(answer, 42);
//! # Ok(()) }
//! ```
//!
//! Both need a Tokio runtime (every longtask backend does) and a `'static` operation: clone the
//! backend handle (cheap: it is a set of `Arc`s) and move owned arguments into the future.

use std::{
    any::Any,
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    task::{Context, Poll},
};

use futures::{future::BoxFuture, FutureExt};
use tokio::runtime::Handle;

use crate::error::{Error, Result};

/// Runs `operation` as a task of its own and waits for its answer. Dropping the returned future
/// does not stop the operation: it runs to its end and its answer is discarded. `what` names the
/// operation in the error returned if it panics.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
/// use longtask_core::to_completion;
///
/// let backend = std::sync::Arc::new(longtask_core::MemoryBackend::new());
/// let handle = backend.clone();
/// let tasks = vec![longtask_core::NewTask::new("report", "{}")];
/// let inserted = to_completion("inserting tasks", async move {
///     longtask_core::TaskStore::insert(&*handle, tasks).await
/// })
/// .await?;
/// assert_eq!(inserted.len(), 1);
/// # Ok(()) }
/// ```
pub async fn to_completion<T, F>(what: &'static str, operation: F) -> Result<T>
where
    T: Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    to_completion_or(what, operation, |_| async {}).await
}

/// Like [`to_completion`], and when the caller has stopped waiting by the time `operation`
/// succeeds, runs `undo` with its answer (still as part of the detached task): for an effect that
/// only makes sense if someone receives the answer, such as tasks claimed for a worker that is
/// gone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
/// use longtask_core::to_completion_or;
///
/// let value = to_completion_or("claiming", async { Ok(7) }, |unclaimed| async move {
///     // give `unclaimed` back: nobody will use it
///     let _ = unclaimed;
/// })
/// .await?;
/// assert_eq!(value, 7);
/// # Ok(()) }
/// ```
pub async fn to_completion_or<T, F, U, UF>(what: &'static str, operation: F, undo: U) -> Result<T>
where
    T: Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
    U: FnOnce(T) -> UF + Send + 'static,
    UF: Future<Output = ()> + Send + 'static,
{
    // The operation runs in the caller's task (no hand-over to another thread while someone
    // waits); only if the caller is dropped mid-way does its remainder move to a task of its own.
    let operation: Operation<T> = Box::pin(AssertUnwindSafe(operation).catch_unwind());
    Detached {
        what,
        handle: Handle::current(),
        operation: Some(operation),
        undo: Some(Box::new(move |value: T| -> BoxFuture<'static, ()> {
            Box::pin(undo(value))
        })),
    }
    .await
}

/// An operation under way, its panics caught.
type Operation<T> = Pin<Box<dyn Future<Output = std::thread::Result<Result<T>>> + Send>>;
/// What to do with an answer nobody waits for.
type Undo<T> = Box<dyn FnOnce(T) -> BoxFuture<'static, ()> + Send>;

/// The future of [`to_completion_or`]: polls the operation in place, and hands what is left of
/// it to the runtime when dropped before it finished.
struct Detached<T: Send + 'static> {
    what: &'static str,
    handle: Handle,
    operation: Option<Operation<T>>,
    undo: Option<Undo<T>>,
}

impl<T: Send + 'static> Future for Detached<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let Some(operation) = self.operation.as_mut() else {
            return Poll::Ready(Err(Error::backend(self.what, "polled after it answered")));
        };
        let answer = std::task::ready!(operation.as_mut().poll(cx));
        self.operation = None;
        Poll::Ready(match answer {
            Ok(result) => result,
            Err(panic) => Err(Error::backend(
                format!("{}: the operation panicked", self.what),
                panic_message(&*panic),
            )),
        })
    }
}

impl<T: Send + 'static> Drop for Detached<T> {
    fn drop(&mut self) {
        let Some(operation) = self.operation.take() else {
            return;
        };
        let undo = self.undo.take();
        let what = self.what;
        // A runtime shutting down refuses new tasks: the operation is then dropped with it.
        self.handle.spawn(async move {
            match operation.await {
                Ok(Ok(unwanted)) => {
                    if let Some(undo) = undo {
                        undo(unwanted).await;
                    }
                }
                Ok(Err(err)) => {
                    tracing::debug!(error = %err, "{what}, finished after its caller stopped waiting, failed");
                }
                Err(panic) => {
                    tracing::warn!(panic = panic_message(&*panic), "{what} panicked after its caller stopped waiting");
                }
            }
        });
    }
}

/// Implements [`TaskStore`](crate::TaskStore), [`Queue`](crate::Queue) and
/// [`ProgressSink`](crate::ProgressSink) for a backend type, each operation run with
/// [`to_completion`] so that every one of them is cancel-safe.
///
/// The type must be `Clone + Send + Sync + 'static` (a handle over shared connections) and have
/// inherent methods named after the trait methods with a `direct_` prefix and the same
/// signatures (`direct_insert`, `direct_get`, `direct_list`, `direct_cancel`, `direct_purge`,
/// `direct_claim`, `direct_heartbeat`, `direct_finish`, `direct_release`,
/// `direct_recover_expired`, `direct_save_checkpoint`, `direct_load_checkpoint`,
/// `direct_retry`, `direct_delete`, `direct_register_worker`, `direct_unregister_worker`,
/// `direct_workers`, `direct_work_signal`, `direct_report`, `direct_latest`,
/// `direct_watch`). Borrowed arguments are copied into the detached operation. A claim whose
/// caller has stopped waiting gives its tasks back with `direct_release` (their attempt is not
/// counted) instead of leaving them leased to nobody.
///
/// Every longtask backend with I/O uses it; a backend whose operations never wait (the memory
/// backend) needs none of it.
#[macro_export]
macro_rules! cancel_safe_backend {
    ($backend:ty) => {
        #[$crate::__private::async_trait::async_trait]
        impl $crate::TaskStore for $backend {
            async fn insert(
                &self,
                tasks: ::std::vec::Vec<$crate::NewTask>,
            ) -> $crate::Result<::std::vec::Vec<$crate::Inserted>> {
                // One rule for every caller: validated, keys scoped by owner.
                let tasks = tasks
                    .into_iter()
                    .map($crate::NewTask::into_stored)
                    .collect::<$crate::Result<::std::vec::Vec<_>>>()?;
                let this = self.clone();
                $crate::to_completion("inserting tasks", async move {
                    this.direct_insert(tasks).await
                })
                .await
            }

            async fn get(
                &self,
                id: $crate::TaskId,
            ) -> $crate::Result<::std::option::Option<$crate::TaskRecord>> {
                let this = self.clone();
                let record =
                    $crate::to_completion("reading a task", async move { this.direct_get(id).await })
                        .await?;
                Ok(record.map($crate::TaskRecord::from_stored))
            }

            async fn list(
                &self,
                query: &$crate::TaskQuery,
            ) -> $crate::Result<::std::vec::Vec<$crate::TaskRecord>> {
                let this = self.clone();
                let query = query.clone();
                let records = $crate::to_completion("listing tasks", async move {
                    this.direct_list(&query).await
                })
                .await?;
                Ok(records.into_iter().map($crate::TaskRecord::from_stored).collect())
            }

            async fn cancel(&self, id: $crate::TaskId) -> $crate::Result<$crate::CancelOutcome> {
                let this = self.clone();
                $crate::to_completion("cancelling a task", async move {
                    this.direct_cancel(id).await
                })
                .await
            }

            async fn purge(&self, limit: usize) -> $crate::Result<u64> {
                let this = self.clone();
                $crate::to_completion("purging finished tasks", async move {
                    this.direct_purge(limit).await
                })
                .await
            }

            async fn retry(
                &self,
                ids: &[$crate::TaskId],
            ) -> $crate::Result<::std::vec::Vec<$crate::RetryOutcome>> {
                let this = self.clone();
                let ids = ids.to_vec();
                $crate::to_completion("retrying tasks", async move { this.direct_retry(&ids).await })
                    .await
            }

            async fn delete(
                &self,
                ids: &[$crate::TaskId],
            ) -> $crate::Result<::std::vec::Vec<$crate::DeleteOutcome>> {
                let this = self.clone();
                let ids = ids.to_vec();
                $crate::to_completion("deleting tasks", async move {
                    this.direct_delete(&ids).await
                })
                .await
            }

            async fn stats(&self) -> $crate::Result<$crate::Stats> {
                let this = self.clone();
                $crate::to_completion("reading stats", async move { this.direct_stats().await })
                    .await
            }
        }

        #[$crate::__private::async_trait::async_trait]
        impl $crate::Queue for $backend {
            async fn claim(
                &self,
                request: $crate::ClaimRequest<'_>,
            ) -> $crate::Result<::std::vec::Vec<$crate::ClaimedTask>> {
                let this = self.clone();
                let undo = self.clone();
                let jobs = request.jobs.to_vec();
                let worker = request.worker.to_owned();
                let (limit, lease) = (request.limit, request.lease);
                let limits = request.limits.to_vec();
                $crate::to_completion_or(
                    "claiming tasks",
                    async move {
                        let request = $crate::ClaimRequest {
                            jobs: &jobs,
                            worker: &worker,
                            limit,
                            lease,
                            limits: &limits,
                        };
                        this.direct_claim(request).await
                    },
                    move |unwanted: ::std::vec::Vec<$crate::ClaimedTask>| async move {
                        if unwanted.is_empty() {
                            return;
                        }
                        let leases: ::std::vec::Vec<$crate::Lease> =
                            unwanted.iter().map(|task| task.lease).collect();
                        if let Err(err) = undo.direct_release(&leases).await {
                            $crate::__private::tracing::warn!(
                                error = %err,
                                tasks = leases.len(),
                                "giving back tasks claimed for a caller that stopped waiting \
                                 failed; they run again once their lease expires"
                            );
                        }
                    },
                )
                .await
            }

            async fn heartbeat(
                &self,
                leases: &[$crate::Lease],
                extend: ::std::time::Duration,
            ) -> $crate::Result<::std::vec::Vec<$crate::LeaseState>> {
                let this = self.clone();
                let leases = leases.to_vec();
                $crate::to_completion("extending leases", async move {
                    this.direct_heartbeat(&leases, extend).await
                })
                .await
            }

            async fn finish(
                &self,
                completions: ::std::vec::Vec<$crate::Completion>,
            ) -> $crate::Result<::std::vec::Vec<$crate::Ack>> {
                let this = self.clone();
                $crate::to_completion("recording outcomes", async move {
                    this.direct_finish(completions).await
                })
                .await
            }

            async fn release(
                &self,
                leases: &[$crate::Lease],
            ) -> $crate::Result<::std::vec::Vec<$crate::Ack>> {
                let this = self.clone();
                let leases = leases.to_vec();
                $crate::to_completion("releasing tasks", async move {
                    this.direct_release(&leases).await
                })
                .await
            }

            async fn recover_expired(&self, limit: usize) -> $crate::Result<u64> {
                let this = self.clone();
                $crate::to_completion("recovering expired leases", async move {
                    this.direct_recover_expired(limit).await
                })
                .await
            }

            async fn save_checkpoint(
                &self,
                checkpoint: $crate::Checkpoint,
            ) -> $crate::Result<$crate::Ack> {
                let this = self.clone();
                $crate::to_completion("saving a checkpoint", async move {
                    this.direct_save_checkpoint(checkpoint).await
                })
                .await
            }

            async fn load_checkpoint(
                &self,
                task: $crate::TaskId,
            ) -> $crate::Result<::std::option::Option<::std::string::String>> {
                let this = self.clone();
                $crate::to_completion("loading a checkpoint", async move {
                    this.direct_load_checkpoint(task).await
                })
                .await
            }

            async fn register_worker(
                &self,
                info: &$crate::WorkerInfo,
                ttl: ::std::time::Duration,
            ) -> $crate::Result<()> {
                let this = self.clone();
                let info = info.clone();
                $crate::to_completion("registering a worker", async move {
                    this.direct_register_worker(&info, ttl).await
                })
                .await
            }

            async fn unregister_worker(&self, id: &str) -> $crate::Result<()> {
                let this = self.clone();
                let id = id.to_owned();
                $crate::to_completion("unregistering a worker", async move {
                    this.direct_unregister_worker(&id).await
                })
                .await
            }

            async fn workers(&self) -> $crate::Result<::std::vec::Vec<$crate::WorkerInfo>> {
                let this = self.clone();
                $crate::to_completion("listing workers", async move { this.direct_workers().await })
                    .await
            }

            fn work_signal(&self) -> $crate::WorkSignal {
                self.direct_work_signal()
            }
        }

        #[$crate::__private::async_trait::async_trait]
        impl $crate::ProgressSink for $backend {
            async fn report(
                &self,
                updates: &[($crate::Lease, $crate::Progress)],
            ) -> $crate::Result<()> {
                let this = self.clone();
                let updates = updates.to_vec();
                $crate::to_completion("storing progress", async move {
                    this.direct_report(&updates).await
                })
                .await
            }

            async fn latest(
                &self,
                id: $crate::TaskId,
            ) -> $crate::Result<::std::option::Option<$crate::Progress>> {
                let this = self.clone();
                $crate::to_completion("reading progress", async move {
                    this.direct_latest(id).await
                })
                .await
            }

            async fn watch(
                &self,
                id: $crate::TaskId,
            ) -> $crate::Result<
                $crate::__private::futures::stream::BoxStream<'static, $crate::TaskEvent>,
            > {
                let this = self.clone();
                $crate::to_completion("watching a task", async move {
                    this.direct_watch(id).await
                })
                .await
            }
        }
    };
}

/// The text of a panic's payload.
fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            atomic::{AtomicBool, Ordering},
            Arc,
        },
        time::Duration,
    };

    use tokio::sync::Notify;

    use super::*;

    #[tokio::test]
    async fn a_dropped_caller_does_not_stop_the_operation() {
        let gate = Arc::new(Notify::new());
        let done = Arc::new(Notify::new());
        let finished = Arc::new(AtomicBool::new(false));
        let (g, d, f) = (gate.clone(), done.clone(), finished.clone());
        let call = to_completion("waiting on a gate", async move {
            g.notified().await;
            f.store(true, Ordering::SeqCst);
            d.notify_one();
            Ok(())
        });
        // Poll once, then drop the caller mid-way.
        let mut call = Box::pin(call);
        assert!(futures::poll!(&mut call).is_pending());
        drop(call);
        gate.notify_one();
        tokio::time::timeout(Duration::from_secs(10), done.notified())
            .await
            .expect("the operation stopped with its caller");
        assert!(finished.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn undo_runs_only_when_nobody_waits() {
        let undone = Arc::new(AtomicBool::new(false));
        let u = undone.clone();
        let value = to_completion_or("answering", async { Ok(1) }, move |_| async move {
            u.store(true, Ordering::SeqCst);
        })
        .await
        .unwrap();
        assert_eq!(value, 1);
        tokio::task::yield_now().await;
        assert!(
            !undone.load(Ordering::SeqCst),
            "undo ran for an answer that was received"
        );

        let gate = Arc::new(Notify::new());
        let undone = Arc::new(Notify::new());
        let (g, u) = (gate.clone(), undone.clone());
        let mut call = Box::pin(to_completion_or(
            "answering late",
            async move {
                g.notified().await;
                Ok(2)
            },
            move |value| async move {
                assert_eq!(value, 2);
                u.notify_one();
            },
        ));
        assert!(futures::poll!(&mut call).is_pending());
        drop(call);
        gate.notify_one();
        tokio::time::timeout(Duration::from_secs(10), undone.notified())
            .await
            .expect("undo did not run for an answer nobody received");
    }

    #[tokio::test]
    async fn a_panic_becomes_an_error() {
        let result: Result<()> = to_completion("exploding", async { panic!("boom") }).await;
        let err = result.unwrap_err();
        assert!(err.to_string().contains("exploding"), "{err}");
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert_eq!(source, "boom");
    }
}
