//! Instructions per dispatch, per bus delivery and per orchestrator event, counted by
//! callgrind: the figures the project holds its dispatch and event targets against (wall clock
//! is too noisy on a shared machine).
//!
//! One binary, three modes:
//!
//! - **Workload**: `instructions run <workload> <runtime> <jobs> [<layout> [<in flight>]]`
//!   allocates `<layout>` bytes (0 if absent; see [`LAYOUTS`]), then runs a warm-up of
//!   [`WARMUP`] jobs, then `<jobs>` dispatch + await of a no-op job, and nothing else. With
//!   one in flight (the default) each job is awaited before the next is dispatched; with `n`
//!   in flight (ours, the floor and the baseline only) the jobs go in batches: dispatch `n`,
//!   then await them in order. `<workload>` is `ours` (`Dispatcher::dispatch` + `.await` of
//!   the handle), `floor` (the steps a dispatch cannot skip, written by hand in
//!   `common/floor.rs`: what the contract costs without the engine), `baseline` (spawn a task
//!   that sends `()` over a oneshot, await the receiver), `ractor` (one `call` to an actor
//!   whose handler replies at once) or `kameo` (one `ask` to such an actor); `<runtime>` is
//!   `tokio-ct`
//!   (current-thread), `tokio-mt` (multi-thread, 2 workers) or `smol` (the global executor;
//!   ours, the floor and the baseline only). The loop runs inside a task spawned on the
//!   runtime, as a request handler would.
//! - **Event workload**: `instructions events <workload> <rounds>` runs [`EVENT_WARMUP`]
//!   rounds, then `<rounds>` rounds of [`EVENT_BURST`] events. `bus` and `async-broadcast` are
//!   the burst scenario of `benches/bus.rs` at [`SUBSCRIBERS`] subscribers (one thread, no
//!   runtime: publish the round's events, allocating each, then every subscriber drains them
//!   without waiting, checking their order). `orchestrator` and `raw-loop` are the scenario of
//!   `benches/orchestrator.rs` on tokio current-thread (publish a round, yield; at the end wait
//!   until every event was counted: by an orchestrator's `on_event` into its state, or by a
//!   task reading a raw `Subscription` into an atomic).
//! - **Driver** (no `run` argument; `cargo bench --bench instructions`): runs each workload
//!   under `valgrind --tool=callgrind` at [`LOW`] and [`HIGH`] jobs and prints a Markdown
//!   table of `(Ir(HIGH) - Ir(LOW)) / (HIGH - LOW)` per job: what one more job costs, with
//!   start-up, warm-up and teardown cancelled out. Ours, the floor and the baseline are
//!   counted with one and with [`IN_FLIGHT`] jobs in flight, each at every heap layout of
//!   [`LAYOUTS`], and the table shows each one's mean (every layout's count is listed below
//!   it, with the range); the peers with one in flight at one layout. It
//!   then runs the event workloads at [`EVENT_LOW`] and [`EVENT_HIGH`] rounds and prints a
//!   second table: Ir per delivery (bus) and per event (orchestrator), the same difference
//!   divided by the deliveries or events of the extra rounds. The callgrind files are kept in
//!   `target/release/callgrind/` for `callgrind_annotate`.
//!
//! Quick mode (`BENCH_QUICK` set to anything but `0` or the empty string, `--quick`, or an
//! unoptimized build): 2,000 and 12,000 jobs, ours, the floor and the baseline on tokio
//! current-thread only (one and [`IN_FLIGHT`] in flight, at every layout), and every event
//! workload at 2 and 12 rounds.
//! Without valgrind on the `PATH` the driver runs each workload once in-process (a smoke
//! test; ours, the floor and the baseline also with [`IN_FLIGHT`] in flight) and prints no
//! counts.
//! Nothing here asserts on the numbers.
//!
//! See `docs/benchmarks.md` ("Instructions per dispatch (callgrind)", "Bus delivery" and
//! "Orchestrator event handling") for the results.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use orchestrator_core::{Dispatch, Dispatcher};
use orchestrator_smol::SmolRuntime;
use orchestrator_tokio::TokioRuntime;

mod common;
#[path = "common/floor.rs"]
mod floor;

