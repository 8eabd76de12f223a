//! Remote dispatch over NATS JetStream against a raw async-nats JetStream publish-and-ack of
//! the same payload, in the same run, on the server at `NATS_URL` (`.ci/run` starts one on
//! 127.0.0.1).
//!
//! - **Round trip**: one job at a time; ours is `dispatch(..).await` of a demo job that does
//!   nothing, through the work-queue stream, a worker in this process, and the outcome stream
//!   back; the baseline is one JetStream publish of the job's request bytes, awaiting the
//!   server's ack. Median microseconds per job.
//! - **Throughput**: 1,000 in flight; ours dispatches them all and awaits them; the baseline
//!   publishes the same number of requests and awaits all the acks. Jobs per second.
//!
//! Ours does two stored publishes per job (the request and the outcome), two consumers and a
//! worker; the baseline one stored publish. Plain harness: prints a Markdown table.
//! `BENCH_QUICK` (anything but `0` or empty) or `--quick` runs tiny counts. Nothing asserts on
//! timings.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use orchestrator_core::{Dispatch, Dispatcher, JobId};
use orchestrator_nats::demo::{Square, Squarer, registry};
use orchestrator_nats::{RemoteConfig, RemoteJobs, Worker};
use orchestrator_remote::NodeId;
use orchestrator_tokio::TokioRuntime;

fn quick() -> bool {
    std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
        || std::env::args().any(|a| a == "--quick")
        || cfg!(debug_assertions)
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let Ok(url) = std::env::var("NATS_URL") else {
        eprintln!("benches/remote.rs needs a NATS server with JetStream: set NATS_URL");
        std::process::exit(2);
    };
    let (round_trips, in_flight, samples) = if quick() {
        (50, 100, 3)
    } else {
        (2_000, 1_000, 5)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let prefix = format!("bench{}", NodeId::random().as_u64());
        let config = RemoteConfig {
            prefix: prefix.clone(),
            ..RemoteConfig::default()
        };
        let shop_client = async_nats::connect(&url).await.expect("connects");
        let worker_client = async_nats::connect(&url).await.expect("connects");
        let remote = RemoteJobs::start(shop_client.clone(), registry(1), config.clone())
            .await
            .expect("starts");
        let shop = Dispatcher::new(TokioRuntime::default());
        shop.register(remote.executor::<Square>().expect("registered"));
        let local = Dispatcher::new(TokioRuntime::default());
        local.register(Squarer::default());
        let worker = Worker::builder(worker_client, registry(2), &local)
            .config(config)
            .concurrency(64)
            .accept::<Square>()
            .expect("registered")
            .start()
            .await
            .expect("starts");

        // The baseline's stream: the same storage, its own subject.
        let js = jetstream::new(shop_client.clone());
        let raw_subject = format!("{prefix}-raw.jobs");
        js.get_or_create_stream(jetstream::stream::Config {
            name: format!("{prefix}-raw"),
            subjects: vec![raw_subject.clone()],
            retention: jetstream::stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .expect("the raw stream");
        let payload = Bytes::from(
            registry(1)
                .encode_job(JobId::next(), &Square::new(7, 0), 1, None)
                .and_then(|r| r.to_bytes())
                .expect("a request"),
        );

        let mut ours_rt = Vec::new();
        let mut raw_rt = Vec::new();
        let mut ours_tp = Vec::new();
        let mut raw_tp = Vec::new();
        for _ in 0..samples {
            let start = Instant::now();
            for n in 0..round_trips {
                shop.dispatch(Square::new(n, 0)).await.expect("a result");
            }
            ours_rt.push(start.elapsed().as_secs_f64() * 1e6 / round_trips as f64);

            let start = Instant::now();
            for _ in 0..round_trips {
                js.publish(raw_subject.clone(), payload.clone())
                    .await
                    .expect("published")
                    .await
                    .expect("acked");
            }
            raw_rt.push(start.elapsed().as_secs_f64() * 1e6 / round_trips as f64);

            let start = Instant::now();
            let handles: Vec<_> = (0..in_flight)
                .map(|n| shop.dispatch(Square::new(n, 0)))
                .collect();
            for handle in handles {
                handle.await.expect("a result");
            }
            ours_tp.push(in_flight as f64 / start.elapsed().as_secs_f64());

            let start = Instant::now();
            let mut acks = Vec::with_capacity(in_flight as usize);
            for _ in 0..in_flight {
                acks.push(
                    js.publish(raw_subject.clone(), payload.clone())
                        .await
                        .expect("published"),
                );
            }
            for ack in acks {
                ack.await.expect("acked");
            }
            raw_tp.push(in_flight as f64 / start.elapsed().as_secs_f64());
        }
        let (ours_rt, raw_rt) = (median(ours_rt), median(raw_rt));
        let (ours_tp, raw_tp) = (median(ours_tp), median(raw_tp));
        println!(
            "| remote dispatch ({} samples) | ours | raw JetStream publish + ack | ratio |",
            samples
        );
        println!("| --- | --- | --- | --- |");
        println!(
            "| round trip, 1 in flight (µs per job) | {ours_rt:.0} | {raw_rt:.0} | {:.2}x |",
            ours_rt / raw_rt
        );
        println!(
            "| throughput, {in_flight} in flight (jobs/s) | {ours_tp:.0} | {raw_tp:.0} | {:.2}x |",
            raw_tp / ours_tp
        );
        let stats = remote.stats();
        println!(
            "\nremote: {} sent, {} outcomes, {} duplicates dropped; worker: {:?}",
            stats.sent,
            stats.outcomes,
            stats.duplicates_dropped,
            worker.stats()
        );
        worker.stop(Duration::from_secs(5)).await;
    });
}
