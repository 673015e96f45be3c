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

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidInput(m) => write!(f, "invalid input: {m}"),
            Error::Denied(m) => write!(f, "denied: {m}"),
            Error::InvalidClient(m) => write!(f, "invalid client credentials: {m}"),
            Error::ReauthRequired(m) => write!(f, "re-authorization required: {m}"),
            Error::RateLimited(ms) => write!(f, "rate limited: retry after {ms} ms"),
            Error::CursorReset(m) => write!(f, "cursor reset: {m}"),
            Error::RootChanged(r) => {
                write!(f, "root namespace changed to {}", r.root_namespace_id)
            }
            Error::PathNotFound(p) => write!(f, "path not found: {p}"),
            Error::Transient(m) => write!(f, "transient: {m}"),
            Error::Api(m) => write!(f, "dropbox api error: {m}"),
        }
    }
}

impl std::error::Error for Error {}
