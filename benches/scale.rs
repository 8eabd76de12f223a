//! Scale: cost per job as the number of jobs in flight grows (1,000 to 1,000,000), heap bytes
//! per in-flight job, and bus delivery with 10,000 subscribers, on tokio current-thread.
//!
//! `cargo bench --bench scale` prints Markdown tables; `BENCH_QUICK=1` (or `--quick`, or an
//! unoptimized build) runs tiny counts. Nothing asserts on timings; outcomes are checked.
//!
//! # How a count is measured
//!
//! Each count N runs in child processes (this binary again, with `SCALE_CHILD=N`), so no
//! count inherits the heap an earlier one left behind. Two kinds of child:
//!
//! - **Steady state**: the child's environment tells glibc to keep freed memory and to skip
//!   its per-thread cache and fast bins ([`KEEP_HEAP`]). One untimed warm-up round per side
//!   at N (it also counts the heap bytes per in-flight job), then [`SAMPLES`] samples of each
//!   side, alternating which side goes first. A sample dispatches N jobs, then awaits all N,
//!   repeated until it covers about [`JOBS_PER_SAMPLE`] jobs. No sample touches fresh memory.
//! - **First round** (N of at least [`COLD_MIN`]): glibc's defaults, one child per side and
//!   run ([`COLD_RUNS`] each, alternating): a small warm-up, then one timed round at N, whose
//!   every page is touched for the first time.
//!
//! Why: with glibc's defaults, whether the memory a round freed is given back to the kernel
//! (and must be faulted in again, at about 3 µs a page on this virtual machine) depends on
//! which small block happens to sit at the top of the heap, and where the next round's
//! blocks land depends on the order the caches were left in. Both change with incidental
//! allocations between rounds; in one process, one side could run on warm pages and the
//! other on fresh ones. docs/benchmarks.md ("Scale") has the measurements.
//!
//! Each sample records wall time, the thread's time on the CPU and its wait for one
//! (`/proc/thread-self/schedstat`: another tenant shows in the wait, not in the CPU time) and
//! the page faults. The tables give medians; a ratio is the median, over the pairs of
//! adjacent samples (one per side), of ours / baseline.
//!
//! `SCALE_N=1000000` (a comma-separated list) measures only those counts; `SCALE_VERBOSE=1`
//! also prints every sample.

use std::future::Future;
use std::mem::MaybeUninit;
use std::process::Command;
use std::time::Instant;

use orchestrator_core::{Dispatch, Dispatcher, Event, SignalBus};
use orchestrator_tokio::TokioRuntime;

mod common;

use common::sched::SchedSample;
use common::{CountingAlloc, Noop, NoopExecutor, Spread, start_counting, stop_counting};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Timed samples per side in a steady-state child (full mode).
const SAMPLES: usize = 9;
/// Fresh processes per side for the first-round figures (full mode).
const COLD_RUNS: usize = 7;
/// A sample repeats dispatch-N-then-await-N until it has run about this many jobs.
const JOBS_PER_SAMPLE: usize = 250_000;
/// First-round (cold) figures are taken from this count up: below it one round is too short
/// to time.
const COLD_MIN: usize = 100_000;
/// Jobs per side that a cold child runs before its timed round.
const COLD_WARM_UP: usize = 1_000;
/// What the steady-state child sets in its environment. With the first two, glibc never
/// trims the heap, so pages touched once stay mapped. The third turns off glibc's per-thread
/// cache and fast bins: a freed block then merges with its free neighbours at once, so each
/// round carves its jobs out of the same large free blocks, in address order, instead of out
/// of whatever order the previous round's frees left the caches in.
const KEEP_HEAP: [(&str, &str); 3] = [
    ("MALLOC_TRIM_THRESHOLD_", "68719476736"),
    ("MALLOC_TOP_PAD_", "1073741824"),
    (
        "GLIBC_TUNABLES",
        "glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0",
    ),
];

