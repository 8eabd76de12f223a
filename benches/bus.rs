//! Bus delivery cost: publishing N events to K subscribers, every subscriber receiving all of
//! them, for `SignalBus` against `async-broadcast` and `tokio::sync::broadcast` in the same run.
//!
//! - **Ours**: a `SignalBus` with K `Subscription`s; each publish builds the event with
//!   `Event::new(i)` (one `Arc` allocation, part of "the event itself") and publishes it.
//! - **async-broadcast**: `async_broadcast::broadcast::<Arc<u64>>(N)`, overflow off,
//!   `await_active` off, K receivers; each publish sends `Arc::new(i)` with `try_broadcast`.
//! - **tokio broadcast**: `tokio::sync::broadcast::channel::<Arc<u64>>(N)`, K receivers; each
//!   publish sends `Arc::new(i)`.
//!
//! In all three a delivery hands the subscriber a reference-counted handle to the one shared
//! event (a refcount increment), which the subscriber reads (checking the order) and drops.
//!
//! Two scenarios, each at K = 1, 8 and 64 subscribers:
//!
//! - **burst** (single thread, no runtime): publish N events, then each subscriber drains all
//!   N without waiting (`try_next` / `try_recv`). Measures the raw queue cost.
//! - **concurrent** (tokio multi-thread runtime, 2 workers): K subscriber tasks await the
//!   stream (`StreamExt::next` for ours and async-broadcast, `recv().await` for tokio) while one
//!   publisher task publishes N events, yielding (`tokio::task::yield_now`) every 64.
//!
//! Both scenarios check that every subscriber received exactly the N events, in order, and
//! nothing more (a correctness check, it panics otherwise). The table gives ns per delivery
//! (total time / (N × K), median of 5 samples) and the ratios ours / async-broadcast and ours /
//! tokio broadcast. A counting global allocator then reports, for the burst scenario after a
//! warm-up, the allocations per published event (publish phase) and per delivery (drain phase)
//! separately, and for the concurrent scenario the allocations per round beyond the events.
//!
//! Plain harness (no criterion). Quick (smoke) mode, with tiny counts and the same output: set
//! `BENCH_QUICK` (to anything but `0` or the empty string) or pass `--quick`. Other arguments
//! (`--bench` from cargo) are ignored. A build without optimizations (`cargo test --benches`)
//! always runs quick mode. Nothing here asserts on timings.
//!
//! See `docs/benchmarks.md` for the results and how to read them.

use std::time::{Duration, Instant};

mod common;

use common::channels::{AsyncBroadcast, Channel, Lane, Ours, TokioBroadcast};
use common::{AllocStats, CountingAlloc, Spread, start_counting, stop_counting};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

// ---------------------------------------------------------------------------------------------
// Cells
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Imp {
    Ours,
    AsyncBroadcast,
    Tokio,
}

const IMPS: [Imp; 3] = [Imp::Ours, Imp::AsyncBroadcast, Imp::Tokio];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Burst,
    Concurrent,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Burst => "burst",
            Scenario::Concurrent => "concurrent",
        }
    }
}

/// The three lanes of one cell (one K). A lane is `None` only while a timed task owns it.
#[derive(Debug)]
struct Lanes {
    ours: Option<Lane<Ours>>,
    async_broadcast: Option<Lane<AsyncBroadcast>>,
    tokio: Option<Lane<TokioBroadcast>>,
}

impl Lanes {
    fn open(subscribers: usize, capacity: usize) -> Self {
        Lanes {
            ours: Some(Lane::open(subscribers, capacity)),
            async_broadcast: Some(Lane::open(subscribers, capacity)),
            tokio: Some(Lane::open(subscribers, capacity)),
        }
    }

    /// Times `rounds` rounds of `n` events of `imp` in `scenario`.
    fn time(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        imp: Imp,
        scenario: Scenario,
        rounds: u64,
        n: u64,
    ) -> Duration {
        match imp {
            Imp::Ours => time_lane(&mut self.ours, runtime, scenario, rounds, n),
            Imp::AsyncBroadcast => {
                time_lane(&mut self.async_broadcast, runtime, scenario, rounds, n)
            }
            Imp::Tokio => time_lane(&mut self.tokio, runtime, scenario, rounds, n),
        }
    }
}

