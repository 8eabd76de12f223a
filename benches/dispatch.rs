//! Dispatch overhead: `Dispatcher::dispatch` + `.await` of a no-op job, against a hand-rolled
//! baseline (spawn a task that sends `()` over a oneshot channel, await the receiver) and the
//! hand-written floor of the instruction benchmark (`benches/common/floor.rs`: only the steps
//! the engine's contract needs) on the same runtime, in the same run.
//!
//! Plain harness (no criterion): `cargo bench --bench dispatch` prints a Markdown table of
//! ns per job (median of 25 samples) and the ratios ours / baseline and floor / baseline. A
//! sample times the three sides back to back (in a rotating order), so a ratio is taken within
//! each sample and the table gives the median and quartiles of those ratios: a slow spell of
//! this shared machine then moves all three sides of a sample instead of one. Then the heap
//! allocations per dispatch and the live heap per pending job, counted by a counting global
//! allocator on tokio current-thread and on smol, for ours, the hand-written floor of the
//! instruction benchmark and the baseline.
//!
//! Quick (smoke) mode, with tiny counts and the same output: set `BENCH_QUICK` (to anything
//! but `0` or the empty string) or pass `--quick`. Other arguments (`--bench` from cargo) are
//! ignored. A build without optimizations (`cargo test --benches`) always runs quick mode.
//! Nothing here asserts on timings.
//!
//! See `docs/benchmarks.md` for the results and how to read them.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestrator_core::{Dispatch, Dispatcher};
use orchestrator_smol::SmolRuntime;
use orchestrator_tokio::TokioRuntime;

mod common;
#[path = "common/floor.rs"]
mod floor;

use common::{CountingAlloc, Noop, NoopExecutor, Spread, start_counting, stop_counting};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

// ---------------------------------------------------------------------------------------------
// The job
// ---------------------------------------------------------------------------------------------

fn dispatcher<R: orchestrator_core::runtime::Runtime>(runtime: R) -> Dispatcher<R> {
    let dispatcher = Dispatcher::new(runtime);
    dispatcher.register(NoopExecutor);
    dispatcher
}

// ---------------------------------------------------------------------------------------------
// One measurement
// ---------------------------------------------------------------------------------------------

/// Runs `rounds` rounds; a round starts `in_flight` jobs with `start`, then awaits them all in
/// order. Returns the elapsed wall time. `start` does the spawn/dispatch synchronously and
/// returns the future that awaits the outcome (no heap allocation of its own).
async fn run_rounds<R, S>(start: S, rounds: u64, in_flight: usize) -> Duration
where
    R: Future<Output = ()>,
    S: Fn() -> R,
{
    let mut pending: Vec<R> = Vec::with_capacity(in_flight);
    let began = Instant::now();
    for _ in 0..rounds {
        if in_flight == 1 {
            start().await;
        } else {
            pending.extend((0..in_flight).map(|_| start()));
            for done in pending.drain(..) {
                done.await;
            }
        }
    }
    began.elapsed()
}

/// Ours: dispatch a no-op job and await its handle.
fn ours<R>(dispatcher: &Dispatcher<R>) -> impl Future<Output = ()> + Send + 'static {
    let handle = dispatcher.dispatch(Noop);
    async move {
        handle.await.expect("a no-op job succeeds");
    }
}

/// Baseline on tokio: `tokio::spawn` a task that sends `()` over a tokio oneshot.
fn tokio_baseline() -> impl Future<Output = ()> + Send + 'static {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    drop(tokio::spawn(async move {
        let _ = tx.send(());
    }));
    async move {
        rx.await.expect("the baseline task sends");
    }
}

/// Baseline on smol: `smol::spawn` (detached) a task that sends `()` over a futures oneshot.
fn smol_baseline() -> impl Future<Output = ()> + Send + 'static {
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    smol::spawn(async move {
        let _ = tx.send(());
    })
    .detach();
    async move {
        rx.await.expect("the baseline task sends");
    }
}

