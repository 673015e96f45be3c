//! The connector's error classes: each one tells the host what to do next.

use std::fmt;

use crate::types::RootInfo;

/// Mirrors the WIT `error` variant. Messages never contain secrets: they are built from
/// Dropbox's error tags and our own words, never from request bodies or tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The caller's bug: bad config, bad cursor, bad redirect query. Do not retry.
    InvalidInput(String),
    /// Consent refused, or a forged/expired/foreign/replayed state or code.
    Denied(String),
    /// Dropbox rejected client_id/client_secret.
    InvalidClient(String),
    /// The refresh token no longer works: the operator must connect again.
    ReauthRequired(String),
    /// Retry the same request after this many milliseconds.
    RateLimited(u64),
    /// The cursor is invalid: list from scratch.
    CursorReset(String),
    /// The account's root namespace changed; this is the current one.
    RootChanged(RootInfo),
    /// The configured folder does not exist.
    PathNotFound(String),
    /// Worth retrying with backoff: 5xx, timeouts, transport errors, unreadable bodies.
    Transient(String),
    /// Any other Dropbox error.
    Api(String),
}

impl Error {
    /// The WIT case name (`invalid-input`, `rate-limited`, ...): what a host matches on.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidInput(_) => "invalid-input",
            Error::Denied(_) => "denied",
            Error::InvalidClient(_) => "invalid-client",
            Error::ReauthRequired(_) => "reauth-required",
            Error::RateLimited(_) => "rate-limited",
            Error::CursorReset(_) => "cursor-reset",
            Error::RootChanged(_) => "root-changed",
            Error::PathNotFound(_) => "path-not-found",
            Error::Transient(_) => "transient",
            Error::Api(_) => "api",
        }
    }

    /// What happened, in words. The cases without a text payload are described here; a host
    /// reading the WIT words them from the payload the same way.
    pub fn message(&self) -> String {
        match self {
            Error::InvalidInput(m)
            | Error::Denied(m)
            | Error::InvalidClient(m)
            | Error::ReauthRequired(m)
            | Error::CursorReset(m)
            | Error::Transient(m)
            | Error::Api(m) => m.clone(),
            Error::RateLimited(ms) => format!("retry after {ms} ms"),
            Error::RootChanged(r) => format!("the root namespace is now {}", r.root_namespace_id),
            Error::PathNotFound(p) => format!("the configured folder {p:?} does not exist"),
        }
    }
}

/// `{kind}: {message}`, the same shape the host prints for a WIT error.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind(), self.message())
    }
}

impl std::error::Error for Error {}
