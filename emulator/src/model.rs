//! The emulated Dropbox account: a namespace tree keyed by `path_lower`, generated
//! deterministically from a seed, with a change log that `list_folder/continue` replays.
//!
//! Listing pages are keyset-paginated on `path_lower` (parents sort before children), so a
//! mutation during a listing can never make the listing skip an entry that existed throughout;
//! whatever changed after the listing started is replayed from the log afterwards.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Extensions the generator cycles through: every icon's, and some that map to `default`.
pub const EXTENSIONS: [&str; 17] = [
    "pdf", "docx", "doc", "xlsx", "xls", "pptx", "ppt", "paper", "gdoc", "gsheet", "gslides", "txt", "jpg", "PDF",
    "zip", "md", "",
];

/// Name stems: unicode, spaces, `#`, `%`, and characters JSON must escape.
const STEMS: [&str; 12] = [
    "report",
    "Budget 2024",
    "Q1 #2",
    "100% done",
    "Ünïcode 文件",
    "café menu",
    "notes \"quoted\"",
    "back\\slash",
    "emoji 🚀",
    "plan",
    "Résumé",
    "a+b=c",
];

const FOLDER_STEMS: [&str; 8] = ["Docs", "Photos", "Team #1", "50% Off", "Проекты", "My Folder", "2024", "Archive"];

/// One file or folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    pub name: String,
    pub path_display: String,
    pub is_folder: bool,
    pub size: u64,
    pub rev: String,
    pub content_hash: String,
    pub client_modified: String,
    pub server_modified: String,
    /// Bytes given by an upload; None: generated files, whose bytes are synthesised on
    /// download (`content::synthetic`).
    pub content: Option<Arc<[u8]>>,
    /// Paper and Google files: exported, never downloaded.
    pub export: Option<Export>,
    /// Dropbox blocks downloads (`restricted_content`).
    pub restricted: bool,
}

/// `export_info` of a non-downloadable file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Export {
    pub export_as: String,
    pub export_options: Vec<String>,
}

/// What a file of this name exports as, if it must be exported (Paper, Google files).
pub fn export_for(name: &str) -> Option<Export> {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())?;
    let (export_as, options): (&str, &[&str]) = match ext.as_str() {
        "paper" => ("html", &["html", "markdown"]),
        "gdoc" => ("docx", &["docx"]),
        "gsheet" => ("xlsx", &["xlsx"]),
        "gslides" => ("pptx", &["pptx"]),
        _ => return None,
    };
    Some(Export { export_as: export_as.into(), export_options: options.iter().map(|o| o.to_string()).collect() })
}

/// Dropbox's content hash: SHA-256 over the concatenated SHA-256s of 4 MiB blocks.
pub fn dropbox_content_hash(bytes: &[u8]) -> String {
    let mut outer = Sha256::new();
    for block in bytes.chunks(4 << 20) {
        outer.update(Sha256::digest(block));
    }
    outer.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A change the log replays to cursors minted before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Something was created or modified at this path; send its current metadata.
    Upsert(String),
    /// The entry at this path (and everything below it) is gone.
    Delete { path_lower: String, path_display: String, name: String },
}

/// Dropbox's `Metadata` union as JSON.
#[derive(Serialize)]
#[serde(tag = ".tag", rename_all = "lowercase")]
pub enum MetadataJson<'a> {
    File {
        name: &'a str,
        id: &'a str,
        path_lower: &'a str,
        path_display: &'a str,
        client_modified: &'a str,
        server_modified: &'a str,
        rev: &'a str,
        size: u64,
        is_downloadable: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        export_info: Option<&'a Export>,
        content_hash: &'a str,
    },
    Folder {
        name: &'a str,
        id: &'a str,
        path_lower: &'a str,
        path_display: &'a str,
    },
    Deleted {
        name: &'a str,
        path_lower: &'a str,
        path_display: &'a str,
    },
}

impl Node {
    pub fn json<'a>(&'a self, path_lower: &'a str) -> MetadataJson<'a> {
        self.json_in(path_lower, 0)
    }

