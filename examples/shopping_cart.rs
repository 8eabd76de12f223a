//! The shopping-cart case study, in "observer mode", on tokio.
//!
//! A `CartOrchestrator` dispatches the cart's jobs (add an item, remove an item, check out).
//! Each job type has an output event ([`Job::output_event`]): on success, its output becomes a
//! domain event (`ItemAdded`, `ItemRemoved`, `CheckedOut`) on the dispatcher's bus. A `BadgeOrchestrator` (the item count
//! in the page header) never dispatches anything: it observes the same events **passively**
//! and keeps its own state. For each event the program prints whether each orchestrator saw it
//! as `Active` (one of its own running jobs) or `Passive` (anything else, such as an item added
//! from another browser tab), then both final states, and checks that they agree.
//!
//! Run it with `cargo run --example shopping_cart`.
//!
//! The output order is deterministic: `main` awaits each job's handle, waits until the cart
//! has handled the job (`handled(id)`, for the jobs it tracks), and reads both orchestrators'
//! state streams until each has seen that job's domain event (the badge tracks no job, and
//! nobody tracks the other tab's). Nothing sleeps a fixed time to synchronize (the executors
//! sleep a few milliseconds to simulate a backend).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use orchestrator_core::{
    Dispatch, Dispatcher, Event, Executor, Job, JobContext, JobHandle, JobId, Orchestrator,
    OrchestratorContext, OrchestratorGroup, OrchestratorHandle, Origin,
};
use orchestrator_tokio::TokioRuntime;

// ---------------------------------------------------------------------------------------------
// The domain: cart lines, jobs and the events their outputs become.
// ---------------------------------------------------------------------------------------------

/// One line of the cart: a product and how many of it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    sku: &'static str,
    qty: u32,
    unit_cents: u32,
}

/// A placed order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Receipt {
    order_id: u32,
    items: u32,
    total_cents: u32,
}

/// Job: put `qty` of a product in the cart. Its output is the line that was added.
#[derive(Debug, Clone, PartialEq)]
struct AddItem {
    sku: &'static str,
    qty: u32,
    unit_cents: u32,
}

impl Job for AddItem {
    type Output = Line;
    fn output_event(&self, line: &Line) -> Option<impl Send + Sync + 'static> {
        Some(ItemAdded(line.clone()))
    }
}

/// Domain event: an item was added (published when an `AddItem` job succeeds).
#[derive(Debug, Clone)]
struct ItemAdded(Line);

/// Job: take a product out of the cart. Its output is the line that was removed.
struct RemoveItem {
    sku: &'static str,
}

impl Job for RemoveItem {
    type Output = Line;
    fn output_event(&self, line: &Line) -> Option<impl Send + Sync + 'static> {
        Some(ItemRemoved(line.clone()))
    }
}

/// Domain event: an item was removed.
#[derive(Debug, Clone)]
struct ItemRemoved(Line);

/// Job: place the order for everything in the cart.
struct Checkout;

impl Job for Checkout {
    type Output = Receipt;
    fn output_event(&self, receipt: &Receipt) -> Option<impl Send + Sync + 'static> {
        Some(CheckedOut(receipt.clone()))
    }
}

/// Domain event: the order was placed and the cart emptied.
#[derive(Debug, Clone)]
struct CheckedOut(Receipt);

#[derive(Debug)]
enum CartError {
    NotInCart(&'static str),
    Empty,
}

impl std::fmt::Display for CartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CartError::NotInCart(sku) => write!(f, "{sku} is not in the cart"),
            CartError::Empty => f.write_str("the cart is empty"),
        }
    }
}

impl std::error::Error for CartError {}

// ---------------------------------------------------------------------------------------------
// How: the cart backend, one executor for the three job types.
// ---------------------------------------------------------------------------------------------

/// A simulated cart service: the server-side cart and an order counter.
#[derive(Clone)]
struct CartService {
    lines: Arc<Mutex<Vec<Line>>>,
    next_order: Arc<AtomicU32>,
}

