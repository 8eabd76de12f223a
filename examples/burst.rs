//! Bursts are delivered in full, loops are cut: the loop guard works by causal depth, on tokio.
//!
//! 1. A burst: the `users` orchestrator dispatches 200 `CreateUser` jobs at once; each success
//!    publishes a `UserCreated` domain event. `users` counts its own (active) ones, a passive
//!    `dashboard` on the same bus counts them all. Nothing is dropped: every event of the
//!    burst has causal depth 0, and the default `LoopGuard` cuts only chains deeper than 50.
//! 2. Two loops, each guarded by `LoopGuard::new().max_depth(10)`: `echo` re-dispatches a job on
//!    each of its own successes (a self-loop), and `ping` and `pong` answer each other's
//!    `Ball` (a two-orchestrator loop). Each reaction is one causal step deeper, so both stop
//!    after a bounded number of rounds; every event cut is counted (`dropped_events()`),
//!    reported to an observer with its causal chain, and given to the orchestrator
//!    (`on_dropped`), and the process stays healthy: a plain dispatch afterwards succeeds.
//!
//! Run it with `cargo run --example burst`. Nothing sleeps to synchronize: `main` waits with
//! `handled(id)` for its jobs and with `states().wait_for(..)` for the rest.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_core::{
    Dispatch, Dispatcher, DroppedEvent, Event, Executor, Job, JobContext, JobId, JobLifecycle,
    LoopGuard, Observer, Orchestrator, OrchestratorContext, OrchestratorHandle, OrchestratorStatus,
    Origin, SignalBus,
};
use orchestrator_tokio::TokioRuntime;

/// How many users the burst creates.
const USERS: u32 = 200;
/// The depth limit of the looping orchestrators' guards.
const MAX_DEPTH: u32 = 10;
/// A generous deadline that only a bug can reach (a safety net, not a synchronization point).
const DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Part 1: the burst.
// ---------------------------------------------------------------------------------------------

/// Job: create user number `n`.
struct CreateUser {
    n: u32,
}

/// A created user.
#[derive(Debug, Clone)]
struct User {
    id: u32,
}

/// Domain event: a user was created (the output event of `CreateUser`).
#[derive(Debug, Clone)]
struct UserCreated {
    id: u32,
}

impl Job for CreateUser {
    type Output = User;
    fn output_event(&self, user: &User) -> Option<impl Send + Sync + 'static> {
        Some(UserCreated { id: user.id })
    }
}

/// A simulated user directory: every creation succeeds after a millisecond.
struct Directory;

impl Executor<CreateUser> for Directory {
    type Error = std::convert::Infallible;

    async fn execute(&self, job: &CreateUser, cx: JobContext) -> Result<User, Self::Error> {
        cx.sleep(Duration::from_millis(1)).await;
        Ok(User { id: 1000 + job.n })
    }
}

/// What `users` knows: how many users its jobs created, and the highest id.
#[derive(Debug, Clone, Copy, Default)]
struct Created {
    count: u32,
    highest_id: u32,
}

/// Dispatches the creations and counts the users its own jobs created.
struct Users;

impl Orchestrator for Users {
    type State = Created;

    fn on_event(
        &mut self,
        event: &Event,
        origin: Origin,
        cx: &mut OrchestratorContext<'_, Created>,
    ) {
        if let Some(UserCreated { id }) = event.downcast_ref() {
            if origin.is_active() {
                cx.update(|s| {
                    s.count += 1;
                    s.highest_id = s.highest_id.max(*id);
                });
            }
        }
    }
}

/// Never dispatches: counts every `UserCreated` that goes by (all passive).
struct Dashboard;

impl Orchestrator for Dashboard {
    type State = u32;

