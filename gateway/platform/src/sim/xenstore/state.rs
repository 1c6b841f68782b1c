//! The sans-IO xenstored: messages in, replies, watch events and domain
//! events out.

use std::collections::{BTreeMap, HashMap};

use crate::store::{Perm, PermAccess};
use crate::xs_client::wire::{
    encode, join_strings, split_strings, Errno, Header, MsgType, PAYLOAD_MAX,
};
use crate::DomId;

use super::ops::{self, Ctx};
use super::path::{
    canonicalize, domain_path, is_at_or_below, parent_of, Name, INTRODUCE_DOMAIN, RELEASE_DOMAIN,
};
use super::tree::{Change, Tree, TxData, View};
use super::{DomainEvent, Limits};

/// Identifies one client connection.
pub type ConnId = u64;

/// What the I/O shell must do after a message.
#[derive(Debug, Default)]
pub struct Effects {
    /// Encoded messages to send, in order, per connection.
    pub messages: Vec<(ConnId, Vec<u8>)>,
    /// Connections to close (their state is already gone).
    pub close: Vec<ConnId>,
    /// Domains introduced or released: the shell creates or removes their
    /// sockets *before* sending the replies, and tells the hypervisor side.
    pub domain_events: Vec<DomainEvent>,
}

struct Watch {
    path: Name,
    token: String,
}

struct Conn {
    domid: DomId,
    watches: Vec<Watch>,
    transactions: HashMap<u32, TxData>,
    next_tx: u32,
}

/// The whole simulated xenstored, without I/O.
pub struct XenstoreState {
    tree: Tree,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: ConnId,
    introduced: BTreeMap<DomId, (u64, u32)>,
    special_perms: HashMap<&'static str, Vec<Perm>>,
    limits: Limits,
}

/// libxl's `roperm` for a domain's own directory: dom0 owns, guest reads.
fn roperm(domid: DomId) -> Vec<Perm> {
    vec![
        Perm {
            domid: 0,
            access: PermAccess::None,
        },
        Perm {
            domid,
            access: PermAccess::Read,
        },
    ]
}

/// libxl's `rwperm`: the guest owns.
fn rwperm(domid: DomId) -> Vec<Perm> {
    vec![Perm {
        domid,
        access: PermAccess::None,
    }]
}

impl XenstoreState {
    /// A fresh store holding `/`, `/local`, `/local/domain` and
    /// `/local/domain/0` (what xenstored plus `xen-init-dom0` leave at boot),
    /// all owned by dom0 and closed to guests.
    pub fn new(limits: Limits) -> XenstoreState {
        let mut state = XenstoreState {
            tree: Tree::new(),
            conns: BTreeMap::new(),
            next_conn: 1,
            introduced: BTreeMap::new(),
            special_perms: HashMap::from([
                (INTRODUCE_DOMAIN, roperm(0)[..1].to_vec()),
                (RELEASE_DOMAIN, roperm(0)[..1].to_vec()),
            ]),
            limits,
        };
        let _ = ops::mkdir(
            &mut state.tree,
            Ctx { domid: 0 },
            &state.limits,
            "/local/domain/0",
        );
        state
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn is_introduced(&self, domid: DomId) -> bool {
        domid == 0 || self.introduced.contains_key(&domid)
    }

    /// Domains introduced and not released, in order.
    pub fn introduced_domains(&self) -> Vec<DomId> {
        self.introduced.keys().copied().collect()
    }

    /// Accept a connection from `domid`. Refused (ENOENT) for a domain that
    /// is not introduced, and (ENOSPC) beyond a guest's connection limit.
    pub fn connect(&mut self, domid: DomId) -> Result<ConnId, Errno> {
        if !self.is_introduced(domid) {
            return Err(Errno::ENOENT);
        }
        if domid != 0 {
            let open = self.conns.values().filter(|c| c.domid == domid).count();
            if open >= self.limits.max_connections_per_domain {
                return Err(Errno::ENOSPC);
            }
        }
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            id,
            Conn {
                domid,
                watches: Vec::new(),
                transactions: HashMap::new(),
                next_tx: 1,
            },
        );
        Ok(id)
    }

    /// Forget a connection: its watches go, its transactions are aborted.
    pub fn disconnect(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
    }

