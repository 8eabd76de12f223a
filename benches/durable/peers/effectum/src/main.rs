//! The durable benchmark's effectum peer: one cell (see `common/cell.rs`), run by the
//! benchmark as `durable-bench-effectum --in-flight N --jobs N --secs S ... --dir PATH`.
//!
//! A job is `Job::builder("bench.noop").json_payload(&seq).add_to(&queue)`: stored when
//! `add_to` returns (effectum's writer thread has committed the insert). Its runner completes
//! it explicitly (`job.complete(())`, which returns once the completion is committed) and then
//! tells the waiting client: the outcome is durable when the client hears of it. One worker,
//! with `max_concurrency` = the jobs in flight.

#[path = "../../../common/cell.rs"]
mod cell;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use effectum::{Job, JobRunner, Queue, RunningJob, Worker};
use tokio::sync::oneshot;

/// The clients waiting for their jobs' outcomes, by sequence number.
#[derive(Clone, Default)]
struct Waiters(Arc<Mutex<HashMap<u64, oneshot::Sender<Instant>>>>);

impl fmt::Debug for Waiters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Waiters")
    }
}

async fn noop(job: RunningJob, waiters: Waiters) -> Result<(), effectum::Error> {
    let seq: u64 = job.json_payload()?;
    std::hint::black_box(seq);
    job.complete(()).await?;
    let ended = Instant::now();
    if let Some(tx) = waiters.0.lock().unwrap().remove(&seq) {
        let _ = tx.send(ended);
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let plan = cell::Plan::from_args(&args);
    std::fs::create_dir_all(&plan.dir).expect("the cell's directory");
    let path = plan.dir.join("effectum.db");
    let rt = cell::runtime();
    rt.block_on(async {
        let queue = Arc::new(Queue::new(&path).await.expect("effectum opens its queue"));
        let waiters = Waiters::default();
        let worker = Worker::builder(&queue, waiters.clone())
            .max_concurrency(u16::try_from(plan.in_flight).expect("at most 65,535 in flight"))
            .jobs([JobRunner::builder("bench.noop", noop).build()])
            .build()
            .await
            .expect("effectum starts a worker");
        let job = {
            let queue = queue.clone();
            move |seq: u64| {
                let queue = queue.clone();
                let waiters = waiters.clone();
                async move {
                    let start = Instant::now();
                    let (tx, rx) = oneshot::channel();
                    waiters.0.lock().unwrap().insert(seq, tx);
                    Job::builder("bench.noop")
                        .json_payload(&seq)
                        .expect("a payload")
                        .add_to(&queue)
                        .await
                        .expect("effectum stores the job");
                    let stored = Instant::now();
                    let ended = rx.await.expect("the job ran");
                    Some(cell::Sample::of(start, stored, ended))
                }
            }
        };
        cell::run_cell("effectum", &plan, job, |_| modes(&path)).await;
        drop(worker);
        let _ = queue.close(std::time::Duration::from_secs(5)).await;
    });
}

/// The file's journal mode and a new connection's `synchronous` (effectum's writer sets
/// `synchronous = NORMAL` on its own connection).
fn modes(path: &std::path::Path) -> String {
    let conn = rusqlite::Connection::open(path).expect("the queue's file");
    let journal: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap_or_default();
    format!("journal_mode={journal} synchronous_set_by_effectum=NORMAL")
}
