//! The page's state: the list of jobs started from its buttons, their progress and outcomes,
//! and the texts the page shows for them. No DOM here: the page draws [`Board::rows`] and
//! [`Board::summary`].

use core::error::Error;
use core::fmt;
use core::time::Duration;

use orchestrator_core::{CancellationToken, JobError, Progress, Success};

/// How a job ended, as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded with this value (displayed).
    Succeeded(String),
    /// It failed; the error and its sources, joined with `": "`.
    Failed(String),
    /// It was cancelled, with the reason given, if any.
    Cancelled(Option<String>),
    /// Its time budget ran out.
    TimedOut(Duration),
    /// It never ran; the reason.
    Rejected(String),
}

impl Outcome {
    /// The outcome of a job handle's result.
    ///
    /// ```
    /// use orchestrator_core::JobError;
    /// use orchestrator_web_example::Outcome;
    ///
    /// let cancelled: Result<orchestrator_core::Success<u64>, _> =
    ///     Err(JobError::Cancelled { reason: None });
    /// assert_eq!(Outcome::of(&cancelled).to_string(), "cancelled");
    /// ```
    pub fn of<T: fmt::Display>(result: &Result<Success<T>, JobError>) -> Self {
        match result {
            Ok(success) => Outcome::Succeeded(success.value.to_string()),
            Err(JobError::Cancelled { reason }) => {
                Outcome::Cancelled(reason.as_ref().map(|r| r.to_string()))
            }
            Err(JobError::TimedOut { budget }) => Outcome::TimedOut(*budget),
            Err(JobError::Rejected(rejection)) => Outcome::Rejected(rejection.to_string()),
            // Failed, and any outcome a later core adds: the error and its sources.
            Err(error) => Outcome::Failed(error_chain(error)),
        }
    }

    /// A CSS class for the outcome: `succeeded`, `failed`, `cancelled`, `timed-out` or
    /// `rejected`.
    pub fn class(&self) -> &'static str {
        match self {
            Outcome::Succeeded(_) => "succeeded",
            Outcome::Failed(_) => "failed",
            Outcome::Cancelled(_) => "cancelled",
            Outcome::TimedOut(_) => "timed-out",
            Outcome::Rejected(_) => "rejected",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Succeeded(value) => write!(f, "succeeded: {value}"),
            Outcome::Failed(error) => write!(f, "failed: {error}"),
            Outcome::Cancelled(None) => f.write_str("cancelled"),
            Outcome::Cancelled(Some(reason)) => write!(f, "cancelled: {reason}"),
            Outcome::TimedOut(budget) => write!(f, "timed out after {budget:?}"),
            Outcome::Rejected(reason) => write!(f, "rejected: {reason}"),
        }
    }
}

/// `error`'s message followed by those of its sources, joined with `": "`.
fn error_chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A progress value in `0.0..=1.0` as a whole percentage (NaN counts as 0).
pub fn percent(value: f64) -> u8 {
    // The cast saturates, and NaN becomes 0.
    (value.clamp(0.0, 1.0) * 100.0).round() as u8
}

/// A progress report as the page shows it: `"75 % · step 3 of 4 · multiplying"`.
///
/// ```
/// use orchestrator_core::Progress;
/// use orchestrator_web_example::progress_text;
///
/// let p = Progress::new(0.75).with_step(3, 4).with_message("multiplying");
/// assert_eq!(progress_text(Some(&p)), "75 % · step 3 of 4 · multiplying");
/// assert_eq!(progress_text(None), "0 % · waiting");
/// ```
pub fn progress_text(progress: Option<&Progress>) -> String {
    let Some(progress) = progress else {
        return "0 % · waiting".to_owned();
    };
    let mut text = format!("{} %", percent(progress.value()));
    if let Some((current, total)) = progress.step() {
        text.push_str(&format!(" · step {current} of {total}"));
    }
    if let Some(message) = progress.message() {
        text.push_str(" · ");
        text.push_str(message);
    }
    text
}

/// One job of the list.
#[derive(Debug)]
struct Entry {
    label: String,
    token: CancellationToken,
    progress: Option<Progress>,
    outcome: Option<Outcome>,
}