/// One side of a measurement (its discriminant indexes a sample's three times).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Imp {
    Ours = 0,
    /// The hand-written floor of the instruction benchmark (`benches/common/floor.rs`).
    Floor = 1,
    Baseline = 2,
}

impl Imp {
    const ALL: [Imp; 3] = [Imp::Ours, Imp::Floor, Imp::Baseline];
}

/// The runtimes under test, each able to run one timed batch of rounds.
#[derive(Debug)]
enum Bench {
    /// A tokio runtime (multi-thread or current-thread); the timed loop runs inside a spawned
    /// task, as a request handler would.
    Tokio {
        runtime: tokio::runtime::Runtime,
        dispatcher: Dispatcher<orchestrator_tokio::TokioRuntime>,
        floor: Arc<floor::Floor<TokioRuntime>>,
    },
    /// smol's global executor (`smol::spawn`); the timed loop runs inside a task spawned on
    /// it, as a request handler would (driving it from `block_on` on the main thread would
    /// measure a cross-thread round trip per job instead).
    Smol {
        dispatcher: Dispatcher<orchestrator_smol::SmolRuntime>,
        floor: Arc<floor::Floor<SmolRuntime>>,
    },
}

impl Bench {
    fn tokio(runtime: tokio::runtime::Runtime) -> Self {
        Bench::Tokio {
            runtime,
            dispatcher: dispatcher(TokioRuntime::default()),
            floor: Arc::new(floor::Floor::new(TokioRuntime::default())),
        }
    }

    fn smol() -> Self {
        Bench::Smol {
            dispatcher: dispatcher(SmolRuntime::default()),
            floor: Arc::new(floor::Floor::new(SmolRuntime::default())),
        }
    }

