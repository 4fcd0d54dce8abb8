//! The memory backend's state: task records in a slab, ready and delayed sets, leases.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    hash::{BuildHasherDefault, Hasher},
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures::channel::mpsc;

use crate::{
    attempt::AttemptOutcome,
    clock::saturating_add,
    progress::TaskEvent,
    queue::Lease,
    stats::{minute_of, StatusCounts, MINUTE_MS, THROUGHPUT_MINUTES},
    task::{TaskError, TaskId, TaskRecord, TaskStatus},
};

/// Ready-queue order: higher priority, then earlier run_at, then earlier submission; the slot
/// index rides along so that a claim reaches the task without a hash lookup.
pub(super) type ReadyKey = (Reverse<i32>, i64, TaskId, u32);

#[derive(Default)]
pub(super) struct State {
    pub(super) tasks: Tasks,
    /// Due (or promotable) waiting tasks, per job.
    pub(super) ready: HashMap<String, BTreeSet<ReadyKey>, IdHash>,
    /// Waiting tasks whose run_at is in the future: (run_at millis, id, slot).
    pub(super) delayed: BTreeSet<(i64, TaskId, u32)>,
    pub(super) running: HashSet<u32, IdHash>,
    /// Finished tasks by purge time: (expires_at millis, id, slot).
    pub(super) expiring: BTreeSet<(i64, TaskId, u32)>,
    /// Idempotency keys: (job, owner, key) to the task holding it.
    pub(super) keys: HashMap<(String, Option<String>, String), TaskId>,
    pub(super) watchers: HashMap<TaskId, Vec<mpsc::UnboundedSender<TaskEvent>>, IdHash>,
    pub(super) claims: u32,
    /// A group root became due since the flag was last taken: wake the workers.
    pub(super) fired: bool,
    /// Registered workers, with the time (millis) their entries end.
    pub(super) workers: HashMap<String, (crate::queue::WorkerInfo, i64)>,
    /// Tasks finished per job and minute (ms), kept for two hours: what stats show as
    /// throughput, whether or not the tasks were purged since.
    pub(super) finished: HashMap<String, BTreeMap<i64, StatusCounts>>,
}

pub(super) struct Slot {
    pub(super) record: TaskRecord,
    /// The live lease's token: the claim counter in the high half, the slot index in the low
    /// half, so that a lease leads straight to its slot.
    pub(super) token: u64,
    pub(super) place: Place,
    /// The last checkpoint's state (JSON); what the record shows of it is in the record.
    pub(super) checkpoint: Option<String>,
}

/// Task records in a slab (indexed by slot number, so that claims and outcomes reach a record
/// with one memory access), with an id index for lookups by id.
#[derive(Default)]
pub(super) struct Tasks {
    slots: Vec<Option<Box<Slot>>>,
    free: Vec<u32>,
    index: HashMap<TaskId, u32, IdHash>,
}

impl Tasks {
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    pub(super) fn idx(&self, id: TaskId) -> Option<u32> {
        self.index.get(&id).copied()
    }

    pub(super) fn contains(&self, id: TaskId) -> bool {
        self.index.contains_key(&id)
    }

    pub(super) fn get(&self, id: TaskId) -> Option<&Slot> {
        self.at(self.idx(id)?)
    }

    pub(super) fn at(&self, idx: u32) -> Option<&Slot> {
        self.slots.get(idx as usize)?.as_deref()
    }

    pub(super) fn at_mut(&mut self, idx: u32) -> Option<&mut Slot> {
        self.slots.get_mut(idx as usize)?.as_deref_mut()
    }

