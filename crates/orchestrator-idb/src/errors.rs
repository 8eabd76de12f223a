//! What the browser's errors mean for a store: a `DOMException`'s name to a [`StoreError`].

use orchestrator_store::StoreError;

/// The name a database goes by in errors.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) fn path(name: &str) -> String {
    format!("indexeddb:{name}")
}

/// The error of `open` and `delete` off `wasm32`.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn not_a_browser(name: &str) -> StoreError {
    StoreError::Unavailable {
        detail: format!(
            "IndexedDB exists only in a browser (wasm32), and `{}` was opened on the host",
            path(name)
        ),
    }
}

/// Maps a `DOMException` (its `name` and `message`) raised while doing `what` on database
/// `name` to the store's error.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) fn map(name: &str, what: &str, exception: &str, message: &str) -> StoreError {
    let detail = if message.is_empty() {
        format!("{what}: {exception}")
    } else {
        format!("{what}: {exception}: {message}")
    };
    match exception {
        // The quota of the origin (or the disk) is full.
        "QuotaExceededError" => StoreError::Full { detail },
        // Private browsing, storage blocked by the user or a policy, or a context that has
        // no storage (an opaque origin).
        "SecurityError" | "InvalidStateError" | "NotAllowedError" | "UnknownError" => {
            StoreError::Unavailable { detail }
        }
        // A database of that name exists, but not with the tables of a store.
        "NotFoundError" | "DataError" | "DataCloneError" => StoreError::Corrupt {
            path: path(name),
            detail,
        },
        _ => StoreError::Other(format!("{}: {detail}", path(name))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_browser_refusal_is_a_clear_store_error() {
        let full = map(
            "jobs",
            "commit",
            "QuotaExceededError",
            "The quota has been exceeded.",
        );
        assert!(matches!(full, StoreError::Full { .. }), "{full:?}");
        assert!(full.to_string().contains("intact"), "{full}");

        for private in [
            "SecurityError",
            "InvalidStateError",
            "NotAllowedError",
            "UnknownError",
        ] {
            let error = map("jobs", "open", private, "");
            assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
            assert!(
                error.to_string().contains("no durable storage here"),
                "{error}"
            );
        }

        let foreign = map("jobs", "read", "NotFoundError", "No objectStore named jobs");
        assert_eq!(
            foreign,
            StoreError::Corrupt {
                path: "indexeddb:jobs".into(),
                detail: "read: NotFoundError: No objectStore named jobs".into()
            }
        );

        let other = map("jobs", "commit", "AbortError", "");
        assert_eq!(other.to_string(), "indexeddb:jobs: commit: AbortError");
    }

    #[test]
    fn the_host_has_no_indexeddb() {
        let error = not_a_browser("jobs");
        assert!(matches!(error, StoreError::Unavailable { .. }));
        assert!(error.to_string().contains("indexeddb:jobs"), "{error}");
    }
}
