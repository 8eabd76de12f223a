//! The AI-chatbot case study: three chained jobs, a streamed answer, and a failed save
//! that loses nothing, on tokio.
//!
//! A `ChatOrchestrator` answers a question in three steps, each a job run by its own executor:
//! `LoadContext` fetches the conversation's history, `Generate` streams the answer token by
//! token, `SaveAnswer` persists it. Each has an output event ([`Job::output_event`]): when one
//! succeeds, its output becomes a domain event (`ContextLoaded`, `AnswerGenerated`,
//! `AnswerSaved`), and the
//! orchestrator dispatches the next step from its event handler. While `Generate` runs, the
//! orchestrator appends each `Token` event to the answer in its state, and `main` prints the
//! tokens as they arrive. The storage is down for the first save: the job fails, the
//! orchestrator keeps the answer in its state (`pending_save`) and offers a retry
//! (`ChatState::can_retry_save`), and `main` retries the save, which succeeds.
//!
//! Run it with `cargo run --example ai_chatbot`.
//!
//! The output is deterministic: `main` reads the token events (lossless and ordered) and waits
//! until the orchestrator has handled each job it needs (`handled(id)`: the generation, whose
//! id the tokens carry, then the save the orchestrator started, whose id its state names).
//! Nothing sleeps a fixed time to synchronize (the executors sleep a few milliseconds to
//! simulate a backend and a model).

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use orchestrator_core::{
    Dispatch, Dispatcher, Event, Executor, Job, JobContext, JobId, JobLifecycle, Orchestrator,
    OrchestratorContext, OrchestratorHandle, Origin, Progress,
};
use orchestrator_tokio::TokioRuntime;

// ---------------------------------------------------------------------------------------------
// The domain: three jobs, the events their outputs become, and the streamed tokens.
// ---------------------------------------------------------------------------------------------

/// The conversation this program talks in.
const CONVERSATION: &str = "conv-42";

/// What the model answers with: the question and the conversation so far.
#[derive(Debug, Clone)]
struct ChatContext {
    conversation: &'static str,
    question: String,
    history: Vec<String>,
}

/// Job (a): fetch the conversation's history to answer `question` in.
struct LoadContext {
    conversation: &'static str,
    question: String,
}

impl Job for LoadContext {
    type Output = ChatContext;
    fn output_event(&self, context: &ChatContext) -> Option<impl Send + Sync + 'static> {
        Some(ContextLoaded(context.clone()))
    }
}

/// Domain event: the context is ready (published when a `LoadContext` job succeeds).
#[derive(Debug, Clone)]
struct ContextLoaded(ChatContext);

/// Job (b): generate the answer. It streams [`Token`] events; its output is the whole answer.
struct Generate {
    context: ChatContext,
}

impl Job for Generate {
    type Output = String;
    fn output_event(&self, answer: &String) -> Option<impl Send + Sync + 'static> {
        Some(AnswerGenerated {
            conversation: self.context.conversation,
            question: self.context.question.clone(),
            answer: answer.clone(),
        })
    }
}

/// One piece of the answer, emitted by `Generate` as soon as the model produces it.
#[derive(Debug, Clone)]
struct Token {
    /// 0-based position in the answer.
    index: u32,
    /// How many tokens the answer has.
    total: u32,
    text: String,
}

impl Token {
    fn is_last(&self) -> bool {
        self.index + 1 == self.total
    }
}

/// Domain event: the whole answer was generated.
#[derive(Debug, Clone)]
struct AnswerGenerated {
    conversation: &'static str,
    question: String,
    answer: String,
}

/// Job (c): append the question and its answer to the conversation. Its output is the new
/// message's id.
#[derive(Debug, Clone)]
struct SaveAnswer {
    conversation: &'static str,
    question: String,
    answer: String,
}

impl Job for SaveAnswer {
    type Output = u32;
    fn output_event(&self, message_id: &u32) -> Option<impl Send + Sync + 'static> {
        Some(AnswerSaved {
            message_id: *message_id,
        })
    }
}

/// Domain event: the answer is stored as message `message_id`.
#[derive(Debug, Clone)]
struct AnswerSaved {
    message_id: u32,
}

#[derive(Debug)]
enum ChatError {
    UnknownConversation(&'static str),
    StorageUnavailable,
}

impl std::fmt::Display for ChatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChatError::UnknownConversation(id) => write!(f, "no conversation {id}"),
            ChatError::StorageUnavailable => f.write_str("storage unavailable (503)"),
        }
    }
}

impl std::error::Error for ChatError {}

// ---------------------------------------------------------------------------------------------
// How: a simulated chat backend, one executor for the three job types.
// ---------------------------------------------------------------------------------------------

