//! Results and UI-facing async state (being written).