    /// Handle one request. `payload.len()` must equal `header.len`; the shell
    /// closes connections that announce more than `PAYLOAD_MAX`.
    pub fn handle(&mut self, conn: ConnId, header: Header, payload: &[u8]) -> Effects {
        let mut fx = Effects::default();
        let Some(domid) = self.conns.get(&conn).map(|c| c.domid) else {
            return fx;
        };
        let ctx = Ctx { domid };
        let mut after = After::default();
        let kind = MsgType::from_u32(header.kind);
        let result = if payload.len() > PAYLOAD_MAX || payload.len() != header.len as usize {
            Err(Errno::EINVAL)
        } else {
            match kind {
                Some(kind) => self.dispatch(conn, ctx, kind, header.tx_id, payload, &mut after),
                None => Err(Errno::EINVAL),
            }
        };
        let reply = result.and_then(|body| {
            encode(
                kind.unwrap_or(MsgType::Error),
                header.req_id,
                header.tx_id,
                &body,
            )
        });
        let reply = reply.unwrap_or_else(|e| error_message(header.req_id, header.tx_id, e));
        fx.messages.push((conn, reply));
        fx.messages.extend(after.direct);
        for change in &after.changes {
            self.fire(change, &mut fx.messages);
        }
        for event in &after.domain_events {
            let special = match event {
                DomainEvent::Introduced { .. } => INTRODUCE_DOMAIN,
                DomainEvent::Released { .. } => RELEASE_DOMAIN,
            };
            self.fire_special(special, &mut fx.messages);
        }
        fx.close = after.close;
        fx.domain_events = after.domain_events;
        fx
    }