    /// As seen through a view rooted `display_skip` bytes into the path (a team member's home).
    pub fn json_in<'a>(&'a self, path_lower: &'a str, display_skip: usize) -> MetadataJson<'a> {
        let path_display = self.path_display.get(display_skip..).unwrap_or(&self.path_display);
        if self.is_folder {
            MetadataJson::Folder { name: &self.name, id: &self.id, path_lower, path_display }
        } else {
            MetadataJson::File {
                name: &self.name,
                id: &self.id,
                path_lower,
                path_display,
                client_modified: &self.client_modified,
                server_modified: &self.server_modified,
                rev: &self.rev,
                size: self.size,
                is_downloadable: self.export.is_none(),
                export_info: self.export.as_ref(),
                content_hash: &self.content_hash,
            }
        }
    }
}

/// Dropbox lower-cases paths for `path_lower` (Unicode-aware).
pub fn lower(path: &str) -> String {
    path.to_lowercase()
}

fn parent_of(path_lower: &str) -> &str {
    match path_lower.rfind('/') {
        Some(0) | None => "",
        Some(i) => &path_lower[..i],
    }
}

/// `DropboxTimestamp`: UTC, seconds, `Z`.
pub fn timestamp(unix: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&f).unwrap_or_default()
}

/// Why a mutation was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MutationError {
    #[error("no entry at {0}")]
    NotFound(String),
    #[error("an entry already exists at {0}")]
    Conflict(String),
    #[error("the parent of {0} is not a folder")]
    NoParent(String),
    #[error("cannot move {0} into itself")]
    IntoItself(String),
    #[error("invalid path {0:?}")]
    BadPath(String),
}

/// One namespace (a user's Dropbox, or a team space): the tree plus its change log.
#[derive(Default)]
pub struct Namespace {
    pub nodes: BTreeMap<String, Node>,
    pub log: Vec<Change>,
    /// Bumped to invalidate every cursor (`409 reset`).
    pub cursor_epoch: u64,
    next_id: u64,
    id_salt: String,
    clock: i64,
    /// After generation: timestamps follow the wall clock, as a live Dropbox's do.
    pub live_clock: bool,
    /// `id:`/`rev:` → `path_lower`, built on first use and rebuilt after any change.
    lookup: std::cell::RefCell<Option<Lookup>>,
}

/// The download lookup, valid for one state of the tree.
struct Lookup {
    seq: u64,
    len: usize,
    by_id: std::collections::HashMap<String, String>,
    by_rev: std::collections::HashMap<String, String>,
}

/// A page of entries, ready to serialize.
pub struct Page<'a> {
    pub entries: Vec<MetadataJson<'a>>,
    pub has_more: bool,
}

impl Namespace {
    pub fn new(id_salt: &str) -> Self {
        Namespace { id_salt: id_salt.to_string(), clock: 1_700_000_000, ..Default::default() }
    }

