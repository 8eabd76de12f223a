//! Cache, placeholders, JobBuilder, dedup and the failure breaker, on the virtual runtime.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_core::runtime::{Instant, Timer};
use orchestrator_core::testing::VirtualRuntime;
use orchestrator_core::{
    BreakerConfig, BreakerState, CacheEntry, CacheError, CachePolicy, CacheProvider, DataSource,
    Dispatch, Dispatcher, Event, Executor, InMemoryCache, InvalidateCache, Job, JobContext,
    JobError, JobInfo, JobLifecycle, LoopGuard, Observer, Orchestrator, OrchestratorContext,
    Origin, Rejection, Subscription,
};

#[derive(Debug)]
struct Down;
impl std::fmt::Display for Down {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("service down")
    }
}
impl std::error::Error for Down {}

/// Loads a user's name; its output event is `UserLoaded`. The executor counts calls, sleeps
/// 10 ms, and fails while `failing` is set.
#[derive(Clone)]
struct LoadUser(u32);
impl Job for LoadUser {
    type Output = String;
    fn output_event(&self, name: &String) -> Option<impl Send + Sync + 'static> {
        Some(UserLoaded(name.clone()))
    }
}
#[derive(Debug, Clone, PartialEq)]
struct UserLoaded(String);
#[derive(Clone, Default)]
struct Users {
    calls: Arc<AtomicU32>,
    failing: Arc<std::sync::atomic::AtomicBool>,
    seen_metadata: Arc<Mutex<Option<String>>>,
}
impl Executor<LoadUser> for Users {
    type Error = Down;
    async fn execute(&self, job: &LoadUser, cx: JobContext) -> Result<String, Down> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        *self.seen_metadata.lock().unwrap() = cx.metadata("caller").map(String::from);
        cx.sleep(Duration::from_millis(10)).await;
        if self.failing.load(Ordering::SeqCst) {
            return Err(Down);
        }
        Ok(format!("user{}#v{n}", job.0))
    }
}

fn setup() -> (VirtualRuntime, Dispatcher<VirtualRuntime>, Users) {
    let rt = VirtualRuntime::new();
    let d = Dispatcher::builder(rt.clone())
        .lifecycle_events(true)
        .build();
    let users = Users::default();
    d.register(users.clone());
    (rt, d, users)
}

fn drain(sub: &mut Subscription) -> Vec<Event> {
    std::iter::from_fn(|| sub.try_next()).collect()
}

fn loaded(events: &[Event]) -> Vec<(String, Option<DataSource>)> {
    events
        .iter()
        .filter_map(|e| Some((e.downcast_ref::<UserLoaded>()?.0.clone(), e.data_source())))
        .collect()
}

#[test]
fn a_cache_hit_skips_the_executor_and_says_cached() {
    let (rt, d, users) = setup();
    let policy = || CachePolicy::new("user/1");
    let first = rt
        .block_on(d.job(LoadUser(1)).cache(policy()).dispatch())
        .unwrap();
    assert_eq!(
        (first.value.as_str(), first.data_source),
        ("user1#v1", DataSource::Fresh)
    );
    let mut sub = d.bus().subscribe();
    let second = rt
        .block_on(d.job(LoadUser(1)).cache(policy()).dispatch())
        .unwrap();
    assert_eq!(
        (second.value.as_str(), second.data_source),
        ("user1#v1", DataSource::Cached)
    );
    assert_eq!(
        users.calls.load(Ordering::SeqCst),
        1,
        "the executor ran once"
    );
    let events = drain(&mut sub);
    assert_eq!(
        loaded(&events),
        [("user1#v1".into(), Some(DataSource::Cached))]
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e.downcast_ref(), Some(JobLifecycle::CacheHit)))
    );
}

