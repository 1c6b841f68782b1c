//! Node operations with Xen's permission rules, over a [`View`] (the
//! database or a transaction).
//!
//! The rules (C xenstored's `perm_for_conn`, `errno_from_parents`,
//! `construct_node`, `do_set_perms`):
//! - dom0 may do anything; the owner (first perm entry) has full access;
//!   other domains get the access of their own entry, else the first entry's.
//! - A missing node answers ENOENT only if the nearest existing ancestor grants
//!   the requested access; otherwise EACCES, so that existence does not leak.
//! - Creating a node (WRITE/MKDIR) creates missing ancestors too; each new
//!   node inherits its parent's perms, and a guest becomes the owner of what
//!   it creates.
//! - SET_PERMS needs ownership; a guest may not hand its node to another owner.

use std::sync::Arc;

use crate::store::{Perm, PermAccess};
use crate::xs_client::wire::{join_strings, Errno, PAYLOAD_MAX};
use crate::DomId;

use super::path::{basename, join, parent_of};
use super::tree::{Change, Node, View};
use super::Limits;

pub const READ: u8 = 1;
pub const WRITE: u8 = 2;
pub const OWNER: u8 = 4;

/// Who is asking.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    pub domid: DomId,
}

impl Ctx {
    pub fn privileged(self) -> bool {
        self.domid == 0
    }

    /// The access bits this domain has under `perms`.
    pub fn access(self, perms: &[Perm]) -> u8 {
        let Some(first) = perms.first() else {
            return if self.privileged() {
                READ | WRITE | OWNER
            } else {
                0
            };
        };
        if self.privileged() || first.domid == self.domid {
            return READ | WRITE | OWNER;
        }
        let entry = perms[1..]
            .iter()
            .find(|p| p.domid == self.domid)
            .unwrap_or(first);
        match entry.access {
            PermAccess::None => 0,
            PermAccess::Read => READ,
            PermAccess::Write => WRITE,
            PermAccess::Both => READ | WRITE,
        }
    }

    pub fn may_read(self, perms: &[Perm]) -> bool {
        self.access(perms) & READ != 0
    }
}

/// The node at `path` if `ctx` has all of `need` on it.
pub fn check(view: &mut dyn View, ctx: Ctx, path: &str, need: u8) -> Result<Node, Errno> {
    if let Some(node) = view.get(path) {
        return if ctx.access(&node.perms) & need == need {
            Ok(node)
        } else {
            Err(Errno::EACCES)
        };
    }
    let mut at = path;
    while let Some(parent) = parent_of(at) {
        if let Some(node) = view.get(parent) {
            return Err(if ctx.access(&node.perms) & need != 0 {
                Errno::ENOENT
            } else {
                Errno::EACCES
            });
        }
        at = parent;
    }
    // The root always exists; reaching here means a malformed path.
    Err(Errno::EINVAL)
}

pub fn read(view: &mut dyn View, ctx: Ctx, path: &str) -> Result<Vec<u8>, Errno> {
    Ok(check(view, ctx, path, READ)?.value)
}

pub fn directory(view: &mut dyn View, ctx: Ctx, path: &str) -> Result<Vec<String>, Errno> {
    Ok(check(view, ctx, path, READ)?.children.to_vec())
}

/// DIRECTORY_PART: the node's generation, then the children's names starting
/// at byte `offset` of the nul-separated child list, as many as fit; the list
/// is ended by an empty string once its last name is included.
pub fn directory_part(
    view: &mut dyn View,
    ctx: Ctx,
    path: &str,
    offset: usize,
) -> Result<Vec<u8>, Errno> {
    let node = check(view, ctx, path, READ)?;
    let list = join_strings(node.children.as_slice());
    let mut out = format!("{}", node.generation).into_bytes();
    out.push(0);
    let Some(rest) = list.get(offset..).filter(|r| !r.is_empty()) else {
        out.push(0);
        return Ok(out);
    };
    let mut taken = 0;
    for name in rest.split_inclusive(|&b| b == 0) {
        if out.len() + taken + name.len() >= PAYLOAD_MAX {
            break;
        }
        taken += name.len();
    }
    out.extend_from_slice(&rest[..taken]);
    if taken == rest.len() {
        out.push(0);
    }
    Ok(out)
}

pub fn get_perms(view: &mut dyn View, ctx: Ctx, path: &str) -> Result<Vec<Perm>, Errno> {
    Ok(check(view, ctx, path, READ)?.perms)
}

