//! Credentials out of text meant for people. A sink URL may carry a user and a password
//! (`https://elastic:pw@es:9200`); errors, `coco-host status`, the admin API and log lines show
//! it without them. Every message that may hold a URL goes through [`urls`].

/// `text` with the user-info of every URL in it left out (`https://u:p@h/x` → `https://h/x`).
pub fn urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends where the path, query or fragment starts, or the text moves on.
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | ')' | ',') || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        out.push_str(authority.rsplit_once('@').map_or(authority, |(_, host)| host));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::urls;

    #[test]
    fn user_info_goes_everything_else_stays() {
        let table = [
            (
                "POST https://elastic:hunter2@es.example:9200/_bulk: refused",
                "POST https://es.example:9200/_bulk: refused",
            ),
            ("http://token@coco:9000", "http://coco:9000"),
            ("see http://a:b@x/y and https://c:d@z?q=1", "see http://x/y and https://z?q=1"),
            ("no url here", "no url here"),
            ("http://host/path@not-userinfo", "http://host/path@not-userinfo"),
            ("\"http://u:p@h\"", "\"http://h\""),
            ("://", "://"),
        ];
        for (raw, want) in table {
            assert_eq!(urls(raw), want, "{raw}");
        }
    }
}
