//! A simulated Xen host: `pvgate sim-xen`, `pvgate serve` on it with a
//! tenants config, and guest simulator processes — the same binaries and
//! the same steps an operator would use, each a separate process.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::{wait_for, workspace_binary};

/// A viewer token the config grants.
#[derive(Clone, Debug)]
pub struct Token {
    pub tenant: String,
    pub user: String,
    pub role: &'static str,
    pub token: String,
}

/// One tenant: its guests (by domid) and tokens.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub name: String,
    pub guests: Vec<u16>,
    pub tokens: Vec<Token>,
}

impl Tenant {
    /// A tenant with one `control` and one `view` token, named after it.
    pub fn new(name: &str, guests: &[u16]) -> Tenant {
        let token = |role: &'static str| Token {
            tenant: name.into(),
            user: format!("{name}-{role}"),
            role,
            token: format!("{name}-{role}-token-0123456789abcdef"),
        };
        Tenant {
            name: name.into(),
            guests: guests.to_vec(),
            tokens: vec![token("control"), token("view")],
        }
    }

    pub fn token(&self, role: &str) -> &str {
        &self
            .tokens
            .iter()
            .find(|t| t.role == role)
            .expect("no token with that role")
            .token
    }
}

/// What a guest simulator runs with.
#[derive(Clone, Debug)]
pub struct GuestSpec {
    pub domid: u16,
    pub name: String,
    /// xl.cfg vdispl spec.
    pub vdispl: String,
    /// xl.cfg vsnd items separated by `|`, if any.
    pub vsnd: Option<String>,
    /// xl.cfg vkb spec, if any.
    pub vkb: Option<String>,
    pub scene: &'static str,
    /// What playback plays: "tones" or "ticks" (pvgate-guest-sim --sound).
    pub sound: &'static str,
    pub fps: u32,
}

impl GuestSpec {
    /// A guest with one 1280×720 display, stereo playback (440/660 Hz) and
    /// capture at 48 kHz, and an absolute pointer + keyboard.
    pub fn full(domid: u16, width: u32, height: u32) -> GuestSpec {
        GuestSpec {
            domid,
            name: format!("e2e-{domid}"),
            vdispl: format!("backend=0,be-alloc=0,connectors={width}x{height}"),
            vsnd: Some(
                "card, sample-rates=48000, sample-formats=s16_le, channels-min=2, channels-max=2 \
                 | pcm, name=dev0 | stream, type=p | stream, type=c"
                    .into(),
            ),
            vkb: Some(String::new()),
            scene: "pattern",
            sound: "tones",
            fps: 30,
        }
    }
}

/// A running guest simulator; its machine-readable stdout lines are kept.
pub struct Guest {
    pub spec: GuestSpec,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Guest {
    /// Every stdout line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Wait until a line satisfies `pred`; returns it.
    pub fn wait_line(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        wait_for(what, timeout, || {
            Ok(self.lines().into_iter().find(|l| pred(l)))
        })
        .with_context(|| {
            format!(
                "guest {} said:\n{}",
                self.spec.domid,
                tail(&self.lines(), 30)
            )
        })
    }
}

fn tail(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Guest {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// SIGTERM (the processes clean up), then SIGKILL if they linger.
fn stop(child: &mut Child) {
    unsafe_sigterm(child.id());
    for _ in 0..50 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

/// The whole host.
pub struct Host {
    pub base_url: String,
    pub tenants: Vec<Tenant>,
    pub guests: Vec<Guest>,
    gateway: Option<Child>,
    gateway_log: Arc<Mutex<Vec<String>>>,
    sim: Option<Child>,
    dir: tempfile::TempDir,
    config: PathBuf,
    port: u16,
    /// The gateway runs in this namespace (behind a shaped link) if set.
    netns: Option<std::sync::Arc<crate::netns::NetNs>>,
}

fn spawn_reader<R: std::io::Read + Send + 'static>(
    r: R,
    sink: Arc<Mutex<Vec<String>>>,
    echo: &'static str,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if !echo.is_empty() {
                eprintln!("[{echo}] {line}");
            }
            sink.lock().unwrap().push(line);
        }
    });
}

impl Host {
    /// Start the simulated Xen and the gateway with `tenants`.
    pub fn start(tenants: Vec<Tenant>) -> anyhow::Result<Host> {
        Host::start_in(tenants, None)
    }

