//! One error envelope for both surfaces, and one status per kind of error:
//! `{"error": {"kind": K, "code": K, "message": M, …}}`. The facade named the field `kind` and
//! `serve` named it `code`; for one release both carry the same value, so clients of either keep
//! working (`code` goes in the next).

use serde_json::{json, Map, Value};

/// Every kind of error answer, with its one HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The request is malformed or names something invalid.
    InvalidInput,
    /// No API token, or the wrong one.
    Unauthorized,
    /// The account's tokens no longer work: it must be connected again.
    ReauthRequired,
    /// Refused: the user declined, the browser is not the one that started the flow, …
    Denied,
    /// A webhook whose signature does not check out.
    BadSignature,
    NotFound,
    /// The configured Dropbox folder does not exist.
    PathNotFound,
    MethodNotAllowed,
    /// Another call is working on the datasource; try again shortly.
    Busy,
    /// The datasource belongs to another app than the one named.
    ClientMismatch,
    /// The datasource cannot be scheduled in its state (paused, needs re-authorization).
    NotSchedulable,
    UnknownConnector,
    /// Dropbox reset the listing cursor.
    CursorReset,
    /// The account's root namespace changed (it joined or left a team).
    RootChanged,
    TooLarge,
    RateLimited,
    Internal,
    /// Dropbox refused the app's credentials.
    InvalidClient,
    /// Dropbox answered with an error the connector does not know.
    Api,
    /// Dropbox failed in a way that has its message only.
    Dropbox,
    /// Coco Server refused the documents.
    SinkFailed,
    /// The connected account could not be handed to the orchestrator's callback.
    CallbackFailed,
    /// A failure that passes: Dropbox or the network.
    Transient,
    /// The surface lacks configuration it needs (it never opens without it).
    NotConfigured,
    /// The state store failed.
    StoreFailed,
    /// The runtime's key-value store could not be opened.
    StoreUnavailable,
}

/// The kinds as data: name and status. One row each.
const TABLE: &[(Kind, &str, u16)] = &[
    (Kind::InvalidInput, "invalid-input", 400),
    (Kind::Unauthorized, "unauthorized", 401),
    (Kind::ReauthRequired, "reauth-required", 401),
    (Kind::Denied, "denied", 403),
    (Kind::BadSignature, "bad-signature", 403),
    (Kind::NotFound, "not-found", 404),
    (Kind::PathNotFound, "path-not-found", 404),
    (Kind::MethodNotAllowed, "method-not-allowed", 405),
    (Kind::Busy, "busy", 409),
    (Kind::ClientMismatch, "client-mismatch", 409),
    (Kind::NotSchedulable, "not-schedulable", 409),
    (Kind::UnknownConnector, "unknown-connector", 409),
    (Kind::CursorReset, "cursor-reset", 409),
    (Kind::RootChanged, "root-changed", 409),
    (Kind::TooLarge, "too-large", 413),
    (Kind::RateLimited, "rate-limited", 429),
    (Kind::Internal, "internal", 500),
    (Kind::InvalidClient, "invalid-client", 502),
    (Kind::Api, "api", 502),
    (Kind::Dropbox, "dropbox", 502),
    (Kind::SinkFailed, "sink-failed", 502),
    (Kind::CallbackFailed, "callback-failed", 502),
    (Kind::Transient, "transient", 503),
    (Kind::NotConfigured, "not-configured", 503),
    (Kind::StoreFailed, "store-failed", 503),
    (Kind::StoreUnavailable, "store-unavailable", 503),
];

impl Kind {
    fn row(self) -> &'static (Kind, &'static str, u16) {
        TABLE.iter().find(|(k, _, _)| *k == self).expect("every kind has a row")
    }

    /// The name answers carry (`invalid-input`, `rate-limited`, …).
    pub fn as_str(self) -> &'static str {
        self.row().1
    }

    /// The one HTTP status of this kind.
    pub fn status(self) -> u16 {
        self.row().2
    }

    /// The kind named `name` (the WIT error kinds are among them).
    pub fn from_name(name: &str) -> Option<Kind> {
        TABLE.iter().find(|(_, n, _)| *n == name).map(|(k, _, _)| *k)
    }
}

/// The envelope of an error answer. `extra` fields (`retry_after_ms`, `root_info`, …) join
/// `kind`, `code` and `message` inside `error`.
pub fn body(kind: Kind, message: &str, extra: Map<String, Value>) -> Value {
    let mut error = Map::new();
    error.insert("kind".into(), kind.as_str().into());
    error.insert("code".into(), kind.as_str().into());
    error.insert("message".into(), message.into());
    error.extend(extra);
    json!({ "error": error })
}

/// `Retry-After` in whole seconds (at least 1) for a wait in milliseconds.
pub fn retry_after_secs(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_name_and_one_status() {
        let statuses = [
            ("invalid-input", 400),
            ("unauthorized", 401),
            ("reauth-required", 401),
            ("denied", 403),
            ("bad-signature", 403),
            ("not-found", 404),
            ("path-not-found", 404),
            ("method-not-allowed", 405),
            ("busy", 409),
            ("client-mismatch", 409),
            ("not-schedulable", 409),
            ("unknown-connector", 409),
            ("cursor-reset", 409),
            ("root-changed", 409),
            ("too-large", 413),
            ("rate-limited", 429),
            ("internal", 500),
            ("invalid-client", 502),
            ("api", 502),
            ("dropbox", 502),
            ("sink-failed", 502),
            ("callback-failed", 502),
            ("transient", 503),
            ("not-configured", 503),
            ("store-failed", 503),
            ("store-unavailable", 503),
        ];
        assert_eq!(statuses.len(), TABLE.len());
        for (name, status) in statuses {
            let kind = Kind::from_name(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!((kind.as_str(), kind.status()), (name, status));
        }
        assert_eq!(Kind::from_name("nope"), None);
    }

    #[test]
    fn the_envelope_carries_kind_and_code_for_one_release() {
        let mut extra = Map::new();
        extra.insert("retry_after_ms".into(), 1500.into());
        let b = body(Kind::RateLimited, "slow down", extra);
        assert_eq!(b["error"]["kind"], "rate-limited");
        assert_eq!(b["error"]["code"], "rate-limited");
        assert_eq!(b["error"]["message"], "slow down");
        assert_eq!(b["error"]["retry_after_ms"], 1500);
        assert_eq!((retry_after_secs(1500), retry_after_secs(0)), (2, 1));
    }
}