    /// Times `rounds` rounds of `in_flight` jobs of `imp`.
    fn time(&self, imp: Imp, rounds: u64, in_flight: usize) -> Duration {
        match self {
            Bench::Tokio {
                runtime,
                dispatcher,
                floor,
            } => {
                let d = dispatcher.clone();
                let f = floor.clone();
                let timed = async move {
                    match imp {
                        Imp::Ours => run_rounds(|| ours(&d), rounds, in_flight).await,
                        Imp::Floor => run_rounds(|| floor_job(&f), rounds, in_flight).await,
                        Imp::Baseline => run_rounds(tokio_baseline, rounds, in_flight).await,
                    }
                };
                runtime
                    .block_on(runtime.spawn(timed))
                    .expect("the timed task does not panic")
            }
            Bench::Smol { dispatcher, floor } => {
                let d = dispatcher.clone();
                let f = floor.clone();
                smol::block_on(smol::spawn(async move {
                    match imp {
                        Imp::Ours => run_rounds(|| ours(&d), rounds, in_flight).await,
                        Imp::Floor => run_rounds(|| floor_job(&f), rounds, in_flight).await,
                        Imp::Baseline => run_rounds(smol_baseline, rounds, in_flight).await,
                    }
                }))
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Config {
    quick: bool,
    samples: usize,
    /// Quick mode: rounds per sample.
    quick_rounds: u64,
    /// Full mode: wall time aimed at for one sample of the slower implementation.
    sample_target: Duration,
    /// Full mode: minimum wall time of the warm-up / calibration of each implementation.
    warmup_target: Duration,
}

impl Config {
    fn from_env() -> Self {
        let quick = common::quick_mode();
        Config {
            quick,
            samples: if quick { 5 } else { 25 },
            quick_rounds: 50,
            sample_target: Duration::from_millis(80),
            warmup_target: Duration::from_millis(60),
        }
    }
}

/// Warms both implementations up and returns the rounds per sample.
fn calibrate(bench: &Bench, in_flight: usize, config: &Config) -> u64 {
    if config.quick {
        for imp in Imp::ALL {
            bench.time(imp, 5, in_flight);
        }
        return config.quick_rounds;
    }
    let mut slowest_ns_per_round = 1;
    for imp in Imp::ALL {
        let mut rounds = 16;
        loop {
            let elapsed = bench.time(imp, rounds, in_flight);
            if elapsed >= config.warmup_target {
                slowest_ns_per_round =
                    slowest_ns_per_round.max(elapsed.as_nanos() / u128::from(rounds));
                break;
            }
            rounds *= 2;
        }
    }
    let rounds = (config.sample_target.as_nanos() / slowest_ns_per_round).clamp(16, 50_000_000);
    u64::try_from(rounds).unwrap_or(50_000_000)
}

/// One row of the table.
#[derive(Debug)]
struct Row {
    runtime: &'static str,
    in_flight: usize,
    /// Median, min and max ns per job over the samples.
    ours_ns: Spread,
    floor_ns: Spread,
    baseline_ns: Spread,
    /// Ours / baseline and floor / baseline within each sample (the three sides of a sample
    /// run back to back, so a slow spell of the machine moves all three): median and
    /// quartiles over the samples.
    ours_ratio: Quartiles,
    floor_ratio: Quartiles,
    jobs_per_sample: u64,
}

/// The median and the quartiles of a set of values.
#[derive(Debug, Clone, Copy)]
struct Quartiles {
    low: f64,
    median: f64,
    high: f64,
}

impl Quartiles {
    /// Sorts `values` and returns their quartiles (nearest rank; the median as in
    /// [`Spread::of`]).
    fn of(values: &mut [f64]) -> Self {
        let median = Spread::of(values).median;
        let rank = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        Quartiles {
            low: rank(0.25),
            median,
            high: rank(0.75),
        }
    }
}

fn measure(bench: &Bench, runtime: &'static str, in_flight: usize, config: &Config) -> Row {
    let rounds = calibrate(bench, in_flight, config);
    let jobs = rounds * in_flight as u64;
    let mut ours_ns = Vec::with_capacity(config.samples);
    let mut floor_ns = Vec::with_capacity(config.samples);
    let mut baseline_ns = Vec::with_capacity(config.samples);
    let mut ours_ratio = Vec::with_capacity(config.samples);
    let mut floor_ratio = Vec::with_capacity(config.samples);
    for sample in 0..config.samples {
        // Rotate the order so that no side always runs on a "warmer" runtime.
        let mut order = Imp::ALL;
        order.rotate_left(sample % Imp::ALL.len());
        let mut this = [0.0; 3];
        for imp in order {
            let ns = bench.time(imp, rounds, in_flight).as_nanos() as f64 / jobs as f64;
            this[imp as usize] = ns;
        }
        let [ours, floor, baseline] = this;
        ours_ns.push(ours);
        floor_ns.push(floor);
        baseline_ns.push(baseline);
        ours_ratio.push(ours / baseline);
        floor_ratio.push(floor / baseline);
    }
    Row {
        runtime,
        in_flight,
        ours_ns: Spread::of(&mut ours_ns),
        floor_ns: Spread::of(&mut floor_ns),
        baseline_ns: Spread::of(&mut baseline_ns),
        ours_ratio: Quartiles::of(&mut ours_ratio),
        floor_ratio: Quartiles::of(&mut floor_ratio),
        jobs_per_sample: jobs,
    }
}

// ---------------------------------------------------------------------------------------------
// Allocations
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct AllocRow {
    /// Allocation calls per dispatch + await.
    calls_per_job: f64,
    /// Bytes allocated per dispatch + await.
    bytes_per_job: f64,
    /// Heap bytes still held per job while `IN_FLIGHT_PROBE` jobs are dispatched and none has
    /// run yet.
    live_bytes_per_pending_job: f64,
}

/// Pending jobs in the live-bytes probe.
const IN_FLIGHT_PROBE: usize = 256;

/// Where an allocation count runs.
#[derive(Debug, Clone, Copy)]
enum AllocHost {
    /// A tokio current-thread runtime: everything runs on this thread.
    TokioCurrentThread,
    /// smol's global executor, from a task on it: with its default single thread, a job
    /// dispatched by that task cannot run before the task awaits.
    Smol,
}

impl AllocHost {
    fn name(self) -> &'static str {
        match self {
            AllocHost::TokioCurrentThread => "tokio current-thread",
            AllocHost::Smol => "smol (global executor, 1 thread)",
        }
    }
}

/// What an allocation count measures.
#[derive(Debug, Clone, Copy)]
enum Counted {
    Ours,
    /// The hand-written floor of the instruction benchmark (`benches/common/floor.rs`).
    Floor,
    Baseline,
}

impl Counted {
    const ALL: [Counted; 3] = [Counted::Ours, Counted::Floor, Counted::Baseline];

    fn name(self) -> &'static str {
        match self {
            Counted::Ours => "ours",
            Counted::Floor => "hand-written floor",
            Counted::Baseline => "baseline",
        }
    }
}

/// Counts the allocations of `counted` on `host`. It runs before the timed runs start any
/// other runtime, so the process-wide counters see only these jobs.
fn measure_allocs(host: AllocHost, counted: Counted, jobs: u64, warmup: u64) -> AllocRow {
    match host {
        AllocHost::TokioCurrentThread => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio current-thread runtime");
            let dispatcher = dispatcher(TokioRuntime::default());
            let floor = floor::Floor::new(TokioRuntime::default());
            runtime.block_on(async {
                match counted {
                    Counted::Ours => count_allocs(|| ours(&dispatcher), jobs, warmup).await,
                    Counted::Floor => count_allocs(|| floor_job(&floor), jobs, warmup).await,
                    Counted::Baseline => count_allocs(tokio_baseline, jobs, warmup).await,
                }
            })
        }
        AllocHost::Smol => {
            let dispatcher = dispatcher(SmolRuntime::default());
            let floor = floor::Floor::new(SmolRuntime::default());
            smol::block_on(smol::spawn(async move {
                match counted {
                    Counted::Ours => count_allocs(|| ours(&dispatcher), jobs, warmup).await,
                    Counted::Floor => count_allocs(|| floor_job(&floor), jobs, warmup).await,
                    Counted::Baseline => count_allocs(smol_baseline, jobs, warmup).await,
                }
            }))
        }
    }
}

/// The hand-written floor: dispatch a no-op job and await it.
fn floor_job<R: orchestrator_core::runtime::Spawn>(
    floor: &floor::Floor<R>,
) -> impl Future<Output = ()> + Send + 'static {
    let handle = floor.dispatch(floor::FloorJob);
    async move {
        handle.await.expect("a no-op job succeeds");
    }
}