    fn on_event(&mut self, event: &Event, origin: Origin, cx: &mut OrchestratorContext<'_, u32>) {
        if event.is::<UserCreated>() {
            debug_assert!(!origin.is_active(), "the dashboard dispatches nothing");
            cx.update(|n| *n += 1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Part 2: two loops.
// ---------------------------------------------------------------------------------------------

/// Job: one tick of the self-loop.
struct Tick {
    round: u32,
}

/// Domain event: a tick succeeded (the output event of `Tick`).
struct Ticked {
    round: u32,
}

impl Job for Tick {
    type Output = u32;
    fn output_event(&self, round: &u32) -> Option<impl Send + Sync + 'static> {
        Some(Ticked { round: *round })
    }
}

/// Runs ticks, counting how many ran.
struct Clock {
    ran: Arc<AtomicU32>,
}

impl Executor<Tick> for Clock {
    type Error = std::convert::Infallible;

    async fn execute(&self, job: &Tick, _cx: JobContext) -> Result<u32, Self::Error> {
        self.ran.fetch_add(1, Ordering::Relaxed);
        Ok(job.round)
    }
}

/// The state of a looping orchestrator: how often it reacted, and whether its guard has cut
/// the loop (and the job it cut, for a loop through jobs).
#[derive(Debug, Clone, Default)]
struct LoopState {
    reactions: u32,
    cut: bool,
    cut_job: Option<JobId>,
}

/// A self-loop: every success of its own `Tick` dispatches the next one.
struct Echo;

impl Orchestrator for Echo {
    type State = LoopState;

    fn on_event(
        &mut self,
        event: &Event,
        origin: Origin,
        cx: &mut OrchestratorContext<'_, LoopState>,
    ) {
        if let Some(Ticked { round }) = event.downcast_ref() {
            if origin.is_active() {
                cx.update(|s| s.reactions += 1);
                // One causal step deeper than the `Ticked` being handled.
                drop(cx.dispatch(Tick { round: round + 1 }));
            }
        }
    }

    fn on_dropped(
        &mut self,
        dropped: &DroppedEvent<'_>,
        cx: &mut OrchestratorContext<'_, LoopState>,
    ) {
        // The cut job's terminal event is the last event of the loop.
        let terminal = dropped
            .event()
            .downcast_ref::<JobLifecycle>()
            .is_some_and(JobLifecycle::is_terminal);
        if terminal {
            let job = dropped.event().correlation_id();
            cx.update(|s| {
                s.cut = true;
                s.cut_job = job;
            });
        }
    }
}

/// The two players of the rally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Ping,
    Pong,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Ping => Side::Pong,
            Side::Pong => Side::Ping,
        }
    }
}

/// The event the two players send each other.
struct Ball {
    to: Side,
}

/// One of a pair that answers each other: it returns every ball sent to it.
struct Player {
    me: Side,
}

impl Orchestrator for Player {
    type State = LoopState;

    fn on_event(
        &mut self,
        event: &Event,
        _origin: Origin,
        cx: &mut OrchestratorContext<'_, LoopState>,
    ) {
        if let Some(ball) = event.downcast_ref::<Ball>() {
            if ball.to == self.me {
                cx.update(|s| s.reactions += 1);
                // Published one causal step deeper than the ball being handled.
                let to = self.me.other();
                cx.emit(Ball { to }).expect("the rally's bus is open");
            }
        }
    }

