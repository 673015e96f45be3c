//! Generators of untrusted input: raw bytes, Dropbox-shaped JSON with hostile values, mutated
//! valid bodies, query strings and HTTP requests biased towards the facade's routes.

use proptest::prelude::*;

/// Secrets planted in requests and bodies; no output may ever contain one.
pub const CLIENT_SECRET: &str = "FUZZ-client-secret-0001";
pub const ACCESS_TOKEN: &str = "sl.FUZZ-access-token-0002";
pub const REFRESH_TOKEN: &str = "FUZZ-refresh-token-0003";
pub const STATE_SECRET: &str = "FUZZ-state-secret-000000004";
pub const API_TOKEN: &str = "FUZZ-api-token-0005";
pub const CALLBACK_TOKEN: &str = "FUZZ-callback-token-0006";
/// Appears inside generated token responses: a parser's error must not quote it.
/// The datasource the key-value facade target's store holds (tokens sealed).
pub const KV_DATASOURCE: &str = "0335b4e59c687f2666f7d7e5d5d17686";
pub const SEAL_SECRET: &str = "FUZZ-seal-secret-0008-0123456789abcdef";
pub const ISSUED_TOKEN: &str = "sl.FUZZ-issued-token-0007";

pub const SECRETS: [&str; 8] =
    [CLIENT_SECRET, ACCESS_TOKEN, REFRESH_TOKEN, STATE_SECRET, API_TOKEN, CALLBACK_TOKEN, ISSUED_TOKEN, SEAL_SECRET];

/// The first secret found in `text`.
pub fn leaked(text: &str) -> Option<&'static str> {
    SECRETS.into_iter().find(|s| text.contains(s))
}

/// Strings that break naive code: empty, huge, control characters, unicode, quotes, slashes.
fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[ -~]{0,40}",
        "\\PC{0,40}",
        "[/\\\\.\"'%#?&=\\x00-\\x1f]{0,20}",
        (0usize..5_000).prop_map(|n| "a/".repeat(n)),
        Just("\u{FEFF}\u{202E}𝔘𝔫𝔦\u{0301}".to_string()),
        Just("9".repeat(400)),
    ]
}

fn json_scalar() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(Into::into),
        any::<i64>().prop_map(Into::into),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Into::into),
        nasty_string().prop_map(Into::into),
    ]
}