    /// A deterministic, stable Dropbox-style id.
    fn mint_id(&mut self) -> String {
        self.next_id += 1;
        let h = Sha256::digest(format!("{}:{}", self.id_salt, self.next_id));
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &h[..16]);
        format!("id:{}", &b64[..21])
    }

    fn tick(&mut self) -> i64 {
        self.clock += 37;
        if self.live_clock {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            self.clock = self.clock.max(now);
        }
        self.clock
    }

    pub fn seq(&self) -> u64 {
        self.log.len() as u64
    }

    pub fn get(&self, path_lower: &str) -> Option<&Node> {
        self.nodes.get(path_lower)
    }

    fn check_parent(&self, path_display: &str) -> Result<String, MutationError> {
        if !path_display.starts_with('/') || path_display.ends_with('/') || path_display.contains("//") {
            return Err(MutationError::BadPath(path_display.into()));
        }
        let pl = lower(path_display);
        let parent = parent_of(&pl);
        if !parent.is_empty() && !self.nodes.get(parent).is_some_and(|n| n.is_folder) {
            return Err(MutationError::NoParent(path_display.into()));
        }
        if self.nodes.contains_key(&pl) {
            return Err(MutationError::Conflict(path_display.into()));
        }
        Ok(pl)
    }

    fn file_node(&mut self, path_display: &str, size: u64) -> Node {
        let id = self.mint_id();
        let now = self.tick();
        let name = path_display.rsplit('/').next().unwrap_or_default().to_string();
        let export = export_for(&name);
        let content = Sha256::digest(format!("{id}:{size}"));
        Node {
            rev: format!("{:015x}", self.next_id * 7919 + now as u64),
            content_hash: content.iter().map(|b| format!("{b:02x}")).collect(),
            client_modified: timestamp(now - 3600),
            server_modified: timestamp(now),
            id,
            name,
            path_display: path_display.to_string(),
            is_folder: false,
            size,
            content: None,
            export,
            restricted: false,
        }
    }

    /// Create a file (`is_folder = false`) or folder; logged.
    pub fn add(&mut self, path_display: &str, is_folder: bool, size: u64) -> Result<String, MutationError> {
        let pl = self.check_parent(path_display)?;
        let node = if is_folder {
            let id = self.mint_id();
            Node {
                id,
                name: path_display.rsplit('/').next().unwrap_or_default().to_string(),
                path_display: path_display.to_string(),
                is_folder: true,
                size: 0,
                rev: String::new(),
                content_hash: String::new(),
                client_modified: String::new(),
                server_modified: String::new(),
                content: None,
                export: None,
                restricted: false,
            }
        } else {
            self.file_node(path_display, size)
        };
        let id = node.id.clone();
        self.nodes.insert(pl.clone(), node);
        self.log.push(Change::Upsert(pl));
        Ok(id)
    }

    /// New content for a file: new rev, size, hash, server_modified; logged.
    pub fn modify(&mut self, path: &str, size: u64) -> Result<(), MutationError> {
        let pl = lower(path);
        let now = self.tick();
        self.next_id += 1;
        let rev_seed = self.next_id;
        let node =
            self.nodes.get_mut(&pl).filter(|n| !n.is_folder).ok_or_else(|| MutationError::NotFound(path.into()))?;
        node.size = size;
        node.rev = format!("{:015x}", rev_seed * 7919 + now as u64);
        node.content_hash =
            Sha256::digest(format!("{}:{size}:{now}", node.id)).iter().map(|b| format!("{b:02x}")).collect();
        node.server_modified = timestamp(now);
        // New bytes, unknown to us: synthesised from now on (an upload sets them after).
        node.content = None;
        self.log.push(Change::Upsert(pl));
        Ok(())
    }

    /// Write a file with these exact bytes (created, or a new revision of an existing file);
    /// size and content hash are the bytes' own. Logged. Returns the file's id.
    pub fn upload(&mut self, path: &str, bytes: Vec<u8>) -> Result<String, MutationError> {
        let pl = lower(path);
        let hash = dropbox_content_hash(&bytes);
        let size = bytes.len() as u64;
        if self.nodes.get(&pl).is_some_and(|n| n.is_folder) {
            return Err(MutationError::Conflict(path.into()));
        }
        if !self.nodes.contains_key(&pl) {
            self.add(path, false, size)?;
        } else {
            self.modify(path, size)?;
        }
        let node = self.nodes.get_mut(&pl).expect("just written");
        node.content_hash = hash;
        node.content = Some(bytes.into());
        Ok(node.id.clone())
    }

    /// Mark a file as blocked by Dropbox (copyright, legal hold); not a change to the file.
    pub fn set_restricted(&mut self, path: &str, restricted: bool) -> Result<(), MutationError> {
        let node = self.nodes.get_mut(&lower(path)).ok_or_else(|| MutationError::NotFound(path.into()))?;
        node.restricted = restricted;
        Ok(())
    }

    /// A file by `files/download`'s `path` argument: `id:…`, `rev:…` (the current revision
    /// only: this emulator keeps no history) or a path. Returns its `path_lower` and node.
    pub fn find(&self, selector: &str) -> Option<(&str, &Node)> {
        let path = if selector.starts_with("rev:") || selector.starts_with("id:") {
            let mut cache = self.lookup.borrow_mut();
            // Every mutation is logged (or changes the node count): the log length dates it.
            if !cache.as_ref().is_some_and(|c| c.seq == self.seq() && c.len == self.nodes.len()) {
                let mut by_id = std::collections::HashMap::with_capacity(self.nodes.len());
                let mut by_rev = std::collections::HashMap::new();
                for (k, n) in &self.nodes {
                    by_id.insert(n.id.clone(), k.clone());
                    if !n.is_folder {
                        by_rev.insert(n.rev.clone(), k.clone());
                    }
                }
                *cache = Some(Lookup { seq: self.seq(), len: self.nodes.len(), by_id, by_rev });
            }
            let c = cache.as_ref().expect("just built");
            match selector.strip_prefix("rev:") {
                Some(rev) => c.by_rev.get(rev).cloned()?,
                None => c.by_id.get(selector).cloned()?,
            }
        } else {
            lower(selector)
        };
        self.nodes.get_key_value(&path).map(|(k, n)| (k.as_str(), n))
    }

    /// Keys of `path_lower` and everything below it.
    fn subtree_keys(&self, pl: &str) -> Vec<String> {
        let mut keys = vec![pl.to_string()];
        let prefix = format!("{pl}/");
        keys.extend(
            self.nodes
                .range::<str, _>((Bound::Excluded(prefix.as_str()), Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(k, _)| k.clone()),
        );
        keys
    }

    /// Delete an entry and its subtree; one `deleted` entry is logged, as Dropbox reports it.
    pub fn delete(&mut self, path: &str) -> Result<(), MutationError> {
        let pl = lower(path);
        let node = self.nodes.get(&pl).ok_or_else(|| MutationError::NotFound(path.into()))?.clone();
        for k in self.subtree_keys(&pl) {
            self.nodes.remove(&k);
        }
        self.log.push(Change::Delete { path_lower: pl, path_display: node.path_display, name: node.name });
        Ok(())
    }

    /// Move or rename (including case-only renames): delete at the old path, upserts of the
    /// same ids at the new paths.
    pub fn move_entry(&mut self, from: &str, to: &str) -> Result<(), MutationError> {
        let from_l = lower(from);
        let to_l = lower(to);
        let node = self.nodes.get(&from_l).ok_or_else(|| MutationError::NotFound(from.into()))?.clone();
        if to_l.starts_with(&format!("{from_l}/")) {
            return Err(MutationError::IntoItself(from.into()));
        }
        if !to.starts_with('/') || to.ends_with('/') || to.contains("//") {
            return Err(MutationError::BadPath(to.into()));
        }
        let parent = parent_of(&to_l);
        if !parent.is_empty() && !self.nodes.get(parent).is_some_and(|n| n.is_folder) {
            return Err(MutationError::NoParent(to.into()));
        }
        let case_only = from_l == to_l;
        if !case_only && self.nodes.contains_key(&to_l) {
            return Err(MutationError::Conflict(to.into()));
        }
        let keys = self.subtree_keys(&from_l);
        let moved: Vec<(String, Node)> =
            keys.iter().filter_map(|k| self.nodes.remove(k).map(|n| (k.clone(), n))).collect();
        if !case_only {
            self.log.push(Change::Delete {
                path_lower: from_l.clone(),
                path_display: node.path_display.clone(),
                name: node.name.clone(),
            });
        }
        let now = self.tick();
        for (old_key, mut n) in moved {
            let suffix = &n.path_display[node.path_display.len()..];
            n.path_display = format!("{to}{suffix}");
            if old_key == from_l {
                n.name = to.rsplit('/').next().unwrap_or_default().to_string();
                if !n.is_folder {
                    n.server_modified = timestamp(now);
                }
            }
            let new_key = lower(&n.path_display);
            self.nodes.insert(new_key.clone(), n);
            self.log.push(Change::Upsert(new_key));
        }
        Ok(())
    }

    /// One page of a listing under `root` (`""` or a folder's `path_lower`), after `after`.
    pub fn list_page(&self, root: &str, recursive: bool, after: Option<&str>, limit: usize) -> (Vec<&str>, bool) {
        let prefix = format!("{root}/");
        let in_scope = |k: &str| {
            if root.is_empty() {
                recursive || !k[1..].contains('/')
            } else if k == root {
                true
            } else {
                k.starts_with(&prefix) && (recursive || !k[prefix.len()..].contains('/'))
            }
        };
        let start = match after {
            Some(a) => Bound::Excluded(a),
            None if root.is_empty() => Bound::Unbounded,
            None => Bound::Included(root),
        };
        let mut keys = Vec::with_capacity(limit.min(4096));
        let mut more = false;
        for (k, _) in self.nodes.range::<str, _>((start, Bound::Unbounded)) {
            if !root.is_empty() && k != root && !k.starts_with(&prefix) {
                // Keys between "/a" and "/a/" (e.g. "/a b") sort inside the range; skip them
                // until we pass the subtree.
                if k.as_str() > prefix.as_str() {
                    break;
                }
                continue;
            }
            if !in_scope(k) {
                continue;
            }
            if keys.len() == limit {
                more = true;
                break;
            }
            keys.push(k.as_str());
        }
        (keys, more)
    }

    /// The changes after `seq` under `root`, at most `limit`; returns the entries and the new seq.
    pub fn changes_since(&self, root: &str, recursive: bool, seq: u64, limit: usize) -> (Vec<MetadataJson<'_>>, u64) {
        let prefix = format!("{root}/");
        let in_scope = |k: &str| {
            let below = root.is_empty() || k == root || k.starts_with(&prefix);
            let rel = if root.is_empty() { &k[1..] } else { k.get(prefix.len()..).unwrap_or("") };
            below && (recursive || !rel.contains('/'))
        };
        let mut out = Vec::new();
        let mut pos = seq as usize;
        while pos < self.log.len() && out.len() < limit {
            match &self.log[pos] {
                Change::Upsert(k) if in_scope(k) => {
                    if let Some(n) = self.nodes.get(k) {
                        out.push(n.json(k));
                    }
                }
                Change::Delete { path_lower, path_display, name } if in_scope(path_lower) => {
                    out.push(MetadataJson::Deleted { name, path_lower, path_display });
                }
                _ => {}
            }
            pos += 1;
        }
        (out, pos as u64)
    }
}