    fn on_dropped(
        &mut self,
        dropped: &DroppedEvent<'_>,
        cx: &mut OrchestratorContext<'_, LoopState>,
    ) {
        if dropped.event().is::<Ball>() {
            cx.update(|s| s.cut = true);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The observer: every drop, with its causal chain.
// ---------------------------------------------------------------------------------------------

/// One event a loop guard dropped, as the observer saw it.
#[derive(Debug, Clone)]
struct DropRecord {
    orchestrator: &'static str,
    event: String,
    depth: u32,
    chain: usize,
    last_step: String,
    reason: String,
}

/// Records every dropped event.
#[derive(Clone, Default)]
struct DropLog {
    drops: Arc<Mutex<Vec<DropRecord>>>,
}

impl DropLog {
    fn records(&self) -> Vec<DropRecord> {
        self.drops
            .lock()
            .expect("the log is never poisoned")
            .clone()
    }
}

impl Observer for DropLog {
    fn on_event_dropped(&self, dropped: &DroppedEvent<'_>) {
        let event = dropped.event();
        let last_step = event.cause().map_or("none".to_owned(), |step| {
            format!(
                "`{}` handled {} at depth {}",
                step.orchestrator(),
                short(step.event_type()),
                step.depth()
            )
        });
        let record = DropRecord {
            orchestrator: dropped.orchestrator(),
            event: describe(event),
            depth: event.causal_depth(),
            chain: event.causal_chain().count(),
            last_step,
            reason: dropped.reason().to_string(),
        };
        self.drops
            .lock()
            .expect("the log is never poisoned")
            .push(record);
    }
}

/// A short description of an event: its job and lifecycle step, or its payload type.
fn describe(event: &Event) -> String {
    let Some(lifecycle) = event.downcast_ref::<JobLifecycle>() else {
        return short(event.payload_type_name()).to_owned();
    };
    let step = match lifecycle {
        JobLifecycle::Started => "Started",
        JobLifecycle::Succeeded { .. } => "Succeeded",
        other if other.is_terminal() => "ended",
        _ => "lifecycle event",
    };
    let job = event.job_type().map_or("job", |t| short(t.name()));
    format!("{job} {step}")
}

fn short(type_name: &str) -> &str {
    type_name.rsplit("::").next().unwrap_or(type_name)
}

/// Waits until `orchestrator`'s state satisfies `done`, and returns that state.
async fn wait_for<S: Clone + Send + Sync + 'static>(
    orchestrator: &OrchestratorHandle<S>,
    what: &str,
    done: impl FnMut(&S) -> bool,
) -> S {
    let mut states = orchestrator.states();
    match tokio::time::timeout(DEADLINE, states.wait_for(done)).await {
        Ok(Ok(state)) => state,
        Ok(Err(_)) => panic!("`{}` ended before {what}", orchestrator.name()),
        Err(_) => panic!("`{}`: no {what} within {DEADLINE:?}", orchestrator.name()),
    }
}

#[tokio::main]
async fn main() {
    let log = DropLog::default();
    let dispatcher = Dispatcher::builder(TokioRuntime::default())
        .observer(log.clone())
        .build();
    let ticks = Arc::new(AtomicU32::new(0));
    dispatcher
        .register(Directory)
        .register(Clock { ran: ticks.clone() });

    // -- 1. The burst ----------------------------------------------------------------------
    let users = Users
        .builder(Created::default(), &dispatcher)
        .name("users")
        .start()
        .expect("tokio accepts the event loop");
    let dashboard = Dashboard
        .builder(0, &dispatcher)
        .name("dashboard")
        .start()
        .expect("tokio accepts the event loop");

    println!("1. a burst: `users` dispatches {USERS} CreateUser jobs at once");
    let jobs: Vec<_> = (1..=USERS)
        .map(|n| users.dispatch(CreateUser { n }))
        .collect();
    let mut highest_id = 0;
    for job in jobs {
        let id = job.id();
        let user = job.await.expect("creating a user succeeds").value;
        highest_id = highest_id.max(user.id);
        // Once `users` has handled the job's terminal event, it has counted its UserCreated.
        tokio::time::timeout(DEADLINE, users.handled(id))
            .await
            .expect("users handles its jobs within the deadline")
            .expect("users is running");
    }
    // The dashboard tracks no job: let it catch up with the bus.
    let on_dashboard = wait_for(&dashboard, "200 users", |n| *n == USERS).await;
    let created = users.state();
    let dropped = users.dropped_events() + dashboard.dropped_events();
    println!(
        "   every job succeeded and was handled; highest user id: {}",
        created.highest_id
    );
    println!(
        "   users: {}, dashboard: {on_dashboard}, dropped: {dropped}",
        created.count
    );
    assert_eq!(created.count, USERS);
    assert_eq!(created.highest_id, highest_id);
    assert_eq!(on_dashboard, USERS);
    assert_eq!(dropped, 0, "a burst is never dropped");

    // -- 2a. A self-loop ---------------------------------------------------------------------
    let guard = || LoopGuard::new().max_depth(MAX_DEPTH);
    println!("\n2. loops, each orchestrator guarded with a max depth of {MAX_DEPTH}");
    println!("   a. self-loop: `echo` dispatches a new Tick on each of its own successes");
    let echo = Echo
        .builder(LoopState::default(), &dispatcher)
        .bus(SignalBus::new())
        .guard(guard())
        .name("echo")
        .start()
        .expect("tokio accepts the event loop");
    drop(echo.dispatch(Tick { round: 1 }));
    let state = wait_for(&echo, "cut of the self-loop", |s| s.cut).await;
    // The guard kept the cut job's terminal event from the handler, but it was handled: the
    // job is no longer tracked once `handled` returns.
    let cut_job = state.cut_job.expect("a lifecycle event names its job");
    tokio::time::timeout(DEADLINE, echo.handled(cut_job))
        .await
        .expect("echo handles the cut job within the deadline")
        .expect("echo is running");
    let ran = ticks.load(Ordering::Relaxed);
    println!(
        "      stopped at depth {}: {ran} Tick jobs ran (depths 0 to {}); `echo` reacted to \
         the {} of depths 0 to {MAX_DEPTH}, and the {} events of the one at depth {} were \
         dropped and counted",
        MAX_DEPTH + 1,
        MAX_DEPTH + 1,
        state.reactions,
        echo.dropped_events(),
        MAX_DEPTH + 1,
    );
    assert_eq!(
        state.reactions,
        MAX_DEPTH + 1,
        "depths 0 to {MAX_DEPTH} are handled"
    );
    assert_eq!(
        ran,
        MAX_DEPTH + 2,
        "the job at depth {} still ran",
        MAX_DEPTH + 1
    );
    assert!(echo.dropped_events() > 0);
    // Every job of the loop has ended; the orchestrator forgets each once it has handled its
    // terminal event. (About one run in 20 found one earlier job of the loop still tracked
    // right when `handled(cut_job)` returned: the check waits, within the deadline, for the
    // orchestrator to get there, and fails if it never does.)
    let since = std::time::Instant::now();
    while echo.running_jobs() != 0 && since.elapsed() < DEADLINE {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(echo.running_jobs(), 0, "a cut job is no longer tracked");

    // -- 2b. A two-orchestrator loop ---------------------------------------------------------
    println!("   b. two-orchestrator loop: `ping` and `pong` return each other's Ball");
    let rally = SignalBus::new();
    let start_player = |me: Side, name: &'static str| {
        Player { me }
            .builder(LoopState::default(), &dispatcher)
            .bus(rally.clone())
            .guard(guard())
            .name(name)
            .start()
            .expect("tokio accepts the event loop")
    };
    let ping = start_player(Side::Ping, "ping");
    let pong = start_player(Side::Pong, "pong");
    rally
        .emit(Ball { to: Side::Ping })
        .expect("the rally's bus is open");
    let ping_state = wait_for(&ping, "cut of the rally", |s| s.cut).await;
    let pong_state = wait_for(&pong, "cut of the rally", |s| s.cut).await;
    let hits = ping_state.reactions + pong_state.reactions;
    println!(
        "      stopped after {hits} returns (ping {}, pong {}); dropped: ping {}, pong {}",
        ping_state.reactions,
        pong_state.reactions,
        ping.dropped_events(),
        pong.dropped_events()
    );
    assert_eq!(hits, MAX_DEPTH + 1, "depths 0 to {MAX_DEPTH} are handled");
    assert!(ping.dropped_events() > 0 && pong.dropped_events() > 0);

    // -- What the observer saw ---------------------------------------------------------------
    // By orchestrator (stable: each one's drops stay in the order it made them), as `ping` and
    // `pong` drop the last ball concurrently.
    let mut drops = log.records();
    drops.sort_by_key(|d| d.orchestrator);
    println!("\n3. the observer saw {} dropped events:", drops.len());
    for d in &drops {
        println!(
            "   `{}` dropped {} at depth {}: causal chain of {} reactions, last: {} ({})",
            d.orchestrator, d.event, d.depth, d.chain, d.last_step, d.reason
        );
    }
    let counted = echo.dropped_events() + ping.dropped_events() + pong.dropped_events();
    assert_eq!(
        u64::try_from(drops.len()).ok(),
        Some(counted),
        "every drop is reported"
    );
    assert!(
        drops
            .iter()
            .all(|d| d.depth == MAX_DEPTH + 1 && d.chain == d.depth as usize),
        "each dropped event is one step past the limit, one chain step per reaction"
    );

    // -- Still healthy -----------------------------------------------------------------------
    let tick = dispatcher
        .dispatch(Tick { round: 0 })
        .await
        .expect("a plain dispatch succeeds after the loops");
    let all_running = [
        users.status(),
        dashboard.status(),
        echo.status(),
        ping.status(),
        pong.status(),
    ]
    .iter()
    .all(|s| *s == OrchestratorStatus::Running);
    println!(
        "\n4. still healthy: a plain Tick dispatch succeeded (round {}), {} jobs in flight, \
         every orchestrator {}",
        tick.value,
        dispatcher.in_flight(),
        if all_running {
            "running"
        } else {
            "NOT running"
        }
    );
    assert!(all_running);
    assert_eq!(dispatcher.in_flight(), 0);

    users.dispose();
    dashboard.dispose();
    for orchestrator in [&echo, &ping, &pong] {
        orchestrator.dispose();
    }
}
