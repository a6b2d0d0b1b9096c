//! How a projector batch's cost grows with a child's history: one child's
//! history of N visits (dates cycling through two years, as the
//! benchmark's steady load sends them), projected, then one-event batches
//! appended to it and timed as the projector applies them, with the
//! histories kept between batches.
//!
//! `cargo run --release -p tests --example steady_profile -- [N ...]`

#![allow(clippy::print_stdout)]
#![allow(clippy::expect_used, clippy::unwrap_used)]

use serde_json::json;
use std::time::Instant;

fn visit(child: &str, i: usize) -> serde_json::Value {
    let day = chrono::NaiveDate::from_ymd_opt(2024, 1, 3).unwrap() + chrono::Days::new(i as u64 % 700);
    tests::fixtures::event(
        &format!("v-{child}-{i}"),
        "child.seen",
        child,
        &format!("{day}T11:00:00Z"),
        json!({"seen_by": "8a0e4c8e-5d1b-4a63-9c1e-2f7f5a1d9b10", "seen_alone": i.is_multiple_of(2), "context": "statutory_visit"}),
    )
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![500, 2000, 5000] } else { sizes };
    println!("pid {}", std::process::id());
    let nats = tests::NatsServer::start().await;
    let gw = tests::gateway::TestGateway::start(&nats.url()).await;
    let signers = tests::projector::signers_beside(&gw.path("master.key")).await;
    let js = async_nats::jetstream::new(tests::connect(&nats.url()).await);
    let stream = js.get_stream(events::subjects::EVENTS_STREAM).await.unwrap();
    for n in sizes {
        let db = tests::TestDatabase::create().await;
        let pool = db.pool().await;
        projections::migrate(&pool, projections::LIVE_SCHEMA).await.unwrap();
        // SAFEGUARD_KEPT_WEIGHT=0 keeps nothing: every batch folds from the whole history.
        let budget = std::env::var("SAFEGUARD_KEPT_WEIGHT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(projections::kept::KEPT_WEIGHT);
        let kept = projections::kept::Kept::new(budget);
        let child = uuid::Uuid::new_v4().to_string();
        let mut all = vec![tests::fixtures::registered(&format!("r-{child}"), &child, "E09000014")];
        all.extend((1..n).map(|i| visit(&child, i)));
        let mut first = 0;
        let mut last = 0;
        for chunk in all.chunks(1000) {
            let r = gw.post(tests::gateway::tokens::ADMIN, &serde_json::Value::Array(chunk.to_vec())).await;
            assert_eq!(r.status, 201, "{}", r.text);
            if first == 0 {
                first = r.result(0)["stream_sequence"].as_u64().unwrap();
            }
            last = r.last_stream_sequence();
        }
        let apply = |from: u64, to: u64| {
            let (pool, stream, signers, kept) = (&pool, &stream, &signers, &kept);
            async move {
                let mut batch = Vec::new();
                for seq in from..=to {
                    if let Ok(m) = stream.get_raw_message(seq).await
                        && m.subject.starts_with("sg.ev.")
                    {
                        batch.push(projections::store::Incoming::decode(seq, &m.subject, &m.payload, &**signers));
                    }
                }
                let started = Instant::now();
                let mut tx = pool.begin().await.unwrap();
                projections::store::apply_batch(
                    &mut tx,
                    "main",
                    &batch,
                    None,
                    None,
                    kept,
                    projections::store::Isolation::Together,
                )
                .await
                .unwrap();
                tx.commit().await.unwrap();
                started.elapsed()
            }
        };
        let mut from = 1;
        while from <= last {
            let to = (from + 999).min(last);
            apply(from, to).await;
            from = to + 1;
        }
        let mut times = Vec::new();
        let meter = tests::cpu::Meter::start(vec![
            ("PostgreSQL", tests::cpu::Which::Command("postgres")),
            ("this process (gateway and projector)", tests::cpu::Which::This),
            ("nats-server", tests::cpu::Which::Pids(nats.pid().into_iter().collect())),
        ]);
        for i in 0..40 {
            let r = gw.post(tests::gateway::tokens::ADMIN, &visit(&child, n + i)).await;
            assert_eq!(r.status, 201, "{}", r.text);
            let at = r.result(0)["stream_sequence"].as_u64().unwrap();
            // The id-index message comes first in the same commit.
            times.push(apply(at.saturating_sub(1), at).await);
        }
        let split = meter.stop();
        times.sort();
        let cpu: Vec<String> =
            split.per_event_us(40.0).iter().map(|(n, us)| format!("{n} {:.2} ms", us / 1e3)).collect();
        println!("history {n}: CPU a one-event request and batch: {}", cpu.join(", "));
        println!(
            "history {n}: one-event batch p50 {:.2} ms, p90 {:.2} ms ({} kept children, {} kept events)",
            times[times.len() / 2].as_secs_f64() * 1e3,
            times[times.len() * 9 / 10].as_secs_f64() * 1e3,
            kept.size().0,
            kept.size().1
        );
    }
}