/// The two sides of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// `Dispatcher::dispatch` and its `JobHandle`.
    Ours,
    /// The hand-rolled baseline: `tokio::spawn` + oneshot per job.
    Baseline,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Ours => "ours",
            Side::Baseline => "baseline",
        }
    }

    /// The order of the sides in sample `i`: each goes first in every other sample.
    fn order(i: usize) -> [Side; 2] {
        if i % 2 == 0 {
            [Side::Ours, Side::Baseline]
        } else {
            [Side::Baseline, Side::Ours]
        }
    }

    fn parse(name: &str) -> Option<Side> {
        [Side::Ours, Side::Baseline]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

/// A child's state: the dispatcher, and each side's `Vec` of handles, reserved once at N so
/// that no round grows (or maps afresh) a `Vec` inside the timed window.
struct Bench<R> {
    dispatcher: Dispatcher<R>,
    handles: Vec<orchestrator_core::JobHandle<()>>,
    receivers: Vec<tokio::sync::oneshot::Receiver<()>>,
}

impl<R> Bench<R> {
    /// Dispatches `n` jobs before awaiting any, then awaits all `n`; returns the bytes
    /// allocated and not yet freed right after dispatching, if `count_heap`.
    async fn round(&mut self, side: Side, n: usize, count_heap: bool) -> i64 {
        let before = count_heap.then(start_counting);
        match side {
            Side::Ours => self
                .handles
                .extend((0..n).map(|_| self.dispatcher.dispatch(Noop))),
            Side::Baseline => self.receivers.extend((0..n).map(|_| {
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                tokio::spawn(async move {
                    let _ = tx.send(());
                });
                rx
            })),
        }
        let live = before.map_or(0, |before| {
            let counted = stop_counting(before);
            counted.bytes as i64 - counted.freed as i64
        });
        for h in self.handles.drain(..) {
            h.await.expect("success");
        }
        for rx in self.receivers.drain(..) {
            rx.await.expect("sent");
        }
        live
    }
}

/// One timed sample of one side, per job.
#[derive(Debug, Clone, Copy)]
struct Sample {
    side: Side,
    wall_ns: f64,
    cpu_ns: f64,
    /// Share of the wall time spent waiting for a CPU.
    delay: f64,
    faults: f64,
}

impl Sample {
    /// The line a child prints and the parent parses.
    fn line(&self) -> String {
        format!(
            "sample {} {:.1} {:.1} {:.4} {:.4}",
            self.side.name(),
            self.wall_ns,
            self.cpu_ns,
            self.delay,
            self.faults
        )
    }

    /// Runs `work` (which runs `jobs` jobs) and times it.
    async fn time(side: Side, jobs: usize, work: impl Future) -> Sample {
        let s0 = SchedSample::now();
        let began = Instant::now();
        work.await;
        let wall = began.elapsed().as_nanos() as f64;
        let s = SchedSample::now().since(s0);
        let jobs = jobs as f64;
        Sample {
            side,
            wall_ns: wall / jobs,
            // Without `/proc` (not Linux) the CPU time reads as zero: use the wall time.
            cpu_ns: (if s.on_cpu_ns == 0 {
                wall
            } else {
                s.on_cpu_ns as f64
            }) / jobs,
            delay: s.run_delay_ns as f64 / wall,
            faults: s.minor_faults as f64 / jobs,
        }
    }

    fn parse(line: &str) -> Option<Sample> {
        let mut f = line.strip_prefix("sample ")?.split(' ');
        let side = Side::parse(f.next()?)?;
        let mut num = || f.next()?.parse::<f64>().ok();
        Some(Sample {
            side,
            wall_ns: num()?,
            cpu_ns: num()?,
            delay: num()?,
            faults: num()?,
        })
    }
}

/// Samples per side: `SCALE_SAMPLES`, or [`SAMPLES`].
fn samples() -> usize {
    std::env::var("SCALE_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SAMPLES)
}

/// A child that measures the steady state at `n`: prints `heap` and `sample` lines.
fn steady_child(n: usize, quick: bool) {
    let (samples, rounds) = if quick {
        (2, 1)
    } else {
        (samples(), (JOBS_PER_SAMPLE / n).max(1))
    };
    with_bench(n, |mut bench| async move {
        // Warm-up, counting the heap: the runtime's queues, the dispatcher's registry and
        // the allocator's pages reach their size for N.
        for side in [Side::Ours, Side::Baseline] {
            let live = bench.round(side, n, true).await;
            println!("heap {} {:.1}", side.name(), live as f64 / n as f64);
        }
        for i in 0..samples {
            for side in Side::order(i) {
                let sample = Sample::time(side, n * rounds, async {
                    for _ in 0..rounds {
                        bench.round(side, n, false).await;
                    }
                })
                .await;
                println!("{}", sample.line());
            }
        }
    });
}

/// A child that measures one first round of `side` at `n` in a fresh heap: every page its
/// jobs use is touched for the first time. The warm-up is small (it only initializes the
/// runtime and the dispatcher), so nearly all of the heap the round needs is new.
fn cold_child(n: usize, side: Side) {
    with_bench(n, |mut bench| async move {
        for warm in [Side::Ours, Side::Baseline] {
            bench.round(warm, COLD_WARM_UP, false).await;
        }
        let sample = Sample::time(side, n, bench.round(side, n, false)).await;
        println!("{}", sample.line());
    });
}

/// Runs `body` on a tokio current-thread runtime with a [`Bench`] reserved for `n` jobs.
fn with_bench<F: Future<Output = ()>>(n: usize, body: impl FnOnce(Bench<TokioRuntime>) -> F) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let bench = Bench {
            dispatcher: Dispatcher::new(TokioRuntime::default()),
            handles: touched(n),
            receivers: touched(n),
        };
        bench.dispatcher.register(NoopExecutor);
        body(bench).await;
    });
}

