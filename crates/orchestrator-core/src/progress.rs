//! Progress reports: a value in `0.0..=1.0`, an optional message, an optional step count.

use alloc::borrow::Cow;

/// One progress report.
///
/// Progress is a *state*, not a log: a job's handle keeps the latest report, and a
/// [`ProgressStream`](crate::ProgressStream) yields reports in order, skipping ones that were
/// overwritten before the subscriber looked (like `tokio::sync::watch`), always ending with the
/// last report the job made. Use events for data that must not be conflated.
///
/// The value is clamped to `0.0..=1.0` on construction. A NaN value makes an invalid report,
/// which [`JobContext::report_progress`](crate::JobContext::report_progress) ignores.
///
/// ```
/// use orchestrator_core::Progress;
/// let p = Progress::new(1.7).with_message("uploading").with_step(3, 4);
/// assert_eq!(p.value(), 1.0);
/// assert_eq!(p.message(), Some("uploading"));
/// assert_eq!(p.step(), Some((3, 4)));
/// assert!(!Progress::new(f64::NAN).is_valid());
/// ```
///
/// With the `serde` feature it is `Serialize`/`Deserialize` as a struct with the fields
/// `value`, `message` and `step` (`message` and `step` may be missing). Deserializing never
/// makes an invalid report: a `value` outside `0.0..=1.0`, or NaN, is an error, not clamped.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(try_from = "ProgressFields")
)]
pub struct Progress {
    value: f64,
    message: Option<Cow<'static, str>>,
    step: Option<(u32, u32)>,
}

impl Progress {
    /// Creates a report with `value` clamped to `0.0..=1.0` (NaN stays NaN: invalid).
    pub fn new(value: f64) -> Self {
        Self {
            value: value.clamp(0.0, 1.0),
            message: None,
            step: None,
        }
    }

    /// Attaches a human-readable message.
    pub fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Attaches "step `current` of `total`".
    pub fn with_step(mut self, current: u32, total: u32) -> Self {
        self.step = Some((current, total));
        self
    }

    /// Returns the fraction done, in `0.0..=1.0` for a valid report.
    pub fn value(&self) -> f64 {
        self.value
    }

    /// Returns the message, if any.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// Returns `(current, total)` steps, if given.
    pub fn step(&self) -> Option<(u32, u32)> {
        self.step
    }

    /// Returns `false` for a report whose value was NaN.
    pub fn is_valid(&self) -> bool {
        !self.value.is_nan()
    }
}

/// The fields of a deserialized [`Progress`], before its value is checked.
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
struct ProgressFields {
    value: f64,
    #[serde(default)]
    message: Option<Cow<'static, str>>,
    #[serde(default)]
    step: Option<(u32, u32)>,
}

/// The error of deserializing a [`Progress`] whose value is outside `0.0..=1.0` or NaN.
#[cfg(feature = "serde")]
#[derive(Debug)]
struct InvalidProgressValue(f64);

#[cfg(feature = "serde")]
impl core::fmt::Display for InvalidProgressValue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "invalid progress value {:?}: expected a number in 0.0..=1.0",
            self.0
        )
    }
}

#[cfg(feature = "serde")]
impl TryFrom<ProgressFields> for Progress {
    type Error = InvalidProgressValue;

    fn try_from(fields: ProgressFields) -> Result<Self, Self::Error> {
        if !(0.0..=1.0).contains(&fields.value) {
            return Err(InvalidProgressValue(fields.value));
        }
        Ok(Progress {
            value: fields.value,
            message: fields.message,
            step: fields.step,
        })
    }
}

impl From<f64> for Progress {
    /// A progress record with just a value (see [`Progress::new`]).
    fn from(value: f64) -> Self {
        Progress::new(value)
    }
}
