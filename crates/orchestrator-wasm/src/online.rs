//! The browser's connectivity: [`BrowserConnectivity`], `navigator.onLine` and the global
//! object's `online` and `offline` events.

use orchestrator_core::{Connectivity, ManualConnectivity, StateStream};

/// Whether the browser can reach the network: `navigator.onLine` when made, then each
/// `online` and `offline` event of the page (or worker).
///
/// Give it to `DurableBuilder::connectivity` (`orchestrator-durable`): network-bound jobs then
/// wait while the browser is offline. Every value made on a thread shares one state and one
/// pair of listeners. Off `wasm32`, or where there is no `navigator`, it is always online.
///
/// A browser says "online" when it has a network, which does not prove the server can be
/// reached; a [`ManualConnectivity`] fed by the application's own checks can stand in.
#[derive(Debug, Clone)]
pub struct BrowserConnectivity {
    state: ManualConnectivity,
}

impl BrowserConnectivity {
    /// The browser's connectivity (see the type's documentation).
    pub fn new() -> Self {
        Self { state: shared() }
    }
}

impl Default for BrowserConnectivity {
    fn default() -> Self {
        Self::new()
    }
}

impl Connectivity for BrowserConnectivity {
    fn is_online(&self) -> bool {
        self.state.is_online()
    }

    fn changes(&self) -> StateStream<bool> {
        self.state.changes()
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn shared() -> ManualConnectivity {
    ManualConnectivity::new(true)
}

#[cfg(target_arch = "wasm32")]
fn shared() -> ManualConnectivity {
    use core::cell::RefCell;

    use js_sys::{Function, Reflect};
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::{JsCast, JsValue};

    std::thread_local! {
        static STATE: RefCell<Option<ManualConnectivity>> = const { RefCell::new(None) };
    }

    /// `navigator.onLine`, if there is a navigator that says.
    fn navigator_online() -> Option<bool> {
        let navigator = Reflect::get(&js_sys::global(), &JsValue::from_str("navigator")).ok()?;
        Reflect::get(&navigator, &JsValue::from_str("onLine"))
            .ok()?
            .as_bool()
    }

    /// Calls `f` on each `event` of the global object (listeners live as long as the page).
    fn listen(event: &str, f: impl FnMut() + 'static) {
        let global = js_sys::global();
        let Ok(add) = Reflect::get(&global, &JsValue::from_str("addEventListener")) else {
            return;
        };
        let Ok(add) = add.dyn_into::<Function>() else {
            return;
        };
        let closure = Closure::<dyn FnMut()>::new(f);
        if add
            .call2(&global, &JsValue::from_str(event), closure.as_ref())
            .is_ok()
        {
            closure.forget(); // registered for the page's life
        }
    }

    STATE.with(|slot| {
        if let Some(state) = &*slot.borrow() {
            return state.clone();
        }
        let state = ManualConnectivity::new(navigator_online().unwrap_or(true));
        for (event, online) in [("online", true), ("offline", false)] {
            let target = state.clone();
            listen(event, move || target.set_online(online));
        }
        *slot.borrow_mut() = Some(state.clone());
        state
    })
}
