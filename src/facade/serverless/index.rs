//! Which documents sit at which paths. Dropbox reports a deletion by path only ("this path and
//! everything under it"), while Coco deletes by document id, so the facade keeps, per folder,
//! its children: name → (document id, folder?, listing generation). One key per folder:
//! a page touches a few folders, a subtree delete walks only that subtree, and a re-listing
//! after a cursor reset sweeps the children it did not see again.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::kv::{KvError, KvStore};

#[derive(Serialize, Deserialize, Default, Debug, Clone, PartialEq, Eq)]
struct Node {
    #[serde(rename = "c")]
    children: BTreeMap<String, Child>,
}

/// (document id, is a folder, generation of the listing that last saw it)
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct Child(String, bool, u64);

/// The folder's key. Hashed: Dropbox paths can be longer than the 256 bytes Spin allows a key.
fn node_key(datasource_id: &str, folder_lower: &str) -> String {
    format!("n:{datasource_id}:{}", crate::mapping::md5_hex(folder_lower))
}

pub fn node_prefix(datasource_id: &str) -> String {
    format!("n:{datasource_id}:")
}

/// Every document id the index holds for a datasource (a removal's deletes by id, when Coco
/// no longer has the datasource they hang on). Lists the store's keys: never per page.
pub fn all_ids(kv: &mut dyn KvStore, datasource_id: &str) -> Result<Vec<String>, KvError> {
    let mut ids = Vec::new();
    for key in kv.keys_with_prefix(&node_prefix(datasource_id))? {
        let Some(raw) = kv.get(&key)? else { continue };
        let node: Node =
            serde_json::from_slice(&raw).map_err(|e| KvError(format!("index node {key} is unreadable: {e}")))?;
        ids.extend(node.children.into_values().map(|Child(id, _, _)| id));
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// `/a/b` → (`/a`, `b`); `/a` → (``, `a`).
fn split(path_lower: &str) -> (&str, &str) {
    path_lower.rsplit_once('/').unwrap_or(("", path_lower))
}

/// A page's changes to the index, held until [`PathIndex::commit`].
pub struct PathIndex<'k> {
    kv: &'k mut dyn KvStore,
    datasource_id: String,
    nodes: BTreeMap<String, Node>,
    dirty: BTreeSet<String>,
    /// Subtrees gone: their keys are deleted before any other write.
    dropped: BTreeSet<String>,
    pub added: u64,
    pub removed: u64,
}

impl<'k> PathIndex<'k> {
    pub fn new(kv: &'k mut dyn KvStore, datasource_id: &str) -> Self {
        PathIndex {
            kv,
            datasource_id: datasource_id.to_string(),
            nodes: BTreeMap::new(),
            dirty: BTreeSet::new(),
            dropped: BTreeSet::new(),
            added: 0,
            removed: 0,
        }
    }

    fn node(&mut self, key: &str) -> Result<&mut Node, KvError> {
        if !self.nodes.contains_key(key) {
            let node = if self.dropped.contains(key) {
                Node::default()
            } else {
                match self.kv.get(key)? {
                    Some(raw) => serde_json::from_slice(&raw)
                        .map_err(|e| KvError(format!("index node {key} is unreadable: {e}")))?,
                    None => Node::default(),
                }
            };
            self.nodes.insert(key.to_string(), node);
        }
        Ok(self.nodes.get_mut(key).expect("inserted above"))
    }

    /// Remove `path_lower` and everything under it; their document ids go to `gone`.
    pub fn delete_path(&mut self, path_lower: &str, gone: &mut Vec<String>) -> Result<(), KvError> {
        let (parent, name) = split(path_lower);
        let key = node_key(&self.datasource_id, parent);
        let child = self.node(&key)?.children.remove(name);
        if let Some(Child(id, _, _)) = child {
            self.dirty.insert(key);
            self.removed += 1;
            gone.push(id);
        }
        // A folder's children, even when the folder itself was not known (cheap when none).
        self.drop_subtree(path_lower, gone)
    }

    fn drop_subtree(&mut self, folder_lower: &str, gone: &mut Vec<String>) -> Result<(), KvError> {
        let mut stack = vec![folder_lower.to_string()];
        while let Some(folder) = stack.pop() {
            let key = node_key(&self.datasource_id, &folder);
            let node = std::mem::take(self.node(&key)?);
            if node.children.is_empty() {
                continue;
            }
            self.dropped.insert(key.clone());
            self.dirty.remove(&key);
            for (name, Child(id, is_folder, _)) in node.children {
                self.removed += 1;
                gone.push(id);
                if is_folder {
                    stack.push(format!("{folder}/{name}"));
                }
            }
        }
        Ok(())
    }

    /// Record the document at `path_lower`. A different document that sat there goes to
    /// `gone`, and so does the subtree of a folder that a file replaced.
    pub fn upsert(
        &mut self,
        path_lower: &str,
        doc_id: &str,
        is_folder: bool,
        generation: u64,
        gone: &mut Vec<String>,
    ) -> Result<(), KvError> {
        let (parent, name) = split(path_lower);
        let key = node_key(&self.datasource_id, parent);
        let before =
            self.node(&key)?.children.insert(name.to_string(), Child(doc_id.to_string(), is_folder, generation));
        self.dropped.remove(&key);
        self.dirty.insert(key);
        match before {
            None => self.added += 1,
            Some(Child(old_id, was_folder, _)) => {
                if old_id != doc_id {
                    gone.push(old_id);
                }
                if was_folder && !is_folder {
                    self.drop_subtree(path_lower, gone)?;
                }
            }
        }
        Ok(())
    }

    /// After a full re-listing in `generation`: everything it did not see is gone.
    pub fn sweep(&mut self, generation: u64, gone: &mut Vec<String>) -> Result<(), KvError> {
        let mut keys: BTreeSet<String> =
            self.kv.keys_with_prefix(&node_prefix(&self.datasource_id))?.into_iter().collect();
        keys.extend(self.nodes.keys().cloned());
        for key in keys {
            let node = self.node(&key)?;
            let before = node.children.len();
            node.children.retain(|_, Child(id, _, seen)| {
                let keep = *seen >= generation;
                if !keep {
                    gone.push(std::mem::take(id));
                }
                keep
            });
            let stale = (before - node.children.len()) as u64;
            if stale > 0 {
                self.removed += stale;
                self.dirty.insert(key);
            }
        }
        Ok(())
    }

    /// Write the page's changes: dropped subtrees first, then changed folders (an emptied
    /// folder's key is deleted). Stopping half-way leaves an index the same page re-applies to.
    pub fn commit(mut self) -> Result<(), KvError> {
        for key in &self.dropped {
            if !self.dirty.contains(key) {
                self.kv.delete(key)?;
            }
        }
        for key in &self.dirty {
            let node = &self.nodes[key];
            if node.children.is_empty() {
                self.kv.delete(key)?;
            } else {
                let raw = serde_json::to_vec(node).map_err(|e| KvError(format!("index node: {e}")))?;
                self.kv.set(key, &raw)?;
            }
        }
        self.nodes.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::kv::MemoryKv;
    use super::*;

    fn apply(kv: &mut MemoryKv, gen: u64, deletes: &[&str], upserts: &[(&str, &str, bool)]) -> Vec<String> {
        let mut ix = PathIndex::new(kv, "ds");
        let mut gone = Vec::new();
        for d in deletes {
            ix.delete_path(d, &mut gone).unwrap();
        }
        for (path, id, folder) in upserts {
            ix.upsert(path, id, *folder, gen, &mut gone).unwrap();
        }
        ix.commit().unwrap();
        gone.sort();
        gone
    }

    #[test]
    fn a_folder_delete_removes_its_whole_subtree_and_nothing_else() {
        let mut kv = MemoryKv::default();
        let docs = [("/a", "A", true), ("/a/b", "B", true), ("/a/b/c.txt", "C", false), ("/a/d.txt", "D", false)];
        apply(&mut kv, 1, &[], &docs);
        apply(&mut kv, 1, &[], &[("/e.txt", "E", false)]);
        assert_eq!(apply(&mut kv, 1, &["/a"], &[]), ["A", "B", "C", "D"]);
        assert_eq!(kv.keys_with_prefix("n:ds:").unwrap().len(), 1, "only the root's node is left");
        assert_eq!(apply(&mut kv, 1, &["/e.txt"], &[]), ["E"]);
        assert!(kv.map.is_empty(), "an emptied folder's key is deleted");
        assert!(apply(&mut kv, 1, &["/never"], &[]).is_empty());
    }

    #[test]
    fn moves_replacements_and_files_over_folders() {
        let mut kv = MemoryKv::default();
        apply(&mut kv, 1, &[], &[("/a", "A", true), ("/a/x", "X", false), ("/f", "F", false)]);
        // A move is a delete of the old path and the same id at the new one.
        assert_eq!(apply(&mut kv, 1, &["/a/x"], &[("/y", "X", false)]), ["X"]);
        // Another document at a known path: the old one goes.
        assert_eq!(apply(&mut kv, 1, &[], &[("/f", "F2", false)]), ["F"]);
        // A file where a folder was: the folder's subtree goes.
        apply(&mut kv, 1, &[], &[("/a/z", "Z", false)]);
        assert_eq!(apply(&mut kv, 1, &[], &[("/a", "A", false)]), ["Z"]);
        let mut ix = PathIndex::new(&mut kv, "ds");
        let mut gone = Vec::new();
        ix.delete_path("/", &mut gone).unwrap();
        assert!(gone.is_empty());
    }

    #[test]
    fn a_relisting_sweeps_what_it_did_not_see() {
        let mut kv = MemoryKv::default();
        apply(&mut kv, 1, &[], &[("/a", "A", true), ("/a/b", "B", false), ("/c", "C", false), ("/d", "D", true)]);
        apply(&mut kv, 1, &[], &[("/d/e", "E", false)]);
        // Generation 2 sees /a, /a/b and /d only.
        apply(&mut kv, 2, &[], &[("/a", "A", true), ("/a/b", "B", false), ("/d", "D", true)]);
        let mut ix = PathIndex::new(&mut kv, "ds");
        let mut gone = Vec::new();
        ix.upsert("/new", "N", false, 2, &mut gone).unwrap();
        ix.sweep(2, &mut gone).unwrap();
        assert_eq!(ix.added, 1);
        assert_eq!(ix.removed, 2);
        ix.commit().unwrap();
        gone.sort();
        assert_eq!(gone, ["C", "E"]);
        assert_eq!(apply(&mut kv, 2, &["/a", "/d", "/new"], &[]), ["A", "B", "D", "N"]);
        assert!(kv.map.is_empty());
    }

    #[test]
    fn other_datasources_are_untouched() {
        let mut kv = MemoryKv::default();
        apply(&mut kv, 1, &[], &[("/a", "A", false)]);
        let mut ix = PathIndex::new(&mut kv, "other");
        let mut gone = Vec::new();
        ix.sweep(5, &mut gone).unwrap();
        ix.commit().unwrap();
        assert!(gone.is_empty());
        assert_eq!(kv.keys_with_prefix("n:ds:").unwrap().len(), 1);
    }
}
