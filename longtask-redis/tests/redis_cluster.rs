//! The Redis backend on a real Redis Cluster (three primaries): the whole conformance suite, and
//! namespaces spread over the nodes.
//!
//! Uses `REDIS_CLUSTER_URLS` (comma-separated node URLs) when set; otherwise starts a throwaway
//! three-node cluster on free loopback ports, one per test process, stopped when the process
//! exits.

mod common;

use std::{sync::Arc, time::Duration};

use common::{cluster_urls, unique_prefix};
use longtask_core::{
    testing::{Namespace, WakeUps},
    Client, Clock, Job, JobError, SystemClock, TaskContext, TaskQuery, TaskStatus, Worker,
};
use longtask_redis::RedisBackend;

/// A backend on a fresh key prefix.
async fn cluster_backend(clock: Arc<dyn Clock>) -> RedisBackend {
    cluster_backend_on(&unique_prefix(), clock).await
}

/// A new instance (its own connections) on the key prefix `prefix`.
async fn cluster_backend_on(prefix: &str, clock: Arc<dyn Clock>) -> RedisBackend {
    RedisBackend::connect_cluster(cluster_urls())
        .await
        .expect("cannot connect to the test Redis Cluster")
        .with_prefix(prefix)
        .with_clock(clock)
}

/// A fresh key prefix; each instance connects anew (its own connections and pub/sub
/// subscriber), as another process would.
async fn namespace(clock: Arc<dyn Clock>) -> Namespace {
    let prefix = unique_prefix();
    Namespace::new(WakeUps::Push, move || {
        let (prefix, clock) = (prefix.clone(), clock.clone());
        async move { cluster_backend_on(&prefix, clock).await }
    })
}

longtask_core::conformance_suite!(redis_cluster, namespace);

struct Double;

impl Job for Double {
    const NAME: &'static str = "double";
    type Params = u64;
    type Output = u64;

    async fn run(&self, n: u64, cx: TaskContext) -> Result<u64, JobError> {
        cx.progress(1, 2, "halfway")?;
        Ok(n * 2)
    }
}

/// Namespaces (one hash slot each) land on different nodes, and a worker and client on each run
/// its tasks to the end: scripts, pipelines, wake-ups and watches all reach the right node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_on_every_node_run_their_tasks() {
    let urls = cluster_urls();
    let mut spread = std::collections::HashSet::new();
    for _ in 0..12 {
        let backend = cluster_backend(Arc::new(SystemClock)).await;
        let client = Client::new(backend.clone());
        let worker = Worker::builder(backend.clone())
            .register(Double)
            .poll_interval(Duration::from_secs(30)) // only a wake-up can start it in time
            .build()
            .unwrap()
            .spawn();
        let ids = client.submit_many::<Double>(1..=20).await.unwrap();
        let mut watch = client.watch(ids[0]).await.unwrap();
        for (n, id) in (1..=20_u64).zip(&ids) {
            let task = client.wait(*id, Duration::from_secs(10)).await.unwrap();
            assert_eq!(task.status, TaskStatus::Succeeded);
            assert_eq!(client.output::<Double>(*id).await.unwrap(), Some(n * 2));
        }
        let mut last = None;
        while let Some(record) = futures::StreamExt::next(&mut watch).await {
            last = Some(record.unwrap().status);
        }
        assert_eq!(last, Some(TaskStatus::Succeeded));
        let listed = client.list(&TaskQuery::default()).await.unwrap();
        assert_eq!(listed.len(), 20);
        worker.shutdown().await.unwrap();

        // Which node owns this namespace's slot.
        let mut conn = ::redis::Client::open(urls[0].as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let slot: i64 = ::redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(format!("{{{}}}:", backend.prefix()))
            .query_async(&mut conn)
            .await
            .unwrap();
        // Entries: [first slot, last slot, [ip, port, id, ...] of the primary, replicas...].
        let slots: Vec<Vec<::redis::Value>> = ::redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn)
            .await
            .unwrap();
        let owner = slots
            .iter()
            .find_map(|entry| match entry.as_slice() {
                [::redis::Value::Int(from), ::redis::Value::Int(to), ::redis::Value::Array(node), ..]
                    if (*from..=*to).contains(&slot) =>
                {
                    Some(format!("{:?}", node.get(1)))
                }
                _ => None,
            })
            .expect("every slot is served");
        spread.insert(owner);
    }
    assert!(
        spread.len() >= 2,
        "12 namespaces all landed on one node; the test proves nothing about routing"
    );
}
