//! The code of docs/testing.md: an executor, an orchestrator (happy path, error path,
//! cancellation, a timeout on virtual time) and a saga, tested with the test kit.

use std::time::Duration;

use orchestrator_core::testing::{
    EventCapture, FakeError, FakeExecutor, Scenario, VirtualRuntime, expect,
};
use orchestrator_core::{
    Dispatch, Dispatcher, Event, Executor, Job, JobContext, JobError, JobLifecycle, Orchestrator,
    OrchestratorContext, Origin, RetryPolicy, Saga,
};

// --- The application under test ---------------------------------------------------------------

/// Loads a user's profile; publishes `ProfileLoaded` when it succeeds.
#[derive(Debug, Clone, PartialEq)]
struct LoadProfile {
    user: u32,
}

#[derive(Debug, Clone, PartialEq)]
struct Profile {
    name: String,
}

#[derive(Debug, Clone, PartialEq)]
struct ProfileLoaded(Profile);

impl Job for LoadProfile {
    type Output = Profile;
    fn output_event(&self, profile: &Profile) -> Option<impl Send + Sync + 'static> {
        Some(ProfileLoaded(profile.clone()))
    }
}

/// The real executor: retries are the dispatcher's business, it only reports progress.
struct ProfileApi;
impl Executor<LoadProfile> for ProfileApi {
    type Error = FakeError;
    async fn execute(&self, job: &LoadProfile, cx: JobContext) -> Result<Profile, FakeError> {
        cx.report_progress(0.5);
        match job.user {
            0 => Err(FakeError::new("no such user")),
            n => Ok(Profile {
                name: format!("user {n}"),
            }),
        }
    }
}

/// The screen's state.
#[derive(Debug, Clone, PartialEq)]
enum Screen {
    Empty,
    Loading,
    Shown(String),
    Error(String),
}

/// Shows the profile of the jobs it dispatched.
struct ProfileScreen;
impl Orchestrator for ProfileScreen {
    type State = Screen;
    fn on_event(
        &mut self,
        event: &Event,
        origin: Origin,
        cx: &mut OrchestratorContext<'_, Screen>,
    ) {
        if !origin.is_active() {
            return;
        }
        if let Some(ProfileLoaded(profile)) = event.downcast_ref() {
            cx.set_state(Screen::Shown(profile.name.clone()));
        }
        match event.downcast_ref::<JobLifecycle>() {
            Some(JobLifecycle::Started) => cx.set_state(Screen::Loading),
            Some(JobLifecycle::Failed(failure)) => {
                cx.set_state(Screen::Error(failure.error().to_string()));
            }
            Some(JobLifecycle::Cancelled { .. }) => cx.set_state(Screen::Empty),
            Some(JobLifecycle::TimedOut { .. }) => cx.set_state(Screen::Error("timed out".into())),
            _ => {}
        }
    }
}

// --- An executor ---------------------------------------------------------------------------------

#[test]
fn the_executor_loads_a_profile_and_refuses_an_unknown_user() {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    dispatcher.register(ProfileApi);

    let found = rt.block_on(dispatcher.dispatch(LoadProfile { user: 7 }));
    let profile = Profile {
        name: "user 7".into(),
    };
    expect::succeeded_with(&found, &profile).unwrap();

    let missing = rt.block_on(dispatcher.dispatch(LoadProfile { user: 0 }));
    expect::failed_after(&missing, 1, "no such user").unwrap();
}

#[test]
fn the_executors_output_event_is_published() {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    dispatcher.register(ProfileApi);
    let events = EventCapture::on(&dispatcher);

    let job = dispatcher.dispatch(LoadProfile { user: 7 });
    let id = job.id();
    rt.block_on(job).unwrap();
    let loaded = rt.block_on(events.wait_for::<ProfileLoaded>()).unwrap();
    assert_eq!(loaded.0.name, "user 7");
    assert_eq!(loaded.event().correlation_id(), Some(id));
}

// --- An orchestrator -----------------------------------------------------------------------------

fn ada() -> Profile {
    Profile { name: "ada".into() }
}

#[test]
fn the_screen_shows_a_loaded_profile() {
    let api = FakeExecutor::<LoadProfile>::succeed(ada());
    let calls = api.recorder();
    Scenario::new(ProfileScreen, Screen::Empty)
        .given(move |dispatcher| {
            dispatcher.register(api);
        })
        .when(|act| {
            act.dispatch(LoadProfile { user: 1 });
        })
        .then_states([Screen::Loading, Screen::Shown("ada".into())])
        .then_events([ProfileLoaded(ada())])
        .then_jobs(&calls, [LoadProfile { user: 1 }])
        .run()
        .unwrap();
}