pub fn write(
    view: &mut dyn View,
    ctx: Ctx,
    limits: &Limits,
    path: &str,
    value: &[u8],
) -> Result<Vec<Change>, Errno> {
    if !ctx.privileged() && value.len() > limits.max_value_len {
        return Err(Errno::ENOSPC);
    }
    match check(view, ctx, path, WRITE) {
        Ok(mut node) => {
            node.value = value.to_vec();
            let perms = node.perms.clone();
            view.put(path, node);
            Ok(vec![change(path, perms)])
        }
        Err(Errno::ENOENT) => create(view, ctx, limits, path, value),
        Err(e) => Err(e),
    }
}

pub fn mkdir(
    view: &mut dyn View,
    ctx: Ctx,
    limits: &Limits,
    path: &str,
) -> Result<Vec<Change>, Errno> {
    match check(view, ctx, path, WRITE) {
        Ok(_) => Ok(Vec::new()),
        Err(Errno::ENOENT) => create(view, ctx, limits, path, b""),
        Err(e) => Err(e),
    }
}

/// Create `path` and any missing ancestors (the caller checked that the
/// nearest existing ancestor is writable).
fn create(
    view: &mut dyn View,
    ctx: Ctx,
    limits: &Limits,
    path: &str,
    value: &[u8],
) -> Result<Vec<Change>, Errno> {
    let mut missing = vec![path.to_string()];
    let mut at = path;
    let (mut parent_path, mut parent) = loop {
        let parent = parent_of(at).ok_or(Errno::EINVAL)?;
        if let Some(node) = view.get(parent) {
            break (parent.to_string(), node);
        }
        missing.push(parent.to_string());
        at = parent;
    };
    if !ctx.privileged()
        && view.owned(ctx.domid).saturating_add(missing.len()) > limits.max_nodes_per_domain
    {
        return Err(Errno::ENOSPC);
    }
    missing.reverse();
    let last = missing.len() - 1;
    let mut final_perms = Vec::new();
    for (i, new_path) in missing.into_iter().enumerate() {
        let mut perms = parent.perms.clone();
        if !ctx.privileged() {
            if let Some(first) = perms.first_mut() {
                first.domid = ctx.domid;
            }
        }
        Arc::make_mut(&mut parent.children).push(basename(&new_path).to_string());
        view.put(&parent_path, parent);
        final_perms = perms.clone();
        parent = Node {
            value: if i == last {
                value.to_vec()
            } else {
                Vec::new()
            },
            perms,
            children: Arc::default(),
            generation: 0,
        };
        parent_path = new_path;
    }
    view.put(&parent_path, parent);
    Ok(vec![change(path, final_perms)])
}

pub fn rm(view: &mut dyn View, ctx: Ctx, path: &str) -> Result<Vec<Change>, Errno> {
    let node = match check(view, ctx, path, WRITE) {
        Ok(node) => node,
        // Removing what is already gone is fine if its parent exists.
        Err(Errno::ENOENT) => {
            let parent = parent_of(path).ok_or(Errno::EINVAL)?;
            return match view.get(parent) {
                Some(_) => Ok(Vec::new()),
                None => Err(Errno::ENOENT),
            };
        }
        Err(e) => return Err(e),
    };
    let parent_path = parent_of(path).ok_or(Errno::EINVAL)?;
    let mut changes = vec![change(path, node.perms.clone())];
    let mut stack: Vec<String> = node.children.iter().map(|c| join(path, c)).collect();
    view.remove(path);
    while let Some(p) = stack.pop() {
        if let Some(n) = view.get(&p) {
            stack.extend(n.children.iter().map(|c| join(&p, c)));
            changes.push(Change {
                path: p.clone(),
                exact: true,
                perms: n.perms,
                old_perms: None,
            });
            view.remove(&p);
        }
    }
    if let Some(mut parent) = view.get(parent_path) {
        let name = basename(path);
        Arc::make_mut(&mut parent.children).retain(|c| c != name);
        view.put(parent_path, parent);
    }
    Ok(changes)
}

