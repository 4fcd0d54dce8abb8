//! Shared pieces of the longtask examples and benchmarks.
//!
//! [`backend_from_url`] picks a backend at run time from a URL, among those compiled in:
//! `memory://` always; `sqlite://path` with feature `sqlite` (the default);
//! `postgres://…` with feature `postgres`; `redis://…` (one server) and
//! `redis+cluster://host:port,host:port` (a Redis Cluster, through the nodes listed) with feature
//! `redis`.
//!
//! [`serve`] is the examples' HTTP server: HTTP/1.1 and HTTP/2 on one port, with timeouts for
//! clients that send slowly or not at all ([`Timeouts`]).

mod server;

pub use server::{serve, Timeouts};

use longtask_core::{Backend, Error, MemoryBackend, Result};

/// Connects to the backend named by `url` (running migrations where the backend has them).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> longtask_core::Result<()> {
/// let backend = longtask_examples::backend_from_url("memory://").await?;
/// assert!(longtask_examples::backend_from_url("ftp://nowhere").await.is_err());
/// # Ok(()) }
/// ```
pub async fn backend_from_url(url: &str) -> Result<Backend> {
    let scheme = url.split_once("://").map_or(url, |(scheme, _)| scheme);
    match scheme {
        "memory" => Ok(Backend::new(MemoryBackend::new())),
        #[cfg(feature = "sqlite")]
        "sqlite" => {
            let backend = longtask_sqlx::SqliteBackend::connect(url).await?;
            backend.migrate().await?;
            Ok(Backend::new(backend))
        }
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => {
            let backend = longtask_sqlx::PostgresBackend::connect(url).await?;
            backend.migrate().await?;
            Ok(Backend::new(backend))
        }
        #[cfg(feature = "redis")]
        "redis" | "rediss" => {
            let backend = longtask_redis::RedisBackend::connect(url).await?;
            Ok(Backend::new(backend))
        }
        #[cfg(feature = "redis")]
        "redis+cluster" => {
            let nodes: Vec<String> = url["redis+cluster://".len()..]
                .split(',')
                .map(str::trim)
                .filter(|node| !node.is_empty())
                .map(|node| format!("redis://{node}"))
                .collect();
            if nodes.is_empty() {
                return Err(Error::InvalidInput(
                    "redis+cluster:// names no node: use redis+cluster://host:port,host:port"
                        .to_owned(),
                ));
            }
            let backend = longtask_redis::RedisBackend::connect_cluster(nodes).await?;
            Ok(Backend::new(backend))
        }
        other => Err(Error::InvalidInput(format!(
            "no backend for `{other}://` is compiled in; use memory://{}",
            compiled_in()
        ))),
    }
}

fn compiled_in() -> &'static str {
    if cfg!(all(
        feature = "sqlite",
        feature = "postgres",
        feature = "redis"
    )) {
        ", sqlite://, postgres:// or redis://"
    } else if cfg!(all(feature = "sqlite", feature = "postgres")) {
        ", sqlite:// or postgres:// (build with --features redis for redis://)"
    } else if cfg!(feature = "sqlite") {
        " or sqlite:// (build with --features postgres or redis for the others)"
    } else {
        " (build with --features sqlite, postgres or redis for the others)"
    }
}

/// The README's code blocks, compiled as doctests so that they never go stale.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// The tower crate's README code blocks, likewise.
#[cfg(all(doctest, feature = "sqlite"))]
#[doc = include_str!("../../longtask-tower/README.md")]
pub struct TowerReadmeDoctests;

/// The Redis crate's README code blocks, likewise.
#[cfg(all(doctest, feature = "redis"))]
#[doc = include_str!("../../longtask-redis/README.md")]
pub struct RedisReadmeDoctests;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_schemes_and_empty_node_lists_are_refused_clearly() {
        let err = backend_from_url("ftp://nowhere").await.unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err}");
        assert!(err.to_string().contains("memory://"), "{err}");
        #[cfg(feature = "redis")]
        for url in ["redis+cluster://", "redis+cluster:// , "] {
            let err = backend_from_url(url).await.unwrap_err();
            assert!(err.to_string().contains("names no node"), "{url}: {err}");
        }
    }
}