/// Any JSON value, a few levels deep.
pub fn json_value() -> impl Strategy<Value = serde_json::Value> {
    json_scalar().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Into::into),
            prop::collection::btree_map("[a-z_.]{1,16}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A `list_folder` entry with each field either right, missing, or hostile.
fn entry() -> impl Strategy<Value = serde_json::Value> {
    let field = |good: serde_json::Value| prop_oneof![4 => Just(Some(good)), 1 => Just(None), 1 => json_scalar().prop_map(Some)];
    (
        prop_oneof![Just("file"), Just("folder"), Just("deleted"), Just("weird")],
        nasty_string(),
        field("id:abc".into()),
        field("2024-01-02T03:04:05Z".into()),
        field(42.into()),
        nasty_string(),
    )
        .prop_flat_map(move |(tag, name, id, time, size, path)| {
            (Just((tag, name, id, time, size, path)), field("/a/b".into()))
        })
        .prop_map(|((tag, name, id, time, size, path), path_lower)| {
            let mut e = serde_json::json!({ ".tag": tag, "name": name, "path_display": format!("/{path}") });
            let o = e.as_object_mut().unwrap();
            for (k, v) in [
                ("id", id),
                ("server_modified", time.clone()),
                ("client_modified", time),
                ("size", size),
                ("path_lower", path_lower),
            ] {
                if let Some(v) = v {
                    o.insert(k.into(), v);
                }
            }
            e
        })
}

/// A list_folder page body: Dropbox-shaped with hostile values, arbitrary JSON, raw bytes, or
/// a valid page cut or flipped.
pub fn page_body() -> impl Strategy<Value = Vec<u8>> {
    let cursor = prop_oneof![3 => "[A-Za-z0-9_-]{1,40}".prop_map(serde_json::Value::from), 1 => json_scalar()];
    let more = prop_oneof![4 => any::<bool>().prop_map(serde_json::Value::from), 1 => json_scalar()];
    let shaped = (prop::collection::vec(entry(), 0..20), cursor, more).prop_map(|(entries, cursor, more)| {
        serde_json::to_vec(&serde_json::json!({ "entries": entries, "cursor": cursor, "has_more": more })).unwrap()
    });
    let valid = br#"{"entries":[{".tag":"file","name":"a.pdf","id":"id:1","path_lower":"/d/a.pdf","path_display":"/D/a.pdf","size":3,"server_modified":"2024-01-02T03:04:05Z","client_modified":"2024-01-02T03:04:05Z","rev":"0123456789","content_hash":"ab"},{".tag":"deleted","name":"x","path_lower":"/x","path_display":"/x"}],"cursor":"C2","has_more":true}"#;
    let mutated = (0..valid.len(), any::<u8>(), 0..valid.len()).prop_map(move |(at, byte, cut)| {
        let mut v = valid.to_vec();
        v[at] ^= byte;
        v.truncate(cut.max(at + 1));
        v
    });
    prop_oneof![
        4 => shaped,
        2 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        2 => mutated,
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

/// A token endpoint answer: status and body, often carrying [`ISSUED_TOKEN`].
pub fn token_answer() -> impl Strategy<Value = (u16, Vec<u8>)> {
    let status =
        prop_oneof![4 => Just(200u16), 1 => Just(400u16), 1 => Just(401u16), 1 => Just(429u16), 1 => 100u16..600];
    let shaped = (json_scalar(), json_scalar(), any::<bool>()).prop_map(|(expires, refresh, cut)| {
        let mut v = serde_json::to_vec(&serde_json::json!({
            "access_token": ISSUED_TOKEN, "expires_in": expires, "refresh_token": refresh, "token_type": "bearer"
        }))
        .unwrap();
        if cut {
            v.truncate(v.len() / 2 + 3);
        }
        v
    });
    let errors = (prop_oneof![Just("invalid_grant"), Just("invalid_client"), Just("x")], nasty_string())
        .prop_map(|(e, d)| serde_json::to_vec(&serde_json::json!({ "error": e, "error_description": d })).unwrap());
    (status, prop_oneof![3 => shaped, 2 => errors, 1 => page_body()])
}

/// An error answer from an RPC route: status, optional `Retry-After`, body.
pub fn error_answer() -> impl Strategy<Value = (u16, Option<String>, Vec<u8>)> {
    let status =
        prop_oneof![Just(400u16), Just(401), Just(409), Just(422), Just(429), Just(500), Just(503), 300u16..600];
    let envelope = (json_value(), nasty_string()).prop_map(|(error, summary)| {
        serde_json::to_vec(&serde_json::json!({ "error": error, "error_summary": summary })).unwrap()
    });
    (status, prop::option::of(retry_after()), prop_oneof![3 => envelope, 1 => page_body()])
}

/// `Retry-After` values: decimals, negatives, huge, NaN, dates, garbage.
pub fn retry_after() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f64>().prop_map(|f| f.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        Just("NaN".to_string()),
        Just("inf".to_string()),
        Just("-1".to_string()),
        Just("Wed, 21 Oct 2015 07:28:00 GMT".to_string()),
        "[ -~]{0,30}",
    ]
}

/// What a browser (or an attacker) brings back to the redirect route.
pub fn redirect_query() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("code".to_string()),
        Just("state".to_string()),
        Just("error".to_string()),
        Just("error_description".to_string()),
        "[a-z]{1,8}",
    ];
    let param = (name, nasty_string());
    prop_oneof![
        prop::collection::vec(param, 0..6).prop_map(|ps| {
            let mut s = String::from("?");
            for (k, v) in ps {
                s.push_str(&k);
                s.push('=');
                s.push_str(&v);
                s.push('&');
            }
            s
        }),
        "\\PC{0,200}",
        (nasty_string(), nasty_string()).prop_map(|(a, b)| format!("https://x.example/cb?code={a}&state={b}.{a}")),
    ]
}

/// Cursors a host might pass: Dropbox-like, empty, huge, hostile.
pub fn cursor() -> impl Strategy<Value = String> {
    prop_oneof![nasty_string(), "AAE[A-Za-z0-9_-]{10,300}", "\\PC{0,100}"]
}

