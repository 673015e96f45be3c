//! What an answer of Coco Server means, from its status and body. Coco reports most failures
//! as 500 with a reason (the framework's `WriteError` writes `{"error":{"reason":…},"status":…}`,
//! its panic recovery `{"error":{"reason":…,"status":…}}`), so the reason text decides.

use std::time::Duration;

use crate::routes::Response;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 2xx.
    Ok,
    /// 404 `found: false`, or the ORM's "record not found" (a `DELETE /datasource/:id` of a
    /// datasource that is not there answers it as a 500).
    NotFound,
    /// The id exists already: Elasticsearch's `version_conflict_engine_exception`, which Coco
    /// passes on as a 500.
    Conflict,
    /// "invalid connector" / "invalid datasource": the object a route needs does not exist or
    /// is not ours to use. A configuration matter; retrying the same request cannot help.
    Invalid(String),
    /// 401 / 403: the token is missing, wrong or lacks the permission.
    Unauthorized(String),
    /// 408, 429 and every other 5xx: worth another try, not before `after` if Coco said so.
    Retry { why: String, after: Option<Duration> },
    /// Any other 4xx: this request is refused as it is.
    Refused(String),
}

/// The reason Coco gave, else the start of the body on one line.
pub fn reason(body: &[u8]) -> String {
    let parsed: Option<String> = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.get("reason").or(Some(e))).cloned())
        .map(|r| match r {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        });
    let text = parsed.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let one_line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let trimmed = one_line.trim();
    if trimmed.chars().count() > 200 {
        format!("{}…", trimmed.chars().take(200).collect::<String>())
    } else {
        trimmed.to_string()
    }
}

/// `Retry-After` in seconds, capped at an hour.
fn retry_after(resp: &Response) -> Option<Duration> {
    resp.header("retry-after")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)))
}

pub fn classify(resp: &Response) -> Answer {
    let body = &resp.body;
    let says = |needle: &str| body.windows(needle.len()).any(|w| w == needle.as_bytes());
    match resp.status {
        200..=299 => Answer::Ok,
        300..=399 => {
            let to = resp.header("location").unwrap_or("");
            // A redirect target may name a user: show where it points, not who.
            let to = match to.split_once("://") {
                Some((scheme, rest)) => {
                    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                    let host = rest[..end].rsplit_once('@').map_or(&rest[..end], |(_, h)| h);
                    format!("{scheme}://{host}{}", &rest[end..])
                }
                None => to.to_string(),
            };
            Answer::Refused(format!(
                "a redirect ({}) to {to}: not followed, the token would go along; configure the final URL",
                resp.status
            ))
        }
        404 => Answer::NotFound,
        401 | 403 => Answer::Unauthorized(reason(body)),
        409 => Answer::Conflict,
        500 if says("version_conflict_engine_exception") => Answer::Conflict,
        500 => match reason(body).as_str() {
            "record not found" => Answer::NotFound,
            r @ ("invalid connector" | "invalid datasource") => Answer::Invalid(r.to_string()),
            r => Answer::Retry { why: r.to_string(), after: retry_after(resp) },
        },
        408 | 429 | 500..=599 => Answer::Retry { why: reason(body), after: retry_after(resp) },
        _ => Answer::Refused(reason(body)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        classify(&Response { status, headers: vec![("retry-after".into(), "7".into())], body: body.into() })
    }

    /// Bodies as Coco Server writes them (framework `WriteError`, panic recovery, `WriteJSON`).
    #[test]
    fn coco_answers_are_read_by_their_reason() {
        let conflict = r#"{"error":{"reason":"{\"error\":{\"root_cause\":[{\"type\":\"version_conflict_engine_exception\",\"reason\":\"[d1]: version conflict, document already exists (current version [1])\"}],\"type\":\"version_conflict_engine_exception\"},\"status\":409}"},"status":500}"#;
        let table = [
            (200, r#"{"_id":"d1","result":"updated"}"#, Answer::Ok),
            (404, r#"{"_id":"dropbox","found":false}"#, Answer::NotFound),
            (500, conflict, Answer::Conflict),
            (500, r#"{"error":{"reason":"record not found","status":500}}"#, Answer::NotFound),
            (
                500,
                r#"{"error":{"reason":"invalid connector","status":500}}"#,
                Answer::Invalid("invalid connector".into()),
            ),
            (
                500,
                r#"{"error":{"reason":"invalid datasource","status":500}}"#,
                Answer::Invalid("invalid datasource".into()),
            ),
            (401, r#"{"error":{"reason":"invalid login"},"status":401}"#, Answer::Unauthorized("invalid login".into())),
            (
                403,
                r#"{"error":{"reason":"permission [[coco#document/update]] not allowed"},"status":403}"#,
                Answer::Unauthorized("permission [[coco#document/update]] not allowed".into()),
            ),
            (
                500,
                r#"{"error":{"reason":"cluster_block_exception"},"status":500}"#,
                Answer::Retry { why: "cluster_block_exception".into(), after: Some(Duration::from_secs(7)) },
            ),
            (
                503,
                "<html>\nbad gateway</html>",
                Answer::Retry { why: "<html> bad gateway</html>".into(), after: Some(Duration::from_secs(7)) },
            ),
            (429, "", Answer::Retry { why: "".into(), after: Some(Duration::from_secs(7)) }),
            (
                400,
                r#"{"error":{"reason":"document ids can not be empty"},"status":400}"#,
                Answer::Refused("document ids can not be empty".into()),
            ),
        ];
        for (status, body, want) in table {
            assert_eq!(answer(status, body), want, "{status} {body}");
        }
    }

    #[test]
    fn a_redirect_is_refused_and_named_without_its_user() {
        let resp = Response {
            status: 307,
            headers: vec![("location".into(), "https://someone:pw@elsewhere.example/document/x".into())],
            body: vec![],
        };
        let Answer::Refused(why) = classify(&resp) else { panic!("a redirect is refused") };
        assert!(why.contains("https://elsewhere.example/document/x") && !why.contains("pw"), "{why}");
    }

    #[test]
    fn reasons_are_one_short_line() {
        let long = "x".repeat(500);
        assert_eq!(reason(long.as_bytes()).chars().count(), 201);
        assert_eq!(reason(b"a\r\nb"), "a  b");
    }
}
