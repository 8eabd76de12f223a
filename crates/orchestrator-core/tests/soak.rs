//! A seeded, randomized soak on the virtual runtime: successes, errors, panics, total and
//! per-attempt timeouts, cancellation before the start, mid-run, during backoff and on shared
//! tokens, retries with jitter, cache hits and revalidation, dedup joins, and a share of the
//! jobs through an orchestrator.
//!
//! It checks that every handle resolves (a hang is a `Stalled` panic of the virtual runtime),
//! that every job publishes exactly one terminal lifecycle event and nothing after it, that a
//! dispatch whose token was cancelled beforehand never succeeds (cache hit included), that no
//! job stays in flight or tracked, per batch and at the end.
//!
//! `SOAK_JOBS` sets the number of jobs (default 20,000) and `SOAK_SEED` the seed; a violation
//! prints the seed that reproduces it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use orchestrator_core::testing::VirtualRuntime;
use orchestrator_core::{
    CachePolicy, CancellationToken, Dispatch, Dispatcher, Event, Executor, Job, JobContext,
    JobError, JobId, JobLifecycle, JobResult, Orchestrator, OrchestratorContext, Origin,
    RetryPolicy,
};

#[derive(Debug)]
struct Flaky;
impl std::fmt::Display for Flaky {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("flaky")
    }
}
impl std::error::Error for Flaky {}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Ok,
    Err,
    Panic,
}

#[derive(Clone)]
struct Work {
    mode: Mode,
    delay: Duration,
}
impl Job for Work {
    type Output = u64;
}
struct WorkExec;
impl Executor<Work> for WorkExec {
    type Error = Flaky;
    async fn execute(&self, job: &Work, cx: JobContext) -> Result<u64, Flaky> {
        if !job.delay.is_zero() {
            cx.sleep(job.delay).await;
        }
        match job.mode {
            Mode::Ok => Ok(u64::from(cx.attempt())),
            Mode::Err => Err(Flaky),
            Mode::Panic => panic!("soak panic"),
        }
    }
}

struct Quiet;
impl Orchestrator for Quiet {
    type State = u64;
    fn on_event(&mut self, event: &Event, origin: Origin, cx: &mut OrchestratorContext<'_, u64>) {
        if origin.is_active() && event.is::<JobLifecycle>() {
            cx.update(|n| *n += 1);
        }
    }
}

/// xorshift64*: small, seedable, good enough to pick cases.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What a dispatch must end as.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Any,
    Success,
    Cancelled,
    TimedOut,
    FailedOrRetried,
}

fn check(expect: Expect, outcome: &JobResult<u64>) -> bool {
    match expect {
        Expect::Any => true,
        Expect::Success => outcome.is_ok(),
        Expect::Cancelled => matches!(outcome, Err(JobError::Cancelled { .. })),
        Expect::TimedOut => matches!(outcome, Err(JobError::TimedOut { .. })),
        Expect::FailedOrRetried => !matches!(outcome, Err(JobError::Rejected(_))),
    }
}

#[test]
fn randomized_soak_every_job_ends_exactly_once() {
    let jobs: u64 = std::env::var("SOAK_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    static SEEDS: AtomicU64 = AtomicU64::new(0x5EED);
    let seed: u64 = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| SEEDS.load(Ordering::Relaxed));
    // The executor's own panics are expected (and caught as failures): keep them quiet.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&"soak panic") {
            default_hook(info);
        }
    }));
    let result = std::panic::catch_unwind(|| soak(jobs, seed));
    if let Err(panic) = result {
        eprintln!("soak violation; reproduce with SOAK_SEED={seed} SOAK_JOBS={jobs}");
        std::panic::resume_unwind(panic);
    }
}

