//! A document's content as readers attach it: the columns the content queue fills, read
//! beside the document's JSON and merged into it on the way out (delivery, export).

/// A document row's content, as readers merge it into the JSON.
#[derive(Clone, Debug, Default)]
pub struct Attached {
    pub state: Option<String>,
    pub reason: Option<String>,
    pub detail: Option<String>,
    pub text: Option<String>,
    pub format: Option<String>,
    pub truncated: bool,
}

/// The SQL a reader of `documents d` selects to get [`Attached`] (columns in this order).
pub const ATTACHED_COLUMNS: &str =
    "d.content_state, d.content_reason, d.content_detail, d.content_text, d.content_format, d.content_truncated";

impl Attached {
    pub fn from_row(r: &crate::db::Row, first: usize) -> crate::db::DbResult<Self> {
        Ok(Attached {
            state: r.get(first)?,
            reason: r.get(first + 1)?,
            detail: r.get(first + 2)?,
            text: r.get(first + 3)?,
            format: r.get(first + 4)?,
            truncated: r.get::<Option<bool>>(first + 5)?.unwrap_or(false),
        })
    }
}

/// The document as delivered: Coco's `content` holds the text; `metadata.content_format`
/// and `content_truncated` say how it was read; `metadata.content_error` says why a file has
/// none. Pending (or no row): the JSON as the component made it.
pub fn merge(json: &str, a: &Attached) -> String {
    let (Some(state), true) = (a.state.as_deref(), matches!(a.state.as_deref(), Some("done" | "skipped" | "failed")))
    else {
        return json.to_string();
    };
    let Ok(serde_json::Value::Object(mut doc)) = serde_json::from_str::<serde_json::Value>(json) else {
        return json.to_string();
    };
    let meta = doc.entry("metadata").or_insert_with(|| serde_json::json!({}));
    match state {
        "done" => {
            if let Some(m) = meta.as_object_mut() {
                m.insert("content_format".into(), a.format.clone().unwrap_or_default().into());
                if a.truncated {
                    m.insert("content_truncated".into(), true.into());
                }
            }
            doc.insert("content".into(), a.text.clone().unwrap_or_default().into());
        }
        _ => {
            if let Some(m) = meta.as_object_mut() {
                let reason = a.reason.as_deref().unwrap_or("failed");
                let error = match &a.detail {
                    Some(d) => format!("{reason}: {d}"),
                    None => reason.to_string(),
                };
                m.insert("content_error".into(), error.into());
            }
        }
    }
    serde_json::Value::Object(doc).to_string()
}

#[cfg(test)]
mod tests {
    use super::{merge, Attached};

    #[test]
    fn merge_adds_content_or_the_reason_and_leaves_pending_alone() {
        let json = r#"{"id":"d","title":"r.pdf","metadata":{"rev":"1"}}"#;
        assert_eq!(merge(json, &Attached::default()), json);
        let pending = Attached { state: Some("pending".into()), ..Default::default() };
        assert_eq!(merge(json, &pending), json);
        let done = Attached {
            state: Some("done".into()),
            text: Some("hello".into()),
            format: Some("pdf".into()),
            truncated: true,
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::from_str(&merge(json, &done)).unwrap();
        assert_eq!(v["content"], "hello");
        assert_eq!(v["metadata"]["content_format"], "pdf");
        assert_eq!(v["metadata"]["content_truncated"], true);
        assert_eq!(v["metadata"]["rev"], "1");
        let skipped = Attached {
            state: Some("skipped".into()),
            reason: Some("too_large".into()),
            detail: Some("11 bytes".into()),
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::from_str(&merge(json, &skipped)).unwrap();
        assert_eq!(v["metadata"]["content_error"], "too_large: 11 bytes");
        assert!(v.get("content").is_none());
    }
}
