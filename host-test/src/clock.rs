//! The wall clock, read in one place: Unix seconds (the state's timestamps, token expiry) and
//! RFC 3339 for status texts.

/// Seconds since the Unix epoch (0 on a clock set before it).
pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// [`now_unix`] as the state's SQL columns hold it.
pub fn now_unix_i64() -> i64 {
    i64::try_from(now_unix()).unwrap_or(i64::MAX)
}

/// Milliseconds since the Unix epoch (the lease log's resolution).
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix seconds as RFC 3339 UTC, for status texts (the web kit's, as the facade shows them).
pub use coco_web::encode::rfc3339;

#[cfg(test)]
mod tests {
    #[test]
    fn the_clock_reads_the_same_in_each_unit() {
        let secs = super::now_unix_i64();
        let ms = super::now_unix_ms();
        assert!(secs > 1_700_000_000 && (ms / 1000 - secs).abs() <= 1);
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