#[test]
fn stale_while_revalidate_resolves_with_the_cache_then_publishes_fresh_and_updates_it() {
    let (rt, d, users) = setup();
    rt.block_on(
        d.job(LoadUser(2))
            .cache(CachePolicy::new("user/2"))
            .dispatch(),
    )
    .unwrap();
    let mut sub = d.bus().subscribe();
    let mut handle = d
        .job(LoadUser(2))
        .cache(CachePolicy::new("user/2").revalidate())
        .dispatch();
    rt.run_until_stalled();
    let start = rt.now();
    let got = rt.block_on(&mut handle).unwrap();
    assert_eq!(
        (got.value.as_str(), got.data_source),
        ("user2#v1", DataSource::Cached)
    );
    assert_eq!(rt.now(), start, "resolved without waiting for the executor");
    rt.advance(Duration::from_millis(10));
    assert_eq!(
        users.calls.load(Ordering::SeqCst),
        2,
        "the executor ran to revalidate"
    );
    let events = drain(&mut sub);
    assert_eq!(
        loaded(&events),
        [
            ("user2#v1".into(), Some(DataSource::Cached)),
            ("user2#v2".into(), Some(DataSource::Fresh))
        ]
    );
    assert!(matches!(
        events.last().unwrap().downcast_ref(),
        Some(JobLifecycle::Succeeded {
            data_source: DataSource::Fresh
        })
    ));
    let third = rt
        .block_on(
            d.job(LoadUser(2))
                .cache(CachePolicy::new("user/2"))
                .dispatch(),
        )
        .unwrap();
    assert_eq!(
        third.value, "user2#v2",
        "the fresh value replaced the cached one"
    );
}

/// Records the origin of each UserLoaded it sees.
struct Profile(Arc<Mutex<Vec<(String, Origin)>>>);
impl Orchestrator for Profile {
    type State = ();
    fn on_event(&mut self, event: &Event, origin: Origin, _: &mut OrchestratorContext<'_, ()>) {
        if let Some(UserLoaded(name)) = event.downcast_ref() {
            self.0.lock().unwrap().push((name.clone(), origin));
        }
    }
}

#[test]
fn the_revalidated_fresh_result_still_arrives_as_active_for_the_dispatching_orchestrator() {
    let (rt, d, _) = setup();
    rt.block_on(
        d.job(LoadUser(3))
            .cache(CachePolicy::new("user/3"))
            .dispatch(),
    )
    .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let o = Profile(seen.clone())
        .builder((), &d)
        .guard(LoopGuard::unlimited())
        .start()
        .unwrap();
    let handle = o
        .job(LoadUser(3))
        .cache(CachePolicy::new("user/3").revalidate())
        .dispatch();
    let id = handle.id();
    assert_eq!(rt.block_on(handle).unwrap().data_source, DataSource::Cached);
    assert!(o.is_job_running(id), "still running: revalidating");
    rt.advance(Duration::from_millis(10));
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ("user3#v1".into(), Origin::Active),
            ("user3#v2".into(), Origin::Active)
        ]
    );
    assert!(!o.is_job_running(id));
}

#[test]
fn a_failed_job_never_evicts_or_overwrites_the_entry() {
    let (rt, d, users) = setup();
    rt.block_on(
        d.job(LoadUser(4))
            .cache(CachePolicy::new("user/4"))
            .dispatch(),
    )
    .unwrap();
    users.failing.store(true, Ordering::SeqCst);
    // Revalidation fails: the handle still got the cached value; the entry stays.
    let got = rt
        .block_on(
            d.job(LoadUser(4))
                .cache(CachePolicy::new("user/4").revalidate())
                .dispatch(),
        )
        .unwrap();
    assert_eq!(got.data_source, DataSource::Cached);
    rt.advance(Duration::from_millis(10));
    // A forced refresh fails: its handle fails; the entry stays.
    let err = rt
        .block_on(
            d.job(LoadUser(4))
                .cache(CachePolicy::new("user/4").force_refresh())
                .dispatch(),
        )
        .unwrap_err();
    assert!(err.is_failed());
    users.failing.store(false, Ordering::SeqCst);
    let again = rt
        .block_on(
            d.job(LoadUser(4))
                .cache(CachePolicy::new("user/4"))
                .dispatch(),
        )
        .unwrap();
    assert_eq!(
        (again.value.as_str(), again.data_source),
        ("user4#v1", DataSource::Cached)
    );
}