    fn dispatch(
        &mut self,
        conn: ConnId,
        ctx: Ctx,
        kind: MsgType,
        tx_id: u32,
        payload: &[u8],
        after: &mut After,
    ) -> Result<Vec<u8>, Errno> {
        match kind {
            MsgType::Read => {
                let path = self.node_path(ctx, one_arg(payload)?)?;
                self.in_view(conn, ctx, tx_id, |v, _| ops::read(v, ctx, &path))
            }
            MsgType::Directory => {
                let path = self.node_path(ctx, one_arg(payload)?)?;
                let names = self.in_view(conn, ctx, tx_id, |v, _| ops::directory(v, ctx, &path))?;
                Ok(join_strings(&names))
            }
            MsgType::DirectoryPart => {
                let [path, offset] = args::<2>(payload)?;
                let path = self.node_path(ctx, path)?;
                let offset: usize = offset.parse().map_err(|_| Errno::EINVAL)?;
                self.in_view(conn, ctx, tx_id, |v, _| {
                    ops::directory_part(v, ctx, &path, offset)
                })
            }
            MsgType::GetPerms => match canonicalize(ctx.domid, one_arg(payload)?, true)? {
                Name::Special(name) => {
                    let perms = self.special_perms.get(name).cloned().unwrap_or_default();
                    if !ctx.may_read(&perms) {
                        return Err(Errno::EACCES);
                    }
                    Ok(perms_payload(&perms))
                }
                Name::Node { path, .. } => {
                    let perms =
                        self.in_view(conn, ctx, tx_id, |v, _| ops::get_perms(v, ctx, &path))?;
                    Ok(perms_payload(&perms))
                }
            },
            MsgType::Write => {
                let nul = payload.iter().position(|&b| b == 0).ok_or(Errno::EINVAL)?;
                let path = std::str::from_utf8(&payload[..nul]).map_err(|_| Errno::EINVAL)?;
                let value = &payload[nul + 1..];
                let path = self.node_path(ctx, path)?;
                self.mutate(conn, ctx, tx_id, after, |v, l| {
                    ops::write(v, ctx, l, &path, value)
                })
            }
            MsgType::Mkdir => {
                let path = self.node_path(ctx, one_arg(payload)?)?;
                self.mutate(conn, ctx, tx_id, after, |v, l| ops::mkdir(v, ctx, l, &path))
            }
            MsgType::Rm => {
                let path = self.node_path(ctx, one_arg(payload)?)?;
                self.mutate(conn, ctx, tx_id, after, |v, _| ops::rm(v, ctx, &path))
            }
            MsgType::SetPerms => {
                let strings = split_strings(payload).ok_or(Errno::EINVAL)?;
                let (path, perm_strs) = strings.split_first().ok_or(Errno::EINVAL)?;
                if perm_strs.is_empty() {
                    return Err(Errno::EINVAL);
                }
                let perms = perm_strs
                    .iter()
                    .map(|s| Perm::from_wire(s).ok_or(Errno::EINVAL))
                    .collect::<Result<Vec<_>, _>>()?;
                match canonicalize(ctx.domid, path, true)? {
                    Name::Special(name) => {
                        let current = self.special_perms.get(name).cloned().unwrap_or_default();
                        if ctx.access(&current) & ops::OWNER == 0 {
                            return Err(Errno::EACCES);
                        }
                        self.special_perms.insert(name, perms);
                        Ok(ok())
                    }
                    Name::Node { path, .. } => self.mutate(conn, ctx, tx_id, after, |v, l| {
                        ops::set_perms(v, ctx, l, &path, perms)
                    }),
                }
            }
            MsgType::Watch => self.watch(conn, ctx, payload, after),
            MsgType::Unwatch => {
                let [path, token] = args::<2>(payload)?;
                let path = canonicalize(ctx.domid, path, true)?;
                let c = self.conns.get_mut(&conn).ok_or(Errno::EINVAL)?;
                let before = c.watches.len();
                c.watches.retain(|w| !(w.path == path && w.token == token));
                if c.watches.len() == before {
                    return Err(Errno::ENOENT);
                }
                Ok(ok())
            }
            MsgType::ResetWatches => {
                let c = self.conns.get_mut(&conn).ok_or(Errno::EINVAL)?;
                c.watches.clear();
                c.transactions.clear();
                Ok(ok())
            }
            MsgType::TransactionStart => {
                if tx_id != 0 {
                    return Err(Errno::EBUSY);
                }
                let tx = TxData::new(&self.tree);
                let max = self.limits.max_transactions_per_connection;
                let c = self.conns.get_mut(&conn).ok_or(Errno::EINVAL)?;
                if !ctx.privileged() && c.transactions.len() >= max {
                    return Err(Errno::ENOSPC);
                }
                let mut id = c.next_tx;
                while id == 0 || c.transactions.contains_key(&id) {
                    id = id.wrapping_add(1);
                }
                c.next_tx = id.wrapping_add(1);
                c.transactions.insert(id, tx);
                Ok(join_strings(&[id.to_string()]))
            }
            MsgType::TransactionEnd => {
                let commit = match one_arg(payload)? {
                    "T" => true,
                    "F" => false,
                    _ => return Err(Errno::EINVAL),
                };
                let c = self.conns.get_mut(&conn).ok_or(Errno::EINVAL)?;
                let tx = c.transactions.remove(&tx_id).ok_or(Errno::ENOENT)?;
                if !commit {
                    return Ok(ok());
                }
                if !tx.is_consistent(&self.tree) {
                    return Err(Errno::EAGAIN);
                }
                if !ctx.privileged() {
                    let after_commit = self
                        .tree
                        .owned(ctx.domid)
                        .saturating_add_signed(tx.owned_delta(ctx.domid));
                    if tx.owned_delta(ctx.domid) > 0
                        && after_commit > self.limits.max_nodes_per_domain
                    {
                        return Err(Errno::ENOSPC);
                    }
                }
                after.changes.extend(tx.apply(&mut self.tree));
                Ok(ok())
            }
            MsgType::GetDomainPath => {
                let domid = parse_domid(one_arg(payload)?)?;
                Ok(join_strings(&[domain_path(domid)]))
            }
            MsgType::IsDomainIntroduced => {
                let domid = parse_domid(one_arg(payload)?)?;
                Ok(join_strings(&[if self.is_introduced(domid) {
                    "T"
                } else {
                    "F"
                }]))
            }
            MsgType::Introduce => {
                if !ctx.privileged() {
                    return Err(Errno::EACCES);
                }
                self.introduce(payload, after)
            }
            MsgType::Release => {
                if !ctx.privileged() {
                    return Err(Errno::EACCES);
                }
                self.release(one_arg(payload)?, after)
            }
            MsgType::Control | MsgType::Resume | MsgType::SetTarget => {
                if ctx.privileged() {
                    Err(Errno::ENOSYS)
                } else {
                    Err(Errno::EACCES)
                }
            }
            // Server-to-client messages are not requests.
            MsgType::WatchEvent | MsgType::Error => Err(Errno::EINVAL),
        }
    }

    fn node_path(&self, ctx: Ctx, input: &str) -> Result<String, Errno> {
        match canonicalize(ctx.domid, input, false)? {
            Name::Node { path, .. } => Ok(path),
            Name::Special(_) => Err(Errno::EINVAL),
        }
    }

    /// Run `op` on the database, or on transaction `tx_id` of `conn`.
    fn in_view<R>(
        &mut self,
        conn: ConnId,
        ctx: Ctx,
        tx_id: u32,
        op: impl FnOnce(&mut dyn View, &Limits) -> Result<R, Errno>,
    ) -> Result<R, Errno> {
        if tx_id == 0 {
            return op(&mut self.tree, &self.limits);
        }
        let c = self.conns.get_mut(&conn).ok_or(Errno::EINVAL)?;
        let tx = c.transactions.get_mut(&tx_id).ok_or(Errno::ENOENT)?;
        // Each op adds at most one path's ancestry, so this bounds a guest's
        // transaction however many nodes it reads.
        if !ctx.privileged() && tx.size() >= self.limits.max_transaction_entries {
            return Err(Errno::ENOSPC);
        }
        op(&mut tx.view(&self.tree), &self.limits)
    }

