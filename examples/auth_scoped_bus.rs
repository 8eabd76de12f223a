//! The authentication case study, with a scoped bus, on smol.
//!
//! An `AuthOrchestrator` runs on a private `SignalBus::new()`: the jobs it dispatches publish
//! their events there, so credentials checks, password-strength checks, tokens and token
//! refreshes never leave the auth module. Only `LoggedIn { user }` and `LoggedOut` are
//! published on `SignalBus::global()`, on purpose: `LoggedIn` by the auth orchestrator's
//! handler when a sign-in succeeds, `LoggedOut` by the logout executor. An app-wide
//! `SessionOrchestrator` listens on the global bus and reacts to those two only.
//!
//! Along the way: a wrong password fails at once under a retry policy that retries transient
//! errors only (`RetryPolicy::retry_if` with the executor's error downcast), a transient outage
//! is retried, and a token refresh against a hanging identity provider hits its
//! `.timeout(..)` budget, upon which the auth orchestrator signs the user out.
//! At the end `main` asserts what a subscriber on each bus saw.
//!
//! Run it with `cargo run --example auth_scoped_bus`. It runs on smol (`smol::block_on`,
//! `SmolRuntime`); the same program runs on tokio by changing the runtime constructor and the
//! entry point only. Its output is deterministic: `main` awaits every job it dispatches, waits
//! until the auth orchestrator has handled its jobs (`handled(id)`), and waits on the session's
//! state stream and on bus subscriptions (never a fixed sleep) for what happens next.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use futures::StreamExt;
use orchestrator_core::{
    Dispatch, Dispatcher, Event, Executor, Job, JobBuilder, JobContext, JobError, JobLifecycle,
    Orchestrator, OrchestratorContext, OrchestratorGroup, OrchestratorHandle, Origin, RetryPolicy,
    SignalBus, Subscription,
};
use orchestrator_smol::SmolRuntime;

// ---------------------------------------------------------------------------------------------
// Events. Private ones stay on the auth bus; the two public ones go on the global bus.
// ---------------------------------------------------------------------------------------------

/// Private: how strong a password typed into the sign-in form is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PasswordStrengthChecked(Strength);

/// Private: the outcome of a credentials check.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CredentialsChecked {
    user: String,
    valid: bool,
}

/// Private: a sign-in succeeded (it carries the access token: never published globally).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Authenticated {
    user: String,
    token: String,
}

/// Private: the access token was renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TokenRefreshed {
    token: String,
}

/// Private: the tokens were revoked on sign-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TokensRevoked;

/// Public (global bus): a user signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LoggedIn {
    user: String,
}

/// Public (global bus): the user signed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LoggedOut;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strength {
    Weak,
    Fair,
    Strong,
}

// ---------------------------------------------------------------------------------------------
// Jobs.
// ---------------------------------------------------------------------------------------------

/// Rates a password while the user types it.
struct CheckPasswordStrength {
    password: String,
}

impl Job for CheckPasswordStrength {
    type Output = Strength;
}

/// Signs a user in.
struct Login {
    user: String,
    password: String,
}

/// A signed-in session.
#[derive(Debug, Clone)]
struct SessionTokens {
    user: String,
    token: String,
}

impl Job for Login {
    type Output = SessionTokens;

    /// Login's output becomes the private `Authenticated` event.
    fn output_event(&self, session: &SessionTokens) -> Option<impl Send + Sync + 'static> {
        Some(Authenticated {
            user: session.user.clone(),
            token: session.token.clone(),
        })
    }
}

/// Renews the access token with the identity provider.
struct RefreshToken;

impl Job for RefreshToken {
    type Output = String;
}

/// Revokes the tokens and announces the sign-out to the whole app.
struct Logout;

impl Job for Logout {
    type Output = ();
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthError {
    /// Permanent: trying again with the same password cannot help.
    WrongPassword,
    /// Transient: the auth service did not answer.
    Unavailable,
    /// Permanent: an event could not be published (its bus is closed).
    BusClosed,
}

impl AuthError {
    fn is_permanent(&self) -> bool {
        !matches!(self, AuthError::Unavailable)
    }
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthError::WrongPassword => "wrong user name or password",
            AuthError::Unavailable => "auth service unavailable",
            AuthError::BusClosed => "event bus closed",
        })
    }
}

impl std::error::Error for AuthError {}

// ---------------------------------------------------------------------------------------------
// The auth service: one executor for the four job types, with two failure knobs.
// ---------------------------------------------------------------------------------------------

