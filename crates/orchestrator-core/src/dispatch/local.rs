//! Local executors, registered per thread.
//!
//! A dispatcher's registry of start functions is `Send + Sync` (a dispatcher can be shared
//! across threads); a local executor is not, so it cannot live there. Its start function lives
//! in this thread's table instead, keyed by the dispatcher and the job type, and the shared
//! registry holds a forwarder that looks it up on the dispatching thread. A dispatch from a
//! thread that did not register the executor finds nothing there and is rejected
//! ([`Rejection::OtherThread`](crate::Rejection::OtherThread)): the local flavour is
//! single-threaded by definition, and "registered on this thread" is its meaning.
//!
//! The table holds each entry with a weak reference to its dispatcher: a dispatcher that is
//! dropped removes its entries of the dropping thread's table, and entries of dead dispatchers
//! left in other threads' tables are pruned at the next registration there (or go with the
//! thread). The weak reference also keeps the key's address from being reused while the entry
//! exists.

use alloc::rc::Rc;
use alloc::vec::Vec;
use core::any::{Any, TypeId};
use core::cell::RefCell;

use hashbrown::HashMap;

use crate::sync::Weak;

type Key = (usize, TypeId);

/// A dispatcher, weakly (the table does not know its type: it only compares and counts).
type Owner = Weak<dyn Any + Send + Sync>;

struct Entry {
    owner: Owner,
    start: Rc<dyn Any>,
}

std::thread_local! {
    static LOCAL: RefCell<HashMap<Key, Entry>> = RefCell::new(HashMap::new());
}

fn key<O>(owner: &Weak<O>, job: TypeId) -> Key {
    (owner.as_ptr().addr(), job)
}

/// Returns `true` if `entry` belongs to `owner`.
fn owned_by<O>(entry: &Entry, owner: &Weak<O>) -> bool {
    entry.owner.as_ptr().cast::<()>() == owner.as_ptr().cast::<()>()
}

/// Registers `start` (an `Rc<LocalStartFn<J>>`) for job type `job` of `owner` on this thread,
/// replacing any previous one.
pub(crate) fn insert<O: Any + Send + Sync>(owner: &Weak<O>, job: TypeId, start: Rc<dyn Any>) {
    let entry = Entry {
        owner: owner.clone() as Owner,
        start,
    };
    // Values leave the table before they are dropped: their destructors may use it.
    let removed: Option<(Vec<Entry>, Option<Entry>)> = LOCAL
        .try_with(|table| {
            let mut table = table.borrow_mut();
            let dead: Vec<Key> = table
                .iter()
                .filter(|(_, e)| e.owner.strong_count() == 0)
                .map(|(k, _)| *k)
                .collect();
            let dead = dead.iter().filter_map(|k| table.remove(k)).collect();
            (dead, table.insert(key(owner, job), entry))
        })
        .ok();
    drop(removed);
}

/// Returns the start function registered for `job` of `owner` on this thread.
pub(crate) fn get<O>(owner: &Weak<O>, job: TypeId) -> Option<Rc<dyn Any>> {
    LOCAL
        .try_with(|table| {
            table
                .borrow()
                .get(&key(owner, job))
                .filter(|e| owned_by(e, owner))
                .map(|e| e.start.clone())
        })
        .ok()
        .flatten()
}

/// Removes the registration of `job` of `owner` on this thread; `true` if there was one.
pub(crate) fn remove<O>(owner: &Weak<O>, job: TypeId) -> bool {
    let removed = LOCAL
        .try_with(|table| table.borrow_mut().remove(&key(owner, job)))
        .ok()
        .flatten();
    removed.is_some()
}

/// Returns `true` if this thread has a registration of `job` for `owner`.
pub(crate) fn contains<O>(owner: &Weak<O>, job: TypeId) -> bool {
    get(owner, job).is_some()
}

/// Removes every registration of the dispatcher at `owner` (being dropped) on this thread.
pub(crate) fn forget(owner: usize) {
    let removed: Option<Vec<Entry>> = LOCAL
        .try_with(|table| {
            let mut table = table.borrow_mut();
            let ours: Vec<Key> = table.keys().filter(|k| k.0 == owner).copied().collect();
            ours.iter().filter_map(|k| table.remove(k)).collect()
        })
        .ok();
    drop(removed);
}

/// Returns how many local registrations this thread holds (for tests of the pruning).
#[cfg(test)]
pub(crate) fn len() -> usize {
    LOCAL.with(|table| table.borrow().len())
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    use super::len;
    use crate::testing::VirtualRuntime;
    use crate::{Dispatch, Dispatcher, Job, JobContext, LocalExecutor};
    use alloc::rc::Rc;

    struct Ping;
    impl Job for Ping {
        type Output = u32;
    }
    struct Local(Rc<u32>);
    impl LocalExecutor<Ping> for Local {
        type Error = core::convert::Infallible;
        async fn execute(&self, _: &Ping, _: JobContext) -> Result<u32, Self::Error> {
            Ok(*self.0)
        }
    }

    #[test]
    fn a_dropped_dispatcher_takes_its_registrations_of_this_thread_along() {
        let before = len();
        let rt = VirtualRuntime::new();
        let dispatcher = Dispatcher::new(rt.clone());
        dispatcher.register_local(Local(Rc::new(7)));
        dispatcher.register_local(Local(Rc::new(8))); // replaces, does not add
        assert_eq!(len(), before + 1);
        assert_eq!(rt.block_on(dispatcher.dispatch(Ping)).unwrap().value, 8);
        assert!(dispatcher.unregister::<Ping>());
        assert!(!dispatcher.is_registered::<Ping>());
        assert_eq!(len(), before);
        dispatcher.register_local(Local(Rc::new(9)));
        assert_eq!(len(), before + 1);
        drop(dispatcher);
        assert_eq!(len(), before);
    }

    #[test]
    fn a_dispatcher_dropped_elsewhere_is_pruned_at_the_next_registration_here() {
        let before = len();
        let rt = VirtualRuntime::new();
        let gone = Dispatcher::new(rt.clone());
        gone.register_local(Local(Rc::new(1)));
        std::thread::spawn(move || drop(gone)).join().unwrap();
        assert_eq!(len(), before + 1, "another thread cannot reach this table");
        let kept = Dispatcher::new(rt.clone());
        kept.register_local(Local(Rc::new(2)));
        assert_eq!(
            len(),
            before + 1,
            "the dead entry was pruned, the new one added"
        );
        assert!(kept.is_registered::<Ping>());
        let elsewhere = kept.clone();
        let there = std::thread::spawn(move || elsewhere.is_registered::<Ping>());
        assert!(!there.join().unwrap(), "registered on this thread only");
    }
}
