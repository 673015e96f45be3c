//! The emulator's behaviour, free of HTTP: OAuth grants, tokens, accounts, cursors, faults.
//! `server.rs` maps routes onto these methods; each returns a [`Reply`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{generate, Generate, MetadataJson, Namespace, View};

/// An HTTP answer, before it is put on the wire.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// Declare a longer body than sent, so the client sees a cut connection.
    pub truncate: bool,
    pub delay: Option<Duration>,
}

impl Reply {
    pub fn json(status: u16, value: &impl Serialize) -> Self {
        Reply {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: serde_json::to_vec(value).unwrap_or_default(),
            truncate: false,
            delay: None,
        }
    }

    pub fn text(status: u16, text: impl Into<String>) -> Self {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: text.into().into_bytes(),
            truncate: false,
            delay: None,
        }
    }

    pub fn redirect(location: String) -> Self {
        let mut r = Reply::text(302, "");
        r.headers.push(("location", location));
        r
    }

    /// A Dropbox route error envelope: `{"error_summary": "...", "error": {...}}`.
    fn route_error(status: u16, error: serde_json::Value) -> Self {
        let summary = tags(&error) + "/..";
        Reply::json(status, &serde_json::json!({ "error_summary": summary, "error": error }))
    }

    fn oauth_error(error: &str, description: &str) -> Self {
        Reply::json(400, &serde_json::json!({ "error": error, "error_description": description }))
    }

    fn bad_request(route: &str, why: &str) -> Self {
        Reply::text(400, format!("Error in call to API function \"{route}\": {why}"))
    }
}

