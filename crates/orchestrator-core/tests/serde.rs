//! Round trips of the plain data types through serde (the `serde` feature), and the checks
//! that keep a deserialized value valid.
#![cfg(feature = "serde")]

use orchestrator_core::{DataSource, JobId, Progress};
use serde::Deserialize;
use serde::de::value::{Error as ValueError, MapDeserializer};

fn round_trip<T>(value: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let json = serde_json::to_string(value).unwrap();
    serde_json::from_str(&json).unwrap()
}

#[test]
fn job_id_is_its_number() {
    let id = JobId::next();
    assert_eq!(serde_json::to_string(&id).unwrap(), id.as_u64().to_string());
    assert_eq!(round_trip(&id), id);
    assert_eq!(
        serde_json::from_str::<JobId>("42").unwrap(),
        JobId::from_u64(42).unwrap()
    );
}

#[test]
fn job_id_zero_is_rejected() {
    assert!(serde_json::from_str::<JobId>("0").is_err());
    assert!(serde_json::from_str::<JobId>("-1").is_err());
}

#[test]
fn data_source_round_trips_by_variant_name() {
    for (source, json) in [
        (DataSource::Fresh, "\"Fresh\""),
        (DataSource::Cached, "\"Cached\""),
        (DataSource::Optimistic, "\"Optimistic\""),
    ] {
        assert_eq!(serde_json::to_string(&source).unwrap(), json);
        assert_eq!(round_trip(&source), source);
    }
    assert!(serde_json::from_str::<DataSource>("\"Stale\"").is_err());
}

#[test]
fn progress_round_trips_with_and_without_message_and_step() {
    let full = Progress::new(0.25)
        .with_message("uploading")
        .with_step(1, 4);
    assert_eq!(
        serde_json::to_string(&full).unwrap(),
        r#"{"value":0.25,"message":"uploading","step":[1,4]}"#
    );
    assert_eq!(round_trip(&full), full);
    for bare in [Progress::new(0.0), Progress::new(1.0), Progress::new(0.5)] {
        assert_eq!(round_trip(&bare), bare);
    }
    let minimal: Progress = serde_json::from_str(r#"{"value":0.75}"#).unwrap();
    assert_eq!(minimal, Progress::new(0.75));
}

#[test]
fn progress_outside_zero_to_one_is_rejected() {
    for json in [
        r#"{"value":1.5}"#,
        r#"{"value":-0.1}"#,
        r#"{"value":1e300,"message":"too far"}"#,
    ] {
        let error = serde_json::from_str::<Progress>(json).unwrap_err();
        assert!(error.to_string().contains("0.0..=1.0"), "{json}: {error}");
    }
}

#[test]
fn progress_nan_is_rejected() {
    // JSON has no NaN; a self-describing map of plain values does.
    let map = MapDeserializer::<_, ValueError>::new([("value", f64::NAN)].into_iter());
    assert!(Progress::deserialize(map).is_err());
    let map = MapDeserializer::<_, ValueError>::new([("value", 0.5)].into_iter());
    let progress = Progress::deserialize(map).unwrap();
    assert!(progress.is_valid());
    assert_eq!(progress.value(), 0.5);
}