fn time_lane<C: Channel>(
    slot: &mut Option<Lane<C>>,
    runtime: &tokio::runtime::Runtime,
    scenario: Scenario,
    rounds: u64,
    n: u64,
) -> Duration {
    match scenario {
        Scenario::Burst => slot.as_mut().expect("the lane is here").burst(rounds, n),
        Scenario::Concurrent => {
            // The publisher is a spawned task, as a job or a request handler would be.
            let lane = slot.take().expect("the lane is here");
            let (lane, elapsed) = runtime
                .block_on(runtime.spawn(lane.concurrent(rounds, n)))
                .expect("the timed task does not panic");
            *slot = Some(lane);
            elapsed
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Config {
    quick: bool,
    samples: usize,
    /// Events published per round.
    events: u64,
    /// Quick mode: rounds per sample.
    quick_rounds: u64,
    /// Full mode: wall time aimed at for one sample of the slowest implementation.
    sample_target: Duration,
    /// Full mode: minimum wall time of the warm-up / calibration of each implementation.
    warmup_target: Duration,
}

impl Config {
    fn from_env() -> Self {
        let quick = common::quick_mode();
        Config {
            quick,
            samples: 5,
            events: if quick { 128 } else { 1024 },
            quick_rounds: 4,
            sample_target: Duration::from_millis(200),
            warmup_target: Duration::from_millis(50),
        }
    }

    /// Capacity of the bounded channels: one round's events, so that nothing is overwritten.
    fn capacity(&self) -> usize {
        self.events as usize
    }
}

/// Warms the three implementations up and returns the rounds per sample.
fn calibrate(
    lanes: &mut Lanes,
    runtime: &tokio::runtime::Runtime,
    scenario: Scenario,
    config: &Config,
) -> u64 {
    if config.quick {
        for imp in IMPS {
            lanes.time(runtime, imp, scenario, 1, config.events);
        }
        return config.quick_rounds;
    }
    let mut slowest_ns_per_round = 1;
    for imp in IMPS {
        let mut rounds = 1;
        loop {
            let elapsed = lanes.time(runtime, imp, scenario, rounds, config.events);
            if elapsed >= config.warmup_target {
                slowest_ns_per_round =
                    slowest_ns_per_round.max(elapsed.as_nanos() / u128::from(rounds));
                break;
            }
            rounds *= 2;
        }
    }
    let rounds = (config.sample_target.as_nanos() / slowest_ns_per_round).clamp(2, 1_000_000);
    u64::try_from(rounds).unwrap_or(1_000_000)
}

/// One row of the table: ns per delivery for each implementation.
#[derive(Debug)]
struct Row {
    scenario: Scenario,
    subscribers: usize,
    /// In `IMPS` order.
    ns: [Spread; 3],
    deliveries_per_sample: u64,
}

fn measure(
    runtime: &tokio::runtime::Runtime,
    scenario: Scenario,
    subscribers: usize,
    config: &Config,
) -> Row {
    let mut lanes = Lanes::open(subscribers, config.capacity());
    let rounds = calibrate(&mut lanes, runtime, scenario, config);
    let deliveries = rounds * config.events * subscribers as u64;
    let mut ns: [Vec<f64>; 3] = Default::default();
    for sample in 0..config.samples {
        // Rotate the order so that no implementation always runs first (or last).
        for k in 0..IMPS.len() {
            let which = (sample + k) % IMPS.len();
            let elapsed = lanes.time(runtime, IMPS[which], scenario, rounds, config.events);
            ns[which].push(elapsed.as_nanos() as f64 / deliveries as f64);
        }
    }
    let [a, b, c] = &mut ns;
    Row {
        scenario,
        subscribers,
        ns: [Spread::of(a), Spread::of(b), Spread::of(c)],
        deliveries_per_sample: deliveries,
    }
}

// ---------------------------------------------------------------------------------------------
// Allocations
// ---------------------------------------------------------------------------------------------

/// Allocations of the burst scenario, publish and drain phases counted apart.
#[derive(Debug)]
struct BurstAllocs {
    subscribers: usize,
    /// Per published event, in the publish phase (the event's own allocation included).
    calls_per_event: f64,
    bytes_per_event: f64,
    /// Per delivery, in the drain phase.
    calls_per_delivery: f64,
    bytes_per_delivery: f64,
}

/// Counts the burst scenario's allocations on this thread (no runtime thread is busy).
fn burst_allocs<C: Channel>(subscribers: usize, config: &Config) -> BurstAllocs {
    let n = config.events;
    let (warmup, rounds) = if config.quick { (2, 4) } else { (4, 50) };
    let mut lane = Lane::<C>::open(subscribers, config.capacity());
    // The warm-up grows the queue and the subscriptions' buffers to their final capacity.
    lane.burst(warmup, n);
    let (mut publish, mut drain) = (AllocStats::default(), AllocStats::default());
    for _ in 0..rounds {
        let before = start_counting();
        lane.burst_publish(n);
        publish.add(stop_counting(before));
        let before = start_counting();
        lane.burst_drain(n);
        drain.add(stop_counting(before));
    }
    let events = (rounds * n) as f64;
    let deliveries = events * subscribers as f64;
    BurstAllocs {
        subscribers,
        calls_per_event: publish.calls as f64 / events,
        bytes_per_event: publish.bytes as f64 / events,
        calls_per_delivery: drain.calls as f64 / deliveries,
        bytes_per_delivery: drain.bytes as f64 / deliveries,
    }
}

/// Allocations of the concurrent scenario: whole rounds, runtime included.
#[derive(Debug)]
struct ConcurrentAllocs {
    subscribers: usize,
    /// Per round, minus the N event allocations.
    calls_per_round_beyond_events: f64,
}

fn concurrent_allocs<C: Channel>(
    runtime: &tokio::runtime::Runtime,
    subscribers: usize,
    config: &Config,
) -> ConcurrentAllocs {
    let n = config.events;
    let (warmup, rounds) = if config.quick { (2, 4) } else { (4, 50) };
    let mut slot = Some(Lane::<C>::open(subscribers, config.capacity()));
    time_lane(&mut slot, runtime, Scenario::Concurrent, warmup, n);
    let before = start_counting();
    time_lane(&mut slot, runtime, Scenario::Concurrent, rounds, n);
    let counted = stop_counting(before);
    ConcurrentAllocs {
        subscribers,
        calls_per_round_beyond_events: counted.calls.saturating_sub(rounds * n) as f64
            / rounds as f64,
    }
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

const SUBSCRIBERS: [usize; 3] = [1, 8, 64];

const NAMES: [&str; 3] = ["ours", "async-broadcast", "tokio broadcast"];

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
        "# bus benchmark: {mode}, {} events per round, {} samples per cell, median\n",
        config.events, config.samples
    );

    // Burst allocations first, on this thread, while no runtime thread exists.
    let burst_allocs: Vec<[BurstAllocs; 3]> = SUBSCRIBERS
        .iter()
        .map(|&k| {
            [
                burst_allocs::<Ours>(k, &config),
                burst_allocs::<AsyncBroadcast>(k, &config),
                burst_allocs::<TokioBroadcast>(k, &config),
            ]
        })
        .collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio multi-thread runtime");

    let mut rows = Vec::new();
    for scenario in [Scenario::Burst, Scenario::Concurrent] {
        for k in SUBSCRIBERS {
            rows.push(measure(&runtime, scenario, k, &config));
        }
    }

    let concurrent_allocs: Vec<[ConcurrentAllocs; 3]> = SUBSCRIBERS
        .iter()
        .map(|&k| {
            [
                concurrent_allocs::<Ours>(&runtime, k, &config),
                concurrent_allocs::<AsyncBroadcast>(&runtime, k, &config),
                concurrent_allocs::<TokioBroadcast>(&runtime, k, &config),
            ]
        })
        .collect();

    println!(
        "| scenario | K | ours ns/delivery | async-broadcast ns/delivery | tokio broadcast ns/delivery | ours / async-broadcast | ours / tokio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        let [ours, ab, tokio] = row.ns.map(|s| s.median);
        println!(
            "| {} | {} | {ours:.1} | {ab:.1} | {tokio:.1} | {:.2}x | {:.2}x |",
            row.scenario.name(),
            row.subscribers,
            ours / ab,
            ours / tokio,
        );
    }
    println!("\nsample ranges (min-max ns/delivery) and deliveries per sample:");
    for row in &rows {
        let ranges: Vec<String> = NAMES
            .iter()
            .zip(&row.ns)
            .map(|(name, s)| format!("{name} {:.1}-{:.1}", s.min, s.max))
            .collect();
        println!(
            "- {}, K = {}: {}, {} deliveries",
            row.scenario.name(),
            row.subscribers,
            ranges.join(", "),
            row.deliveries_per_sample
        );
    }

    println!(
        "\nallocations, burst (after warm-up; publish phase per published event, the event's own allocation included; drain phase per delivery):\n"
    );
    println!(
        "| K | implementation | allocs / event | bytes / event | allocs / delivery | bytes / delivery |"
    );
    println!("|---:|---|---:|---:|---:|---:|");
    for cell in &burst_allocs {
        for (name, a) in NAMES.iter().zip(cell) {
            println!(
                "| {} | {name} | {:.2} | {:.0} | {:.4} | {:.2} |",
                a.subscribers,
                a.calls_per_event,
                a.bytes_per_event,
                a.calls_per_delivery,
                a.bytes_per_delivery
            );
        }
    }

    println!(
        "\nallocations, concurrent (after warm-up; per round of {n} events, beyond the {n} event allocations; a round also spawns K subscriber tasks and collects their handles in a Vec, K + 1 allocations, and subscribers that park may register listeners):\n",
        n = config.events
    );
    println!(
        "| K | ours / round | async-broadcast / round | tokio broadcast / round | ours, beyond the K + 1, / delivery |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for cell in &concurrent_allocs {
        let k = cell[0].subscribers;
        println!(
            "| {k} | {:.1} | {:.1} | {:.1} | {:.3} |",
            cell[0].calls_per_round_beyond_events,
            cell[1].calls_per_round_beyond_events,
            cell[2].calls_per_round_beyond_events,
            (cell[0].calls_per_round_beyond_events - (k + 1) as f64).max(0.0)
                / (config.events as f64 * k as f64)
        );
    }
    println!("\ntotal time: {:.1} s", started.elapsed().as_secs_f64());
}