use common::channels::{AsyncBroadcast, Lane, Ours};
use common::events::{Orchestrated, RawLoop};
use common::{Noop, NoopExecutor};

/// Jobs run before the counted ones, in every run (so they cancel out in the difference).
const WARMUP: u64 = 1_000;
/// Counted jobs of the low and the high run, full mode.
const LOW: u64 = 20_000;
const HIGH: u64 = 120_000;
/// The same, quick mode.
const QUICK_LOW: u64 = 2_000;
const QUICK_HIGH: u64 = 12_000;
/// The heap layouts ours, the floor and the baseline are counted at: before anything else, a
/// run allocates this many bytes and holds them (0: nothing), which shifts every later
/// allocation. On tokio the count depends on that shift by up to 17 %: tokio's task cell is
/// 128-byte aligned, and how much work glibc's `posix_memalign` does per task (splitting,
/// freeing and coalescing the padding around an aligned chunk) depends on where the heap's
/// chunks lie. The table shows each side's mean over these layouts; its range is listed
/// below. On smol (no aligned allocation) the count does not move with them.
const LAYOUTS: [usize; 8] = [0, 16, 32, 48, 64, 80, 96, 112];
/// Jobs in flight of the second count of ours, the floor and the baseline (the first has
/// one). With many jobs alive at once, their allocations outgrow glibc's per-thread cache
/// (7 chunks per size), so the size of each allocation starts to matter.
const IN_FLIGHT: usize = 64;

/// Event rounds run before the counted ones, in every run.
const EVENT_WARMUP: u64 = 4;
/// Counted event rounds of the low and the high run, full mode.
const EVENT_LOW: u64 = 20;
const EVENT_HIGH: u64 = 120;
/// The same, quick mode.
const QUICK_EVENT_LOW: u64 = 2;
const QUICK_EVENT_HIGH: u64 = 12;
/// Events per round (as in `benches/bus.rs` and `benches/orchestrator.rs`).
const EVENT_BURST: u64 = common::events::BURST;
/// Subscribers of the bus workloads.
const SUBSCRIBERS: usize = 8;

// ---------------------------------------------------------------------------------------------
// What is measured
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    Ours,
    Floor,
    Baseline,
    Ractor,
    Kameo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runtime {
    TokioCt,
    TokioMt,
    Smol,
}

impl Workload {
    const ALL: [Workload; 5] = [
        Workload::Ours,
        Workload::Floor,
        Workload::Baseline,
        Workload::Ractor,
        Workload::Kameo,
    ];

    fn name(self) -> &'static str {
        match self {
            Workload::Ours => "ours",
            Workload::Floor => "floor",
            Workload::Baseline => "baseline",
            Workload::Ractor => "ractor",
            Workload::Kameo => "kameo",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.name() == s)
    }

    /// Ours, the floor and the baseline: the sides of the ratios, counted at every layout and
    /// with one and with [`IN_FLIGHT`] jobs in flight. The peers (ractor, kameo) stand beside
    /// the table: one in flight, one layout.
    fn compared(self) -> bool {
        matches!(self, Workload::Ours | Workload::Floor | Workload::Baseline)
    }

    /// ractor and kameo are tokio-based.
    fn runs_on(self, runtime: Runtime) -> bool {
        self.compared() || runtime != Runtime::Smol
    }
}

impl Runtime {
    const ALL: [Runtime; 3] = [Runtime::TokioCt, Runtime::TokioMt, Runtime::Smol];

    fn name(self) -> &'static str {
        match self {
            Runtime::TokioCt => "tokio-ct",
            Runtime::TokioMt => "tokio-mt",
            Runtime::Smol => "smol",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == s)
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Runtime::TokioCt => "tokio current-thread",
            Runtime::TokioMt => "tokio multi-thread (2 workers)",
            Runtime::Smol => "smol (global executor)",
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The workloads
// ---------------------------------------------------------------------------------------------

/// A ractor actor whose handler replies at once.
#[derive(Debug)]
struct RactorNoop;

/// Its one message.
#[derive(Debug)]
enum RactorMsg {
    Ping(ractor::RpcReplyPort<()>),
}

impl ractor::Actor for RactorNoop {
    type Msg = RactorMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ractor::ActorRef<RactorMsg>,
        _args: (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ractor::ActorRef<RactorMsg>,
        message: RactorMsg,
        _state: &mut (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        let RactorMsg::Ping(reply) = message;
        let _ = reply.send(());
        Ok(())
    }
}

/// A kameo actor whose handler returns at once.
#[derive(Debug)]
struct KameoNoop;

/// Its one message.
#[derive(Debug)]
struct KameoPing;

impl kameo::Actor for KameoNoop {
    type Args = Self;
    type Error = Infallible;