pub fn set_perms(
    view: &mut dyn View,
    ctx: Ctx,
    limits: &Limits,
    path: &str,
    perms: Vec<Perm>,
) -> Result<Vec<Change>, Errno> {
    let mut node = check(view, ctx, path, WRITE | OWNER)?;
    let Some(new_owner) = perms.first().map(|p| p.domid) else {
        return Err(Errno::EINVAL);
    };
    if !ctx.privileged() {
        if new_owner != node.owner() {
            return Err(Errno::EPERM);
        }
        if perms.len() > limits.max_perms_per_node {
            return Err(Errno::ENOSPC);
        }
    }
    let old = std::mem::replace(&mut node.perms, perms.clone());
    view.put(path, node);
    Ok(vec![Change {
        path: path.to_string(),
        exact: false,
        perms,
        old_perms: Some(old),
    }])
}

fn change(path: &str, perms: Vec<Perm>) -> Change {
    Change {
        path: path.to_string(),
        exact: false,
        perms,
        old_perms: None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tree::{Tree, TxData};
    use super::*;

    const DOM0: Ctx = Ctx { domid: 0 };
    const GUEST: Ctx = Ctx { domid: 5 };

    fn p(s: &str) -> Perm {
        Perm::from_wire(s).unwrap()
    }

    #[test]
    fn guest_access_follows_the_perm_list() {
        let perms = [p("n0"), p("r5"), p("w6")];
        assert_eq!(Ctx { domid: 5 }.access(&perms), READ);
        assert_eq!(Ctx { domid: 6 }.access(&perms), WRITE);
        assert_eq!(Ctx { domid: 7 }.access(&perms), 0);
        assert_eq!(Ctx { domid: 0 }.access(&perms), READ | WRITE | OWNER);
        assert_eq!(Ctx { domid: 7 }.access(&[p("r7")]), READ | WRITE | OWNER);
        assert_eq!(Ctx { domid: 8 }.access(&[p("b7")]), READ | WRITE);
    }

    #[test]
    fn missing_node_reports_enoent_only_to_who_may_know() {
        let mut t = Tree::new();
        let limits = Limits::default();
        write(&mut t, DOM0, &limits, "/secret/x", b"1").unwrap();
        assert_eq!(read(&mut t, GUEST, "/secret/y"), Err(Errno::EACCES));
        assert_eq!(read(&mut t, GUEST, "/secret/x"), Err(Errno::EACCES));
        assert_eq!(read(&mut t, DOM0, "/secret/y"), Err(Errno::ENOENT));
        set_perms(&mut t, DOM0, &limits, "/secret", vec![p("n0"), p("r5")]).unwrap();
        assert_eq!(read(&mut t, GUEST, "/secret/y"), Err(Errno::ENOENT));
    }

    #[test]
    fn created_nodes_inherit_perms_and_guest_owns_them() {
        let mut t = Tree::new();
        let limits = Limits::default();
        mkdir(&mut t, DOM0, &limits, "/dir").unwrap();
        set_perms(
            &mut t,
            DOM0,
            &limits,
            "/dir",
            vec![p("n0"), p("w5"), p("r9")],
        )
        .unwrap();
        write(&mut t, GUEST, &limits, "/dir/a/b", b"v").unwrap();
        let perms = get_perms(&mut t, DOM0, "/dir/a/b").unwrap();
        assert_eq!(perms, vec![p("n5"), p("w5"), p("r9")]);
        assert_eq!(get_perms(&mut t, DOM0, "/dir/a").unwrap()[0], p("n5"));
        // The guest owns it now; dom0-created nodes keep dom0's owner.
        write(&mut t, DOM0, &limits, "/dir/c", b"").unwrap();
        assert_eq!(get_perms(&mut t, DOM0, "/dir/c").unwrap()[0], p("n0"));
        assert_eq!(directory(&mut t, DOM0, "/dir").unwrap(), vec!["a", "c"]);
        // A guest may not give its node away.
        assert_eq!(
            set_perms(&mut t, GUEST, &limits, "/dir/a", vec![p("n6")]),
            Err(Errno::EPERM)
        );
        set_perms(&mut t, GUEST, &limits, "/dir/a", vec![p("n5"), p("r6")]).unwrap();
        // ... nor change perms of a node it does not own, even with write access.
        assert_eq!(
            set_perms(&mut t, GUEST, &limits, "/dir", vec![p("n0")]),
            Err(Errno::EACCES)
        );
    }

    #[test]
    fn rm_removes_the_subtree_and_reports_exact_children() {
        let mut t = Tree::new();
        let limits = Limits::default();
        write(&mut t, DOM0, &limits, "/a/b/c", b"1").unwrap();
        write(&mut t, DOM0, &limits, "/a/d", b"2").unwrap();
        let changes = rm(&mut t, DOM0, "/a").unwrap();
        let mut paths: Vec<_> = changes.iter().map(|c| (c.path.as_str(), c.exact)).collect();
        paths.sort();
        assert_eq!(
            paths,
            vec![
                ("/a", false),
                ("/a/b", true),
                ("/a/b/c", true),
                ("/a/d", true)
            ]
        );
        assert_eq!(read(&mut t, DOM0, "/a/b/c"), Err(Errno::ENOENT));
        assert!(directory(&mut t, DOM0, "/").unwrap().is_empty());
        assert_eq!(t.owned(0), 1, "only / is left");
        // Gone already, parent present: fine. Parent gone too: ENOENT.
        assert_eq!(rm(&mut t, DOM0, "/a"), Ok(vec![]));
        assert_eq!(rm(&mut t, DOM0, "/a/b"), Err(Errno::ENOENT));
        assert_eq!(rm(&mut t, DOM0, "/"), Err(Errno::EINVAL));
    }

    #[test]
    fn directory_part_pages_by_byte_offset() {
        let mut t = Tree::new();
        let limits = Limits::default();
        for i in 0..300 {
            write(
                &mut t,
                DOM0,
                &limits,
                &format!("/d/child-with-a-long-name-{i:04}"),
                b"",
            )
            .unwrap();
        }
        let mut names = Vec::new();
        let mut offset = 0;
        loop {
            let part = directory_part(&mut t, DOM0, "/d", offset).unwrap();
            assert!(part.len() <= PAYLOAD_MAX);
            let fields: Vec<&[u8]> = part.split(|&b| b == 0).collect();
            // generation, names..., and "" "" at the end of the list.
            let body = &fields[1..fields.len() - 1];
            let done = body.last() == Some(&&b""[..]);
            for n in body.iter().filter(|n| !n.is_empty()) {
                offset += n.len() + 1;
                names.push(String::from_utf8(n.to_vec()).unwrap());
            }
            if done {
                break;
            }
        }
        assert_eq!(names, directory(&mut t, DOM0, "/d").unwrap());
        assert_eq!(names.len(), 300);
    }

    #[test]
    fn guest_node_quota() {
        let mut t = Tree::new();
        let limits = Limits {
            max_nodes_per_domain: 3,
            ..Limits::default()
        };
        mkdir(&mut t, DOM0, &limits, "/g").unwrap();
        set_perms(&mut t, DOM0, &limits, "/g", vec![p("n5")]).unwrap();
        // /g is owned by 5 already: two more fit.
        write(&mut t, GUEST, &limits, "/g/a", b"").unwrap();
        write(&mut t, GUEST, &limits, "/g/b", b"").unwrap();
        assert_eq!(
            write(&mut t, GUEST, &limits, "/g/c", b""),
            Err(Errno::ENOSPC)
        );
        rm(&mut t, GUEST, "/g/a").unwrap();
        write(&mut t, GUEST, &limits, "/g/c", b"").unwrap();
    }

    #[test]
    fn transaction_sees_its_writes_and_conflicts_on_foreign_change() {
        let mut t = Tree::new();
        let limits = Limits::default();
        write(&mut t, DOM0, &limits, "/x", b"0").unwrap();
        let mut tx = TxData::new(&t);
        write(&mut tx.view(&t), DOM0, &limits, "/x", b"1").unwrap();
        assert_eq!(read(&mut tx.view(&t), DOM0, "/x").unwrap(), b"1");
        assert_eq!(read(&mut t, DOM0, "/x").unwrap(), b"0");
        assert!(tx.is_consistent(&t));
        write(&mut t, DOM0, &limits, "/x", b"2").unwrap();
        assert!(!tx.is_consistent(&t));

        // A node first touched after someone changed it also conflicts.
        let mut tx2 = TxData::new(&t);
        write(&mut t, DOM0, &limits, "/y", b"").unwrap();
        let _ = read(&mut tx2.view(&t), DOM0, "/y");
        assert!(!tx2.is_consistent(&t));

        let mut tx3 = TxData::new(&t);
        write(&mut tx3.view(&t), DOM0, &limits, "/z/w", b"3").unwrap();
        assert!(tx3.is_consistent(&t));
        tx3.apply(&mut t);
        assert_eq!(read(&mut t, DOM0, "/z/w").unwrap(), b"3");
        assert_eq!(directory(&mut t, DOM0, "/").unwrap(), vec!["x", "y", "z"]);
    }
}
