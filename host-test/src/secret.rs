//! A string that must never be printed: client secret, access and refresh tokens. The host's
//! own type (it shares no Rust code with the component, only the WIT).

use std::fmt;

/// `Debug` and `Display` print `[redacted]`; the value is reachable only through
/// [`Secret::expose`], so every place that sends or stores it is easy to find.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = super::Secret::new("sl.very-secret-token");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "sl.very-secret-token");
    }
}
