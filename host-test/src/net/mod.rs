//! Connections to other machines: whom to trust ([`tls`]), which proxy to use ([`proxy`]), the
//! one client everything outbound shares ([`client`]), and what a failure means ([`failure`]).

pub mod client;
pub mod failure;
pub mod proxy;
pub mod tls;
pub mod wasi;

pub use client::{block_on, HttpClient, NetSettings, NetSetupError, SendError};
pub use failure::NetFailure;
