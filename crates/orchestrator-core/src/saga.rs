//! Sagas: steps with compensations (being written).