    async fn on_start(
        args: Self,
        _actor_ref: kameo::actor::ActorRef<Self>,
    ) -> Result<Self, Infallible> {
        Ok(args)
    }
}

impl kameo::message::Message<KameoPing> for KameoNoop {
    type Reply = ();

    async fn handle(&mut self, _msg: KameoPing, _ctx: &mut kameo::message::Context<Self, ()>) {}
}

/// Runs `warm-up + jobs` sequential `one()` calls.
async fn repeat<F, R>(jobs: u64, one: F)
where
    F: Fn() -> R,
    R: Future<Output = ()>,
{
    for _ in 0..WARMUP + jobs {
        one().await;
    }
}

/// Runs `warm-up + jobs` `one()` calls in batches of `in_flight`: all started, then awaited
/// in order (the last batch may be short).
async fn batched<F, R>(jobs: u64, in_flight: usize, one: F)
where
    F: Fn() -> R,
    R: Future<Output = ()>,
{
    let mut pending = Vec::with_capacity(in_flight);
    let mut left = WARMUP + jobs;
    while left > 0 {
        let batch = left.min(in_flight as u64);
        pending.extend((0..batch).map(|_| one()));
        for done in pending.drain(..) {
            done.await;
        }
        left -= batch;
    }
}

/// Runs the jobs of a workload: [`repeat`] with one in flight, [`batched`] otherwise. The job
/// closure is written out twice, so that each loop awaits a future type of its own, which the
/// compiler inlines into it as it would into a loop of its own: with one future type awaited
/// by both loops, the count with one in flight grew by about 55 Ir per job on every side.
macro_rules! each_job {
    ($jobs:expr, $in_flight:expr, $one:expr) => {
        if $in_flight <= 1 {
            repeat($jobs, $one).await
        } else {
            batched($jobs, $in_flight, $one).await
        }
    };
}

/// The whole workload, set-up and teardown included, as a future to run in a spawned task.
async fn workload(workload: Workload, runtime: Runtime, jobs: u64, in_flight: usize) {
    match (workload, runtime) {
        (Workload::Ours, Runtime::Smol) => ours(SmolRuntime::default(), jobs, in_flight).await,
        (Workload::Ours, _) => ours(TokioRuntime::default(), jobs, in_flight).await,
        (Workload::Floor, Runtime::Smol) => floor(SmolRuntime::default(), jobs, in_flight).await,
        (Workload::Floor, _) => floor(TokioRuntime::default(), jobs, in_flight).await,
        (Workload::Baseline, Runtime::Smol) => {
            each_job!(jobs, in_flight, || {
                let (tx, rx) = futures::channel::oneshot::channel::<()>();
                smol::spawn(async move {
                    let _ = tx.send(());
                })
                .detach();
                async move { rx.await.expect("the baseline task sends") }
            });
        }
        (Workload::Baseline, _) => {
            each_job!(jobs, in_flight, || {
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                drop(tokio::spawn(async move {
                    let _ = tx.send(());
                }));
                async move { rx.await.expect("the baseline task sends") }
            });
        }
        (Workload::Ractor, _) => {
            let (actor, handle) = ractor::Actor::spawn(None, RactorNoop, ())
                .await
                .expect("the ractor actor starts");
            repeat(jobs, || async {
                let reply = actor
                    .call(RactorMsg::Ping, None)
                    .await
                    .expect("the ractor actor is alive");
                assert!(reply.is_success(), "the ractor actor replies");
            })
            .await;
            actor.stop(None);
            handle.await.expect("the ractor actor stops");
        }
        (Workload::Kameo, _) => {
            let actor = <KameoNoop as kameo::actor::Spawn>::spawn(KameoNoop);
            repeat(jobs, || async {
                actor.ask(KameoPing).await.expect("the kameo actor replies");
            })
            .await;
            actor
                .stop_gracefully()
                .await
                .expect("the kameo actor stops");
            actor.wait_for_shutdown().await;
        }
    }
}

/// Ours: dispatch a no-op job and await its handle.
async fn ours(runtime: impl orchestrator_core::runtime::Runtime, jobs: u64, in_flight: usize) {
    let dispatcher = Dispatcher::new(runtime);
    dispatcher.register(NoopExecutor);
    each_job!(jobs, in_flight, || {
        let handle = dispatcher.dispatch(Noop);
        async move {
            handle.await.expect("a no-op job succeeds");
        }
    });
}

/// The hand-written floor (`benches/common/floor.rs`): dispatch a no-op job and await it.
async fn floor(runtime: impl orchestrator_core::runtime::Spawn, jobs: u64, in_flight: usize) {
    let floor = floor::Floor::new(runtime);
    each_job!(jobs, in_flight, || {
        let handle = floor.dispatch(floor::FloorJob);
        async move {
            handle.await.expect("a no-op job succeeds");
        }
    });
}

/// Runs one workload on a fresh runtime, the loop in a spawned task, after allocating
/// `layout` bytes (see [`LAYOUTS`]).
fn run(w: Workload, runtime: Runtime, jobs: u64, layout: usize, in_flight: usize) {
    let shift = std::hint::black_box(vec![1_u8; layout]);
    let tokio = |builder: &mut tokio::runtime::Builder| {
        let rt = builder.enable_all().build().expect("a tokio runtime");
        rt.block_on(rt.spawn(workload(w, runtime, jobs, in_flight)))
            .expect("the workload does not panic");
    };
    match runtime {
        Runtime::TokioCt => tokio(&mut tokio::runtime::Builder::new_current_thread()),
        Runtime::TokioMt => tokio(tokio::runtime::Builder::new_multi_thread().worker_threads(2)),
        Runtime::Smol => smol::block_on(smol::spawn(workload(w, runtime, jobs, in_flight))),
    }
    drop(shift);
}

// ---------------------------------------------------------------------------------------------
// The event workloads
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventWorkload {
    /// `SignalBus` with [`SUBSCRIBERS`] subscriptions, burst scenario.
    Bus,
    /// `async-broadcast` with [`SUBSCRIBERS`] receivers, burst scenario.
    AsyncBroadcast,
    /// An orchestrator counting events into its state.
    Orchestrator,
    /// A raw subscription loop counting into an atomic.
    RawLoop,
}

impl EventWorkload {
    const ALL: [EventWorkload; 4] = [
        EventWorkload::Bus,
        EventWorkload::AsyncBroadcast,
        EventWorkload::Orchestrator,
        EventWorkload::RawLoop,
    ];