/// Parameters of a generated account.
#[derive(Clone, Debug)]
pub struct Generate {
    pub seed: u64,
    /// Folder to generate under ("" = the namespace root); it must exist.
    pub under: String,
    /// Files and folders to create (`.DS_Store` files included).
    pub entries: usize,
}

/// Fill a namespace deterministically: nested folders, every icon's extensions, unicode,
/// spaces, `#`, `%` and quote characters in names, and `.DS_Store` files. Generation is not
/// logged: the tree is the account's initial state.
pub fn generate(ns: &mut Namespace, spec: &Generate) {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut folders: Vec<String> = vec![spec.under.clone()];
    let mut ds_store_in: std::collections::HashSet<String> = Default::default();
    let mut created = 0usize;
    let mut i = 0usize;
    while created < spec.entries {
        i += 1;
        // Prefer recent folders so the tree gets deep, but keep the root busy too.
        let parent = if rng.random_bool(0.6) {
            let recent = folders.len().min(12);
            folders[folders.len() - 1 - rng.random_range(0..recent)].clone()
        } else {
            folders[rng.random_range(0..folders.len())].clone()
        };
        let depth = parent.matches('/').count();
        if i.is_multiple_of(53) && !parent.is_empty() && ds_store_in.insert(parent.clone()) {
            if ns.add(&format!("{parent}/.DS_Store"), false, 6148).is_ok() {
                created += 1;
            }
            continue;
        }
        let is_folder = depth < 9 && rng.random_bool(0.11);
        let path = if is_folder {
            let stem = FOLDER_STEMS[rng.random_range(0..FOLDER_STEMS.len())];
            format!("{parent}/{stem} {i}")
        } else {
            let stem = STEMS[rng.random_range(0..STEMS.len())];
            let ext = EXTENSIONS[i % EXTENSIONS.len()];
            if ext.is_empty() {
                format!("{parent}/{stem} {i}")
            } else {
                format!("{parent}/{stem} {i}.{ext}")
            }
        };
        let size = if rng.random_bool(0.05) { 0 } else { rng.random_range(1..20_000_000) };
        // Documents people search are small; about 1 % stay over the 10 MiB content cap.
        let size = if size >= 19_800_000 || !has_synthetic_text(&path) { size } else { size % 60_000 };
        if ns.add(&path, is_folder, size).is_ok() {
            created += 1;
            if is_folder {
                folders.push(path);
            }
        }
    }
    // The initial tree is state, not history.
    ns.log.clear();
}