/// Returns an empty `Vec` with room for `n`, its pages already written: the harness's own
/// memory is faulted in here, outside every timed round.
fn touched<T>(n: usize) -> Vec<T> {
    let mut v = Vec::with_capacity(n);
    v.spare_capacity_mut().fill_with(MaybeUninit::zeroed);
    std::hint::black_box(&mut v);
    v
}

/// How a child is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heap {
    /// glibc keeps freed memory (see [`KEEP_HEAP`]); warm-up, then the samples.
    Kept,
    /// glibc's defaults; one first round of one side in a fresh process.
    Cold(Side),
}

/// What the parent gathered for one count and one kind of child.
struct Cell {
    n: usize,
    heap: [f64; 2],
    samples: Vec<Sample>,
}

impl Cell {
    fn new(n: usize) -> Cell {
        Cell {
            n,
            heap: [0.0; 2],
            samples: Vec::new(),
        }
    }

    /// Runs a child for `n` and adds what it prints to the cell.
    fn run(&mut self, how: Heap, quick: bool) {
        let exe = std::env::current_exe().expect("the benchmark's own path");
        let mut cmd = Command::new(exe);
        cmd.env("SCALE_CHILD", self.n.to_string());
        if quick {
            cmd.env("BENCH_QUICK", "1");
        }
        for (key, value) in KEEP_HEAP {
            match how {
                Heap::Kept => cmd.env(key, value),
                Heap::Cold(_) => cmd.env_remove(key),
            };
        }
        match how {
            Heap::Kept => cmd.env_remove("SCALE_COLD"),
            Heap::Cold(side) => cmd.env("SCALE_COLD", side.name()),
        };
        let out = cmd.output().expect("the child runs");
        assert!(out.status.success(), "child for {} failed: {out:?}", self.n);
        let text = String::from_utf8(out.stdout).expect("UTF-8");
        let before = self.samples.len();
        for line in text.lines() {
            if let Some(sample) = Sample::parse(line) {
                self.samples.push(sample);
            } else if let Some(rest) = line.strip_prefix("heap ") {
                let (side, bytes) = rest.split_once(' ').expect("heap <side> <bytes>");
                let i = usize::from(Side::parse(side) == Some(Side::Baseline));
                self.heap[i] = bytes.parse().expect("a number");
            }
        }
        assert!(
            self.samples.len() > before,
            "child for {} printed no samples",
            self.n
        );
    }

    /// The spread of `field` over `side`'s samples.
    fn spread(&self, side: Side, field: fn(&Sample) -> f64) -> Spread {
        let mut values: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.side == side)
            .map(field)
            .collect();
        Spread::of(&mut values)
    }

    /// The spread of ours / baseline over the pairs of adjacent samples (one of each side,
    /// taken one after the other): a drift of the machine moves both sides of a pair alike.
    fn pair_ratio(&self, field: fn(&Sample) -> f64) -> Spread {
        let mut ratios: Vec<f64> = self
            .samples
            .chunks_exact(2)
            .map(|pair| {
                let (ours, base) = if pair[0].side == Side::Ours {
                    (&pair[0], &pair[1])
                } else {
                    (&pair[1], &pair[0])
                };
                assert_ne!(ours.side, base.side, "a pair holds one sample of each side");
                field(ours) / field(base)
            })
            .collect();
        Spread::of(&mut ratios)
    }

    /// Prints the cell's row of a timing table.
    fn row(&self) {
        let cpu = |s: &Sample| s.cpu_ns;
        let wall = |s: &Sample| s.wall_ns;
        let (ours, base) = (
            self.spread(Side::Ours, cpu),
            self.spread(Side::Baseline, cpu),
        );
        let (ours_wall, base_wall) = (
            self.spread(Side::Ours, wall),
            self.spread(Side::Baseline, wall),
        );
        let delay = |side| self.spread(side, |s: &Sample| s.delay).max;
        let faults = |side| self.spread(side, |s: &Sample| s.faults).median;
        println!(
            "| {} | {:.0} | {:.0} | {:.2}x | {:.0}–{:.0} | {:.0}–{:.0} | {:.0} | {:.0} | {:.2}x | {:.0} % | {:.3} / {:.3} |",
            self.n,
            ours.median,
            base.median,
            self.pair_ratio(cpu).median,
            ours.min,
            ours.max,
            base.min,
            base.max,
            ours_wall.median,
            base_wall.median,
            self.pair_ratio(wall).median,
            100.0 * delay(Side::Ours).max(delay(Side::Baseline)),
            faults(Side::Ours),
            faults(Side::Baseline),
        );
    }
}