#[test]
fn the_screen_shows_the_error_after_the_retries() {
    let api = FakeExecutor::<LoadProfile>::fail(FakeError::new("service unavailable"));
    let calls = api.recorder();
    let report = Scenario::new(ProfileScreen, Screen::Empty)
        .given(move |dispatcher| {
            dispatcher.register(api);
        })
        .when(|act| {
            let retried = act
                .orchestrator()
                .job(LoadProfile { user: 1 })
                .retry(RetryPolicy::fixed(2, Duration::from_secs(1)));
            drop(retried.dispatch());
        })
        .then_states([Screen::Loading, Screen::Error("service unavailable".into())])
        .run()
        .unwrap();
    assert_eq!(calls.attempts(), 3);
    assert_eq!(report.events().count::<ProfileLoaded>(), 0);
}

#[test]
fn cancelling_the_load_empties_the_screen() {
    Scenario::new(ProfileScreen, Screen::Empty)
        .given(|dispatcher| {
            dispatcher.register(FakeExecutor::<LoadProfile>::never());
        })
        .when(|act| {
            let job = act.orchestrator().dispatch(LoadProfile { user: 1 });
            act.advance(Duration::from_secs(60));
            assert_eq!(act.state(), Screen::Loading, "still loading a minute later");
            job.cancel();
            let outcome = act.block_on(job).unwrap();
            assert_eq!(expect::cancelled(&outcome), Ok(None));
        })
        .then_states([Screen::Loading, Screen::Empty])
        .run()
        .unwrap();
}

#[test]
fn a_slow_service_times_out_on_virtual_time() {
    Scenario::new(ProfileScreen, Screen::Empty)
        .given(|dispatcher| {
            dispatcher.register(FakeExecutor::<LoadProfile>::never());
        })
        .when(|act| {
            let job = act.orchestrator().job(LoadProfile { user: 1 });
            drop(job.timeout(Duration::from_secs(30)).dispatch());
            act.advance(Duration::from_secs(29));
            assert_eq!(act.state(), Screen::Loading);
        })
        .wait(Duration::from_secs(1))
        .then_states([Screen::Loading, Screen::Error("timed out".into())])
        .run()
        .unwrap();
}

// --- A saga --------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct Reserve(u32);
impl Job for Reserve {
    type Output = u32;
}

#[derive(Debug, Clone, PartialEq)]
struct Release(u32);
impl Job for Release {
    type Output = ();
}

#[derive(Debug, Clone, PartialEq)]
struct Charge(u32);
impl Job for Charge {
    type Output = ();
}

/// Reserves the items, then charges; a failed charge releases the reservation.
async fn order(dispatcher: &Dispatcher<VirtualRuntime>, items: u32) -> Result<(), JobError> {
    let mut saga = Saga::<JobError>::new();
    let release = |&reserved: &u32| {
        let dispatcher = dispatcher.clone();
        async move {
            dispatcher.dispatch(Release(reserved)).await?;
            Ok(())
        }
    };
    let reserve = async { Ok(dispatcher.dispatch(Reserve(items)).await?.value) };
    saga.step("reserve", reserve, release)
        .await
        .map_err(|e| e.error)?;
    let charge = async { dispatcher.dispatch(Charge(items * 10)).await.map(|_| ()) };
    saga.step("charge", charge, |_| async { Ok(()) })
        .await
        .map_err(|e| e.error)?;
    saga.commit();
    Ok(())
}

#[test]
fn a_declined_charge_releases_the_reservation() {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    let reserve = FakeExecutor::<Reserve>::from_fn(|job, _| async move { Ok(job.0) });
    let release = FakeExecutor::<Release>::succeed(());
    let released = release.recorder();
    dispatcher.register(reserve);
    dispatcher.register(release);
    dispatcher.register(FakeExecutor::<Charge>::fail(FakeError::new(
        "card declined",
    )));

    let error = rt.block_on(order(&dispatcher, 3)).unwrap_err();
    let failure = error.failure().unwrap();
    assert_eq!(failure.error().to_string(), "card declined");
    assert_eq!(released.jobs(), [Release(3)]);
}

#[test]
fn a_successful_order_releases_nothing() {
    let rt = VirtualRuntime::new();
    let dispatcher = Dispatcher::new(rt.clone());
    dispatcher.register(FakeExecutor::<Reserve>::succeed(3));
    let release = FakeExecutor::<Release>::succeed(());
    let released = release.recorder();
    dispatcher.register(release);
    dispatcher.register(FakeExecutor::<Charge>::succeed(()));

    rt.block_on(order(&dispatcher, 3)).unwrap();
    assert_eq!(released.attempts(), 0);
}