/// The conversation store and the "model".
#[derive(Clone)]
struct ChatBackend {
    conversations: Arc<Mutex<HashMap<&'static str, Vec<String>>>>,
    /// How many of the next saves fail with [`ChatError::StorageUnavailable`].
    storage_outages: Arc<AtomicU32>,
    next_message: Arc<AtomicU32>,
}

impl ChatBackend {
    fn new() -> Self {
        let history = vec![
            "user: Which runtimes does the orchestrator support?".to_owned(),
            "bot: tokio, smol and async-std, and no_std with a task pool.".to_owned(),
        ];
        Self {
            conversations: Arc::new(Mutex::new(HashMap::from([(CONVERSATION, history)]))),
            storage_outages: Arc::new(AtomicU32::new(0)),
            next_message: Arc::new(AtomicU32::new(3)),
        }
    }

    /// Runs `f` on the stored conversations (never across an `.await`).
    fn with_conversations<T>(
        &self,
        f: impl FnOnce(&mut HashMap<&'static str, Vec<String>>) -> T,
    ) -> T {
        let mut conversations = self
            .conversations
            .lock()
            .expect("no executor panics with the lock held");
        f(&mut conversations)
    }

    /// The "model": a canned answer, split into word tokens (each with its trailing space).
    fn complete(context: &ChatContext) -> Vec<String> {
        let answer = format!(
            "Following up on our {} earlier messages: pass a CancellationToken with \
             .cancellation(token) and call token.cancel(); the job's work is dropped at its \
             next await and its handle resolves as Cancelled.",
            context.history.len()
        );
        answer.split_inclusive(' ').map(str::to_owned).collect()
    }
}

/// Simulated latency of the database.
const DB_LATENCY: Duration = Duration::from_millis(5);
/// Simulated time the model takes per token.
const TOKEN_LATENCY: Duration = Duration::from_millis(2);

impl Executor<LoadContext> for ChatBackend {
    type Error = ChatError;

    async fn execute(&self, job: &LoadContext, cx: JobContext) -> Result<ChatContext, ChatError> {
        cx.sleep(DB_LATENCY).await;
        let history = self
            .with_conversations(|c| c.get(job.conversation).cloned())
            .ok_or(ChatError::UnknownConversation(job.conversation))?;
        Ok(ChatContext {
            conversation: job.conversation,
            question: job.question.clone(),
            history,
        })
    }
}

impl Executor<Generate> for ChatBackend {
    type Error = ChatError;

    async fn execute(&self, job: &Generate, cx: JobContext) -> Result<String, ChatError> {
        let tokens = Self::complete(&job.context);
        let total = u32::try_from(tokens.len()).expect("an answer has fewer than 2^32 tokens");
        let mut answer = String::new();
        for (index, text) in (0..).zip(tokens) {
            cx.sleep(TOKEN_LATENCY).await;
            answer.push_str(&text);
            // The text goes out as events: the bus is lossless and ordered, so every
            // subscriber gets every token, in order. Progress is a state, not a log: a reader
            // sees the latest report and skips the ones overwritten before it looked. That is
            // right for a percentage, wrong for text, so progress only says how far along the
            // answer is (its message is the latest token, for a status line).
            let emitted = cx.emit(Token {
                index,
                total,
                text: text.clone(),
            });
            emitted.expect("the job is running and its bus is open");
            let done = index + 1;
            cx.report_progress(
                Progress::new(f64::from(done) / f64::from(total))
                    .with_message(text)
                    .with_step(done, total),
            );
        }
        Ok(answer)
    }
}

impl Executor<SaveAnswer> for ChatBackend {
    type Error = ChatError;

