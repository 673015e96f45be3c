//! The API token of non-browser routes: `Authorization: Bearer …` or Coco's `X-API-TOKEN`,
//! compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The token a request presents, from its `Authorization` and `X-API-TOKEN` header values:
/// a Bearer token when `Authorization` is there (any other scheme presents none), else
/// `X-API-TOKEN`. Surrounding blanks are ignored; an empty token is none.
pub fn presented<'a>(authorization: Option<&'a str>, x_api_token: Option<&'a str>) -> Option<&'a str> {
    let token = match authorization {
        Some(v) => {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())?
        }
        None => x_api_token?.trim(),
    };
    (!token.is_empty()).then_some(token)
}

/// Whether `presented` is `expected`, in constant time over SHA-256 digests (so lengths do
/// not leak either). An empty expected token matches nothing: a surface without a token
/// configured stays closed.
pub fn matches(expected: &str, presented: &str) -> bool {
    if expected.is_empty() {
        return false;
    }
    let a = Sha256::digest(expected.as_bytes());
    let b = Sha256::digest(presented.as_bytes());
    bool::from(a.ct_eq(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_either_header_and_must_match_exactly() {
        assert_eq!(presented(Some("Bearer tok-123"), None), Some("tok-123"));
        assert_eq!(presented(Some("bearer  tok-123 "), None), Some("tok-123"));
        assert_eq!(presented(Some("Basic dG9r"), Some("tok-123")), None, "Authorization decides when present");
        assert_eq!(presented(None, Some(" tok-123 ")), Some("tok-123"));
        assert_eq!(presented(None, Some("")), None);
        assert_eq!(presented(Some("Bearer "), None), None);
        assert_eq!(presented(None, None), None);
        assert!(matches("tok-123", "tok-123"));
        assert!(!matches("tok-123", "tok-12"));
        assert!(!matches("tok-123", "tok-1234"));
        assert!(!matches("tok-123", ""));
        assert!(!matches("", ""), "no token configured never matches");
    }
}
