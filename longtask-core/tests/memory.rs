//! The conformance suite against the in-memory backend.

use std::sync::Arc;

use longtask_core::{
    testing::{Namespace, WakeUps},
    Clock, MemoryBackend,
};

/// A fresh memory backend. It has no second process to reach: every "instance" on its namespace
/// is a clone sharing its state and its in-process wake-up signal ([`WakeUps::Shared`]), so the
/// cross-instance cases test clones here.
async fn namespace(clock: Arc<dyn Clock>) -> Namespace {
    let shared = MemoryBackend::new().with_clock(clock);
    Namespace::new(WakeUps::Shared, move || {
        let backend = shared.clone();
        async move { backend }
    })
}

longtask_core::conformance_suite!(memory, namespace);