/// `warmup` jobs, then `jobs` counted sequential dispatch + await, then the live-bytes probe.
async fn count_allocs<R, S>(start: S, jobs: u64, warmup: u64) -> AllocRow
where
    R: Future<Output = ()>,
    S: Fn() -> R,
{
    for _ in 0..warmup {
        start().await;
    }
    let before = start_counting();
    for _ in 0..jobs {
        start().await;
    }
    let sequential = stop_counting(before);
    let live = live_bytes_probe(start).await;
    AllocRow {
        calls_per_job: sequential.calls as f64 / jobs as f64,
        bytes_per_job: sequential.bytes as f64 / jobs as f64,
        live_bytes_per_pending_job: live as f64 / IN_FLIGHT_PROBE as f64,
    }
}

/// Returns the heap bytes held by IN_FLIGHT_PROBE jobs started with `start` without yielding
/// (none of them can run before we await: see [`AllocHost`]), then awaits them all. The first
/// pass is a warm-up that grows the run queue to its final capacity.
async fn live_bytes_probe<R, S>(start: S) -> u64
where
    R: Future<Output = ()>,
    S: Fn() -> R,
{
    let mut live = 0;
    for pass in 0..2 {
        let mut pending = Vec::with_capacity(IN_FLIGHT_PROBE);
        let before = start_counting();
        pending.extend((0..IN_FLIGHT_PROBE).map(|_| start()));
        let stats = stop_counting(before);
        if pass == 1 {
            live = stats.bytes.saturating_sub(stats.freed);
        }
        for done in pending {
            done.await;
        }
    }
    live
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

fn main() {
    let config = Config::from_env();
    let started = Instant::now();
    let mode = if config.quick {
        if cfg!(debug_assertions) {
            "quick (unoptimized build: numbers are meaningless)"
        } else {
            "quick (smoke test: numbers are noisy)"
        }
    } else {
        "full"
    };
    println!(
        "# dispatch benchmark: {mode}, {} samples per cell\n",
        config.samples
    );

    // Allocations first, while no other runtime's threads exist.
    let (alloc_jobs, alloc_warmup) = if config.quick {
        (50, 50)
    } else {
        (100_000, 10_000)
    };
    let allocs: Vec<(AllocHost, Counted, AllocRow)> =
        [AllocHost::TokioCurrentThread, AllocHost::Smol]
            .into_iter()
            .flat_map(|host| Counted::ALL.map(|counted| (host, counted)))
            .map(|(host, counted)| {
                let row = measure_allocs(host, counted, alloc_jobs, alloc_warmup);
                (host, counted, row)
            })
            .collect();

    let mut rows = Vec::new();
    {
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio multi-thread runtime");
        let bench = Bench::tokio(multi);
        for in_flight in [1, 64] {
            rows.push(measure(
                &bench,
                "tokio multi-thread (2 workers)",
                in_flight,
                &config,
            ));
        }
    }
    {
        let current = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio current-thread runtime");
        let bench = Bench::tokio(current);
        for in_flight in [1, 64] {
            rows.push(measure(&bench, "tokio current-thread", in_flight, &config));
        }
    }
    {
        let bench = Bench::smol();
        for in_flight in [1, 64] {
            rows.push(measure(
                &bench,
                "smol (global executor)",
                in_flight,
                &config,
            ));
        }
    }

    println!(
        "| runtime | in flight | ours ns/job | floor ns/job | baseline ns/job | ours / baseline | \
         floor / baseline |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.2}x ({:.2}-{:.2}) | {:.2}x ({:.2}-{:.2}) |",
            row.runtime,
            row.in_flight,
            row.ours_ns.median,
            row.floor_ns.median,
            row.baseline_ns.median,
            row.ours_ratio.median,
            row.ours_ratio.low,
            row.ours_ratio.high,
            row.floor_ratio.median,
            row.floor_ratio.low,
            row.floor_ratio.high,
        );
    }
    println!(
        "\nns/job: median over the samples; ratios: median (and quartiles) of the ratios within \
         each sample, whose three sides run back to back."
    );
    println!("\nsample ranges (min-max ns/job) and jobs per sample:");
    for row in &rows {
        println!(
            "- {}, {} in flight: ours {:.0}-{:.0}, floor {:.0}-{:.0}, baseline {:.0}-{:.0}, {} jobs",
            row.runtime,
            row.in_flight,
            row.ours_ns.min,
            row.ours_ns.max,
            row.floor_ns.min,
            row.floor_ns.max,
            row.baseline_ns.min,
            row.baseline_ns.max,
            row.jobs_per_sample
        );
    }

    println!(
        "\nallocations ({alloc_jobs} sequential dispatch+await after warm-up; live heap with \
         {IN_FLIGHT_PROBE} jobs pending):\n"
    );
    println!(
        "| runtime | | allocations / dispatch | bytes allocated / dispatch | \
         live heap bytes / pending job |"
    );
    println!("|---|---|---:|---:|---:|");
    for (host, counted, a) in &allocs {
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.0} |",
            host.name(),
            counted.name(),
            a.calls_per_job,
            a.bytes_per_job,
            a.live_bytes_per_pending_job
        );
    }
    println!("\ntotal time: {:.1} s", started.elapsed().as_secs_f64());
}