#[test]
fn ttl_expires_lazily_on_the_runtime_clock_and_force_refresh_stores() {
    let (rt, d, users) = setup();
    let policy = || CachePolicy::new("user/5").with_ttl(Duration::from_secs(60));
    rt.block_on(d.job(LoadUser(5)).cache(policy()).dispatch())
        .unwrap();
    rt.advance(Duration::from_secs(59));
    assert_eq!(
        rt.block_on(d.job(LoadUser(5)).cache(policy()).dispatch())
            .unwrap()
            .data_source,
        DataSource::Cached
    );
    rt.advance(Duration::from_secs(1));
    let expired = rt
        .block_on(d.job(LoadUser(5)).cache(policy()).dispatch())
        .unwrap();
    assert_eq!(
        (expired.value.as_str(), expired.data_source),
        ("user5#v2", DataSource::Fresh)
    );
    let forced = rt
        .block_on(
            d.job(LoadUser(5))
                .cache(policy().force_refresh())
                .dispatch(),
        )
        .unwrap();
    assert_eq!(forced.value, "user5#v3");
    let after = rt
        .block_on(d.job(LoadUser(5)).cache(policy()).dispatch())
        .unwrap();
    assert_eq!(after.value, "user5#v3", "the forced result was stored");
    assert_eq!(users.calls.load(Ordering::SeqCst), 3);
    // A zero TTL stores nothing.
    rt.block_on(
        d.job(LoadUser(5))
            .cache(CachePolicy::new("user/5z").with_ttl(Duration::ZERO))
            .dispatch(),
    )
    .unwrap();
    assert!(d.cache().get("user/5z", rt.now()).unwrap().is_none());
}

#[test]
fn the_memory_cache_evicts_lru_expires_in_bulk_and_counts() {
    let cache = InMemoryCache::new(2).unwrap();
    let t = |s| Instant::from_elapsed(Duration::from_secs(s));
    let entry = |v: u32, ttl: Option<u64>| CacheEntry {
        value: Arc::new(v),
        expires_at: ttl.map(t),
    };
    cache.put("a", entry(1, Some(5)), t(0)).unwrap();
    cache.put("b", entry(2, None), t(0)).unwrap();
    assert!(cache.get("a", t(1)).unwrap().is_some());
    cache.put("c", entry(3, Some(5)), t(1)).unwrap(); // evicts b (least recently used)
    assert!(cache.get("b", t(1)).unwrap().is_none());
    assert_eq!(cache.evict_expired(t(5)), 2, "a and c expired");
    let stats = cache.stats();
    assert_eq!(
        (
            stats.hits,
            stats.misses,
            stats.inserts,
            stats.evictions,
            stats.expirations,
            stats.len
        ),
        (1, 1, 3, 1, 2, 0)
    );
    assert_eq!(
        InMemoryCache::new(0).unwrap_err().to_string(),
        "cache capacity must be at least 1"
    );
}

#[test]
fn invalidation_by_key_prefix_and_predicate_from_code_and_as_a_job() {
    let (rt, d, users) = setup();
    for (id, key) in [(1, "user/1"), (2, "user/2"), (3, "team/3"), (4, "team/4")] {
        rt.block_on(d.job(LoadUser(id)).cache(CachePolicy::new(key)).dispatch())
            .unwrap();
    }
    assert!(d.cache().invalidate("user/1").unwrap());
    let removed = rt
        .block_on(d.dispatch(InvalidateCache::prefix("team/")))
        .unwrap()
        .value;
    assert_eq!(removed, 2);
    let removed = rt
        .block_on(d.dispatch(InvalidateCache::matching(|k| k.ends_with("/2"))))
        .unwrap()
        .value;
    assert_eq!(removed, 1);
    let calls = users.calls.load(Ordering::SeqCst);
    for (id, key) in [(1, "user/1"), (2, "user/2"), (3, "team/3")] {
        let got = rt
            .block_on(d.job(LoadUser(id)).cache(CachePolicy::new(key)).dispatch())
            .unwrap();
        assert_eq!(got.data_source, DataSource::Fresh, "{key} was invalidated");
    }
    assert_eq!(users.calls.load(Ordering::SeqCst), calls + 3);
}