/// An HTTP request for the facade, mostly aimed at its routes.
#[derive(Clone, Debug)]
pub struct FuzzRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

pub fn facade_request() -> impl Strategy<Value = FuzzRequest> {
    let path = prop_oneof![
        Just("/sync".to_string()),
        Just("/oauth/exchange".to_string()),
        Just("/connector/dropbox/dropbox/connect".to_string()),
        Just("/api/coco/connector/dropbox/dropbox/oauth_redirect".to_string()),
        nasty_string().prop_map(|s| format!("/connector/{s}/dropbox/connect")),
        // The key-value build's routes, on the seeded datasource and on anything else.
        Just("/datasources".to_string()),
        Just(format!("/datasources/{KV_DATASOURCE}")),
        Just(format!("/sync/{KV_DATASOURCE}")),
        nasty_string().prop_map(|s| format!("/datasources/{s}")),
        nasty_string().prop_map(|s| format!("/sync/{s}")),
        "/[ -~]{0,40}",
    ];
    let header = prop_oneof![
        Just(("authorization".to_string(), format!("Bearer {API_TOKEN}"))),
        nasty_string().prop_map(|v| ("authorization".to_string(), v)),
        nasty_string().prop_map(|v| ("x-api-token".to_string(), v)),
        nasty_string().prop_map(|v| ("cookie".to_string(), format!("coco_dropbox_oauth={v}"))),
        nasty_string().prop_map(|v| ("host".to_string(), v)),
        nasty_string().prop_map(|v| ("x-forwarded-proto".to_string(), v)),
    ];
    let body = prop_oneof![
        Just(Vec::new()),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        (json_value(), nasty_string()).prop_map(|(opts, id)| serde_json::to_vec(&serde_json::json!({
            "datasource": { "id": id, "name": "n" },
            "tokens": { "access_token": ACCESS_TOKEN, "expires_at": 0, "refresh_token": REFRESH_TOKEN },
            "options": opts
        }))
        .unwrap()),
        prop::collection::vec(any::<u8>(), 0..256),
    ];
    let method = prop_oneof![
        Just("GET".to_string()),
        Just("POST".to_string()),
        Just("DELETE".to_string()),
        Just("PUT".to_string()),
        "[A-Z]{1,7}"
    ];
    (method, path, redirect_query(), prop::collection::vec(header, 0..5), body).prop_map(
        |(method, path, query, headers, body)| FuzzRequest {
            method,
            path,
            query: query.trim_start_matches('?').to_string(),
            headers,
            body,
        },
    )
}

/// Real files (tests/corpus) the content target mutates, with the format each is read as.
pub const CONTENT_SEEDS: [(&str, &[u8]); 7] = [
    ("docx", include_bytes!("../tests/corpus/comments-rich-para.docx")),
    ("xlsx", include_bytes!("../tests/corpus/utf8.xlsx")),
    ("pptx", include_bytes!("../tests/corpus/txt-text.pptx")),
    ("odt", include_bytes!("../tests/corpus/simpletable.odt")),
    ("html", include_bytes!("../tests/corpus/users-and-groups.html")),
    ("pdf", include_bytes!("../tests/corpus/crazyones.pdf")),
    ("xml", b"<?xml version=\"1.0\"?><a><b x='1'>text &amp; more</b><![CDATA[raw]]><c/></a>"),
];

/// A corpus file with a few bytes overwritten, cut short, or read as another format.
pub fn content_file() -> impl Strategy<Value = (String, Vec<u8>)> {
    (
        0..CONTENT_SEEDS.len(),
        0..CONTENT_SEEDS.len(),
        any::<bool>(),
        proptest::collection::vec((any::<u32>(), any::<u8>()), 0..12),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(|(seed, as_format, mislabel, flips, cut)| {
            let (format, bytes) = CONTENT_SEEDS[seed];
            let mut bytes = bytes.to_vec();
            for (at, byte) in flips {
                let i = at as usize % bytes.len();
                bytes[i] = byte;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut as usize % (bytes.len() + 1));
            }
            let format = if mislabel { CONTENT_SEEDS[as_format].0 } else { format };
            (format.to_string(), bytes)
        })
}