    /// Like [`Self::in_view`] for ops that change nodes: outside a
    /// transaction their changes fire now, inside at commit.
    fn mutate(
        &mut self,
        conn: ConnId,
        ctx: Ctx,
        tx_id: u32,
        after: &mut After,
        op: impl FnOnce(&mut dyn View, &Limits) -> Result<Vec<Change>, Errno>,
    ) -> Result<Vec<u8>, Errno> {
        let changes = self.in_view(conn, ctx, tx_id, op)?;
        if tx_id == 0 {
            after.changes.extend(changes);
        } else if let Some(tx) = self
            .conns
            .get_mut(&conn)
            .and_then(|c| c.transactions.get_mut(&tx_id))
        {
            tx.changes.extend(changes);
        }
        Ok(ok())
    }

    fn watch(
        &mut self,
        conn: ConnId,
        ctx: Ctx,
        payload: &[u8],
        after: &mut After,
    ) -> Result<Vec<u8>, Errno> {
        let [path, token] = args::<2>(payload)?;
        let name = canonicalize(ctx.domid, path, true)?;
        let max = self.limits.max_watches_per_connection;
        let c = self.conns.get_mut(&conn).ok_or(Errno::EINVAL)?;
        if c.watches.iter().any(|w| w.path == name && w.token == token) {
            return Err(Errno::EEXIST);
        }
        if !ctx.privileged() && c.watches.len() >= max {
            return Err(Errno::E2BIG);
        }
        // xenstored fires every new watch once, right after its reply.
        if let Ok(event) = watch_event(&event_name(&name), token) {
            after.direct.push((conn, event));
        }
        c.watches.push(Watch {
            path: name,
            token: token.to_string(),
        });
        Ok(ok())
    }

    fn introduce(&mut self, payload: &[u8], after: &mut After) -> Result<Vec<u8>, Errno> {
        let strings = split_strings(payload).ok_or(Errno::EINVAL)?;
        let [domid, mfn, evtchn] = strings
            .get(..3)
            .and_then(|s| <[&str; 3]>::try_from(s).ok())
            .ok_or(Errno::EINVAL)?;
        let domid = parse_domid(domid)?;
        let mfn: u64 = mfn.parse().map_err(|_| Errno::EINVAL)?;
        let evtchn: u32 = evtchn.parse().map_err(|_| Errno::EINVAL)?;
        if domid == 0 || domid >= 0x7ff0 {
            // DOMID_FIRST_RESERVED and above are not guests.
            return Err(Errno::EINVAL);
        }
        if self.introduced.contains_key(&domid) {
            return Ok(ok());
        }
        self.introduced.insert(domid, (mfn, evtchn));
        after.changes.extend(self.make_domain_nodes(domid));
        after
            .domain_events
            .push(DomainEvent::Introduced { domid, mfn, evtchn });
        Ok(ok())
    }

    /// What `libxl__domain_make` creates for a guest, if the toolstack has
    /// not already: the domain directory and `device`/`control` readable by
    /// the guest, and `data`, `drivers`, `feature`, `attr`, `error` owned by it.
    fn make_domain_nodes(&mut self, domid: DomId) -> Vec<Change> {
        let base = domain_path(domid);
        if self.tree.node(&base).is_some() {
            return Vec::new();
        }
        let dom0 = Ctx { domid: 0 };
        let mut changes = Vec::new();
        let mut make = |tree: &mut Tree, limits: &Limits, path: String, perms: Vec<Perm>| {
            if let Ok(c) = ops::mkdir(tree, dom0, limits, &path) {
                changes.extend(c);
            }
            if let Ok(c) = ops::set_perms(tree, dom0, limits, &path, perms) {
                changes.extend(c);
            }
        };
        make(&mut self.tree, &self.limits, base.clone(), roperm(domid));
        for dir in ["device", "control"] {
            make(
                &mut self.tree,
                &self.limits,
                format!("{base}/{dir}"),
                roperm(domid),
            );
        }
        for dir in ["data", "drivers", "feature", "attr", "error"] {
            make(
                &mut self.tree,
                &self.limits,
                format!("{base}/{dir}"),
                rwperm(domid),
            );
        }
        changes
    }