    fn name(self) -> &'static str {
        match self {
            EventWorkload::Bus => "bus",
            EventWorkload::AsyncBroadcast => "async-broadcast",
            EventWorkload::Orchestrator => "orchestrator",
            EventWorkload::RawLoop => "raw-loop",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.name() == s)
    }

    /// What one unit of the per-unit count is, per round.
    fn units_per_round(self) -> u64 {
        match self {
            EventWorkload::Bus | EventWorkload::AsyncBroadcast => EVENT_BURST * SUBSCRIBERS as u64,
            EventWorkload::Orchestrator | EventWorkload::RawLoop => EVENT_BURST,
        }
    }
}

/// Runs one event workload: set-up, warm-up, `rounds` rounds, teardown.
fn run_events(w: EventWorkload, rounds: u64) {
    fn burst<C: common::channels::Channel>(rounds: u64) {
        let mut lane = Lane::<C>::open(SUBSCRIBERS, EVENT_BURST as usize);
        lane.burst(EVENT_WARMUP + rounds, EVENT_BURST);
    }
    let tokio = |body: std::pin::Pin<Box<dyn Future<Output = ()>>>| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(body);
    };
    match w {
        EventWorkload::Bus => burst::<Ours>(rounds),
        EventWorkload::AsyncBroadcast => burst::<AsyncBroadcast>(rounds),
        EventWorkload::Orchestrator => tokio(Box::pin(async {
            let orchestrated = Orchestrated::start();
            orchestrated.run(EVENT_WARMUP + rounds).await;
            orchestrated.finish();
        })),
        EventWorkload::RawLoop => tokio(Box::pin(async {
            let raw = RawLoop::start();
            raw.run(EVENT_WARMUP + rounds).await;
            raw.finish();
        })),
    }
}