/// JSON with every character from 0x7F escaped, as Dropbox sends `Dropbox-API-Result`.
pub fn header_safe_json(v: &serde_json::Value) -> String {
    let mut out = String::new();
    for c in v.to_string().chars() {
        if (c as u32) < 0x7F {
            out.push(c);
        } else {
            for u in c.encode_utf16(&mut [0; 2]) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

fn tags(v: &serde_json::Value) -> String {
    let mut out = Vec::new();
    let mut cur = v;
    while let Some(tag) = cur.get(".tag").and_then(|t| t.as_str()) {
        out.push(tag.to_string());
        match cur.get(tag) {
            Some(next) if next.is_object() => cur = next,
            _ => break,
        }
    }
    out.join("/")
}

/// One scripted failure, consumed by the next matching request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with this status and a short text body.
    Status { status: u16 },
    /// 429 with `Retry-After` (decimal seconds); JSON or plain-text body.
    RateLimit { retry_after: f64, json: bool },
    /// 409 `reset` (continue only).
    Reset,
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with the real body cut in half (and a Content-Length that promises more).
    Truncate,
    /// The real answer, after this long.
    Delay { ms: u64 },
    /// Status line and headers, then the connection closes before any body.
    Hangup,
    /// Exactly this answer (fuzzing: arbitrary status, `Retry-After` and body bytes).
    Raw { status: u16, retry_after: Option<String>, body: Vec<u8> },
}

/// Faults drawn at random (from a seed) for every request that can fail.
pub struct FaultPlan {
    pub probability: f64,
    pub kinds: Vec<FaultKind>,
    rng: ChaCha8Rng,
}

impl FaultPlan {
    pub fn new(seed: u64, probability: f64, kinds: Vec<FaultKind>) -> Self {
        FaultPlan { probability, kinds, rng: ChaCha8Rng::seed_from_u64(seed) }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Fault {
    /// Route name like `files/list_folder/continue`; none matches every /2/ route.
    #[serde(default)]
    pub route: Option<String>,
    #[serde(flatten)]
    pub kind: FaultKind,
}

/// One emulated Dropbox user.
pub struct Account {
    pub account_id: String,
    pub email: String,
    pub display_name: String,
    /// The member's home namespace.
    pub namespace_id: String,
    /// Team accounts with a team space: the team space's namespace id (root ≠ home).
    pub team_root: Option<String>,
    /// Team accounts: the member folder inside the team space, e.g. "/Franz Ferdinand".
    pub home_path: Option<String>,
    /// The namespace the account sees with a root Path-Root: the whole user Dropbox, or the
    /// team space (team folders plus the member folder).
    pub home: Namespace,
}

impl Account {
    /// What calls without `Dropbox-API-Path-Root` see: for a team member, only their folder.
    pub fn default_view(&self) -> View {
        match &self.home_path {
            Some(hp) => View { prefix: hp.to_lowercase(), display_skip: hp.len() },
            None => View::default(),
        }
    }

    pub fn root_namespace_id(&self) -> &str {
        self.team_root.as_deref().unwrap_or(&self.namespace_id)
    }

    pub fn root_info_json(&self) -> serde_json::Value {
        match (&self.team_root, &self.home_path) {
            (Some(root), Some(home_path)) => serde_json::json!({
                ".tag": "team", "root_namespace_id": root, "home_namespace_id": self.namespace_id, "home_path": home_path
            }),
            _ => {
                serde_json::json!({ ".tag": "user", "root_namespace_id": self.namespace_id, "home_namespace_id": self.namespace_id })
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct AccountSpec {
    pub email: String,
    pub display_name: String,
    pub generate: Generate,
    /// Some(name): a team member whose team space also holds a team folder of this name
    /// (with as many entries again), invisible without `Dropbox-API-Path-Root`.
    pub team_folder: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub accounts: Vec<AccountSpec>,
    /// Registered apps: client_id → client_secret.
    pub apps: Vec<(String, String)>,
    pub token_lifetime: Duration,
    /// Seeds tokens, codes and the cursor key.
    pub seed: u64,
}

impl Config {
    /// One generated account of `entries` entries and one app.
    pub fn single(seed: u64, entries: usize, client_id: &str, client_secret: &str) -> Self {
        Config {
            accounts: vec![AccountSpec {
                email: "franz@example.com".into(),
                display_name: "Franz Ferdinand".into(),
                generate: Generate { seed, entries, under: String::new() },
                team_folder: None,
            }],
            apps: vec![(client_id.into(), client_secret.into())],
            token_lifetime: Duration::from_secs(14_400),
            seed,
        }
    }
}

impl Config {
    /// One app and one account per entry of `sizes` (account 0 is [`Config::single`]'s user,
    /// account i > 0 is `user{i}@example.com`), each generated from its own seed.
    pub fn accounts(seed: u64, sizes: &[usize], client_id: &str, client_secret: &str) -> Self {
        let mut config = Config::single(seed, sizes.first().copied().unwrap_or(0), client_id, client_secret);
        for (i, &entries) in sizes.iter().enumerate().skip(1) {
            config.accounts.push(AccountSpec {
                email: format!("user{i}@example.com"),
                display_name: format!("User {i}"),
                generate: Generate { seed: seed.wrapping_add(i as u64 * 7919), entries, under: String::new() },
                team_folder: None,
            });
        }
        config
    }
}

struct CodeGrant {
    client_id: String,
    redirect_uri: Option<String>,
    challenge: Option<String>,
    account: usize,
    issued: Instant,
    used: bool,
}

struct AccessGrant {
    account: usize,
    refresh: String,
    expires: Instant,
}

struct RefreshGrant {
    account: usize,
    client_id: String,
}

/// What a cursor means; carried inside the opaque cursor string.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
struct CursorState {
    /// Account index.
    a: usize,
    /// Root `path_lower` ("" = whole namespace).
    r: String,
    rec: bool,
    /// Namespace cursor epoch at minting.
    ep: u64,
    /// The view the listing was started in.
    v: View,
    /// Page limit.
    l: usize,
    /// Listing: last key delivered (`None` before the first page).
    after: Option<String>,
    /// Log position the listing started at, or delta position.
    seq: u64,
    /// True once the listing finished and the cursor replays the log.
    delta: bool,
}

/// Requests served, by route, for tests and benchmarks.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counters {
    pub by_route: BTreeMap<String, u64>,
    pub refresh_grants: u64,
    pub code_grants: u64,
    pub faults_injected: u64,
    /// `list_folder`/`continue` calls that started while another one for the same account was
    /// still in flight: a host that syncs each account single-flight never causes one.
    pub overlapping_list_calls: u64,
    /// Webhook notifications answered 200, attempts made (retries included), and given up.
    pub webhooks_delivered: u64,
    pub webhook_attempts: u64,
    pub webhooks_failed: u64,
}

impl Counters {
    pub fn get(&self, route: &str) -> u64 {
        self.by_route.get(route).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.by_route.values().sum()
    }
}

pub struct State {
    pub accounts: Vec<Account>,
    apps: HashMap<String, String>,
    codes: HashMap<String, CodeGrant>,
    access: HashMap<String, AccessGrant>,
    refresh: HashMap<String, RefreshGrant>,
    pub token_lifetime: Duration,
    /// False: the user clicks "Deny".
    pub approve_consent: bool,
    /// Which account the emulated browser is logged in as.
    pub login_account: usize,
    pub faults: VecDeque<Fault>,
    pub fault_plan: Option<FaultPlan>,
    pub counters: Counters,
    rng: ChaCha8Rng,
    cursor_key: [u8; 32],
    /// Tokens no longer valid, remembered for leak scans.
    burnt: Vec<String>,
    /// Added to every API and token request before it is answered (a real round trip).
    pub latency: Duration,
    /// Sent as `backoff` in every longpoll answer when set.
    pub longpoll_backoff: Option<u64>,
    /// Where notifications go, and the app whose secret signs them.
    pub webhook: Option<Webhook>,
    /// `list_folder` calls in flight, per account.
    pub in_flight: HashMap<usize, u32>,
}

/// A registered webhook: Dropbox POSTs changed account ids here, signed with the app secret.
#[derive(Clone, Debug)]
pub struct Webhook {
    pub url: String,
    pub app_secret: String,
    /// Delivery attempts per notification (Dropbox retries for about ten minutes).
    pub attempts: u32,
    /// Wait before the first retry; doubled after each.
    pub first_retry: Duration,
}

/// A notification ready to send: body and `X-Dropbox-Signature`.
#[derive(Clone, Debug)]
pub struct Notification {
    pub body: Vec<u8>,
    pub signature: String,
}

/// What a longpoll waits on, once its request has been checked.
pub struct Longpoll {
    cursor: CursorState,
    pub timeout: Duration,
}

type HmacSha256 = Hmac<Sha256>;

const CODE_LIFETIME: Duration = Duration::from_secs(600);

impl State {
    pub fn new(config: &Config) -> Self {
        let accounts = config
            .accounts
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let h = Sha256::digest(format!("account:{}:{}", spec.email, spec.generate.seed));
                let account_id = format!("dbid:AA{}", &URL_SAFE_NO_PAD.encode(&h[..27])[..36]);
                let namespace_id = format!("{}", 1_000_000 + i as u64 * 7 + h[0] as u64);
                let mut home = Namespace::new(&account_id);
                let (team_root, home_path) = match &spec.team_folder {
                    None => {
                        generate(&mut home, &spec.generate);
                        (None, None)
                    }
                    Some(team_folder) => {
                        let member = format!("/{}", spec.display_name);
                        let team = format!("/{team_folder}");
                        home.add(&member, true, 0).expect("empty namespace");
                        home.add(&team, true, 0).expect("empty namespace");
                        generate(&mut home, &Generate { under: member.clone(), ..spec.generate.clone() });
                        generate(
                            &mut home,
                            &Generate { under: team, seed: spec.generate.seed + 1, entries: spec.generate.entries },
                        );
                        (Some(format!("{}", 9_000_000 + h[1] as u64)), Some(member))
                    }
                };
                home.live_clock = true;
                Account {
                    account_id,
                    email: spec.email.clone(),
                    display_name: spec.display_name.clone(),
                    namespace_id,
                    team_root,
                    home_path,
                    home,
                }
            })
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x5eed);
        let cursor_key = rng.random();
        State {
            accounts,
            apps: config.apps.iter().cloned().collect(),
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            token_lifetime: config.token_lifetime,
            approve_consent: true,
            login_account: 0,
            faults: VecDeque::new(),
            fault_plan: None,
            counters: Counters::default(),
            rng,
            cursor_key,
            burnt: Vec::new(),
            latency: Duration::ZERO,
            longpoll_backoff: None,
            webhook: None,
            in_flight: HashMap::new(),
        }
    }

    /// The secret of app `client_id`, or of the only app.
    pub fn app_secret(&self, client_id: Option<&str>) -> Option<String> {
        match client_id {
            Some(id) => self.apps.get(id).cloned(),
            None if self.apps.len() == 1 => self.apps.values().next().cloned(),
            None => None,
        }
    }

    /// Which account a bearer token belongs to, if any (for in-flight bookkeeping).
    pub fn account_of(&self, bearer: Option<&str>) -> Option<usize> {
        self.authenticate(bearer).ok()
    }

    /// The signed notification Dropbox sends when these accounts change.
    pub fn notification(&self, accounts: &[usize]) -> Option<Notification> {
        let hook = self.webhook.as_ref()?;
        let ids: Vec<&str> =
            accounts.iter().filter_map(|a| self.accounts.get(*a)).map(|a| a.account_id.as_str()).collect();
        let users: Vec<u64> = accounts.iter().map(|a| 100_000 + *a as u64).collect();
        let body = serde_json::to_vec(&serde_json::json!({
            "list_folder": { "accounts": ids },
            "delta": { "users": users },
        }))
        .ok()?;
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(hook.app_secret.as_bytes()).expect("any key length");
        mac.update(&body);
        let signature = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        Some(Notification { body, signature })
    }

    /// `POST /2/files/list_folder/longpoll` (noauth): check the request; the server then waits
    /// until [`State::longpoll_changes`] says yes or the timeout passes.
    pub fn longpoll_start(&mut self, body: &[u8]) -> Result<Longpoll, Reply> {
        const ROUTE: &str = "files/list_folder/longpoll";
        self.count(ROUTE);
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Arg {
            cursor: String,
            #[serde(default = "default_timeout")]
            timeout: u64,
        }
        fn default_timeout() -> u64 {
            30
        }
        let arg: Arg = serde_json::from_slice(body)
            .map_err(|e| Reply::bad_request(ROUTE, &format!("request body: could not decode input as JSON: {e}")))?;
        if !(30..=480).contains(&arg.timeout) {
            return Err(Reply::bad_request(
                ROUTE,
                &format!("request body: timeout: {} is not within range [30, 480]", arg.timeout),
            ));
        }
        let cursor = self
            .open_cursor(&arg.cursor)
            .ok_or_else(|| Reply::bad_request(ROUTE, "Invalid \"cursor\" parameter: the cursor is malformed"))?;
        let poll = Longpoll { cursor, timeout: Duration::from_secs(arg.timeout) };
        self.longpoll_changes(&poll)?;
        Ok(poll)
    }

    /// Whether the longpoll's cursor has changes now; `409 reset` if it no longer works.
    pub fn longpoll_changes(&self, poll: &Longpoll) -> Result<bool, Reply> {
        let c = &poll.cursor;
        let Some(acct) = self.accounts.get(c.a) else { return Ok(false) };
        let ns = &acct.home;
        if c.ep != ns.cursor_epoch {
            return Err(Reply::route_error(409, serde_json::json!({ ".tag": "reset" })));
        }
        if !c.delta {
            return Ok(true);
        }
        Ok(!ns.changes_in_view(&c.v, &c.r, c.rec, c.seq, 1).0.is_empty())
    }

    /// The longpoll's answer.
    pub fn longpoll_reply(&self, changes: bool) -> Reply {
        let mut v = serde_json::json!({ "changes": changes });
        if let Some(b) = self.longpoll_backoff {
            v["backoff"] = b.into();
        }
        // Dropbox has served this route as text/plain; clients must not depend on the type.
        Reply { content_type: "text/plain; charset=utf-8", ..Reply::json(200, &v) }
    }

    fn token(&mut self, prefix: &str) -> String {
        let bytes: [u8; 24] = self.rng.random();
        format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    fn count(&mut self, route: &str) {
        *self.counters.by_route.entry(route.to_string()).or_default() += 1;
    }

    /// The next scripted fault for this route, if any.
    pub fn take_fault(&mut self, route: &str) -> Option<FaultKind> {
        if let Some(i) = self.faults.iter().position(|f| f.route.as_deref().is_none_or(|r| r == route)) {
            self.counters.faults_injected += 1;
            return self.faults.remove(i).map(|f| f.kind);
        }
        let plan = self.fault_plan.as_mut()?;
        if plan.kinds.is_empty() || !plan.rng.random_bool(plan.probability.clamp(0.0, 1.0)) {
            return None;
        }
        let kind = plan.kinds[plan.rng.random_range(0..plan.kinds.len())].clone();
        self.counters.faults_injected += 1;
        Some(kind)
    }

    /// The next fault scripted for exactly this route (routes outside /2/'s RPC set, which
    /// untargeted faults and the fault plan leave alone).
    pub fn take_routed_fault(&mut self, route: &str) -> Option<FaultKind> {
        let i = self.faults.iter().position(|f| f.route.as_deref() == Some(route))?;
        self.counters.faults_injected += 1;
        self.faults.remove(i).map(|f| f.kind)
    }

    /// Which part of the namespace a request sees, from its `Dropbox-API-Path-Root` header.
    fn view_for(&self, a: usize, path_root: Option<&str>) -> Result<View, Reply> {
        let acct = &self.accounts[a];
        let Some(header) = path_root else { return Ok(acct.default_view()) };
        let bad = || Reply::text(400, "Error in call to API function: Invalid Dropbox-API-Path-Root header");
        let v: serde_json::Value = serde_json::from_str(header).map_err(|_| bad())?;
        match v.get(".tag").and_then(|t| t.as_str()) {
            Some("home") => Ok(acct.default_view()),
            Some("root") => {
                let root = v.get("root").and_then(|r| r.as_str()).ok_or_else(bad)?;
                if root == acct.root_namespace_id() {
                    Ok(View::default())
                } else {
                    Err(Reply::route_error(
                        422,
                        serde_json::json!({ ".tag": "invalid_root", "invalid_root": acct.root_info_json() }),
                    ))
                }
            }
            Some("namespace_id") => {
                let ns = v.get("namespace_id").and_then(|r| r.as_str()).ok_or_else(bad)?;
                if ns == acct.root_namespace_id() {
                    Ok(View::default())
                } else if ns == acct.namespace_id {
                    Ok(acct.default_view())
                } else {
                    Err(Reply::route_error(422, serde_json::json!({ ".tag": "no_permission" })))
                }
            }
            _ => Err(bad()),
        }
    }

    /// The team moves the member to another team space: old root ids get `422 invalid_root`.
    pub fn change_team_root(&mut self, account: usize) {
        if let Some(a) = self.accounts.get_mut(account) {
            let next = a.root_namespace_id().parse::<u64>().unwrap_or(9_000_000) + 1;
            a.team_root = Some(next.to_string());
        }
    }

    // ---- OAuth -------------------------------------------------------------------------

    /// `GET /oauth2/authorize`: the user is logged in and clicks Allow (or Deny).
    pub fn authorize(&mut self, q: &HashMap<String, String>) -> Reply {
        self.count("oauth2/authorize");
        let Some(client_id) = q.get("client_id").filter(|c| self.apps.contains_key(*c)) else {
            return Reply::text(400, "Invalid client_id");
        };
        if q.get("response_type").map(String::as_str) != Some("code") {
            return Reply::text(400, "response_type must be code");
        }
        let challenge = match (q.get("code_challenge"), q.get("code_challenge_method").map(String::as_str)) {
            (Some(c), Some("S256")) if c.len() == 43 => Some(c.clone()),
            (None, _) => None,
            _ => return Reply::text(400, "code_challenge must be S256 of a 43-128 character verifier"),
        };
        let Some(redirect_uri) = q.get("redirect_uri").cloned() else {
            return Reply::text(200, "No redirect_uri: copy this code into the app.");
        };
        let Ok(mut target) = url::Url::parse(&redirect_uri) else {
            return Reply::text(400, "Invalid redirect_uri");
        };
        {
            let mut pairs = target.query_pairs_mut();
            if self.approve_consent {
                let code = self.token("code-");
                self.codes.insert(
                    code.clone(),
                    CodeGrant {
                        client_id: client_id.clone(),
                        redirect_uri: Some(redirect_uri.clone()),
                        challenge,
                        account: self.login_account,
                        issued: Instant::now(),
                        used: false,
                    },
                );
                pairs.append_pair("code", &code);
            } else {
                pairs.append_pair("error", "access_denied");
                pairs.append_pair(
                    "error_description",
                    "The user chose not to give your app access to their Dropbox account.",
                );
            }
            if let Some(state) = q.get("state") {
                pairs.append_pair("state", state);
            }
        }
        Reply::redirect(target.into())
    }

    /// The app's credentials from HTTP Basic or the form.
    fn client(&self, basic: Option<(String, String)>, form: &HashMap<String, String>) -> Result<String, Reply> {
        let (id, secret) = match basic {
            Some(pair) => pair,
            None => match (form.get("client_id"), form.get("client_secret")) {
                (Some(i), Some(s)) => (i.clone(), s.clone()),
                _ => return Err(Reply::oauth_error("invalid_client", "No client credentials given.")),
            },
        };
        match self.apps.get(&id) {
            Some(s) if *s == secret => Ok(id),
            _ => Err(Reply::json(
                400,
                &serde_json::json!({ "error": "invalid_client: Invalid client_id or client_secret" }),
            )),
        }
    }

    /// `POST /oauth2/token`.
    pub fn token_endpoint(&mut self, basic: Option<(String, String)>, form: &HashMap<String, String>) -> Reply {
        self.count("oauth2/token");
        if let Some(fault) = self.take_fault("oauth2/token") {
            if let Some(r) = fault_reply(&fault, None) {
                return r;
            }
        }
        let client_id = match self.client(basic, form) {
            Ok(c) => c,
            Err(r) => return r,
        };
        match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => self.code_grant(&client_id, form),
            Some("refresh_token") => self.refresh_grant(&client_id, form),
            _ => Reply::oauth_error("unsupported_grant_type", "grant_type must be authorization_code or refresh_token"),
        }
    }

    fn code_grant(&mut self, client_id: &str, form: &HashMap<String, String>) -> Reply {
        self.counters.code_grants += 1;
        let invalid = |why: &str| Reply::oauth_error("invalid_grant", why);
        let Some(code) = form.get("code") else { return invalid("code is missing") };
        let Some(grant) = self.codes.get_mut(code) else { return invalid("code doesn't exist or has expired") };
        if grant.used {
            return invalid("code has already been used");
        }
        // A code is burnt by any exchange attempt, successful or not.
        grant.used = true;
        if grant.issued.elapsed() > CODE_LIFETIME {
            return invalid("code doesn't exist or has expired");
        }
        if grant.client_id != client_id {
            return invalid("code was issued to another app");
        }
        if grant.redirect_uri.as_deref() != form.get("redirect_uri").map(String::as_str) {
            return invalid("redirect_uri mismatch");
        }
        if let Some(challenge) = &grant.challenge {
            let Some(verifier) = form.get("code_verifier") else { return invalid("code_verifier is missing") };
            if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != *challenge {
                return invalid("invalid code verifier");
            }
        }
        let account = grant.account;
        let refresh = self.token("rt-emu-");
        self.refresh.insert(refresh.clone(), RefreshGrant { account, client_id: client_id.to_string() });
        let access = self.issue_access(account, &refresh);
        Reply::json(
            200,
            &serde_json::json!({
                "access_token": access,
                "expires_in": self.token_lifetime.as_secs(),
                "token_type": "bearer",
                "scope": "account_info.read files.content.read files.metadata.read sharing.read",
                "refresh_token": refresh,
                "account_id": self.accounts[account].account_id,
                "uid": "12345",
            }),
        )
    }

    fn refresh_grant(&mut self, client_id: &str, form: &HashMap<String, String>) -> Reply {
        self.counters.refresh_grants += 1;
        let Some(rt) = form.get("refresh_token") else {
            return Reply::oauth_error("invalid_request", "refresh_token is missing");
        };
        let account = match self.refresh.get(rt) {
            Some(g) if g.client_id == client_id => g.account,
            _ => return Reply::oauth_error("invalid_grant", "refresh token is invalid or revoked"),
        };
        let access = self.issue_access(account, rt);
        // Dropbox does not rotate refresh tokens: no refresh_token in the answer.
        Reply::json(
            200,
            &serde_json::json!({ "access_token": access, "expires_in": self.token_lifetime.as_secs(), "token_type": "bearer" }),
        )
    }

    /// An access token for `account` without an OAuth round trip (the crate's own tests).
    #[cfg(test)]
    pub fn issue_test_token(&mut self, account: usize) -> String {
        self.issue_access(account, "test-refresh")
    }

    fn issue_access(&mut self, account: usize, refresh: &str) -> String {
        let token = self.token("sl.emu-");
        self.access.insert(
            token.clone(),
            AccessGrant { account, refresh: refresh.to_string(), expires: Instant::now() + self.token_lifetime },
        );
        token
    }

    /// Check a bearer token: the account index, or the 401 to send.
    pub fn authenticate(&self, bearer: Option<&str>) -> Result<usize, Reply> {
        let auth_error = |tag: &str| Reply::route_error(401, serde_json::json!({ ".tag": tag }));
        let Some(grant) = bearer.and_then(|t| self.access.get(t)) else {
            return Err(auth_error("invalid_access_token"));
        };
        if Instant::now() >= grant.expires {
            return Err(auth_error("expired_access_token"));
        }
        Ok(grant.account)
    }

    /// `POST /2/auth/token/revoke`: this token, its refresh token, and every token minted from it.
    pub fn revoke(&mut self, bearer: Option<&str>) -> Reply {
        self.count("auth/token/revoke");
        if let Err(r) = self.authenticate(bearer) {
            return r;
        }
        let refresh = bearer.and_then(|t| self.access.get(t)).map(|g| g.refresh.clone()).unwrap_or_default();
        self.refresh.remove(&refresh);
        let revoked: Vec<String> =
            self.access.iter().filter(|(_, g)| g.refresh == refresh).map(|(k, _)| k.clone()).collect();
        for k in revoked {
            self.access.remove(&k);
            self.burnt.push(k);
        }
        self.burnt.push(refresh);
        Reply::json(200, &serde_json::Value::Null)
    }

    /// The user removes the app in their Dropbox settings: every token stops working.
    pub fn revoke_all(&mut self) {
        self.burnt.extend(self.access.drain().map(|(k, _)| k));
        self.burnt.extend(self.refresh.drain().map(|(k, _)| k));
    }

    /// Every token issued so far, for secret-leak scans.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.access.keys().chain(self.refresh.keys()).cloned().chain(self.burnt.iter().cloned()).collect()
    }

    /// Make every access token expire now (to force refreshes mid-listing).
    pub fn expire_access_tokens(&mut self) {
        let now = Instant::now();
        for g in self.access.values_mut() {
            g.expires = now;
        }
    }

    // ---- RPC routes ----------------------------------------------------------------------

    /// `POST /2/users/get_current_account`.
    pub fn current_account(&mut self, bearer: Option<&str>) -> Reply {
        self.count("users/get_current_account");
        let a = match self.authenticate(bearer) {
            Ok(a) => a,
            Err(r) => return r,
        };
        let acct = &self.accounts[a];
        Reply::json(
            200,
            &serde_json::json!({
                "account_id": acct.account_id,
                "name": {
                    "given_name": acct.display_name.split(' ').next().unwrap_or(""),
                    "surname": acct.display_name.split(' ').nth(1).unwrap_or(""),
                    "familiar_name": acct.display_name.split(' ').next().unwrap_or(""),
                    "display_name": acct.display_name,
                    "abbreviated_name": "FF"
                },
                "email": acct.email,
                "email_verified": true,
                "disabled": false,
                "country": "CH",
                "locale": "en",
                "referral_link": "https://db.tt/emulated",
                "is_paired": false,
                "account_type": { ".tag": "basic" },
                "root_info": acct.root_info_json()
            }),
        )
    }

    fn sign_cursor(&self, c: &CursorState) -> String {
        let json = serde_json::to_vec(c).unwrap_or_default();
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.cursor_key).expect("any key length");
        mac.update(&json);
        let tag = mac.finalize().into_bytes();
        format!("AAE{}.{}", URL_SAFE_NO_PAD.encode(&json), URL_SAFE_NO_PAD.encode(&tag[..12]))
    }

    fn open_cursor(&self, cursor: &str) -> Option<CursorState> {
        let (payload, tag) = cursor.strip_prefix("AAE")?.split_once('.')?;
        let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.cursor_key).expect("any key length");
        mac.update(&json);
        mac.verify_truncated_left(&tag).ok()?;
        serde_json::from_slice(&json).ok()
    }

    /// `POST /2/files/download` and `/2/files/export`: the argument arrives as header-safe JSON
    /// (`Dropbox-API-Arg`), the file's bytes leave as the body, its metadata in
    /// `Dropbox-API-Result`.
    pub fn content(&mut self, route: &str, bearer: Option<&str>, arg: &str, path_root: Option<&str>) -> Reply {
        self.count(route);
        let a = match self.authenticate(bearer) {
            Ok(a) => a,
            Err(r) => return r,
        };
        let view = match self.view_for(a, path_root) {
            Ok(v) => v,
            Err(r) => return r,
        };
        #[derive(Deserialize)]
        struct Arg {
            path: String,
            #[serde(default)]
            export_format: Option<String>,
        }
        let arg: Arg = match serde_json::from_str(arg) {
            Ok(a) => a,
            Err(e) => {
                return Reply::bad_request(
                    route,
                    &format!("HTTP header \"Dropbox-API-Arg\": could not decode input as JSON: {e}"),
                )
            }
        };
        let conflict = |error: serde_json::Value| Reply::route_error(409, error);
        let not_found = || conflict(serde_json::json!({ ".tag": "path", "path": { ".tag": "not_found" } }));
        let selector = if arg.path.starts_with('/') { view.inner(&arg.path.to_lowercase()) } else { arg.path.clone() };
        let ns = &self.accounts[a].home;
        let Some((pl, node)) = ns.find(&selector) else { return not_found() };
        let Some(outer) = view.outer(pl) else { return not_found() };
        if node.is_folder {
            return conflict(serde_json::json!({ ".tag": "path", "path": { ".tag": "not_file" } }));
        }
        if node.restricted {
            return conflict(serde_json::json!({ ".tag": "path", "path": { ".tag": "restricted_content" } }));
        }
        let metadata = |size: usize| {
            let mut m = serde_json::to_value(node.json_in(outer, view.display_skip)).unwrap_or_default();
            m["size"] = size.into();
            m
        };
        let (body, result) = if route == "files/download" {
            if node.export.is_some() {
                return conflict(serde_json::json!({ ".tag": "unsupported_file" }));
            }
            let body = crate::content::download(node);
            let result = metadata(body.len());
            (body, result)
        } else {
            let Some(export) = &node.export else {
                return conflict(serde_json::json!({ ".tag": "non_exportable" }));
            };
            let format = arg.export_format.unwrap_or_else(|| export.export_as.clone());
            if !export.export_options.contains(&format) {
                return conflict(serde_json::json!({ ".tag": "invalid_export_format" }));
            }
            let body = crate::content::export(node, &format);
            let result = serde_json::json!({
                "export_metadata": {
                    "name": format!("{}.{}", node.name, if format == "markdown" { "md" } else { format.as_str() }),
                    "size": body.len(),
                    "export_hash": crate::model::dropbox_content_hash(&body),
                },
                "file_metadata": metadata(node.size as usize),
            });
            (body, result)
        };
        Reply {
            status: 200,
            content_type: "application/octet-stream",
            headers: vec![("dropbox-api-result", header_safe_json(&result))],
            body,
            truncate: false,
            delay: None,
        }
    }

    /// `POST /2/files/list_folder`.
    pub fn list_folder(&mut self, bearer: Option<&str>, body: &[u8], path_root: Option<&str>) -> Reply {
        const ROUTE: &str = "files/list_folder";
        self.count(ROUTE);
        match self.listing_start(ROUTE, bearer, body, path_root) {
            Ok(state) => self.page(state),
            Err(r) => r,
        }
    }

    /// `POST /2/files/list_folder/get_latest_cursor`: the same argument as `list_folder`; a
    /// cursor that lists nothing and replays every change made after this call.
    pub fn get_latest_cursor(&mut self, bearer: Option<&str>, body: &[u8], path_root: Option<&str>) -> Reply {
        const ROUTE: &str = "files/list_folder/get_latest_cursor";
        self.count(ROUTE);
        match self.listing_start(ROUTE, bearer, body, path_root) {
            Ok(state) => {
                let state = CursorState { delta: true, ..state };
                Reply::json(200, &serde_json::json!({ "cursor": self.sign_cursor(&state) }))
            }
            Err(r) => r,
        }
    }

    /// A `ListFolderArg` checked as Dropbox checks it, as the state of a new cursor.
    fn listing_start(
        &mut self,
        route: &'static str,
        bearer: Option<&str>,
        body: &[u8],
        path_root: Option<&str>,
    ) -> Result<CursorState, Reply> {
        let a = self.authenticate(bearer)?;
        #[derive(Deserialize)]
        struct Arg {
            path: String,
            #[serde(default)]
            recursive: bool,
            #[serde(default)]
            limit: Option<u32>,
        }
        let arg: Arg = match serde_json::from_slice(body) {
            Ok(a) => a,
            Err(e) => {
                return Err(Reply::bad_request(route, &format!("request body: could not decode input as JSON: {e}")))
            }
        };
        if arg.path == "/" {
            return Err(Reply::bad_request(
                route,
                "request body: path: Specify the root folder as an empty string rather than as \"/\".",
            ));
        }
        if !arg.path.is_empty() && !arg.path.starts_with('/') {
            return Err(Reply::bad_request(
                route,
                &format!("request body: path: '{}' did not match pattern", arg.path),
            ));
        }
        let limit = match arg.limit {
            None => 2000,
            Some(l @ 1..=2000) => l as usize,
            Some(l) => {
                return Err(Reply::bad_request(
                    route,
                    &format!("request body: limit: {l} is not within range [1, 2000]"),
                ))
            }
        };
        let view = self.view_for(a, path_root)?;
        let root = arg.path.to_lowercase();
        let ns = &self.accounts[a].home;
        if !root.is_empty() {
            match ns.get(&view.inner(&root)) {
                None => {
                    return Err(Reply::route_error(
                        409,
                        serde_json::json!({ ".tag": "path", "path": { ".tag": "not_found" } }),
                    ))
                }
                Some(n) if !n.is_folder => {
                    return Err(Reply::route_error(
                        409,
                        serde_json::json!({ ".tag": "path", "path": { ".tag": "not_folder" } }),
                    ))
                }
                _ => {}
            }
        }
        let state = CursorState {
            a,
            r: root,
            rec: arg.recursive,
            ep: ns.cursor_epoch,
            v: view,
            l: limit,
            after: None,
            seq: ns.seq(),
            delta: false,
        };
        Ok(state)
    }

    /// `POST /2/files/list_folder/continue`.
    pub fn list_folder_continue(&mut self, bearer: Option<&str>, body: &[u8], path_root: Option<&str>) -> Reply {
        const ROUTE: &str = "files/list_folder/continue";
        self.count(ROUTE);
        let a = match self.authenticate(bearer) {
            Ok(a) => a,
            Err(r) => return r,
        };
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Arg {
            cursor: String,
        }
        let arg: Arg = match serde_json::from_slice(body) {
            Ok(a) => a,
            Err(e) => return Reply::bad_request(ROUTE, &format!("request body: could not decode input as JSON: {e}")),
        };
        let Some(state) = self.open_cursor(&arg.cursor).filter(|c| c.a == a) else {
            return Reply::bad_request(
                ROUTE,
                "Invalid \"cursor\" parameter: the cursor is malformed or belongs to another user",
            );
        };
        if let Err(r) = self.view_for(a, path_root) {
            return r;
        }
        let ns = &self.accounts[a].home;
        if state.ep != ns.cursor_epoch {
            return Reply::route_error(409, serde_json::json!({ ".tag": "reset" }));
        }
        if !state.r.is_empty() && !ns.get(&state.v.inner(&state.r)).is_some_and(|n| n.is_folder) {
            return Reply::route_error(409, serde_json::json!({ ".tag": "path", "path": { ".tag": "not_found" } }));
        }
        self.page(state)
    }

    fn page(&self, mut c: CursorState) -> Reply {
        let ns = &self.accounts[c.a].home;
        let (entries, has_more): (Vec<MetadataJson<'_>>, bool) = if c.delta {
            let (entries, next) = ns.changes_in_view(&c.v, &c.r, c.rec, c.seq, c.l);
            c.seq = next;
            (entries, next < ns.seq())
        } else {
            let (keys, more) = ns.list_page(&c.v.inner(&c.r), c.rec, c.after.as_deref(), c.l);
            let view = &c.v;
            let entries =
                keys.iter().filter_map(|k| Some(ns.get(k)?.json_in(view.outer(k)?, view.display_skip))).collect();
            c.after = keys.last().map(|k| k.to_string());
            if !more {
                // Listing done: from here on the cursor replays what changed since it began.
                c.delta = true;
                c.after = None;
            }
            // The listing continues, or the log has changes made during it.
            (entries, more || c.seq < ns.seq())
        };
        #[derive(Serialize)]
        struct Out<'a> {
            entries: Vec<MetadataJson<'a>>,
            cursor: String,
            has_more: bool,
        }
        Reply::json(200, &Out { entries, cursor: self.sign_cursor(&c), has_more })
    }

    /// Invalidate every cursor of an account (`409 reset` on their next use).
    pub fn reset_cursors(&mut self, account: usize) {
        if let Some(a) = self.accounts.get_mut(account) {
            a.home.cursor_epoch += 1;
        }
    }
}