/// A provider that fails every call.
struct Broken;
impl CacheProvider for Broken {
    fn get(&self, _: &str, _: Instant) -> Result<Option<CacheEntry>, CacheError> {
        Err(CacheError::new(Down))
    }
    fn put(&self, _: &str, _: CacheEntry, _: Instant) -> Result<(), CacheError> {
        Err(CacheError::new(Down))
    }
    fn invalidate(&self, _: &str) -> Result<bool, CacheError> {
        Err(CacheError::new(Down))
    }
    fn invalidate_prefix(&self, _: &str) -> Result<usize, CacheError> {
        Err(CacheError::new(Down))
    }
    fn invalidate_where(&self, _: &dyn Fn(&str) -> bool) -> Result<usize, CacheError> {
        Err(CacheError::new(Down))
    }
}

#[derive(Default)]
struct Log(Mutex<Vec<String>>);
struct Logger(Arc<Log>);
impl Observer for Logger {
    fn on_cache_error(&self, _: &JobInfo, key: &str, error: &CacheError) {
        // The provider's own error, whether or not the wrapper's message repeats it.
        let cause = std::error::Error::source(error).expect("the provider's error");
        self.0
            .0
            .lock()
            .unwrap()
            .push(format!("cache {key}: {cause}"));
    }
    fn on_breaker_transition(&self, job_type: &'static str, state: BreakerState) {
        assert!(job_type.ends_with("LoadUser"));
        self.0.0.lock().unwrap().push(format!("breaker {state:?}"));
    }
}

