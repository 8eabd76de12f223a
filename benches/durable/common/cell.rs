//! One cell of the durable benchmark, the same code in every process that measures one
//! (included with `#[path]` by the benchmark and by each peer's runner).
//!
//! A cell is a closed loop: `in_flight` tasks, each submits a job, waits until it is stored,
//! waits for its outcome, and submits the next; until `jobs` jobs were submitted or `secs`
//! elapsed. A warm-up loop of the same shape runs first and is not counted. Each job yields
//! the time from its submission to "stored" and to its outcome; the cell prints one line,
//! `RESULT key=value ...`, that the driver parses.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long one job may take before the cell fails (a broken system fails the benchmark
/// instead of hanging it).
pub const PATIENCE: Duration = Duration::from_secs(120);

/// What a cell is asked to do (from its command line).
#[derive(Debug, Clone)]
pub struct Plan {
    pub in_flight: usize,
    pub jobs: u64,
    pub secs: f64,
    pub warm_jobs: u64,
    pub warm_secs: f64,
    /// A directory of its own, for the store's file.
    pub dir: std::path::PathBuf,
}

impl Plan {
    /// Reads `--in-flight N --jobs N --secs S --warm-jobs N --warm-secs S --dir PATH`.
    pub fn from_args(args: &[String]) -> Self {
        let get = |name: &str| -> Option<&str> {
            args.iter()
                .position(|a| a == name)
                .and_then(|at| args.get(at + 1))
                .map(String::as_str)
        };
        let num = |name: &str, default: f64| -> f64 {
            get(name).map_or(default, |v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name} takes a number, not {v:?}"))
            })
        };
        Self {
            in_flight: num("--in-flight", 1.0) as usize,
            jobs: num("--jobs", 1000.0) as u64,
            secs: num("--secs", 10.0),
            warm_jobs: num("--warm-jobs", 0.0) as u64,
            warm_secs: num("--warm-secs", 1.0),
            dir: get("--dir").expect("--dir PATH").into(),
        }
    }
}

/// One job's latencies, in microseconds from its submission.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub stored_us: f64,
    pub outcome_us: f64,
}

impl Sample {
    /// The sample of a job submitted at `start`, stored at `stored`, ended at `outcome`.
    pub fn of(start: Instant, stored: Instant, outcome: Instant) -> Self {
        Self {
            stored_us: (stored - start).as_secs_f64() * 1e6,
            outcome_us: (outcome - start).as_secs_f64() * 1e6,
        }
    }
}

/// What a closed loop measured.
pub struct Measured {
    pub samples: Vec<Sample>,
    /// Jobs the system refused or failed (not counted in the throughput).
    pub failed: u64,
    pub elapsed: Duration,
    pub cpu_ticks: u64,
}

/// Runs jobs `first..first + jobs` (or fewer, if `secs` pass first) through `job`, with
/// `in_flight` of them at a time, on the current tokio runtime. A job yields its sample, or
/// `None` if the system failed it (counted, and the loop goes on).
pub async fn closed_loop<F, Fut>(
    in_flight: usize,
    first: u64,
    jobs: u64,
    secs: f64,
    job: F,
) -> Measured
where
    F: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Option<Sample>> + Send + 'static,
{
    closed_loop_keeping(in_flight, first, jobs, secs, true, job).await
}

/// [`closed_loop`], keeping the samples or not (a long run that measures memory keeps none:
/// they would be 16 bytes a job of the benchmark's own).
pub async fn closed_loop_keeping<F, Fut>(
    in_flight: usize,
    first: u64,
    jobs: u64,
    secs: f64,
    keep: bool,
    job: F,
) -> Measured
where
    F: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Option<Sample>> + Send + 'static,
{
    let next = Arc::new(AtomicU64::new(first));
    let end = first + jobs;
    let cpu_before = cpu_ticks();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::with_capacity(in_flight);
    for _ in 0..in_flight.max(1) {
        let next = next.clone();
        let job = job.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut failed = 0u64;
            loop {
                if Instant::now() >= deadline {
                    break;
                }
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= end {
                    break;
                }
                let sample = tokio::time::timeout(PATIENCE, job(seq))
                    .await
                    .unwrap_or_else(|_| panic!("job {seq} took longer than {PATIENCE:?}"));
                match sample {
                    Some(sample) if keep => samples.push(sample),
                    Some(_) => {}
                    None => failed += 1,
                }
            }
            (samples, failed)
        }));
    }
    let mut samples = Vec::new();
    let mut failed = 0;
    for task in tasks {
        let (some, lost) = task.await.expect("a client task panicked");
        samples.extend(some);
        failed += lost;
    }
    let elapsed = start.elapsed();
    Measured {
        samples,
        failed,
        elapsed,
        cpu_ticks: cpu_ticks() - cpu_before,
    }
}

/// Runs the warm-up, then the measured loop, and prints the cell's `RESULT` line (with
/// `extra`, `key=value` pairs the system adds, computed after the measured loop).
pub async fn run_cell<F, Fut>(
    system: &str,
    plan: &Plan,
    job: F,
    extra: impl FnOnce(&Measured) -> String,
) -> Measured
where
    F: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Option<Sample>> + Send + 'static,
{
    let warm = if plan.warm_jobs > 0 {
        closed_loop(plan.in_flight, 0, plan.warm_jobs, plan.warm_secs, job.clone())
            .await
            .samples
            .len() as u64
    } else {
        0
    };
    let measured = closed_loop(plan.in_flight, warm, plan.jobs, plan.secs, job).await;
    let more = extra(&measured);
    println!("{}", result_line(system, plan, &measured, &more));
    measured
}

/// The `RESULT` line of a cell.
pub fn result_line(system: &str, plan: &Plan, m: &Measured, extra: &str) -> String {
    let n = m.samples.len();
    let mut stored: Vec<f64> = m.samples.iter().map(|s| s.stored_us).collect();
    let mut outcome: Vec<f64> = m.samples.iter().map(|s| s.outcome_us).collect();
    let cpu_us = m.cpu_ticks as f64 / ticks_per_second() * 1e6 / n.max(1) as f64;
    format!(
        "RESULT system={system} in_flight={} jobs={n} secs={:.3} throughput={:.1} \
         stored_p50_us={:.1} stored_p99_us={:.1} outcome_p50_us={:.1} outcome_p99_us={:.1} \
         cpu_us_per_job={cpu_us:.1} failed={} {extra}",
        plan.in_flight,
        m.elapsed.as_secs_f64(),
        n as f64 / m.elapsed.as_secs_f64(),
        percentile(&mut stored, 0.50),
        percentile(&mut stored, 0.99),
        percentile(&mut outcome, 0.50),
        percentile(&mut outcome, 0.99),
        m.failed,
    )
}

/// The `p` quantile (nearest rank) of `values`; 0 if there are none.
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

/// User and system CPU time of this process, in clock ticks (`/proc/self/stat`).
pub fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat[stat.rfind(')').map_or(0, |at| at + 1)..]
        .split_whitespace()
        .collect();
    let field = |n: usize| -> u64 { fields.get(n - 3).and_then(|f| f.parse().ok()).unwrap_or(0) };
    field(14) + field(15)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 if it cannot say).
pub fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// This process's resident memory, in KiB (`VmRSS` in `/proc/self/status`).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The multi-thread tokio runtime every system runs on (one worker per core).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
