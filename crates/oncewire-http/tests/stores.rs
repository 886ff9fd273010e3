//! The store suite of `tests/common/mod.rs`, run against the in-memory
//! stores (the fleet crate runs the same functions against Redis and
//! PostgreSQL; see that file's docs).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::OnceWindows;
use oncewire::replay::Freshness;
use oncewire_http::store::{MemoryOnce, MemoryPending, MemoryRegistry, MemorySessions};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_sessions_pass_the_suite() {
    common::session_store_suite(|capacity| async move { MemorySessions::new(capacity) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_pending_passes_the_suite() {
    common::pending_store_suite(|capacity| async move { MemoryPending::new(capacity) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_once_passes_the_suite() {
    let windows = OnceWindows { freshness: Freshness::DEFAULT, challenge_ttl_ms: 60_000 };
    let make = || async move { MemoryOnce::<4096>::new(windows.freshness, windows.challenge_ttl_ms).unwrap() };
    common::once_store_suite(make, windows).await;
    // Other windows than the backend's defaults.
    let windows =
        OnceWindows { freshness: Freshness { max_age_ms: 2_000, max_future_skew_ms: 500 }, challenge_ttl_ms: 10_000 };
    let make = || async move { MemoryOnce::<4096>::new(windows.freshness, windows.challenge_ttl_ms).unwrap() };
    common::once_store_suite(make, windows).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_once_bounded_never_readmits() {
    let store = MemoryOnce::<64>::new(Freshness::DEFAULT, 60_000).unwrap();
    common::once_flood_never_readmits(&store, 1_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_registry_passes_the_suite() {
    common::registry_suite(|| async { MemoryRegistry::new() }).await;
}

/// The suite catches a store that records the parts of a request one by
/// one (each checked and recorded before the next is looked at): a refused
/// batch would leave its first parts recorded.
#[tokio::test]
#[should_panic(expected = "a refused batch recorded its proof")]
async fn the_suite_catches_a_store_that_is_not_all_or_none() {
    use oncewire::cache::Once;
    use oncewire_http::store::{OnceStore, Refusal};
    struct OneByOne(MemoryOnce);
    impl OnceStore for OneByOne {
        async fn accept(&self, onces: &[Once], now_ms: u64) -> Result<(), Refusal> {
            for o in onces {
                self.0.accept(core::slice::from_ref(o), now_ms).await?;
            }
            Ok(())
        }
    }
    let store = OneByOne(MemoryOnce::new(Freshness::DEFAULT, 60_000).unwrap());
    common::once_all_or_none(&store).await;
}
