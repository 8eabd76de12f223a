//! The DOM side (wasm32 only): the buttons' handlers, the tasks that follow each job, and the
//! drawing of the job list from [`Board`].
//!
//! The page's state lives in an `Rc` shared by the handlers and the tasks. Those run on
//! `wasm_bindgen_futures::spawn_local`, so they need not be `Send`; only the jobs themselves
//! go through the dispatcher.

use std::cell::RefCell;
use std::rc::Rc;

use orchestrator_core::Dispatcher;
use orchestrator_wasm::{ClockSource, WasmRuntime};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{Document, Element};

use crate::{Action, Board, follow, register, start};

/// Everything the handlers share.
struct Page {
    dispatcher: Dispatcher<WasmRuntime>,
    board: RefCell<Board>,
    document: Document,
    jobs: Element,
    summary: Element,
    status: Element,
}

/// Runs once the module is instantiated (`init()` in `index.html`): registers the executors,
/// wires the buttons and enables them.
#[wasm_bindgen(start)]
fn main() -> Result<(), JsValue> {
    // wasm32-unknown-unknown aborts on a panic: say so on the page before it stops.
    std::panic::set_hook(Box::new(|info| {
        if let Ok(status) = element("status") {
            status.set_text_content(Some(&format!("panicked: {info}")));
        }
    }));

    let document = document()?;
    let runtime = WasmRuntime::new();
    let clock = match runtime.clock_source() {
        ClockSource::Performance => "performance.now()",
        ClockSource::Date => "Date.now()",
        _ => "none",
    };
    let dispatcher = Dispatcher::new(runtime);
    register(&dispatcher);
    let page = Rc::new(Page {
        dispatcher,
        board: RefCell::new(Board::new()),
        jobs: element("jobs")?,
        summary: element("summary")?,
        status: element("status")?,
        document,
    });

    for action in Action::ALL {
        let page = page.clone();
        on_click(action.button_id(), move || page.start(action))?;
    }
    let cancel_page = page.clone();
    on_click("cancel", move || cancel_page.cancel())?;

    page.status.set_text_content(Some(&format!(
        "ready: jobs run on WasmRuntime, clock {clock}"
    )));
    page.draw();
    Ok(())
}

impl Page {
    /// Dispatches `action`'s job and follows it on a local task until it ends.
    fn start(self: &Rc<Self>, action: Action) {
        let (number, token) = self.board.borrow_mut().start(action.label());
        let started = start(&self.dispatcher, action, token);
        self.draw();
        let page = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let outcome = follow(started, |report| {
                page.board.borrow_mut().report(number, report);
                page.draw();
            })
            .await;
            page.board.borrow_mut().finish(number, outcome);
            page.draw();
        });
    }

    /// Cancels the newest job still running; its task then sees it end as cancelled.
    fn cancel(&self) {
        let cancelled = self.board.borrow_mut().cancel_newest();
        let note = match cancelled {
            Some(number) => format!("cancel requested for job {number}"),
            None => "nothing to cancel".to_owned(),
        };
        self.status.set_text_content(Some(&note));
        self.draw();
    }

    /// Redraws the summary and the job list; a DOM error goes to the status line.
    fn draw(&self) {
        if let Err(error) = self.try_draw() {
            self.status
                .set_text_content(Some(&format!("could not draw the jobs: {error:?}")));
        }
    }

    fn try_draw(&self) -> Result<(), JsValue> {
        let board = self.board.borrow();
        self.summary.set_text_content(Some(&board.summary()));
        // Setting the text content removes every child: the list is redrawn whole.
        self.jobs.set_text_content(None);
        for row in board.rows() {
            let item = self.document.create_element("li")?;
            item.set_id(&row.id);
            item.set_class_name(row.class);
            // Two rows of two cells (index.html's grid): the title and the bar, then the
            // outcome line and the progress text.
            let title = self.child(&item, "span", "title")?;
            title.set_text_content(Some(&row.title));
            let bar = self.child(&item, "progress", "bar")?;
            bar.set_attribute("max", "100")?;
            bar.set_attribute("value", &row.percent.to_string())?;
            let line = self.child(&item, "span", "line")?;
            line.set_text_content(Some(&row.line));
            let text = self.child(&item, "span", "progress")?;
            text.set_text_content(Some(&row.progress));
            self.jobs.append_child(&item)?;
        }
        Ok(())
    }

    /// Appends a new `tag` element of class `class` to `parent`.
    fn child(&self, parent: &Element, tag: &str, class: &str) -> Result<Element, JsValue> {
        let child = self.document.create_element(tag)?;
        child.set_class_name(class);
        parent.append_child(&child)?;
        Ok(child)
    }
}

fn document() -> Result<Document, JsValue> {
    web_sys::window()
        .and_then(|window| window.document())
        .ok_or_else(|| JsValue::from_str("no window.document: this module runs in a page"))
}

fn element(id: &str) -> Result<Element, JsValue> {
    document()?
        .get_element_by_id(id)
        .ok_or_else(|| JsValue::from_str(&format!("index.html has no #{id}")))
}

/// Calls `handler` on each click of button `#id`, and enables the button.
fn on_click(id: &str, handler: impl FnMut() + 'static) -> Result<(), JsValue> {
    let button = element(id)?;
    let handler = Closure::<dyn FnMut()>::new(handler);
    button.add_event_listener_with_callback("click", handler.as_ref().unchecked_ref())?;
    // The listener lives as long as the page: hand the closure over to JavaScript.
    handler.forget();
    button.remove_attribute("disabled")?;
    Ok(())
}