impl CartService {
    fn new() -> Self {
        Self {
            lines: Arc::new(Mutex::new(Vec::new())),
            next_order: Arc::new(AtomicU32::new(1001)),
        }
    }

    /// Runs `f` on the server-side cart (never across an `.await`).
    fn with_lines<T>(&self, f: impl FnOnce(&mut Vec<Line>) -> T) -> T {
        let mut lines = self
            .lines
            .lock()
            .expect("no executor panics with the lock held");
        f(&mut lines)
    }
}

/// Simulated network latency.
const LATENCY: Duration = Duration::from_millis(5);

impl Executor<AddItem> for CartService {
    type Error = CartError;

    async fn execute(&self, job: &AddItem, cx: JobContext) -> Result<Line, CartError> {
        cx.sleep(LATENCY).await;
        let line = Line {
            sku: job.sku,
            qty: job.qty,
            unit_cents: job.unit_cents,
        };
        self.with_lines(|lines| match lines.iter_mut().find(|l| l.sku == job.sku) {
            Some(existing) => existing.qty += job.qty,
            None => lines.push(line.clone()),
        });
        Ok(line)
    }
}

impl Executor<RemoveItem> for CartService {
    type Error = CartError;

    async fn execute(&self, job: &RemoveItem, cx: JobContext) -> Result<Line, CartError> {
        cx.sleep(LATENCY).await;
        self.with_lines(|lines| {
            let at = lines.iter().position(|l| l.sku == job.sku);
            at.map(|i| lines.remove(i))
                .ok_or(CartError::NotInCart(job.sku))
        })
    }
}

impl Executor<Checkout> for CartService {
    type Error = CartError;