    /// The same, with the gateway in network namespace `netns` (listening
    /// on its address; the browser reaches it over the veth link). The
    /// simulated Xen and the guests stay here: they talk over unix sockets
    /// and shared memory, which namespaces do not separate.
    pub fn start_in(
        tenants: Vec<Tenant>,
        netns: Option<std::sync::Arc<crate::netns::NetNs>>,
    ) -> anyhow::Result<Host> {
        let pvgate = workspace_binary("pvgate")?;
        // Short: unix socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("pvg-e2e-")
            .tempdir_in("/tmp")?;
        let sim = Command::new(&pvgate)
            .arg("sim-xen")
            .arg("--dir")
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start pvgate sim-xen")?;
        let config = dir.path().join("pvgate.toml");
        std::fs::write(&config, config_toml(&tenants))?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let ip = netns
            .as_ref()
            .map_or("127.0.0.1".to_string(), |n| n.address.clone());
        let mut host = Host {
            base_url: format!("http://{ip}:{port}"),
            netns,
            tenants,
            guests: Vec::new(),
            gateway: None,
            gateway_log: Arc::new(Mutex::new(Vec::new())),
            sim: Some(sim),
            dir,
            config,
            port,
        };
        wait_for(
            "the simulated Xen's xenstore socket",
            Duration::from_secs(20),
            || {
                Ok(std::fs::read_dir(host.dir.path())?
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().contains("xenstore"))
                    .then_some(()))
            },
        )?;
        host.start_gateway()?;
        Ok(host)
    }

    /// (Re)start `pvgate serve` on the same port, config and simulated Xen.
    pub fn start_gateway(&mut self) -> anyhow::Result<()> {
        let pvgate = workspace_binary("pvgate")?;
        let (mut command, ip) = match &self.netns {
            Some(ns) => (ns.command(&pvgate), ns.address.clone()),
            None => (Command::new(&pvgate), "127.0.0.1".to_string()),
        };
        let mut child = command
            .args(["serve", "--platform", "sim", "--sim-dir"])
            .arg(self.dir.path())
            .arg("--config")
            .arg(&self.config)
            .args(["--listen", &format!("{ip}:{}", self.port)])
            .env("RUST_LOG", "info,xenstore_rs=error")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start pvgate serve")?;
        spawn_reader(
            child.stderr.take().unwrap(),
            self.gateway_log.clone(),
            "gateway",
        );
        self.gateway = Some(child);
        let health = format!("{}/healthz", self.base_url);
        wait_for("the gateway's /healthz", Duration::from_secs(30), || {
            Ok(ureq::get(&health).call().ok().map(|_| ()))
        })?;
        Ok(())
    }

    pub fn stop_gateway(&mut self) {
        if let Some(mut g) = self.gateway.take() {
            stop(&mut g);
        }
    }

    /// The gateway's log lines so far.
    pub fn gateway_log(&self) -> Vec<String> {
        self.gateway_log.lock().unwrap().clone()
    }

    /// Start a guest and wait until it says it is ready.
    pub fn add_guest(&mut self, spec: GuestSpec) -> anyhow::Result<&Guest> {
        let bin = workspace_binary("pvgate-guest-sim")?;
        let mut cmd = Command::new(bin);
        cmd.arg("--sim-dir")
            .arg(self.dir.path())
            .args(["--domid", &spec.domid.to_string()])
            .args(["--name", &spec.name])
            .args(["--vdispl", &spec.vdispl])
            .args(["--scene", spec.scene])
            .args(["--sound", spec.sound])
            .args(["--fps", &spec.fps.to_string()]);
        if let Some(s) = &spec.vsnd {
            cmd.args(["--vsnd", s]);
        }
        if let Some(k) = &spec.vkb {
            if k.is_empty() {
                cmd.arg("--vkb");
            } else {
                cmd.args(["--vkb", k]);
            }
        }
        let mut child = cmd
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start pvgate-guest-sim")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        spawn_reader(child.stdout.take().unwrap(), lines.clone(), "");
        self.guests.push(Guest { spec, child, lines });
        let guest = self.guests.last().unwrap();
        guest.wait_line("the guest to be ready", Duration::from_secs(60), |l| {
            l == "ready"
        })?;
        Ok(guest)
    }

    pub fn guest(&self, domid: u16) -> &Guest {
        self.guests
            .iter()
            .find(|g| g.spec.domid == domid)
            .expect("no such guest")
    }

    /// GET `path` with `token` (as a bearer header); status and body.
    pub fn get(&self, path: &str, token: Option<&str>) -> anyhow::Result<(u16, Vec<u8>)> {
        let mut req = ureq::get(&format!("{}{path}", self.base_url));
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let rsp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(e.into()),
        };
        let status = rsp.status();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut rsp.into_reader(), &mut body)?;
        Ok((status, body))
    }

    /// The viewer page's URL for `domid` with `token` and extra query.
    pub fn viewer_url(&self, domid: u16, token: &str, query: &str) -> String {
        let sep = if query.is_empty() { "" } else { "&" };
        format!("{}/view/{domid}?token={token}{sep}{query}", self.base_url)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.guests.clear();
        self.stop_gateway();
        if let Some(mut s) = self.sim.take() {
            stop(&mut s);
        }
    }
}

/// The gateway's tenants config (see deploy/pvgate.example.toml).
fn config_toml(tenants: &[Tenant]) -> String {
    let mut s = String::from("[streaming]\nmax_fps = 30\n\n");
    for t in tenants {
        let guests: Vec<String> = t.guests.iter().map(|d| d.to_string()).collect();
        s.push_str(&format!(
            "[[tenant]]\nname = \"{}\"\nguests = [{}]\n",
            t.name,
            guests.join(", ")
        ));
        for tok in &t.tokens {
            let hash = Sha256::digest(tok.token.as_bytes());
            let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
            s.push_str(&format!(
                "[[tenant.token]]\nuser = \"{}\"\nrole = \"{}\"\nsha256 = \"{hex}\"\n",
                tok.user, tok.role
            ));
        }
        s.push('\n');
    }
    s
}