/// The reply a fault produces; `None` when it only modifies the real answer (delay, truncate).
pub fn fault_reply(kind: &FaultKind, route: Option<&str>) -> Option<Reply> {
    match kind {
        FaultKind::Status { status } => Some(Reply::text(*status, format!("emulated failure {status}"))),
        FaultKind::RateLimit { retry_after, json } => {
            let mut r = if *json {
                Reply::route_error(
                    429,
                    serde_json::json!({ "reason": { ".tag": "too_many_requests" }, "retry_after": retry_after.ceil() as u64 }),
                )
            } else {
                Reply::text(429, "too_many_requests")
            };
            r.headers.push(("retry-after", format!("{retry_after}")));
            Some(r)
        }
        FaultKind::Reset => matches!(route, Some("files/list_folder/continue" | "files/list_folder/longpoll"))
            .then(|| Reply::route_error(409, serde_json::json!({ ".tag": "reset" }))),
        FaultKind::Garbage => Some(Reply {
            content_type: "application/json",
            ..Reply::text(200, "<html><body>Gateway says hi</body></html>")
        }),
        FaultKind::Raw { status, retry_after, body } => {
            let mut r = Reply { content_type: "application/json", ..Reply::text(*status, "") };
            r.body = body.clone();
            if let Some(v) = retry_after {
                r.headers.push(("retry-after", v.clone()));
            }
            Some(r)
        }
        FaultKind::Truncate | FaultKind::Delay { .. } | FaultKind::Hangup => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State::new(&Config::single(3, 50, "app", "secret"))
    }

    fn connect(s: &mut State) -> String {
        let q: HashMap<String, String> =
            [("client_id", "app"), ("response_type", "code"), ("redirect_uri", "http://cb/x"), ("state", "st")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let r = s.authorize(&q);
        let loc = &r.headers[0].1;
        let code = url::Url::parse(loc).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
        let form: HashMap<String, String> =
            [("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", "http://cb/x")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let r = s.token_endpoint(Some(("app".into(), "secret".into())), &form);
        assert_eq!(r.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        // Codes are single use.
        assert_eq!(s.token_endpoint(Some(("app".into(), "secret".into())), &form).status, 400);
        v["access_token"].as_str().unwrap().to_string()
    }

    #[test]
    fn cursors_are_opaque_and_tamper_evident() {
        let mut s = state();
        let token = connect(&mut s);
        let r = s.list_folder(Some(&token), br#"{"path":"","recursive":true,"limit":10}"#, None);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let cursor = v["cursor"].as_str().unwrap();
        let ok = s.list_folder_continue(Some(&token), format!(r#"{{"cursor":"{cursor}"}}"#).as_bytes(), None);
        assert_eq!(ok.status, 200);
        let forged = cursor.replacen("AAE", "AAE1", 1);
        assert_eq!(
            s.list_folder_continue(Some(&token), format!(r#"{{"cursor":"{forged}"}}"#).as_bytes(), None).status,
            400
        );
        s.reset_cursors(0);
        assert_eq!(
            s.list_folder_continue(Some(&token), format!(r#"{{"cursor":"{cursor}"}}"#).as_bytes(), None).status,
            409
        );
    }

    #[test]
    fn root_must_be_empty_string_and_missing_folders_are_409() {
        let mut s = state();
        let token = connect(&mut s);
        assert_eq!(s.list_folder(Some(&token), br#"{"path":"/"}"#, None).status, 400);
        let r = s.list_folder(Some(&token), br#"{"path":"/nope"}"#, None);
        assert_eq!(r.status, 409);
        assert!(String::from_utf8_lossy(&r.body).contains("not_found"));
        assert_eq!(s.list_folder(None, br#"{"path":""}"#, None).status, 401);
    }

    #[test]
    fn the_latest_cursor_lists_nothing_and_then_replays_later_changes() {
        let mut s = state();
        let token = connect(&mut s);
        let r = s.get_latest_cursor(Some(&token), br#"{"path":"","recursive":true}"#, None);
        assert_eq!(r.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let cursor = v["cursor"].as_str().unwrap().to_string();
        let body = format!(r#"{{"cursor":"{cursor}"}}"#);
        let page: serde_json::Value =
            serde_json::from_slice(&s.list_folder_continue(Some(&token), body.as_bytes(), None).body).unwrap();
        assert_eq!(page["entries"].as_array().unwrap().len(), 0, "nothing changed yet");
        s.accounts[0].home.add("/after the cursor.txt", false, 5).unwrap();
        let page: serde_json::Value =
            serde_json::from_slice(&s.list_folder_continue(Some(&token), body.as_bytes(), None).body).unwrap();
        assert_eq!(page["entries"][0]["path_lower"], "/after the cursor.txt");
        // The same argument checks as list_folder.
        assert_eq!(s.get_latest_cursor(Some(&token), br#"{"path":"/nope"}"#, None).status, 409);
        assert_eq!(s.get_latest_cursor(Some(&token), br#"{"path":"/"}"#, None).status, 400);
    }
}