fn soak(jobs: u64, seed: u64) {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::builder(rt.clone())
        .lifecycle_events(true)
        .build();
    dispatcher.register(WorkExec);
    let orchestrator = Quiet.builder(0, &dispatcher).start().unwrap();
    let mut events = dispatcher.bus().subscribe();
    let mut rng = Rng(seed | 1);
    let ms = Duration::from_millis;
    let jitter = RetryPolicy::builder()
        .max_retries(3)
        .base_delay(ms(2))
        .jitter(0.5)
        .build()
        .unwrap();
    let mut terminals: HashMap<JobId, u32> = HashMap::new();
    let mut ended: HashMap<JobId, bool> = HashMap::new();
    let mut cancelled_cache_successes = 0u64;
    let mut dispatched = 0u64;
    let batch = 1_000u64;
    while dispatched < jobs {
        let n = batch.min(jobs - dispatched);
        let shared = CancellationToken::new();
        let mut handles = Vec::with_capacity(n as usize);
        let mut cancel_later = Vec::new();
        for _ in 0..n {
            let mode = match rng.below(10) {
                0 => Mode::Err,
                1 => Mode::Panic,
                _ => Mode::Ok,
            };
            let delay = ms(rng.below(6));
            let work = Work { mode, delay };
            let via_orchestrator = rng.below(4) == 0;
            let builder = if via_orchestrator {
                orchestrator.job(work.clone())
            } else {
                dispatcher.job(work.clone())
            };
            let (builder, expect) = match rng.below(10) {
                0 => {
                    let token = CancellationToken::new();
                    token.cancel();
                    let key = format!("k{}", rng.below(8));
                    let b = builder.cancellation(token);
                    let b = if rng.below(2) == 0 {
                        b.cache(CachePolicy::new(key))
                    } else {
                        b
                    };
                    (b, Expect::Cancelled)
                }
                1 => (builder.cancellation(shared.clone()), Expect::Any),
                2 => (builder.timeout(ms(1)).retry(jitter.clone()), Expect::Any),
                3 => (
                    builder.attempt_timeout(ms(2)).retry(jitter.clone()),
                    Expect::FailedOrRetried,
                ),
                4 => {
                    let key = format!("k{}", rng.below(8));
                    let policy = CachePolicy::new(key).with_ttl(ms(50));
                    let policy = if rng.below(3) == 0 {
                        policy.revalidate()
                    } else {
                        policy
                    };
                    (builder.cache(policy), Expect::Any)
                }
                5 => (builder.dedup(format!("d{}", rng.below(4))), Expect::Any),
                6 => {
                    cancel_later.push(handles.len());
                    (builder.retry(RetryPolicy::fixed(5, ms(3))), Expect::Any)
                }
                7 => (builder.timeout(Duration::ZERO), Expect::TimedOut),
                _ => (
                    builder.retry(jitter.clone()),
                    if mode == Mode::Ok {
                        Expect::Success
                    } else {
                        Expect::FailedOrRetried
                    },
                ),
            };
            handles.push((builder.dispatch(), expect));
        }
        dispatched += n;
        // Let some run, then cancel: mid-run, during backoff, or before the start.
        rt.advance(ms(rng.below(4)));
        shared.cancel_with("batch cancelled");
        for &i in &cancel_later {
            handles[i].0.cancel();
        }
        for (handle, expect) in handles {
            let id = handle.id();
            let outcome = rt.block_on(handle);
            assert!(
                check(expect, &outcome),
                "job {id:?}: expected {expect:?}, got {outcome:?}"
            );
            if expect == Expect::Cancelled && outcome.is_ok() {
                cancelled_cache_successes += 1;
            }
            ended.entry(id).or_insert(false);
        }
        rt.run_until_stalled();
        while let Some(event) = events.try_next() {
            let Some(id) = event.correlation_id() else {
                continue;
            };
            let terminal = event
                .downcast_ref::<JobLifecycle>()
                .is_some_and(JobLifecycle::is_terminal);
            let count = terminals.entry(id).or_insert(0);
            assert!(
                *count == 0,
                "job {id:?} published {event:?} after its terminal event"
            );
            if terminal {
                *count += 1;
            }
        }
        assert_eq!(dispatcher.in_flight(), 0, "jobs left in flight");
        assert_eq!(orchestrator.running_jobs(), 0, "jobs left tracked");
    }
    assert_eq!(cancelled_cache_successes, 0);
    for id in ended.keys() {
        assert_eq!(
            terminals.get(id).copied(),
            Some(1),
            "job {id:?}: one terminal event"
        );
    }
    eprintln!(
        "soak: {jobs} dispatches, {} jobs, seed {seed}, every one ended once",
        ended.len()
    );
}
