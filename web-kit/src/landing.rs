//! Where a browser lands once its account is connected: the operator's page (a redirect with
//! the datasource's id and name), or a minimal page of our own that loads nothing.

/// The status of the redirect: 302 Found (the OAuth redirect was a GET; the browser GETs the
/// page). The facade answered 302 and `serve` 303; 302 is what its tests and clients knew.
pub const REDIRECT_STATUS: u16 = 302;

/// The headers of our own page: HTML that may load nothing and is never sniffed.
pub const PAGE_HEADERS: [(&str, &str); 3] = [
    ("content-type", "text/html; charset=utf-8"),
    ("content-security-policy", "default-src 'none'"),
    ("x-content-type-options", "nosniff"),
];

/// The answer to a browser whose account was connected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Landing {
    /// To `location` ([`REDIRECT_STATUS`]).
    Redirect(String),
    /// 200 with this HTML ([`PAGE_HEADERS`]).
    Page(String),
}

/// `connected_url` with `datasource_id` and `name` added to its query, or, without one (or
/// one that is not a URL), our own page naming both.
pub fn connected(connected_url: Option<&str>, id: &str, name: &str) -> Landing {
    if let Some(mut url) = connected_url.and_then(|u| url::Url::parse(u).ok()) {
        url.query_pairs_mut().append_pair("datasource_id", id).append_pair("name", name);
        return Landing::Redirect(url.into());
    }
    use crate::encode::html_escape;
    Landing::Page(format!(
        "<!doctype html><meta charset=utf-8><title>Dropbox connected</title>\
         <h1>Connected</h1><p>{} is connected as datasource <code>{}</code>. You can close this window.</p>",
        html_escape(name),
        html_escape(id)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browser_lands_on_the_operators_page_or_ours() {
        assert_eq!(
            connected(Some("https://coco.example/done?x=1"), "ds1", "Ann & Bo"),
            Landing::Redirect("https://coco.example/done?x=1&datasource_id=ds1&name=Ann+%26+Bo".into())
        );
        let Landing::Page(html) = connected(None, "ds1", "<script>") else { panic!("a page") };
        assert!(html.contains("&lt;script&gt;") && html.contains("ds1") && !html.contains("<script>"));
        assert!(matches!(connected(Some("not a url"), "ds1", "n"), Landing::Page(_)));
    }
}