/// Prints a timing table's header.
fn header() {
    println!(
        "| jobs in flight | ours CPU ns/job | baseline CPU ns/job | CPU ratio | ours CPU range | baseline CPU range | ours wall ns/job | baseline wall ns/job | wall ratio | most waiting for a CPU | page faults/job ours / baseline |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
}

fn main() {
    let quick = common::quick_mode();
    if let Ok(n) = std::env::var("SCALE_CHILD") {
        let n = n.parse().expect("SCALE_CHILD is a count");
        match std::env::var("SCALE_COLD").ok().as_deref().map(Side::parse) {
            None => steady_child(n, quick),
            Some(Some(side)) => cold_child(n, side),
            Some(None) => panic!("SCALE_COLD is `ours` or `baseline`"),
        }
        return;
    }
    let only = std::env::var("SCALE_N").ok();
    let counts: Vec<usize> = match &only {
        Some(list) => list
            .split(',')
            .map(|v| v.trim().parse().expect("SCALE_N lists counts"))
            .collect(),
        None if quick => vec![100, 1_000],
        None => vec![1_000, 10_000, 100_000, 1_000_000],
    };
    let verbose = std::env::var_os("SCALE_VERBOSE").is_some();
    let cold_runs = if quick { 1 } else { COLD_RUNS };
    let largest = counts.iter().copied().max().unwrap_or(0);
    let mut steady = Vec::new();
    let mut cold = Vec::new();
    for &n in &counts {
        let mut cell = Cell::new(n);
        cell.run(Heap::Kept, quick);
        steady.push(cell);
        if n >= COLD_MIN || (quick && n == largest) {
            let mut cell = Cell::new(n);
            for i in 0..cold_runs {
                for side in Side::order(i) {
                    cell.run(Heap::Cold(side), quick);
                }
            }
            cold.push(cell);
        }
    }
    if verbose {
        for (name, cells) in [("steady", &steady), ("cold", &cold)] {
            for cell in cells {
                for s in &cell.samples {
                    eprintln!("{} {name} {}", cell.n, s.line());
                }
            }
        }
    }
    let bus = only.is_none().then(|| bus_delivery(quick));

    let mode = if quick {
        "quick (numbers are meaningless)"
    } else {
        "full"
    };
    println!("# scale benchmark: {mode}, tokio current-thread\n");
    println!(
        "Steady state (memory already mapped), medians of the samples; ratios are medians of ours / baseline over pairs of adjacent samples:\n"
    );
    header();
    for cell in &steady {
        cell.row();
    }
    println!(
        "\nFirst round in a fresh process (every page touched for the first time), medians:\n"
    );
    header();
    for cell in &cold {
        cell.row();
    }
    println!("\n| jobs in flight | ours heap B/job | baseline heap B/job |");
    println!("|---:|---:|---:|");
    for cell in &steady {
        println!("| {} | {:.0} | {:.0} |", cell.n, cell.heap[0], cell.heap[1]);
    }
    if let Some((subscribers, events, per_delivery)) = bus {
        println!(
            "\nbus: {subscribers} subscribers, {events} events: {per_delivery:.1} ns per delivery"
        );
    }
}

/// Bus: one publisher, many subscriptions, each drained without waiting; returns the
/// subscriptions, the events and ns per delivery.
fn bus_delivery(quick: bool) -> (usize, u64, f64) {
    let subscribers = if quick { 100 } else { 10_000 };
    let events: u64 = if quick { 10 } else { 200 };
    let bus = SignalBus::new();
    let mut subs: Vec<_> = (0..subscribers).map(|_| bus.subscribe()).collect();
    let began = Instant::now();
    for i in 0..events {
        bus.publish(Event::new(i)).expect("open");
        for sub in &mut subs {
            let e = sub.try_next().expect("delivered");
            assert_eq!(e.downcast_ref::<u64>(), Some(&i));
        }
    }
    let per_delivery = began.elapsed().as_nanos() as f64 / (events as f64 * subscribers as f64);
    assert_eq!(bus.queued(), 0);
    (subscribers, events, per_delivery)
}
