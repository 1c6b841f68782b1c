//! The node database and transaction overlays.
//!
//! Every stored version of a node carries a generation number from one
//! counter that only grows. A transaction does not copy the database: it
//! remembers, for every node it touched, the generation it first saw (or that
//! the node was absent), and keeps its own writes in an overlay. At commit it
//! conflicts if any touched node now has another generation, or already had a
//! newer one than the transaction's start when first touched — so a committed
//! transaction saw exactly the snapshot of its start, as C xenstored promises.

use std::collections::HashMap;
use std::sync::Arc;

use crate::store::Perm;
use crate::DomId;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub value: Vec<u8>,
    /// Never empty: the first entry is the owner and the default access.
    pub perms: Vec<Perm>,
    /// Child names in creation order (xenstored keeps them so). Shared, so
    /// that handing out a copy of a big directory's node is cheap; changed
    /// with `Arc::make_mut`.
    pub children: Arc<Vec<String>>,
    pub generation: u64,
}

impl Node {
    pub fn owner(&self) -> DomId {
        self.perms.first().map(|p| p.domid).unwrap_or(0)
    }
}

/// A change that fires watches. `exact` changes match only watches on that
/// very path (the nodes below a removed node); the others match watches at
/// or above it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub exact: bool,
    /// Permissions deciding who may see the event: the node's (its old ones
    /// for a removal), plus the old ones of a SET_PERMS.
    pub perms: Vec<Perm>,
    pub old_perms: Option<Vec<Perm>>,
}

/// Read/modify access to nodes, either the database itself or a transaction.
pub trait View {
    fn get(&mut self, path: &str) -> Option<Node>;
    fn put(&mut self, path: &str, node: Node);
    fn remove(&mut self, path: &str);
    /// How many nodes `domid` owns, as this view sees it.
    fn owned(&self, domid: DomId) -> usize;
}

pub struct Tree {
    nodes: HashMap<String, Node>,
    generation: u64,
    owned: HashMap<DomId, usize>,
}

impl Tree {
    /// A database holding only `/`, owned by dom0 and closed to others.
    pub fn new() -> Tree {
        let mut tree = Tree {
            nodes: HashMap::new(),
            generation: 0,
            owned: HashMap::new(),
        };
        tree.put(
            "/",
            Node {
                value: Vec::new(),
                perms: vec![Perm {
                    domid: 0,
                    access: crate::store::PermAccess::None,
                }],
                children: Arc::default(),
                generation: 0,
            },
        );
        tree
    }

    pub fn node(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// The newest generation handed out.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn count_owner(&mut self, owner: DomId, delta: isize) {
        let n = self.owned.entry(owner).or_insert(0);
        *n = n.saturating_add_signed(delta);
    }
}

impl Default for Tree {
    fn default() -> Self {
        Tree::new()
    }
}

impl View for Tree {
    fn get(&mut self, path: &str) -> Option<Node> {
        self.nodes.get(path).cloned()
    }

    fn put(&mut self, path: &str, mut node: Node) {
        self.generation += 1;
        node.generation = self.generation;
        let new_owner = node.owner();
        if let Some(old) = self.nodes.insert(path.to_string(), node) {
            self.count_owner(old.owner(), -1);
        }
        self.count_owner(new_owner, 1);
    }

    fn remove(&mut self, path: &str) {
        if let Some(old) = self.nodes.remove(path) {
            self.count_owner(old.owner(), -1);
        }
    }

    fn owned(&self, domid: DomId) -> usize {
        self.owned.get(&domid).copied().unwrap_or(0)
    }
}

/// One open transaction.
#[derive(Debug)]
pub struct TxData {
    start_generation: u64,
    /// Our writes: `None` is a removal.
    overlay: HashMap<String, Option<Node>>,
    /// Every node touched, with the generation first seen (`None`: absent).
    accessed: HashMap<String, Option<u64>>,
    owned_delta: HashMap<DomId, isize>,
    /// Watch-firing changes, fired at commit.
    pub changes: Vec<Change>,
}

impl TxData {
    pub fn new(tree: &Tree) -> TxData {
        TxData {
            start_generation: tree.generation(),
            overlay: HashMap::new(),
            accessed: HashMap::new(),
            owned_delta: HashMap::new(),
            changes: Vec::new(),
        }
    }

    /// Entries held: bounded by the server's per-transaction limit.
    pub fn size(&self) -> usize {
        self.accessed.len().max(self.overlay.len())
    }

    pub fn view<'a>(&'a mut self, tree: &'a Tree) -> TxView<'a> {
        TxView { tree, tx: self }
    }

    /// Net change of the nodes `domid` owns if this transaction commits.
    pub fn owned_delta(&self, domid: DomId) -> isize {
        self.owned_delta.get(&domid).copied().unwrap_or(0)
    }

    /// Whether everything this transaction touched is as it was at its start.
    pub fn is_consistent(&self, tree: &Tree) -> bool {
        self.accessed.iter().all(|(path, seen)| {
            let now = tree.node(path).map(|n| n.generation);
            now == *seen && seen.is_none_or(|g| g <= self.start_generation)
        })
    }

    /// Apply the overlay to the database; returns the changes to fire.
    pub fn apply(self, tree: &mut Tree) -> Vec<Change> {
        for (path, node) in self.overlay {
            match node {
                Some(node) => tree.put(&path, node),
                None => tree.remove(&path),
            }
        }
        self.changes
    }

    fn touch(&mut self, tree: &Tree, path: &str) {
        if !self.accessed.contains_key(path) {
            self.accessed
                .insert(path.to_string(), tree.node(path).map(|n| n.generation));
        }
    }
}

/// A transaction's view: its overlay over the live database.
pub struct TxView<'a> {
    tree: &'a Tree,
    tx: &'a mut TxData,
}

impl TxView<'_> {
    fn current_owner(&mut self, path: &str) -> Option<DomId> {
        self.get(path).map(|n| n.owner())
    }

    fn adjust(&mut self, owner: DomId, delta: isize) {
        let d = self.tx.owned_delta.entry(owner).or_insert(0);
        *d = d.saturating_add(delta);
    }
}

impl View for TxView<'_> {
    fn get(&mut self, path: &str) -> Option<Node> {
        if let Some(entry) = self.tx.overlay.get(path) {
            return entry.clone();
        }
        self.tx.touch(self.tree, path);
        self.tree.node(path).cloned()
    }

    fn put(&mut self, path: &str, node: Node) {
        if let Some(old) = self.current_owner(path) {
            self.adjust(old, -1);
        }
        self.adjust(node.owner(), 1);
        self.tx.touch(self.tree, path);
        self.tx.overlay.insert(path.to_string(), Some(node));
    }

    fn remove(&mut self, path: &str) {
        if let Some(old) = self.current_owner(path) {
            self.adjust(old, -1);
        }
        self.tx.touch(self.tree, path);
        self.tx.overlay.insert(path.to_string(), None);
    }

    fn owned(&self, domid: DomId) -> usize {
        self.tree
            .owned(domid)
            .saturating_add_signed(self.tx.owned_delta(domid))
    }
}