/// One job as the page draws it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The element id: `job-1`, `job-2`, ...
    pub id: String,
    /// The CSS class: `running`, `cancelling`, or the outcome's [class](Outcome::class).
    pub class: &'static str,
    /// `job 1 · multiply 6 × 7`.
    pub title: String,
    /// The latest progress, in whole percent.
    pub percent: u8,
    /// The latest progress as text (see [`progress_text`]).
    pub progress: String,
    /// `job 1: running`, `job 1: cancelling`, then `job 1: ` and the outcome.
    pub line: String,
}

/// The jobs started from the page, numbered from 1 in the order they were started.
#[derive(Debug, Default)]
pub struct Board {
    entries: Vec<Entry>,
}

impl Board {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a running job described by `label`; returns its number and the token to dispatch
    /// it with (so that [`cancel_newest`](Self::cancel_newest) can cancel it).
    pub fn start(&mut self, label: impl Into<String>) -> (usize, CancellationToken) {
        let token = CancellationToken::new();
        self.entries.push(Entry {
            label: label.into(),
            token: token.clone(),
            progress: None,
            outcome: None,
        });
        (self.entries.len(), token)
    }

    /// Records job `number`'s latest progress; ignored once it has ended (or for an unknown
    /// number).
    pub fn report(&mut self, number: usize, progress: Progress) {
        if let Some(entry) = self.entry_mut(number) {
            if entry.outcome.is_none() {
                entry.progress = Some(progress);
            }
        }
    }

    /// Records job `number`'s outcome (the first one recorded stays).
    pub fn finish(&mut self, number: usize, outcome: Outcome) {
        if let Some(entry) = self.entry_mut(number) {
            entry.outcome.get_or_insert(outcome);
        }
    }

    /// Cancels the most recently started job that is still running and not already being
    /// cancelled; returns its number, or `None` if there is none.
    pub fn cancel_newest(&mut self) -> Option<usize> {
        let (index, entry) = self
            .entries
            .iter()
            .enumerate()
            .rev()
            .find(|(_, e)| e.outcome.is_none() && !e.token.is_cancelled())?;
        entry.token.cancel();
        Some(index + 1)
    }

    /// How many jobs are still running.
    pub fn running(&self) -> usize {
        self.entries.iter().filter(|e| e.outcome.is_none()).count()
    }

