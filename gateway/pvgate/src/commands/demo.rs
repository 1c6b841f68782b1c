//! `pvgate demo`: a whole host in one command — a simulated Xen, simulated
//! guests (separate `pvgate-guest-sim` processes, as real guests are separate
//! domains) and the gateway serving them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use sha2::Digest;
use tokio::process::{Child, Command};

use crate::access::{Access, Role};
use crate::cli::DemoArgs;
use crate::commands::serve::{load_policies, serve_until_interrupted};
use crate::config::{generate_token, Config, GuestRef, StreamingConfig, Tenant, TokenConfig};
use crate::gateway::Gateway;
use crate::http;

/// What each demo guest shows, in turn.
const SCENES: [&str; 3] = ["desktop", "pattern", "noise"];

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let guest_sim = match &args.guest_sim {
        Some(p) => p.clone(),
        None => sibling_binary("pvgate-guest-sim")?,
    };
    // Keep the temporary directory alive for the whole demo; it is removed
    // when this guard drops.
    let (dir, _tmp) = match &args.dir {
        Some(d) => (d.clone(), None),
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("pvgate-demo-")
                .tempdir_in("/tmp")
                .context("cannot create a directory for the simulated Xen under /tmp")?;
            (tmp.path().to_path_buf(), Some(tmp))
        }
    };
    let listener = http::bind(args.listen).await?;
    // With port 0 the system picks one: show the one we really have.
    let address = listener
        .local_addr()
        .context("cannot read the web server's address")?;
    let sim = pvgate_platform::sim::SimXen::start(&dir)
        .await
        .with_context(|| format!("cannot start the simulated Xen in {}", dir.display()))?;
    let platform = pvgate_platform::sim::connect(&dir, 0).await?;
    let token = match &args.token {
        Some(t) => t.clone(),
        None => generate_token()?,
    };
    let config = demo_config(args.guests, &token);
    let access = Arc::new(Access::from_config(&config));
    // The demo tenant has no plugin: the built-in policy, as `serve` gives
    // a tenant without `policy`.
    let policies = Arc::new(load_policies(Some(&config), access.clone())?);
    let gateway = Gateway::with_policies(platform, policies);

    let mut guests = Vec::new();
    for i in 0..args.guests {
        let domid = i + 1;
        guests.push(start_guest(
            &guest_sim,
            &dir,
            domid,
            SCENES[usize::from(i) % SCENES.len()],
        )?);
    }
    // A wildcard address is no place to point a browser at.
    let shown = if address.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), address.port())
    } else {
        address
    };
    // One write: a reader that stops after the URL line must not see the
    // rest fail (a panicking `println!` took the demo down that way).
    super::emit(&format!(
        "pvgate demo: {} simulated guest(s) on a simulated Xen in {}\n\n    open http://{}/?token={}\n\n\
         The token (tenant \"demo\", role control) also works as `Authorization: Bearer {}`.\nCtrl-C stops it.\n",
        args.guests,
        dir.display(),
        shown,
        token,
        token
    ))?;
    let result =
        serve_until_interrupted(gateway, listener, access, StreamingConfig::default()).await;
    for mut guest in guests {
        let _ = guest.kill().await;
    }
    sim.stop().await;
    result
}

/// The demo's configuration: tenant `demo` owns every demo guest (domids
/// 1..=guests) and has one control token.
fn demo_config(guests: u16, token: &str) -> Config {
    Config {
        tenants: vec![Tenant {
            name: "demo".into(),
            guests: (1..=guests).map(GuestRef::Domid).collect(),
            tokens: vec![TokenConfig {
                user: "demo".into(),
                role: Role::Control,
                sha256: sha2::Sha256::digest(token.as_bytes()).into(),
            }],
            policy: Default::default(),
        }],
        ..Config::default()
    }
}

/// A binary installed next to ours (cargo puts both in target/<profile>/).
fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find where pvgate runs from")?;
    let path = exe.with_file_name(name);
    anyhow::ensure!(
        path.exists(),
        "{} is missing: build it with `cargo build --release --bin {name}` (deploy/demo.sh does), or pass --guest-sim PATH",
        path.display()
    );
    Ok(path)
}

fn start_guest(guest_sim: &Path, dir: &Path, domid: u16, scene: &str) -> anyhow::Result<Child> {
    Command::new(guest_sim)
        .arg("--sim-dir")
        .arg(dir)
        .args(["--domid", &domid.to_string()])
        .args(["--name", &format!("demo-{scene}")])
        .args(["--vdispl", "backend=0,be-alloc=0,connectors=1280x720"])
        .args([
            "--vsnd",
            "card, sample-rates=48000, sample-formats=s16_le | pcm, name=dev0 | stream, type=p | stream, type=c",
        ])
        // Keyboard, absolute pointer and touch: the guest draws its cursor
        // and echoes keys, so a viewer sees its input arrive.
        .arg("--vkb")
        .args(["--scene", scene, "--fps", "30"])
        // The guests' own chatter would drown the gateway's log.
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", guest_sim.display()))
}
