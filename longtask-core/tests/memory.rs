//! The conformance suite against the in-memory backend.

use std::sync::Arc;

use longtask_core::{Clock, MemoryBackend};

async fn make_backend(clock: Arc<dyn Clock>) -> MemoryBackend {
    MemoryBackend::new().with_clock(clock)
}

longtask_core::conformance_suite!(memory, make_backend);