    /// Each job as the page draws it, in the order they were started.
    pub fn rows(&self) -> Vec<Row> {
        self.entries
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                let number = index + 1;
                let (class, line) = match &entry.outcome {
                    Some(outcome) => (outcome.class(), format!("job {number}: {outcome}")),
                    None if entry.token.is_cancelled() => {
                        ("cancelling", format!("job {number}: cancelling"))
                    }
                    None => ("running", format!("job {number}: running")),
                };
                Row {
                    id: format!("job-{number}"),
                    class,
                    title: format!("job {number} · {}", entry.label),
                    percent: entry.progress.as_ref().map_or(0, |p| percent(p.value())),
                    progress: progress_text(entry.progress.as_ref()),
                    line,
                }
            })
            .collect()
    }

    /// One line about the whole list: `"3 jobs: 1 succeeded, 1 failed, 1 cancelled, 0
    /// running"` (outcomes that no job had are left out, `running` never is).
    pub fn summary(&self) -> String {
        if self.entries.is_empty() {
            return "no jobs yet".to_owned();
        }
        let count = |class: &str| {
            self.entries
                .iter()
                .filter(|e| e.outcome.as_ref().is_some_and(|o| o.class() == class))
                .count()
        };
        let total = self.entries.len();
        let mut text = format!("{total} job{}:", if total == 1 { "" } else { "s" });
        for class in ["succeeded", "failed", "cancelled", "timed-out", "rejected"] {
            let n = count(class);
            if n > 0 {
                text.push_str(&format!(" {n} {},", class.replace('-', " ")));
            }
        }
        text.push_str(&format!(" {} running", self.running()));
        text
    }

    fn entry_mut(&mut self, number: usize) -> Option<&mut Entry> {
        self.entries.get_mut(number.checked_sub(1)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_lines() {
        let ok: Result<Success<u64>, JobError> = Ok(Success {
            value: 42,
            data_source: Default::default(),
        });
        assert_eq!(Outcome::of(&ok).to_string(), "succeeded: 42");
        let cancelled: Result<Success<u64>, JobError> = Err(JobError::Cancelled {
            reason: Some("the Cancel button".into()),
        });
        assert_eq!(
            Outcome::of(&cancelled).to_string(),
            "cancelled: the Cancel button"
        );
        let timed_out: Result<Success<u64>, JobError> = Err(JobError::TimedOut {
            budget: Duration::from_secs(2),
        });
        assert_eq!(Outcome::of(&timed_out).to_string(), "timed out after 2s");
        assert_eq!(Outcome::of(&timed_out).class(), "timed-out");
        assert_eq!(
            Outcome::Failed("job failed after 1 attempt: boom".into()).to_string(),
            "failed: job failed after 1 attempt: boom"
        );
    }

    #[test]
    fn error_chains_print_every_source_once() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("outer")
            }
        }
        impl Error for Outer {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        let error = Outer(std::io::Error::other("inner"));
        assert_eq!(error_chain(&error), "outer: inner");
    }

    #[test]
    fn percentages_round_and_clamp() {
        assert_eq!(percent(0.0), 0);
        assert_eq!(percent(0.255), 26);
        assert_eq!(percent(1.0), 100);
        assert_eq!(percent(7.0), 100);
        assert_eq!(percent(-1.0), 0);
        assert_eq!(percent(f64::NAN), 0);
    }

    #[test]
    fn progress_texts() {
        assert_eq!(progress_text(Some(&Progress::new(0.5))), "50 %");
        assert_eq!(
            progress_text(Some(&Progress::new(1.0).with_step(4, 4))),
            "100 % · step 4 of 4"
        );
    }

    #[test]
    fn jobs_are_numbered_and_keep_their_first_outcome() {
        let mut board = Board::new();
        assert_eq!(board.summary(), "no jobs yet");
        let (one, _) = board.start("multiply 6 × 7");
        let (two, _) = board.start("upload");
        assert_eq!((one, two), (1, 2));
        board.report(1, Progress::new(0.25).with_step(1, 4));
        board.finish(1, Outcome::Succeeded("42".into()));
        // Late reports and outcomes change nothing; unknown numbers are ignored.
        board.report(1, Progress::new(0.5));
        board.finish(1, Outcome::Cancelled(None));
        board.report(0, Progress::new(0.5));
        board.finish(9, Outcome::Cancelled(None));

        let rows = board.rows();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            Row {
                id: "job-1".into(),
                class: "succeeded",
                title: "job 1 · multiply 6 × 7".into(),
                percent: 25,
                progress: "25 % · step 1 of 4".into(),
                line: "job 1: succeeded: 42".into(),
            }
        );
        assert_eq!(rows[1].line, "job 2: running");
        assert_eq!(rows[1].progress, "0 % · waiting");
        assert_eq!(board.summary(), "2 jobs: 1 succeeded, 1 running");
    }

    #[test]
    fn cancel_takes_the_newest_running_job_once() {
        let mut board = Board::new();
        let (_, first) = board.start("a");
        let (_, second) = board.start("b");
        let (_, third) = board.start("c");
        board.finish(3, Outcome::Succeeded("1".into()));

        assert_eq!(board.cancel_newest(), Some(2));
        assert!(second.is_cancelled() && !first.is_cancelled() && !third.is_cancelled());
        assert_eq!(board.rows()[1].line, "job 2: cancelling");
        assert_eq!(board.rows()[1].class, "cancelling");

        assert_eq!(board.cancel_newest(), Some(1));
        assert_eq!(board.cancel_newest(), None);

        board.finish(1, Outcome::Cancelled(None));
        board.finish(2, Outcome::Failed("job failed after 1 attempt: x".into()));
        assert_eq!(board.running(), 0);
        assert_eq!(
            board.summary(),
            "3 jobs: 1 succeeded, 1 failed, 1 cancelled, 0 running"
        );
    }
}