#[test]
fn provider_errors_are_reported_and_treated_as_a_miss_and_type_mismatches_are_misses() {
    let rt = VirtualRuntime::new();
    let log = Arc::new(Log::default());
    let d = Dispatcher::builder(rt.clone())
        .cache(Broken)
        .observer(Logger(log.clone()))
        .build();
    let users = Users::default();
    d.register(users.clone());
    let got = rt
        .block_on(
            d.job(LoadUser(6))
                .cache(CachePolicy::new("user/6"))
                .dispatch(),
        )
        .unwrap();
    assert_eq!(got.data_source, DataSource::Fresh);
    assert_eq!(
        *log.0.lock().unwrap(),
        ["cache user/6: service down", "cache user/6: service down"]
    );
    // A value of another type under the key: a miss, not a panic.
    let (rt, d, users) = setup();
    d.cache()
        .put(
            "user/7",
            CacheEntry {
                value: Arc::new(7u64),
                expires_at: None,
            },
            rt.now(),
        )
        .unwrap();
    let got = rt
        .block_on(
            d.job(LoadUser(7))
                .cache(CachePolicy::new("user/7"))
                .dispatch(),
        )
        .unwrap();
    assert_eq!(got.data_source, DataSource::Fresh);
    assert_eq!(users.calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_placeholder_is_published_as_optimistic_before_the_work_starts() {
    let (rt, d, _) = setup();
    let mut sub = d.bus().subscribe();
    let handle = d.job(LoadUser(8)).placeholder("loading…".into()).dispatch();
    let got = rt.block_on(handle).unwrap();
    assert_eq!(
        got.data_source,
        DataSource::Fresh,
        "the handle has the real outcome"
    );
    let events = drain(&mut sub);
    assert_eq!(
        loaded(&events),
        [
            ("loading…".into(), Some(DataSource::Optimistic)),
            ("user8#v1".into(), Some(DataSource::Fresh))
        ]
    );
    let order: Vec<&str> = events
        .iter()
        .map(|e| match e.downcast_ref::<JobLifecycle>() {
            Some(JobLifecycle::Placeholder) => "placeholder",
            Some(JobLifecycle::Started) => "started",
            Some(l) if l.is_terminal() => "terminal",
            Some(_) => "other",
            None => "event",
        })
        .collect();
    assert_eq!(
        order,
        ["placeholder", "event", "started", "event", "terminal"]
    );
}

#[test]
fn a_built_dispatch_reaches_the_job_types_executor_with_its_options_and_metadata() {
    let (rt, d, users) = setup();
    users.failing.store(true, Ordering::SeqCst);
    let err = rt
        .block_on(
            d.job(LoadUser(9))
                .metadata("caller", "test")
                .retry(orchestrator_core::RetryPolicy::fixed(
                    2,
                    Duration::from_millis(1),
                ))
                .dispatch(),
        )
        .unwrap_err();
    assert_eq!(
        err.failure().map(|f| f.attempts()),
        Some(3),
        "routed, with its retry policy"
    );
    assert_eq!(users.calls.load(Ordering::SeqCst), 3);
    assert_eq!(users.seen_metadata.lock().unwrap().as_deref(), Some("test"));
    let err = rt
        .block_on(
            d.job(LoadUser(9))
                .timeout(Duration::from_millis(5))
                .dispatch(),
        )
        .unwrap_err();
    assert!(err.is_timed_out());
}

#[test]
fn a_dedup_dispatch_joins_the_one_in_flight() {
    let (rt, d, users) = setup();
    let first = d.job(LoadUser(10)).dedup("user/10").dispatch();
    let second = d.job(LoadUser(10)).dedup("user/10").dispatch();
    let third = d.job(LoadUser(10)).dedup("user/10").dispatch();
    assert_eq!(first.id(), second.id(), "a joined dispatch is the same job");
    third.cancel(); // detaches only itself
    assert!(rt.block_on(third).unwrap_err().is_cancelled());
    let (a, b) = (rt.block_on(first).unwrap(), rt.block_on(second).unwrap());
    assert_eq!(a, b);
    assert_eq!(users.calls.load(Ordering::SeqCst), 1, "ran once");
    // After it finished, the key is free: a new dispatch runs again.
    let again = rt
        .block_on(d.job(LoadUser(10)).dedup("user/10").dispatch())
        .unwrap();
    assert_eq!(again.value, "user10#v2");
    // Another key, or no key, never joins.
    let other = d.job(LoadUser(10)).dedup("other").dispatch();
    let plain = d.dispatch(LoadUser(10));
    assert_ne!(other.id(), plain.id());
    rt.block_on(other).unwrap();
    rt.block_on(plain).unwrap();
    assert_eq!(users.calls.load(Ordering::SeqCst), 4);
}

#[test]
fn a_dedup_lead_runs_whatever_is_in_flight_and_is_joined_by_later_dedup_dispatches() {
    let (rt, d, users) = setup();
    let first = d.job(LoadUser(10)).dedup("user/10").dispatch();
    // A lead never joins: it runs, and takes the key over.
    let lead = d.job(LoadUser(10)).dedup_lead("user/10").dispatch();
    assert_ne!(lead.id(), first.id());
    let joined = d.job(LoadUser(10)).dedup("user/10").dispatch();
    assert_eq!(
        joined.id(),
        lead.id(),
        "a later dedup dispatch joins the lead"
    );
    let (a, b, c) = (
        rt.block_on(first).unwrap(),
        rt.block_on(lead).unwrap(),
        rt.block_on(joined).unwrap(),
    );
    assert_eq!(b, c);
    assert_ne!(a, b);
    assert_eq!(
        users.calls.load(Ordering::SeqCst),
        2,
        "the first and the lead ran"
    );
}

#[test]
fn the_failure_breaker_opens_rejects_half_opens_and_closes() {
    let rt = VirtualRuntime::new();
    let log = Arc::new(Log::default());
    let d = Dispatcher::builder(rt.clone())
        .observer(Logger(log.clone()))
        .build();
    let users = Users::default();
    d.register(users.clone());
    d.set_circuit_breaker::<LoadUser>(
        BreakerConfig::new(3, Duration::from_secs(10), Duration::from_secs(30)).unwrap(),
    );
    users.failing.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        assert!(
            rt.block_on(d.dispatch(LoadUser(11)))
                .unwrap_err()
                .is_failed()
        );
    }
    let err = rt.block_on(d.dispatch(LoadUser(11))).unwrap_err();
    assert!(
        matches!(err, JobError::Rejected(Rejection::CircuitOpen { .. })),
        "{err:?}"
    );
    assert_eq!(
        users.calls.load(Ordering::SeqCst),
        3,
        "rejected without running"
    );
    rt.advance(Duration::from_secs(30));
    users.failing.store(false, Ordering::SeqCst);
    let trial = d.dispatch(LoadUser(11));
    let blocked = d.dispatch(LoadUser(11));
    assert!(
        rt.block_on(blocked).unwrap_err().is_rejected(),
        "one trial at a time"
    );
    rt.block_on(trial).unwrap();
    rt.block_on(d.dispatch(LoadUser(11))).unwrap();
    assert_eq!(
        *log.0.lock().unwrap(),
        ["breaker Open", "breaker HalfOpen", "breaker Closed"]
    );
}