/// A view of a namespace: everything, or one folder as if it were the root (how a team member
/// sees the team space without `Dropbox-API-Path-Root`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct View {
    /// `path_lower` of the view's root folder ("" = the whole namespace).
    pub prefix: String,
    /// Bytes of `path_display` the view hides (the root folder's display path).
    pub display_skip: usize,
}

impl View {
    pub fn inner(&self, view_path_lower: &str) -> String {
        format!("{}{view_path_lower}", self.prefix)
    }

    /// A namespace path as the view shows it, if the view shows it.
    pub fn outer<'a>(&self, path_lower: &'a str) -> Option<&'a str> {
        let rest = path_lower.strip_prefix(self.prefix.as_str())?;
        (rest.starts_with('/') && (self.prefix.is_empty() || !rest.is_empty())).then_some(rest)
    }
}

impl Namespace {
    /// `changes_since`, through a view.
    pub fn changes_in_view(
        &self,
        view: &View,
        root: &str,
        recursive: bool,
        seq: u64,
        limit: usize,
    ) -> (Vec<MetadataJson<'_>>, u64) {
        if view.prefix.is_empty() {
            return self.changes_since(root, recursive, seq, limit);
        }
        let inner_root = view.inner(root);
        let prefix = format!("{inner_root}/");
        let mut out = Vec::new();
        let mut pos = seq as usize;
        while pos < self.log.len() && out.len() < limit {
            let in_scope = |k: &str| {
                (k == inner_root || k.starts_with(&prefix))
                    && (recursive || !k.get(prefix.len()..).unwrap_or("").contains('/'))
            };
            match &self.log[pos] {
                Change::Upsert(k) if in_scope(k) => {
                    if let (Some(n), Some(outer)) = (self.nodes.get(k), view.outer(k)) {
                        out.push(n.json_in(outer, view.display_skip));
                    }
                }
                Change::Delete { path_lower, path_display, name } if in_scope(path_lower) => {
                    if let Some(outer) = view.outer(path_lower) {
                        let display = path_display.get(view.display_skip..).unwrap_or(path_display);
                        out.push(MetadataJson::Deleted { name, path_lower: outer, path_display: display });
                    }
                }
                _ => {}
            }
            pos += 1;
        }
        (out, pos as u64)
    }
}