    async fn execute(&self, job: &SaveAnswer, cx: JobContext) -> Result<u32, ChatError> {
        cx.sleep(DB_LATENCY).await;
        let outage = self
            .storage_outages
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if outage.is_ok() {
            return Err(ChatError::StorageUnavailable);
        }
        self.with_conversations(|c| {
            let history = c
                .get_mut(job.conversation)
                .ok_or(ChatError::UnknownConversation(job.conversation))?;
            history.push(format!("user: {}", job.question));
            history.push(format!("bot: {}", job.answer));
            Ok(self.next_message.fetch_add(2, Ordering::Relaxed) + 1)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The orchestrator: it chains the three jobs and keeps the answer.
// ---------------------------------------------------------------------------------------------

/// Where the current question is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Phase {
    #[default]
    Idle,
    LoadingContext,
    Generating,
    Saving,
    /// The answer is in `pending_save`; a new `SaveAnswer` retries it.
    SaveFailed,
    Saved,
    /// Loading the context or generating failed: there is no answer to keep.
    Failed,
}

/// What the chat screen shows.
#[derive(Debug, Clone, Default)]
struct ChatState {
    phase: Phase,
    question: String,
    /// How many earlier messages the answer was generated with.
    context_messages: usize,
    /// The answer so far: it grows with each token, and survives a failed save.
    answer: String,
    tokens: u32,
    /// The save to retry: the answer as generated, kept until a save succeeds.
    pending_save: Option<SaveAnswer>,
    /// The save job this orchestrator started for the answer (for `handled`).
    save_job: Option<JobId>,
    /// How many times saving was started.
    save_attempts: u32,
    last_error: Option<String>,
    saved_as: Option<u32>,
}

impl ChatState {
    /// The screen's "retry" button: a save failed and its answer is still here.
    fn can_retry_save(&self) -> bool {
        self.phase == Phase::SaveFailed && self.pending_save.is_some()
    }
}

/// Answers questions: context, then generation, then saving, each step dispatched when the
/// previous one's domain event arrives.
struct ChatOrchestrator;

impl Orchestrator for ChatOrchestrator {
    type State = ChatState;

    fn on_event(
        &mut self,
        event: &Event,
        origin: Origin,
        cx: &mut OrchestratorContext<'_, ChatState>,
    ) {
        // Only its own jobs move the conversation on: a context loaded or an answer generated
        // for somebody else (a passive event) is not a step of this chat.
        if !origin.is_active() {
            return;
        }
        if let Some(ContextLoaded(context)) = event.downcast_ref() {
            cx.update(|s| {
                s.phase = Phase::Generating;
                s.question = context.question.clone();
                s.context_messages = context.history.len();
                s.answer.clear();
                s.tokens = 0;
            });
            let generate = Generate {
                context: context.clone(),
            };
            // The handle is dropped: the job runs on, its events report how it went.
            drop(cx.dispatch(generate));
        } else if let Some(token) = event.downcast_ref::<Token>() {
            cx.update(|s| {
                s.answer.push_str(&token.text);
                s.tokens += 1;
            });
        } else if let Some(generated) = event.downcast_ref::<AnswerGenerated>() {
            let save = SaveAnswer {
                conversation: generated.conversation,
                question: generated.question.clone(),
                answer: generated.answer.clone(),
            };
            let job = cx.dispatch(save.clone()).id();
            cx.update(|s| {
                debug_assert_eq!(s.answer, generated.answer, "every token was seen");
                s.answer.clone_from(&generated.answer);
                s.pending_save = Some(save);
                s.save_job = Some(job);
            });
        } else if let Some(AnswerSaved { message_id }) = event.downcast_ref() {
            cx.update(|s| {
                s.phase = Phase::Saved;
                s.pending_save = None;
                s.last_error = None;
                s.saved_as = Some(*message_id);
            });
        } else if let Some(lifecycle) = event.downcast_ref::<JobLifecycle>() {
            match lifecycle {
                JobLifecycle::Started if event.is_from_job::<LoadContext>() => {
                    cx.update(|s| s.phase = Phase::LoadingContext);
                }
                // Whoever dispatched it (this handler, or `main` retrying), a save starts.
                JobLifecycle::Started if event.is_from_job::<SaveAnswer>() => cx.update(|s| {
                    s.phase = Phase::Saving;
                    s.save_attempts += 1;
                }),
                // The save failed: keep the answer (and the save to retry) and say so.
                JobLifecycle::Failed(failure) if event.is_from_job::<SaveAnswer>() => {
                    cx.update(|s| {
                        s.phase = Phase::SaveFailed;
                        s.last_error = Some(failure.error().to_string());
                    });
                }
                JobLifecycle::Failed(failure) => cx.update(|s| {
                    s.phase = Phase::Failed;
                    s.last_error = Some(failure.error().to_string());
                }),
                _ => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Synchronization without sleeping.
// ---------------------------------------------------------------------------------------------

/// A generous deadline that only a bug can reach.
const DEADLINE: Duration = Duration::from_secs(5);

/// Waits until `orchestrator` has handled job `id`'s terminal event (and so every event of
/// the job before it), and returns its state then.
async fn handled<S: Clone + Send + Sync + 'static>(
    orchestrator: &OrchestratorHandle<S>,
    what: &str,
    id: JobId,
) -> S {
    match tokio::time::timeout(DEADLINE, orchestrator.handled(id)).await {
        Ok(Ok(())) => orchestrator.state(),
        Ok(Err(e)) => panic!("{} before {what}: {e}", orchestrator.name()),
        Err(_) => panic!(
            "{} did not handle {what} within {DEADLINE:?}",
            orchestrator.name()
        ),
    }
}

fn print_state(state: &ChatState) {
    println!("    phase:        {:?}", state.phase);
    println!("    question:     {}", state.question);
    println!(
        "    context:      {} earlier messages",
        state.context_messages
    );
    println!(
        "    answer:       {} tokens, {} chars",
        state.tokens,
        state.answer.len()
    );
    let pending = state.pending_save.as_ref().map(|save| save.answer.len());
    println!(
        "    pending save: {}",
        pending.map_or("none".to_owned(), |n| format!("{n} chars"))
    );
    println!("    saves:        {} started", state.save_attempts);
    println!(
        "    last error:   {}",
        state.last_error.as_deref().unwrap_or("none")
    );
    let saved = state
        .saved_as
        .map_or("not yet".to_owned(), |id| format!("message #{id}"));
    println!("    saved as:     {saved}");
    println!("    can retry:    {}", state.can_retry_save());
}

#[tokio::main]
async fn main() {
    let dispatcher = Dispatcher::new(TokioRuntime::default()); // the one runtime-specific line
    let backend = ChatBackend::new();
    backend.storage_outages.store(1, Ordering::Release); // the first save fails
    dispatcher
        .register::<LoadContext, _>(backend.clone())
        .register::<Generate, _>(backend.clone())
        .register::<SaveAnswer, _>(backend.clone());

    let chat = ChatOrchestrator
        .builder(ChatState::default(), &dispatcher)
        .name("chat")
        .start()
        .expect("tokio accepts the orchestrator's event loop");

    // Subscribe before the first dispatch: a subscription sees the events published while it
    // exists, every one of them.
    let mut tokens = chat.on::<Token>();

    let question = "How do I stop a job that is still running?";
    println!("1. the user asks: {question}");
    let load = LoadContext {
        conversation: CONVERSATION,
        question: question.to_owned(),
    };
    let context = chat.dispatch(load).await;
    let context = context.expect("the conversation exists").value;
    println!(
        "2. context loaded: {} earlier messages",
        context.history.len()
    );

    // The orchestrator dispatched `Generate` when it saw `ContextLoaded`; print its tokens.
    print!("3. the bot answers: ");
    let mut streamed = String::new();
    let read = async {
        while let Some(token) = tokens.next().await {
            print!("{}", token.text);
            std::io::stdout().flush().expect("stdout accepts the token");
            streamed.push_str(&token.text);
            if token.is_last() {
                // A token is an event of the `Generate` job: it carries the job's id.
                return token.event().correlation_id();
            }
        }
        panic!("the chat orchestrator was disposed mid-answer");
    };
    let generate = tokio::time::timeout(DEADLINE, read)
        .await
        .expect("the whole answer streams within the deadline")
        .expect("a token is an event of its job");
    println!();
    drop(tokens);

    // The orchestrator dispatched `SaveAnswer` when it saw `AnswerGenerated` (before the
    // generation's terminal event); the storage is down, so the save fails, and the answer
    // must still be there.
    let state = handled(&chat, "the generation", generate).await;
    let save = state.save_job.expect("the chat started a save");
    let state = handled(&chat, "the first save", save).await;
    assert!(state.can_retry_save(), "the first save fails");
    println!("4. saving failed; the state keeps the answer and offers a retry:");
    print_state(&state);
    assert_eq!(state.answer, streamed, "the state has every streamed token");
    let retry = state
        .pending_save
        .clone()
        .expect("a failed save keeps its answer");
    assert_eq!(retry.answer, streamed);

    // The user presses "retry": dispatch the kept save again, through the orchestrator, so
    // that its outcome reaches the state like the first one's.
    println!("5. the user retries the save");
    let saved = chat.dispatch(retry);
    let id = saved.id();
    let message_id = saved.await.expect("the storage is back").value;
    let state = handled(&chat, "the retried save", id).await;
    assert_eq!(state.phase, Phase::Saved);
    println!("6. saved as message #{message_id}; final state:");
    print_state(&state);
    assert_eq!(state.saved_as, Some(message_id));
    assert_eq!(state.answer, streamed);
    assert_eq!(state.save_attempts, 2);
    assert!(state.pending_save.is_none() && !state.can_retry_save());

    let stored = backend.with_conversations(|c| c[CONVERSATION].clone());
    println!("7. the conversation now has {} messages:", stored.len());
    for message in &stored {
        println!("    {message}");
    }
    assert_eq!(stored.last(), Some(&format!("bot: {streamed}")));

    chat.dispose();
    assert!(chat.states().next().await.is_none());
}