// ---------------------------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------------------------

/// One counted run of a dispatch workload.
#[derive(Debug, Clone, Copy)]
struct Run {
    w: Workload,
    runtime: Runtime,
    jobs: u64,
    layout: usize,
    in_flight: usize,
}

/// Runs `exe run <w> <runtime> <jobs> <layout> <in flight>` under callgrind; returns the total
/// Ir over all threads.
fn count(exe: &Path, out_dir: &Path, run: Run) -> u64 {
    let Run {
        w,
        runtime,
        jobs,
        layout,
        in_flight,
    } = run;
    let out = out_dir.join(format!(
        "{}-{}-{jobs}-{layout}-{in_flight}.out",
        w.name(),
        runtime.name()
    ));
    let args = [
        "run",
        w.name(),
        runtime.name(),
        &jobs.to_string(),
        &layout.to_string(),
        &in_flight.to_string(),
    ];
    callgrind(exe, &out, &args).unwrap_or_else(|stderr| {
        eprintln!("{stderr}");
        panic!(
            "{} on {} ({jobs} jobs, layout {layout}, {in_flight} in flight) failed under callgrind",
            w.name(),
            runtime.name()
        );
    })
}

/// Runs `exe events <w> <rounds>` under callgrind; returns the total Ir over all threads.
fn count_events(exe: &Path, out_dir: &Path, w: EventWorkload, rounds: u64) -> u64 {
    let out = out_dir.join(format!("events-{}-{rounds}.out", w.name()));
    let args = ["events", w.name(), &rounds.to_string()];
    callgrind(exe, &out, &args).unwrap_or_else(|stderr| {
        eprintln!("{stderr}");
        panic!("{} ({rounds} rounds) failed under callgrind", w.name());
    })
}