    async fn execute(&self, _job: &Checkout, cx: JobContext) -> Result<Receipt, CartError> {
        cx.sleep(LATENCY).await;
        let lines = self.with_lines(std::mem::take);
        if lines.is_empty() {
            return Err(CartError::Empty);
        }
        Ok(Receipt {
            order_id: self.next_order.fetch_add(1, Ordering::Relaxed),
            items: lines.iter().map(|l| l.qty).sum(),
            total_cents: lines.iter().map(|l| l.qty * l.unit_cents).sum(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The two orchestrators.
// ---------------------------------------------------------------------------------------------

/// One domain event as an orchestrator saw it (kept in its state for the printout).
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    what: String,
    origin: Origin,
    job: Option<JobId>,
}

/// Describes the cart's domain events; `None` for anything else (lifecycle events, ...).
fn describe(event: &Event) -> Option<String> {
    if let Some(ItemAdded(line)) = event.downcast_ref() {
        Some(format!("ItemAdded({} x{})", line.sku, line.qty))
    } else if let Some(ItemRemoved(line)) = event.downcast_ref() {
        Some(format!("ItemRemoved({} x{})", line.sku, line.qty))
    } else if let Some(CheckedOut(receipt)) = event.downcast_ref() {
        Some(format!("CheckedOut(#{})", receipt.order_id))
    } else {
        None
    }
}

/// The cart as the page shows it.
#[derive(Debug, Clone, Default, PartialEq)]
struct CartState {
    lines: Vec<Line>,
    orders: Vec<Receipt>,
    seen: Vec<Seen>,
}

impl CartState {
    fn item_count(&self) -> u32 {
        self.lines.iter().map(|l| l.qty).sum()
    }
}

/// Dispatches the cart's jobs and keeps the cart from their events (and from everybody
/// else's: an item added from another tab is a passive event, and still belongs in the cart).
struct CartOrchestrator;

impl Orchestrator for CartOrchestrator {
    type State = CartState;

    fn on_event(
        &mut self,
        event: &Event,
        origin: Origin,
        cx: &mut OrchestratorContext<'_, CartState>,
    ) {
        let Some(what) = describe(event) else {
            return; // lifecycle events of its jobs also arrive here (as active); not shown
        };
        cx.update(|cart| {
            if let Some(ItemAdded(line)) = event.downcast_ref() {
                match cart.lines.iter_mut().find(|l| l.sku == line.sku) {
                    Some(existing) => existing.qty += line.qty,
                    None => cart.lines.push(line.clone()),
                }
            } else if let Some(ItemRemoved(line)) = event.downcast_ref() {
                cart.lines.retain(|l| l.sku != line.sku);
            } else if let Some(CheckedOut(receipt)) = event.downcast_ref() {
                cart.lines.clear();
                cart.orders.push(receipt.clone());
            }
            cart.seen.push(Seen {
                what,
                origin,
                job: event.correlation_id(),
            });
        });
    }
}

/// The header badge: how many items are in the cart, and how many orders were placed.
#[derive(Debug, Clone, Default, PartialEq)]
struct BadgeState {
    count: u32,
    orders: usize,
    seen: Vec<Seen>,
}

/// Never dispatches: it only watches the cart's events go by, all of them passive.
struct BadgeOrchestrator;

impl Orchestrator for BadgeOrchestrator {
    type State = BadgeState;

    fn on_event(
        &mut self,
        event: &Event,
        origin: Origin,
        cx: &mut OrchestratorContext<'_, BadgeState>,
    ) {
        let Some(what) = describe(event) else {
            return;
        };
        cx.update(|badge| {
            if let Some(ItemAdded(line)) = event.downcast_ref() {
                badge.count += line.qty;
            } else if let Some(ItemRemoved(line)) = event.downcast_ref() {
                badge.count = badge.count.saturating_sub(line.qty);
            } else if event.is::<CheckedOut>() {
                badge.count = 0;
                badge.orders += 1;
            }
            badge.seen.push(Seen {
                what,
                origin,
                job: event.correlation_id(),
            });
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Synchronization without sleeping: `handled(id)` for an orchestrator's own jobs, and a state
// stream read until it shows what we wait for otherwise.
// ---------------------------------------------------------------------------------------------

/// Reads `orchestrator`'s state stream until `done` holds, and returns that state.
///
/// States are values, not a log (a slow reader skips intermediate ones), so `done` must be a
/// condition that stays true once reached, like "has seen event X".
async fn wait_for<S: Clone + Send + Sync + 'static>(
    orchestrator: &OrchestratorHandle<S>,
    what: &str,
    done: impl FnMut(&S) -> bool,
) -> S {
    let mut states = orchestrator.states();
    // A safety net against a bug, not a synchronization point: normally this takes about 1 ms.
    match tokio::time::timeout(Duration::from_secs(5), states.wait_for(done)).await {
        Ok(Ok(state)) => state,
        Ok(Err(_)) => panic!("{} was disposed before {what}", orchestrator.name()),
        Err(_) => panic!("{} did not reach {what} within 5 s", orchestrator.name()),
    }
}

/// What `main` drives: the two orchestrators, started and disposed as a group.
struct Page {
    cart: OrchestratorHandle<CartState>,
    badge: OrchestratorHandle<BadgeState>,
}

impl Page {
    /// Runs one step: awaits the job, waits until both orchestrators have handled its domain
    /// event, and prints how each saw it. Returns the job's output.
    async fn step<T: Send + 'static>(&self, title: &str, job: JobHandle<T>) -> T {
        let id = job.id();
        let output = job
            .await
            .unwrap_or_else(|e| panic!("step {title:?} failed: {e:?}"));
        // A job the cart dispatched: once the cart has handled its terminal event, it has
        // handled its domain event (published before it). Returns at once for a job the cart
        // does not track (the other tab's).
        self.cart
            .handled(id)
            .await
            .expect("the cart orchestrator is running");
        let event_of_job = |seen: &[Seen]| seen.iter().find(|s| s.job == Some(id)).cloned();
        let what = format!("the event of {id}");
        let cart = wait_for(&self.cart, &what, |s| event_of_job(&s.seen).is_some()).await;
        let badge = wait_for(&self.badge, &what, |s| event_of_job(&s.seen).is_some()).await;
        let (Some(by_cart), Some(by_badge)) = (event_of_job(&cart.seen), event_of_job(&badge.seen))
        else {
            unreachable!("wait_for returns a state that has seen the event");
        };
        println!("{title}");
        println!(
            "    {:<22} cart: {:<8} badge: {:<8} -> badge shows {}",
            by_cart.what,
            format!("{:?}", by_cart.origin),
            format!("{:?}", by_badge.origin),
            badge.count,
        );
        output.value
    }
}

fn add(sku: &'static str, qty: u32, unit_cents: u32) -> AddItem {
    AddItem {
        sku,
        qty,
        unit_cents,
    }
}

fn money(cents: u32) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

#[tokio::main]
#[cfg_attr(test, allow(dead_code))] // `cargo test` runs the tests below instead
async fn main() {
    let dispatcher = Dispatcher::new(TokioRuntime::default());
    let service = CartService::new();
    dispatcher
        .register::<AddItem, _>(service.clone())
        .register::<RemoveItem, _>(service.clone())
        .register::<Checkout, _>(service);

    // Both listen on the dispatcher's bus; the group starts them together, all or nothing.
    let cart = CartOrchestrator
        .builder(CartState::default(), &dispatcher)
        .name("cart")
        .build();
    let badge = BadgeOrchestrator
        .builder(BadgeState::default(), &dispatcher)
        .name("badge")
        .build();
    let mut group = OrchestratorGroup::new();
    group.add(&cart).add(&badge);
    group
        .start()
        .expect("the tokio runtime accepts both event loops");
    println!("started {group:?}\n");
    let page = Page {
        cart: cart.clone(),
        badge: badge.clone(),
    };

    let job = cart.dispatch(add("mug", 2, 1200));
    page.step("1. cart adds 2 mugs", job).await;
    let job = cart.dispatch(add("tea", 1, 850));
    page.step("2. cart adds tea", job).await;
    // Straight through the dispatcher, as another tab would: no orchestrator tracks this job.
    let job = dispatcher.dispatch(add("socks", 3, 900));
    page.step("3. another tab adds 3 socks", job).await;
    let job = cart.dispatch(RemoveItem { sku: "mug" });
    page.step("4. cart removes the mugs", job).await;

    let before = cart.state();
    assert_eq!(before.item_count(), badge.state().count);
    let job = cart.dispatch(Checkout);
    let receipt = page.step("5. cart checks out", job).await;
    assert_eq!(receipt.items, before.item_count());
    println!(
        "    order #{}: {} items, {}",
        receipt.order_id,
        receipt.items,
        money(receipt.total_cents)
    );

    let job = cart.dispatch(add("stickers", 1, 300));
    page.step("6. cart adds stickers (a new cart)", job).await;

    let cart_state = cart.state();
    let badge_state = badge.state();
    println!("\nfinal cart state:");
    for line in &cart_state.lines {
        println!(
            "    {} x{} at {}",
            line.sku,
            line.qty,
            money(line.unit_cents)
        );
    }
    for order in &cart_state.orders {
        println!(
            "    placed order #{}: {} items, {}",
            order.order_id,
            order.items,
            money(order.total_cents)
        );
    }
    println!(
        "final badge state: {} item(s), {} order(s)",
        badge_state.count, badge_state.orders
    );

    // Both orchestrators agree on the cart, and saw the same events in the same order: the
    // cart its own as active and the other tab's as passive, the badge every one as passive.
    assert_eq!(cart_state.item_count(), badge_state.count);
    assert_eq!(cart_state.orders.len(), badge_state.orders);
    let events = |seen: &[Seen]| seen.iter().map(|s| s.what.clone()).collect::<Vec<_>>();
    assert_eq!(events(&cart_state.seen), events(&badge_state.seen));
    let origins = |seen: &[Seen]| seen.iter().map(|s| s.origin).collect::<Vec<_>>();
    let (active, passive) = (Origin::Active, Origin::Passive);
    assert_eq!(
        origins(&cart_state.seen),
        [active, active, passive, active, active, active]
    );
    assert_eq!(origins(&badge_state.seen), [passive; 6]);

    // Dispose both together: their state streams end, their last states stay readable.
    group.dispose();
    assert!(cart.is_disposed() && badge.is_disposed());
    assert!(badge.states().next().await.is_none());
    assert_eq!(badge.state().count, 1);
    println!("\nboth orchestrators agree; group disposed");
}

// ---------------------------------------------------------------------------------------------
// Tests (`cargo test --example shopping_cart`), with the core's test kit: a scenario on
// virtual time, a fake executor that records its jobs, and checks of outcomes.
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use orchestrator_core::testing::{FakeExecutor, Scenario, VirtualRuntime, expect};

    use super::*;

    fn lines(cart: &CartState) -> Vec<(&'static str, u32)> {
        cart.lines.iter().map(|l| (l.sku, l.qty)).collect()
    }

    #[test]
    fn the_cart_follows_its_jobs_events_and_checkout_empties_it() {
        let report = Scenario::new(CartOrchestrator, CartState::default())
            .given(|dispatcher| {
                let service = CartService::new();
                dispatcher
                    .register::<AddItem, _>(service.clone())
                    .register::<RemoveItem, _>(service.clone())
                    .register::<Checkout, _>(service);
            })
            .when(|act| {
                act.dispatch(add("mug", 2, 1200));
                act.settle();
                act.dispatch(add("tea", 1, 850));
                act.settle();
                act.dispatch(RemoveItem { sku: "mug" });
                act.settle();
                act.dispatch(Checkout);
            })
            .run()
            .unwrap();
        let seen: Vec<Vec<(&str, u32)>> = report.states().iter().map(lines).collect();
        assert_eq!(
            seen,
            [
                vec![("mug", 2)],
                vec![("mug", 2), ("tea", 1)],
                vec![("tea", 1)],
                vec![]
            ]
        );
        let cart = report.state();
        assert_eq!(cart.orders.len(), 1);
        assert_eq!(cart.orders[0].total_cents, 850);
        assert!(cart.seen.iter().all(|s| s.origin == Origin::Active));
    }

    #[test]
    fn the_badge_counts_what_others_add_without_dispatching_anything() {
        let adder = FakeExecutor::<AddItem>::succeed(Line {
            sku: "mug",
            qty: 2,
            unit_cents: 1200,
        });
        let recorder = adder.recorder();
        let report = Scenario::new(BadgeOrchestrator, BadgeState::default())
            .given(move |dispatcher| {
                dispatcher.register::<AddItem, _>(adder);
            })
            .when(|act| {
                // Dispatched by someone else (the dispatcher), not by the badge.
                let other = act.dispatcher().dispatch(add("mug", 2, 1200));
                act.block_on(other).unwrap().unwrap();
            })
            .then_jobs(&recorder, [add("mug", 2, 1200)])
            .run()
            .unwrap();
        let badge = report.state();
        assert_eq!(badge.count, 2);
        assert!(badge.seen.iter().all(|s| s.origin == Origin::Passive));
    }

    #[test]
    fn checking_out_an_empty_cart_fails_with_why() {
        let rt = VirtualRuntime::new();
        let dispatcher = Dispatcher::new(rt.clone());
        dispatcher.register::<Checkout, _>(CartService::new());
        let outcome = rt.block_on(dispatcher.dispatch(Checkout));
        expect::failed_after(&outcome, 1, "the cart is empty").unwrap();
    }
}