    fn release(&mut self, arg: &str, after: &mut After) -> Result<Vec<u8>, Errno> {
        let domid = parse_domid(arg)?;
        if domid == 0 {
            return Err(Errno::EINVAL);
        }
        if self.introduced.remove(&domid).is_none() {
            return Err(Errno::ENOENT);
        }
        let gone: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.domid == domid)
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            self.conns.remove(id);
        }
        after.close.extend(gone);
        after.domain_events.push(DomainEvent::Released { domid });
        Ok(ok())
    }

    /// Queue watch events for `change` to every connection that has a
    /// matching watch and may see the node: xenstored's rule is read access
    /// to the node (before or after a perms change) or to its parent — the
    /// parent case lets a backend see its frontend's directory vanish.
    fn fire(&self, change: &Change, out: &mut Vec<(ConnId, Vec<u8>)>) {
        let parent_perms = parent_of(&change.path)
            .and_then(|p| self.tree.node(p))
            .map(|n| &n.perms);
        for (&id, c) in &self.conns {
            let ctx = Ctx { domid: c.domid };
            let permitted = ctx.may_read(&change.perms)
                || change.old_perms.as_deref().is_some_and(|p| ctx.may_read(p))
                || parent_perms.is_some_and(|p| ctx.may_read(p));
            if !permitted {
                continue;
            }
            for w in &c.watches {
                let Name::Node { path: watched, .. } = &w.path else {
                    continue;
                };
                let matches = if change.exact {
                    *watched == change.path
                } else {
                    is_at_or_below(&change.path, watched)
                };
                if matches {
                    let shown = shown_name(&w.path, &change.path);
                    if let Ok(event) = watch_event(&shown, &w.token) {
                        out.push((id, event));
                    }
                }
            }
        }
    }

    fn fire_special(&self, name: &'static str, out: &mut Vec<(ConnId, Vec<u8>)>) {
        let perms = self.special_perms.get(name).cloned().unwrap_or_default();
        for (&id, c) in &self.conns {
            if !(Ctx { domid: c.domid }).may_read(&perms) {
                continue;
            }
            for w in c.watches.iter().filter(|w| w.path == Name::Special(name)) {
                if let Ok(event) = watch_event(name, &w.token) {
                    out.push((id, event));
                }
            }
        }
    }
}

/// Effects a request has after its reply.
#[derive(Default)]
struct After {
    direct: Vec<(ConnId, Vec<u8>)>,
    changes: Vec<Change>,
    domain_events: Vec<DomainEvent>,
    close: Vec<ConnId>,
}

fn ok() -> Vec<u8> {
    b"OK\0".to_vec()
}

fn error_message(req_id: u32, tx_id: u32, e: Errno) -> Vec<u8> {
    // An errno name always fits a payload.
    encode(MsgType::Error, req_id, tx_id, &join_strings(&[e.name()])).unwrap_or_default()
}

fn watch_event(shown: &str, token: &str) -> Result<Vec<u8>, Errno> {
    encode(MsgType::WatchEvent, 0, 0, &join_strings(&[shown, token]))
}

/// The path a watch reports for itself when it first fires.
fn event_name(name: &Name) -> String {
    match name {
        Name::Special(s) => s.to_string(),
        Name::Node { path, .. } => shown_name(name, path),
    }
}

/// Watches set with a relative path see relative event paths.
fn shown_name(watch: &Name, path: &str) -> String {
    if let Name::Node {
        relative_to: Some(base),
        ..
    } = watch
    {
        if let Some(rest) = path.strip_prefix(base.as_str()) {
            if rest.is_empty() || rest.starts_with('/') {
                return rest.trim_start_matches('/').to_string();
            }
        }
    }
    path.to_string()
}

/// Exactly one nul-terminated string.
fn one_arg(payload: &[u8]) -> Result<&str, Errno> {
    let [s] = args::<1>(payload)?;
    Ok(s)
}

/// Exactly `N` nul-terminated strings.
fn args<const N: usize>(payload: &[u8]) -> Result<[&str; N], Errno> {
    let strings = split_strings(payload).ok_or(Errno::EINVAL)?;
    <[&str; N]>::try_from(strings).map_err(|_| Errno::EINVAL)
}

fn parse_domid(s: &str) -> Result<DomId, Errno> {
    s.parse().map_err(|_| Errno::EINVAL)
}

fn perms_payload(perms: &[Perm]) -> Vec<u8> {
    let strings: Vec<String> = perms.iter().map(|p| p.to_wire()).collect();
    join_strings(&strings)
}
