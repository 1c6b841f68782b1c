//! A network namespace joined to this one by a veth pair, so a test can put
//! the gateway behind a link it shapes with `tc` (a slow or lossy viewer
//! link) without touching the machine's own interfaces or loopback.
//!
//! Needs root (CAP_NET_ADMIN) and iproute2; deploy/install-deps.sh installs
//! iproute2. Everything is removed on drop.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context;

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct NetNs {
    pub name: String,
    /// The veth end in this (the browser's) namespace.
    outer: String,
    /// The veth end inside the namespace (the gateway's side).
    inner: String,
    /// The namespace's address, where the gateway listens.
    pub address: String,
}

fn run(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("cannot run {} (install iproute2)", args[0]))?;
    anyhow::ensure!(
        out.status.success(),
        "`{}` failed: {} (network namespaces need root, CAP_NET_ADMIN and iproute2)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

impl NetNs {
    /// A fresh namespace `pvg<pid>n<k>` at 10.213.<k>.2, reached from here
    /// through 10.213.<k>.1.
    pub fn create() -> anyhow::Result<NetNs> {
        let k = NEXT.fetch_add(1, Ordering::Relaxed) % 250;
        let pid = std::process::id();
        let ns = NetNs {
            name: format!("pvg{pid}n{k}"),
            // Interface names are limited to 15 bytes.
            outer: format!("pvo{}n{k}", pid % 100_000),
            inner: format!("pvi{}n{k}", pid % 100_000),
            address: format!("10.213.{k}.2"),
        };
        let outer_ip = format!("10.213.{k}.1/24");
        let inner_ip = format!("{}/24", ns.address);
        run(&["ip", "netns", "add", &ns.name])?;
        // From here on, drop cleans up whatever was made.
        run(&[
            "ip", "link", "add", &ns.outer, "type", "veth", "peer", "name", &ns.inner,
        ])?;
        run(&["ip", "link", "set", &ns.inner, "netns", &ns.name])?;
        run(&["ip", "addr", "add", &outer_ip, "dev", &ns.outer])?;
        run(&["ip", "link", "set", &ns.outer, "up"])?;
        ns.exec_ok(&["ip", "addr", "add", &inner_ip, "dev", &ns.inner])?;
        ns.exec_ok(&["ip", "link", "set", &ns.inner, "up"])?;
        ns.exec_ok(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip netns exec <ns>` followed by `args`, for a process to spawn.
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    fn exec_ok(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        run(&full)
    }

    /// Limit what leaves the namespace (the gateway's media towards the
    /// browser) to `kbit_per_s`, with a queue of about `queue_ms`.
    pub fn limit_egress(&self, kbit_per_s: u32, queue_ms: u32) -> anyhow::Result<()> {
        let _ = self.exec_ok(&["tc", "qdisc", "del", "dev", &self.inner, "root"]);
        self.exec_ok(&[
            "tc",
            "qdisc",
            "add",
            "dev",
            &self.inner,
            "root",
            "tbf",
            "rate",
            &format!("{kbit_per_s}kbit"),
            "burst",
            "16kb",
            "latency",
            &format!("{queue_ms}ms"),
        ])
    }

    /// Remove the limit.
    pub fn unlimit(&self) -> anyhow::Result<()> {
        self.exec_ok(&["tc", "qdisc", "del", "dev", &self.inner, "root"])
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting one veth end deletes both; the namespace goes last.
        let _ = Command::new("ip")
            .args(["link", "del", &self.outer])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