    pub(super) fn insert(&mut self, slot: Box<Slot>) -> u32 {
        let id = slot.record.id;
        let idx = match self.free.pop() {
            Some(idx) => {
                self.slots[idx as usize] = Some(slot);
                idx
            }
            None => {
                self.slots.push(Some(slot));
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.index.insert(id, idx);
        idx
    }

    pub(super) fn remove(&mut self, idx: u32) -> Option<Box<Slot>> {
        let slot = self.slots.get_mut(idx as usize)?.take()?;
        self.index.remove(&slot.record.id);
        self.free.push(idx);
        Some(slot)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().filter_map(|s| s.as_deref())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    Ready,
    Delayed,
    Elsewhere,
}

/// Task ids carry 62 random bits, so hashing needs no SipHash: fold the bytes (also used for the
/// job names of the ready sets, which come from the application, never from a request).
pub(super) type IdHash = BuildHasherDefault<IdHasher>;

#[derive(Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn write_usize(&mut self, _: usize) {}
}

pub(super) fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

impl State {
    /// Puts a waiting task where claims find it: ready if due, delayed otherwise.
    pub(super) fn enqueue(&mut self, idx: u32, now: i64) {
        let Some(slot) = self.tasks.at_mut(idx) else {
            return;
        };
        let run_at = millis(slot.record.run_at);
        let id = slot.record.id;
        if run_at <= now {
            slot.place = Place::Ready;
            let key = (Reverse(slot.record.priority), run_at, id, idx);
            match self.ready.get_mut(slot.record.job.as_str()) {
                Some(set) => {
                    set.insert(key);
                }
                None => {
                    self.ready
                        .insert(slot.record.job.clone(), BTreeSet::from([key]));
                }
            }
        } else {
            slot.place = Place::Delayed;
            self.delayed.insert((run_at, id, idx));
        }
    }

    /// Takes a waiting task out of the ready or delayed set.
    pub(super) fn dequeue(&mut self, idx: u32) {
        let Some(slot) = self.tasks.at_mut(idx) else {
            return;
        };
        let run_at = millis(slot.record.run_at);
        let id = slot.record.id;
        match std::mem::replace(&mut slot.place, Place::Elsewhere) {
            Place::Ready => {
                if let Some(set) = self.ready.get_mut(&slot.record.job) {
                    set.remove(&(Reverse(slot.record.priority), run_at, id, idx));
                }
            }
            Place::Delayed => {
                self.delayed.remove(&(run_at, id, idx));
            }
            Place::Elsewhere => {}
        }
    }

    /// Moves delayed tasks that are now due into the ready sets.
    pub(super) fn promote(&mut self, now: i64) {
        while let Some(&(run_at, _, idx)) = self.delayed.first() {
            if run_at > now {
                break;
            }
            self.delayed.pop_first();
            if let Some(slot) = self.tasks.at_mut(idx) {
                if slot.record.status == TaskStatus::Scheduled {
                    slot.record.status = TaskStatus::Queued;
                }
                slot.place = Place::Elsewhere;
            }
            self.enqueue(idx, now);
        }
    }

    /// Sends an event to the task's watchers; after a final status, closes their streams.
    pub(super) fn emit(&mut self, id: TaskId, event: &TaskEvent) {
        if self.watchers.is_empty() {
            return;
        }
        let last = matches!(event, TaskEvent::Status { status } if status.is_final());
        if last {
            if let Some(senders) = self.watchers.remove(&id) {
                for tx in senders {
                    let _ = tx.unbounded_send(event.clone());
                }
            }
        } else if let Some(senders) = self.watchers.get_mut(&id) {
            senders.retain(|tx| tx.unbounded_send(event.clone()).is_ok());
        }
    }

    /// Counts a new member of the group whose root is `root`.
    pub(super) fn join_group(&mut self, root: TaskId) {
        if let Some(open) = self
            .tasks
            .idx(root)
            .and_then(|idx| self.tasks.at_mut(idx))
            .and_then(|slot| slot.record.open_members.as_mut())
        {
            *open = open.saturating_add(1);
        }
    }

    /// Discounts a member of the group whose root is `root` that reached a final status; fires
    /// the root when it was the last (see [`GroupRole`](crate::GroupRole)).
    fn leave_group(&mut self, root: TaskId, now: DateTime<Utc>) {
        let Some(idx) = self.tasks.idx(root) else {
            return;
        };
        let Some(slot) = self.tasks.at_mut(idx) else {
            return;
        };
        let Some(open) = slot.record.open_members.as_mut() else {
            return;
        };
        *open = open.saturating_sub(1);
        if *open > 0 || slot.record.status != TaskStatus::Scheduled {
            return;
        }
        if slot.record.job == crate::task::GROUP_JOB {
            slot.record.output = Some("null".to_owned());
            self.dequeue(idx);
            self.finalize(idx, TaskStatus::Succeeded, now);
        } else {
            self.dequeue(idx);
            if let Some(slot) = self.tasks.at_mut(idx) {
                slot.record.status = TaskStatus::Queued;
                slot.record.run_at = now;
            }
            self.enqueue(idx, millis(now));
            self.emit(
                root,
                &TaskEvent::Status {
                    status: TaskStatus::Queued,
                },
            );
            self.fired = true;
        }
    }

    /// Moves a task to a final status.
    pub(super) fn finalize(&mut self, idx: u32, status: TaskStatus, now: DateTime<Utc>) {
        let group = self.tasks.at(idx).and_then(|slot| slot.record.group);
        self.finalize_alone(idx, status, now);
        if let Some(root) = group {
            self.leave_group(root, now);
        }
    }

    fn finalize_alone(&mut self, idx: u32, status: TaskStatus, now: DateTime<Utc>) {
        let Some(slot) = self.tasks.at_mut(idx) else {
            return;
        };
        let record = &mut slot.record;
        record.status = status;
        record.finished_at = Some(now);
        record.lease_owner = None;
        record.lease_expires_at = None;
        let expires = millis(saturating_add(now, record.retention));
        let id = record.id;
        let minute = minute_of(millis(now));
        let minutes = match self.finished.get_mut(record.job.as_str()) {
            Some(minutes) => minutes,
            None => self.finished.entry(record.job.clone()).or_default(),
        };
        if !minutes.contains_key(&minute) {
            // Two hours are kept, so that the last one is whole whatever the clock does.
            let keep_from = minute - 2 * MINUTE_MS * THROUGHPUT_MINUTES as i64;
            while minutes
                .first_key_value()
                .is_some_and(|(&at, _)| at < keep_from)
            {
                minutes.pop_first();
            }
        }
        minutes.entry(minute).or_default().add(status, 1);
        self.running.remove(&idx);
        self.expiring.insert((expires, id, idx));
        self.emit(id, &TaskEvent::Status { status });
    }

    /// The slot index if `lease` is the live lease on a running task.
    pub(super) fn leased(&self, lease: Lease) -> Option<u32> {
        #[allow(clippy::cast_possible_truncation)] // the low half of the token is the index
        let idx = lease.token as u32;
        self.tasks
            .at(idx)
            .filter(|s| {
                s.record.id == lease.task
                    && s.record.status == TaskStatus::Running
                    && s.token == lease.token
            })
            .map(|_| idx)
    }

    /// Ends an attempt without success (`outcome`: failed or lost, recorded in its history):
    /// retry after `retry_after` if allowed, else fail (or cancel, when cancellation was
    /// requested).
    pub(super) fn fail_attempt(
        &mut self,
        idx: u32,
        outcome: AttemptOutcome,
        error: String,
        retry_after: Option<Duration>,
        now: DateTime<Utc>,
    ) -> bool {
        let Some(slot) = self.tasks.at_mut(idx) else {
            return false;
        };
        let record = &mut slot.record;
        record.push_attempt(outcome, Some(error.clone()), now);
        record.last_error = Some(TaskError {
            message: error,
            attempt: record.attempt,
            at: now,
        });
        let retry = retry_after
            .filter(|_| record.attempt < record.max_attempts && !record.cancel_requested);
        if let Some(delay) = retry {
            record.status = TaskStatus::Retrying;
            record.run_at = saturating_add(now, delay);
            record.lease_owner = None;
            record.lease_expires_at = None;
            let id = record.id;
            self.running.remove(&idx);
            self.enqueue(idx, millis(now));
            self.emit(
                id,
                &TaskEvent::Status {
                    status: TaskStatus::Retrying,
                },
            );
            true
        } else {
            let status = if record.cancel_requested {
                TaskStatus::Cancelled
            } else {
                TaskStatus::Failed
            };
            self.finalize(idx, status, now);
            false
        }
    }
}