/// Runs `exe args` under callgrind, writing `out`; returns the total Ir over all threads, or
/// the run's standard error if it failed.
fn callgrind(exe: &Path, out: &Path, args: &[&str]) -> Result<u64, String> {
    let result = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--separate-threads=no")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(exe)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("valgrind runs");
    if !result.status.success() {
        return Err(String::from_utf8_lossy(&result.stderr).into_owned());
    }
    let text = std::fs::read_to_string(out).expect("callgrind wrote its output file");
    Ok(text
        .lines()
        .find_map(|line| {
            line.strip_prefix("summary:")
                .or_else(|| line.strip_prefix("totals:"))
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|ir| ir.parse().ok())
        .unwrap_or_else(|| panic!("no summary/totals line in {}", out.display())))
}

fn valgrind_available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn driver(quick: bool) {
    let started = Instant::now();
    let (low, high) = if quick {
        (QUICK_LOW, QUICK_HIGH)
    } else {
        (LOW, HIGH)
    };
    let (event_low, event_high) = if quick {
        (QUICK_EVENT_LOW, QUICK_EVENT_HIGH)
    } else {
        (EVENT_LOW, EVENT_HIGH)
    };
    let cells: Vec<(Runtime, Vec<Workload>)> = if quick {
        vec![(
            Runtime::TokioCt,
            vec![Workload::Ours, Workload::Floor, Workload::Baseline],
        )]
    } else {
        Runtime::ALL
            .into_iter()
            .map(|r| {
                (
                    r,
                    Workload::ALL.into_iter().filter(|w| w.runs_on(r)).collect(),
                )
            })
            .collect()
    };

    if !valgrind_available() {
        println!("# instruction benchmark: valgrind not found, no counts");
        println!("\nsmoke test instead: each workload once in-process ({low} jobs)");
        for (runtime, workloads) in &cells {
            for &w in workloads {
                run(w, *runtime, low, 0, 1);
                println!("- {} on {}: ok", w.name(), runtime.name());
                if w.compared() {
                    run(w, *runtime, low, 0, IN_FLIGHT);
                    println!(
                        "- {} on {}, {IN_FLIGHT} in flight: ok",
                        w.name(),
                        runtime.name()
                    );
                }
            }
        }
        for w in EventWorkload::ALL {
            run_events(w, event_low);
            println!("- {} ({event_low} rounds): ok", w.name());
        }
        return;
    }

    let exe = std::env::current_exe().expect("the path of this benchmark");
    // <target>/<profile>/deps/instructions-<hash> -> <target>/<profile>/callgrind
    let out_dir: PathBuf = exe
        .parent()
        .and_then(Path::parent)
        .map_or_else(std::env::temp_dir, Path::to_path_buf)
        .join("callgrind");
    std::fs::create_dir_all(&out_dir).expect("the callgrind output directory");

    let mode = match (quick, cfg!(debug_assertions)) {
        (false, _) => "full",
        (true, false) => "quick (smoke test: small counts)",
        (true, true) => "quick (unoptimized build: numbers are meaningless)",
    };
    println!(
        "# instruction benchmark: {mode}; Ir per job = (Ir({high}) - Ir({low})) / {}\n",
        high - low
    );

    let mut raw = Vec::new();
    let mut rows = Vec::new();
    let mut spreads = Vec::new();
    for (runtime, workloads) in &cells {
        for in_flight in [1, IN_FLIGHT] {
            let mut per_job = [None; 5];
            for &w in workloads {
                let layouts: &[usize] = if w.compared() {
                    &LAYOUTS
                } else if in_flight == 1 {
                    &LAYOUTS[..1]
                } else {
                    &[]
                };
                let mut runs = Vec::with_capacity(layouts.len());
                for &layout in layouts {
                    let run = |jobs| Run {
                        w,
                        runtime: *runtime,
                        jobs,
                        layout,
                        in_flight,
                    };
                    let ir_low = count(&exe, &out_dir, run(low));
                    let ir_high = count(&exe, &out_dir, run(high));
                    raw.push((run(0), ir_low, ir_high));
                    runs.push((ir_high as f64 - ir_low as f64) / (high - low) as f64);
                }
                if layouts.len() > 1 {
                    spreads.push((w, *runtime, in_flight, runs.clone()));
                }
                if !runs.is_empty() {
                    per_job[w as usize] = Some(mean(&runs));
                }
            }
            rows.push((*runtime, in_flight, per_job));
        }
    }

    let cell = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0}"));
    let ratio = |a: &Option<f64>, b: &Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x", a / b),
        _ => "n/a".to_owned(),
    };
    println!(
        "means over {} heap layouts (ractor and kameo: one in flight, one layout)\n",
        LAYOUTS.len()
    );
    println!(
        "| runtime | in flight | ours | hand-written floor | spawn+oneshot | ours / baseline | \
         floor / baseline | ractor `call` | kameo `ask` |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (runtime, in_flight, [ours, floor, base, ractor, kameo]) in &rows {
        println!(
            "| {runtime} | {in_flight} | {} | {} | {} | {} | {} | {} | {} |",
            cell(*ours),
            cell(*floor),
            cell(*base),
            ratio(ours, base),
            ratio(floor, base),
            cell(*ractor),
            cell(*kameo)
        );
    }
    println!("\nevery layout (bytes allocated first: Ir per job), and min / mean / max:");
    for (w, runtime, in_flight, runs) in &spreads {
        let each: Vec<String> = LAYOUTS
            .iter()
            .zip(runs)
            .map(|(layout, r)| format!("{layout}: {r:.0}"))
            .collect();
        let (min, max) = runs
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        println!(
            "- {} on {}, {in_flight} in flight: {}; {min:.0} / {:.0} / {max:.0}",
            w.name(),
            runtime.name(),
            each.join(", "),
            mean(runs)
        );
    }
    println!(
        "\ntotal Ir per run (callgrind files in {}):",
        out_dir.display()
    );
    for (run, ir_low, ir_high) in raw {
        println!(
            "- {} on {}, layout {}, {} in flight: {ir_low} ({low} jobs), {ir_high} ({high} jobs)",
            run.w.name(),
            run.runtime.name(),
            run.layout,
            run.in_flight
        );
    }
    events_table(&exe, &out_dir, event_low, event_high);
    println!("\ntotal time: {:.1} s", started.elapsed().as_secs_f64());
}