const USERS: &[(&str, &str)] = &[("alice", "correct horse battery staple")];
const LATENCY: Duration = Duration::from_millis(5);

#[derive(Default)]
struct Backend {
    /// How many of the next credentials checks fail with `Unavailable`.
    outages: AtomicU32,
    /// While set, the identity provider never answers a token refresh.
    idp_hangs: AtomicBool,
    issued: AtomicU32,
}

impl Backend {
    fn take_outage(&self) -> bool {
        self.outages
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    fn issue_token(&self) -> String {
        format!("tok-{}", self.issued.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

#[derive(Clone)]
struct AuthService {
    backend: Arc<Backend>,
}

/// Publishes a private event of the running job (on the job's bus: the auth bus).
fn emit_private<P: Send + Sync + 'static>(cx: &JobContext, payload: P) -> Result<(), AuthError> {
    cx.emit(payload).map(drop).map_err(|_| AuthError::BusClosed)
}

impl Executor<CheckPasswordStrength> for AuthService {
    type Error = AuthError;

    async fn execute(
        &self,
        job: &CheckPasswordStrength,
        cx: JobContext,
    ) -> Result<Strength, AuthError> {
        let p = &job.password;
        let strength = match (p.len(), p.contains(' ')) {
            (0..8, _) => Strength::Weak,
            (_, false) => Strength::Fair,
            (_, true) => Strength::Strong,
        };
        emit_private(&cx, PasswordStrengthChecked(strength))?;
        Ok(strength)
    }
}

impl Executor<Login> for AuthService {
    type Error = AuthError;

    async fn execute(&self, job: &Login, cx: JobContext) -> Result<SessionTokens, AuthError> {
        cx.sleep(LATENCY).await;
        if self.backend.take_outage() {
            return Err(AuthError::Unavailable);
        }
        let valid = USERS
            .iter()
            .any(|&(user, password)| user == job.user && password == job.password);
        let checked = CredentialsChecked {
            user: job.user.clone(),
            valid,
        };
        emit_private(&cx, checked)?;
        if !valid {
            return Err(AuthError::WrongPassword);
        }
        Ok(SessionTokens {
            user: job.user.clone(),
            token: self.backend.issue_token(),
        })
    }
}

impl Executor<RefreshToken> for AuthService {
    type Error = AuthError;

    async fn execute(&self, _job: &RefreshToken, cx: JobContext) -> Result<String, AuthError> {
        cx.sleep(LATENCY).await;
        if self.backend.idp_hangs.load(Ordering::Acquire) {
            // Dropped when the job's budget runs out, long before this sleep ends.
            cx.sleep(Duration::from_secs(3600)).await;
        }
        let token = self.backend.issue_token();
        emit_private(
            &cx,
            TokenRefreshed {
                token: token.clone(),
            },
        )?;
        Ok(token)
    }
}

impl Executor<Logout> for AuthService {
    type Error = AuthError;

    async fn execute(&self, _job: &Logout, cx: JobContext) -> Result<(), AuthError> {
        cx.sleep(LATENCY).await;
        emit_private(&cx, TokensRevoked)?;
        // Deliberately public: the rest of the app must learn that the user is gone.
        SignalBus::global()
            .emit(LoggedOut)
            .map_err(|_| AuthError::BusClosed)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The orchestrators.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct AuthState {
    user: Option<String>,
    token: Option<String>,
    failed_logins: u32,
    last_strength: Option<Strength>,
}

/// Owns authentication; lives on the private bus.
struct AuthOrchestrator;

impl Orchestrator for AuthOrchestrator {
    type State = AuthState;

    fn on_event(
        &mut self,
        event: &Event,
        origin: Origin,
        cx: &mut OrchestratorContext<'_, AuthState>,
    ) {
        if let Some(PasswordStrengthChecked(strength)) = event.downcast_ref() {
            cx.update(|s| s.last_strength = Some(*strength));
        } else if let Some(checked) = event.downcast_ref::<CredentialsChecked>() {
            if !checked.valid {
                cx.update(|s| s.failed_logins += 1);
            }
        } else if let Some(auth) = event.downcast_ref::<Authenticated>() {
            cx.update(|s| {
                s.user = Some(auth.user.clone());
                s.token = Some(auth.token.clone());
            });
            // The gatekeeper: re-publish the sign-in globally, without the token.
            let public = LoggedIn {
                user: auth.user.clone(),
            };
            cx.emit_to(&SignalBus::global(), public)
                .expect("the global bus is never closed in this program");
        } else if let Some(TokenRefreshed { token }) = event.downcast_ref() {
            cx.update(|s| s.token = Some(token.clone()));
        } else if event.is::<TokensRevoked>() {
            cx.update(|s| {
                s.user = None;
                s.token = None;
            });
        } else if origin.is_active()
            && event.is_from_job::<RefreshToken>()
            && matches!(event.downcast_ref(), Some(JobLifecycle::TimedOut { .. }))
        {
            // One of its own refreshes ran out of time: the session cannot be kept alive.
            // The job runs without its handle; its events report the outcome.
            drop(cx.dispatch(Logout));
        }
    }
}

/// Which screen the app shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Screen {
    #[default]
    SignIn,
    Home,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Session {
    user: Option<String>,
    screen: Screen,
    logins: u32,
    /// Events other than LoggedIn/LoggedOut that reached it (the scoping keeps this at 0).
    other_events: u32,
}

impl std::fmt::Display for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.user {
            Some(user) => write!(f, "{user} signed in, on the {:?} screen", self.screen)?,
            None => write!(f, "signed out, on the {:?} screen", self.screen)?,
        }
        write!(
            f,
            " ({} login(s), {} other event(s) seen)",
            self.logins, self.other_events
        )
    }
}

/// App-wide: lives on the global bus, knows nothing about tokens.
struct SessionOrchestrator;

impl Orchestrator for SessionOrchestrator {
    type State = Session;

    fn on_event(
        &mut self,
        event: &Event,
        _origin: Origin,
        cx: &mut OrchestratorContext<'_, Session>,
    ) {
        if let Some(LoggedIn { user }) = event.downcast_ref() {
            cx.update(|s| {
                s.user = Some(user.clone());
                s.screen = Screen::Home;
                s.logins += 1;
            });
        } else if event.is::<LoggedOut>() {
            cx.update(|s| {
                s.user = None;
                s.screen = Screen::SignIn;
            });
        } else {
            cx.update(|s| s.other_events += 1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Waiting without sleeping, and watching the two buses.
// ---------------------------------------------------------------------------------------------

/// Awaits `fut`, with a generous deadline that only a bug can reach.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    let deadline = async {
        smol::Timer::after(Duration::from_secs(5)).await;
        None
    };
    smol::future::or(async { Some(fut.await) }, deadline)
        .await
        .unwrap_or_else(|| panic!("{what} did not happen within 5 s"))
}

/// Reads `orchestrator`'s state stream until `done` holds (a condition that stays true).
async fn wait_for<S: Clone + Send + Sync + 'static>(
    orchestrator: &OrchestratorHandle<S>,
    what: &str,
    done: impl FnMut(&S) -> bool,
) -> S {
    let mut states = orchestrator.states();
    within(what, states.wait_for(done))
        .await
        .unwrap_or_else(|_| panic!("{} was disposed before {what}", orchestrator.name()))
}

/// A subscriber on each bus, and everything they have seen.
struct Taps {
    private: Subscription,
    global: Subscription,
    fresh_private: Vec<Event>,
    seen_private: Vec<Event>,
    seen_global: Vec<Event>,
}

impl Taps {
    /// Reads the private bus until an event matching `last` (inclusive), and returns it.
    async fn private_until(&mut self, what: &str, mut last: impl FnMut(&Event) -> bool) -> Event {
        let events = &mut self.private;
        let fresh = &mut self.fresh_private;
        let read = async {
            while let Some(event) = events.next().await {
                let done = last(&event);
                fresh.push(event.clone());
                if done {
                    return event;
                }
            }
            panic!("the private bus closed before {what}");
        };
        within(what, read).await
    }

    /// Prints (and records) what each bus delivered since the last call.
    fn print_new(&mut self) {
        while let Some(event) = self.private.try_next() {
            self.fresh_private.push(event);
        }
        for event in self.fresh_private.drain(..) {
            println!("    private bus: {}", describe(&event));
            self.seen_private.push(event);
        }
        while let Some(event) = self.global.try_next() {
            println!("    GLOBAL bus:  {}", describe(&event));
            self.seen_global.push(event);
        }
    }
}

/// A one-line description of an event.
fn describe(event: &Event) -> String {
    if let Some(lifecycle) = event.downcast_ref::<JobLifecycle>() {
        let job = event.job_type().map_or("?", |t| short(t.name()));
        return format!("{job} {lifecycle:?}");
    }
    if let Some(e) = event.downcast_ref::<PasswordStrengthChecked>() {
        format!("{e:?}")
    } else if let Some(e) = event.downcast_ref::<CredentialsChecked>() {
        format!("{e:?}")
    } else if let Some(e) = event.downcast_ref::<Authenticated>() {
        format!("{e:?}")
    } else if let Some(e) = event.downcast_ref::<TokenRefreshed>() {
        format!("{e:?}")
    } else if let Some(e) = event.downcast_ref::<TokensRevoked>() {
        format!("{e:?}")
    } else if let Some(e) = event.downcast_ref::<LoggedIn>() {
        format!("{e:?}")
    } else if let Some(e) = event.downcast_ref::<LoggedOut>() {
        format!("{e:?}")
    } else {
        short(event.payload_type_name()).to_owned()
    }
}

fn short(type_name: &str) -> &str {
    type_name.rsplit("::").next().unwrap_or(type_name)
}

fn login(user: &str, password: &str) -> Login {
    Login {
        user: user.to_owned(),
        password: password.to_owned(),
    }
}

/// Transient errors (and per-attempt timeouts) are retried; permanent `AuthError`s are not.
fn retry_transient() -> RetryPolicy {
    RetryPolicy::fixed(3, Duration::from_millis(10)).retry_if(|err, _attempt| {
        !err.downcast_ref::<AuthError>()
            .is_some_and(AuthError::is_permanent)
    })
}

/// The sign-in dispatch configuration: a 2 s budget, transient errors retried.
fn login_options(job: JobBuilder<'_, Login>) -> JobBuilder<'_, Login> {
    job.timeout(Duration::from_secs(2)).retry(retry_transient())
}

/// Waits until `auth` has handled job `id`'s terminal event.
async fn handled<S: Clone + Send + Sync + 'static>(
    auth: &OrchestratorHandle<S>,
    id: orchestrator_core::JobId,
) {
    within("the auth orchestrator handles its job", auth.handled(id))
        .await
        .expect("the auth orchestrator is running");
}

fn main() {
    smol::block_on(run());
}

async fn run() {
    let dispatcher = Dispatcher::new(SmolRuntime::default()); // the one runtime-specific line
    let backend = Arc::new(Backend::default());
    let service = AuthService {
        backend: backend.clone(),
    };
    dispatcher
        .register::<CheckPasswordStrength, _>(service.clone())
        .register::<Login, _>(service.clone())
        .register::<RefreshToken, _>(service.clone())
        .register::<Logout, _>(service);

    // The auth module's own bus; the app's global bus. A subscriber on each, from the start.
    let auth_bus = SignalBus::new();
    let global = SignalBus::global();
    let mut taps = Taps {
        private: auth_bus.subscribe(),
        global: global.subscribe(),
        fresh_private: Vec::new(),
        seen_private: Vec::new(),
        seen_global: Vec::new(),
    };

    let auth = AuthOrchestrator
        .builder(AuthState::default(), &dispatcher)
        .bus(auth_bus.clone())
        .name("auth")
        .build();
    let session = SessionOrchestrator
        .builder(Session::default(), &dispatcher)
        .bus(global.clone())
        .name("session")
        .build();
    let mut group = OrchestratorGroup::new();
    group.add(&auth).add(&session);
    group
        .start()
        .expect("smol's executor accepts both event loops");
    println!("started {group:?}: auth on a private bus, session on the global bus\n");

    println!("1. the user types a password");
    let job = CheckPasswordStrength {
        password: "hunter2".to_owned(),
    };
    let strength = auth.dispatch(job).await;
    let strength = strength.expect("rating a password does not fail").value;
    println!("    strength: {strength:?}");
    taps.print_new();

    println!("2. sign in with a wrong password (policy: up to 3 retries, transient errors only)");
    let job = login_options(auth.job(login("alice", "hunter2"))).dispatch();
    let failure = match job.await {
        Err(JobError::Failed(failure)) => failure,
        other => panic!("a wrong password fails the job, got {other:?}"),
    };
    println!("    {failure:#}");
    assert_eq!(failure.attempts(), 1, "a permanent error is not retried");
    assert_eq!(
        failure.downcast_ref::<AuthError>(),
        Some(&AuthError::WrongPassword)
    );
    taps.print_new();

    println!("3. sign in again; the auth service drops the first request");
    backend.outages.store(1, Ordering::Release);
    let job = login_options(auth.job(login("alice", "correct horse battery staple"))).dispatch();
    let id = job.id();
    let signed_in = job.await.expect("the transient outage is retried").value;
    // Once auth has handled the login, it has re-published the sign-in on the global bus; the
    // session (which tracks no job) is then read from its state stream.
    handled(&auth, id).await;
    println!(
        "    signed in as {} with {}",
        signed_in.user, signed_in.token
    );
    let now = wait_for(&session, "the session sees LoggedIn", |s| s.user.is_some()).await;
    println!("    session: {now}");
    taps.print_new();

    println!("4. refresh the token");
    let job = auth
        .job(RefreshToken)
        .timeout(Duration::from_millis(200))
        .dispatch();
    let token = job.await.expect("the identity provider answers").value;
    println!("    new token {token}");
    taps.print_new();

    println!("5. refresh again; the identity provider hangs (budget 50 ms)");
    backend.idp_hangs.store(true, Ordering::Release);
    let budget = Duration::from_millis(50);
    let job = auth.job(RefreshToken).timeout(budget).dispatch();
    let id = job.id();
    match job.await {
        Err(JobError::TimedOut { budget: b }) => {
            assert_eq!(b, budget);
            println!("    timed out after {b:?}; the auth orchestrator signs the user out");
        }
        other => panic!("a hanging refresh times out, got {other:?}"),
    }
    // Once auth has handled the refresh's timeout, it has dispatched the logout job.
    handled(&auth, id).await;
    let now = wait_for(&session, "the session sees LoggedOut", |s| s.user.is_none()).await;
    println!("    session: {now}");
    // The logout job was dispatched by the auth orchestrator's handler: read the private bus
    // up to its terminal event, so that every event of this step is printed.
    let logout_end = taps
        .private_until("the end of the logout job", |e| {
            e.is_from_job::<Logout>()
                && e.downcast_ref::<JobLifecycle>()
                    .is_some_and(JobLifecycle::is_terminal)
        })
        .await;
    taps.print_new();

    // The logout job is auth's own: once auth has handled its end, it has handled its
    // TokensRevoked event too.
    let logout_id = logout_end
        .correlation_id()
        .expect("a lifecycle event names its job");
    handled(&auth, logout_id).await;
    let auth_state = auth.state();
    assert_eq!(auth_state.token, None);
    let session_state = session.state();
    println!("\nfinal auth state:    {auth_state:?}");
    println!("final session state: {session_state:?}");

    // The global subscriber saw exactly the two public events, and nothing private.
    let global_seen = &taps.seen_global;
    assert!(
        global_seen
            .iter()
            .all(|e| e.is::<LoggedIn>() || e.is::<LoggedOut>())
    );
    let leaked = global_seen.iter().any(|e| {
        e.is::<PasswordStrengthChecked>()
            || e.is::<CredentialsChecked>()
            || e.is::<Authenticated>()
            || e.is::<TokenRefreshed>()
            || e.is::<TokensRevoked>()
            || e.is::<JobLifecycle>()
    });
    assert!(!leaked, "no private event reaches the global bus");
    assert_eq!(global_seen.len(), 2);
    assert_eq!(
        global_seen[0].downcast_ref::<LoggedIn>(),
        Some(&LoggedIn {
            user: "alice".to_owned()
        })
    );
    assert!(global_seen[1].is::<LoggedOut>());

    // The private subscriber saw the private events, and none of the public ones.
    let private_seen = &taps.seen_private;
    let count = |is: fn(&Event) -> bool| private_seen.iter().filter(|e| is(e)).count();
    assert_eq!(count(|e| e.is::<PasswordStrengthChecked>()), 1);
    assert_eq!(count(|e| e.is::<CredentialsChecked>()), 2);
    assert_eq!(count(|e| e.is::<Authenticated>()), 1);
    assert_eq!(count(|e| e.is::<TokenRefreshed>()), 1);
    assert_eq!(count(|e| e.is::<TokensRevoked>()), 1);
    assert_eq!(count(|e| e.is::<LoggedIn>() || e.is::<LoggedOut>()), 0);

    // And the two orchestrators agree: one login, signed out now, nothing else reached the app.
    assert_eq!(auth_state.failed_logins, 1);
    assert_eq!(auth_state.user, None);
    assert_eq!(
        session_state,
        Session {
            user: None,
            screen: Screen::SignIn,
            logins: 1,
            other_events: 0,
        }
    );

    group.dispose();
    assert!(auth.is_disposed() && session.is_disposed());
    println!("\nthe global bus carried only LoggedIn/LoggedOut; group disposed");
}
