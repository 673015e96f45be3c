//! Plays the user's browser on the emulator's consent page.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error("opening the authorize page: {0}")]
    Request(String),
    #[error("the authorize page answered {0} without a redirect (a real Dropbox needs a person to click Allow)")]
    NoRedirect(u16),
}

/// Open the authorize URL and return the redirect's `Location` without following it: the
/// emulator approves (or denies, see [`crate::Emulator::set_consent`]) at once.
pub async fn approve(authorize_url: &str) -> Result<String, BrowserError> {
    let url = authorize_url.to_string();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let resp = agent.get(&url).call().map_err(|e| BrowserError::Request(e.to_string()))?;
        match resp.headers().get("location").and_then(|l| l.to_str().ok()) {
            Some(loc) if resp.status().is_redirection() => Ok(loc.to_string()),
            _ => Err(BrowserError::NoRedirect(resp.status().as_u16())),
        }
    })
    .await
    .map_err(|e| BrowserError::Request(e.to_string()))?
}