/// The mean of `runs`. Over heap layouts a count is bimodal (the allocator's fast or slow
/// path), so the mean, which weighs how often each side hits the slow path, is steadier than
/// the median, which jumps between the two modes.
fn mean(runs: &[f64]) -> f64 {
    runs.iter().sum::<f64>() / runs.len() as f64
}

/// Runs the event workloads under callgrind and prints their table.
fn events_table(exe: &Path, out_dir: &Path, low: u64, high: u64) {
    println!(
        "\n## Events: Ir per delivery (bus, {SUBSCRIBERS} subscribers) and per event \
         (orchestrator), (Ir({high} rounds) - Ir({low} rounds)) / units of {} rounds\n",
        high - low
    );
    let mut per_unit = [0.0; 4];
    let mut raw = Vec::new();
    for w in EventWorkload::ALL {
        let ir_low = count_events(exe, out_dir, w, low);
        let ir_high = count_events(exe, out_dir, w, high);
        let units = (high - low) * w.units_per_round();
        per_unit[w as usize] = (ir_high as f64 - ir_low as f64) / units as f64;
        raw.push((w, ir_low, ir_high));
    }
    let [bus, async_broadcast, orchestrator, raw_loop] = per_unit;
    println!("| what | per | ours | baseline | ratio |");
    println!("|---|---|---:|---:|---:|");
    println!(
        "| bus: `SignalBus` vs async-broadcast, {SUBSCRIBERS} subscribers, burst | delivery \
         | {bus:.1} | {async_broadcast:.1} | {:.2}x |",
        bus / async_broadcast
    );
    println!(
        "| orchestrator `on_event` vs raw subscription loop, tokio current-thread | event \
         | {orchestrator:.1} | {raw_loop:.1} | {:.2}x |",
        orchestrator / raw_loop
    );
    println!("\ntotal Ir per run:");
    for (w, ir_low, ir_high) in raw {
        println!(
            "- {}: {ir_low} ({low} rounds), {ir_high} ({high} rounds)",
            w.name()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

fn usage() -> ! {
    eprintln!(
        "usage: instructions [run <ours|floor|baseline|ractor|kameo> <tokio-ct|tokio-mt|smol> <jobs> [<layout bytes> [<in flight>]]]\n\
         \x20      instructions [events <bus|async-broadcast|orchestrator|raw-loop> <rounds>]"
    );
    std::process::exit(2);
}

fn main() {
    // `--bench` (from cargo) and `--quick` are flags; the rest is positional.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    match args.as_slice() {
        [] => driver(common::quick_mode()),
        [mode, w, r, jobs, rest @ ..] if mode == "run" && rest.len() <= 2 => {
            let layout = rest.first().map_or(Ok(0), |l| l.parse());
            let in_flight = rest.get(1).map_or(Ok(1), |n| n.parse::<usize>());
            let (Some(w), Some(r), Ok(jobs), Ok(layout), Ok(in_flight @ 1..)) = (
                Workload::parse(w),
                Runtime::parse(r),
                jobs.parse(),
                layout,
                in_flight,
            ) else {
                usage()
            };
            if !w.runs_on(r) {
                eprintln!("{} runs on tokio only", w.name());
                std::process::exit(2);
            }
            if in_flight > 1 && !w.compared() {
                eprintln!("{} runs with one in flight only", w.name());
                std::process::exit(2);
            }
            run(w, r, jobs, layout, in_flight);
        }
        [mode, w, rounds] if mode == "events" => {
            let (Some(w), Ok(rounds)) = (EventWorkload::parse(w), rounds.parse()) else {
                usage()
            };
            run_events(w, rounds);
        }
        _ => usage(),
    }
}
