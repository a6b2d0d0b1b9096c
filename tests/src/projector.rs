//! Running a projector in-process until it has applied the stream up to a
//! position, for tests and measurements.

use projections::runtime::{Settings, Stats};
use sqlx::PgPool;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Runs a projector with `settings` on `pool` until its position reaches
/// `target`, stops it cleanly, and returns how long the applying took.
pub async fn run_until(nats_url: &str, pool: &PgPool, settings: Settings, target: u64) -> Duration {
    #[allow(clippy::expect_used)]
    let client = async_nats::connect(nats_url).await.expect("connect to the test nats-server");
    let stats = Arc::new(Stats::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let task = tokio::spawn(projections::runtime::run(
        pool.clone(),
        async_nats::jetstream::new(client),
        settings,
        stats.clone(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let deadline = Instant::now() + Duration::from_secs(300);
    while stats.position.load(Ordering::Relaxed) < target {
        assert!(!task.is_finished(), "the projector stopped early");
        assert!(Instant::now() < deadline, "the projector did not reach {target}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop_tx.send(());
    #[allow(clippy::expect_used)]
    task.await.expect("join the projector").expect("the projector ran cleanly");
    elapsed
}