/// Whether generated files with this name get a synthetic document (and a small size).
pub fn has_synthetic_text(name: &str) -> bool {
    matches!(
        name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default().as_str(),
        "txt" | "md" | "pdf" | "docx" | "xlsx" | "pptx" | "paper" | "gdoc" | "gsheet" | "gslides"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Namespace {
        let mut ns = Namespace::new("t");
        generate(&mut ns, &Generate { seed: 7, entries: 500, under: String::new() });
        ns
    }

    #[test]
    fn generation_is_deterministic_and_diverse() {
        let a = small();
        let b = small();
        assert_eq!(a.nodes, b.nodes);
        assert_eq!(a.nodes.len(), 500);
        assert!(a.nodes.values().any(|n| n.name == ".DS_Store"));
        assert!(a.nodes.values().any(|n| n.name.contains('#')) && a.nodes.values().any(|n| n.name.contains('%')));
        assert!(a.nodes.values().any(|n| !n.name.is_ascii()));
        assert!(a.nodes.keys().any(|k| k.matches('/').count() >= 4), "nested folders");
        for ext in EXTENSIONS.iter().filter(|e| !e.is_empty()) {
            assert!(a.nodes.values().any(|n| n.name.ends_with(&format!(".{ext}"))), "{ext}");
        }
        let ids: std::collections::HashSet<_> = a.nodes.values().map(|n| &n.id).collect();
        assert_eq!(ids.len(), 500);
    }

    #[test]
    fn keyset_listing_visits_everything_once_in_parent_first_order() {
        let ns = small();
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (keys, more) = ns.list_page("", true, after.as_deref(), 37);
            seen.extend(keys.iter().map(|k| k.to_string()));
            after = keys.last().map(|k| k.to_string());
            if !more {
                break;
            }
        }
        assert_eq!(seen.len(), ns.nodes.len());
        let pos: std::collections::HashMap<_, _> = seen.iter().enumerate().map(|(i, k)| (k.clone(), i)).collect();
        for k in &seen {
            let p = parent_of(k);
            if !p.is_empty() {
                assert!(pos[p] < pos[k], "{p} after {k}");
            }
        }
    }

    #[test]
    fn subfolder_listing_includes_the_folder_and_skips_siblings_sorting_inside() {
        let mut ns = Namespace::new("s");
        for (p, f) in [
            ("/a", true),
            ("/a b", true),
            ("/a/x.txt", false),
            ("/a b/y.txt", false),
            ("/a-c", false),
            ("/a/sub", true),
            ("/a/sub/z", false),
        ] {
            ns.add(p, f, 1).unwrap();
        }
        let (keys, more) = ns.list_page("/a", true, None, 100);
        assert_eq!(keys, ["/a", "/a/sub", "/a/sub/z", "/a/x.txt"]);
        assert!(!more);
        let (keys, _) = ns.list_page("/a", false, None, 100);
        assert_eq!(keys, ["/a", "/a/sub", "/a/x.txt"]);
        let (keys, _) = ns.list_page("", false, None, 100);
        assert_eq!(keys, ["/a", "/a b", "/a-c"]);
    }

    #[test]
    fn moves_log_delete_then_upserts_with_same_ids() {
        let mut ns = Namespace::new("m");
        ns.add("/Dir", true, 0).unwrap();
        let id = ns.add("/Dir/f.txt", false, 3).unwrap();
        let seq = ns.seq();
        ns.move_entry("/Dir", "/Moved").unwrap();
        assert_eq!(ns.get("/moved/f.txt").unwrap().id, id);
        assert_eq!(ns.get("/moved/f.txt").unwrap().path_display, "/Moved/f.txt");
        let (changes, next) = ns.changes_since("", true, seq, 100);
        assert_eq!(next, ns.seq());
        let json = serde_json::to_value(&changes).unwrap();
        assert_eq!(json[0][".tag"], "deleted");
        assert_eq!(json[0]["path_lower"], "/dir");
        assert_eq!(json[2]["id"], id.as_str());
        // Case-only rename: no delete, new display path.
        let seq = ns.seq();
        ns.move_entry("/Moved", "/moved").unwrap();
        let (changes, _) = ns.changes_since("", true, seq, 100);
        let json = serde_json::to_value(&changes).unwrap();
        assert!(json.as_array().unwrap().iter().all(|e| e[".tag"] != "deleted"));
        assert_eq!(ns.get("/moved/f.txt").unwrap().path_display, "/moved/f.txt");
        assert!(matches!(ns.move_entry("/moved", "/moved/inner"), Err(MutationError::IntoItself(_))));
    }
}
