//! On-disk cache of compiled plugins, so a gateway restart (or a reload of
//! an unchanged file) does not pay cranelift again: compiling a small
//! plugin takes hundreds of milliseconds on a busy 2-core host, loading the
//! cached artifact a few.
//!
//! An entry is named by the plugin's SHA-256 and a hash of everything that
//! makes compiled code incompatible: wasmtime's own compatibility hash
//! (its version, target and every codegen-relevant setting) plus our knobs.
//! Beside each `KEY.cwasm` lies `KEY.sha256`, the digest of the artifact
//! bytes: wasmtime trusts what it deserialises (it would run corrupted
//! machine code), so a file that does not match its digest is recompiled,
//! never loaded. Files are written to a temporary name and renamed, so a
//! crash leaves no half-written entry under a real name.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Where compiled plugins are kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CacheDir {
    /// `$XDG_CACHE_HOME/pvgate/policy`, else `/var/cache/pvgate/policy`.
    #[default]
    Default,
    Path(PathBuf),
    /// Compile in memory every time.
    Disabled,
}

impl CacheDir {
    pub fn resolve(&self) -> Option<PathBuf> {
        match self {
            CacheDir::Disabled => None,
            CacheDir::Path(p) => Some(p.clone()),
            CacheDir::Default => Some(match std::env::var_os("XDG_CACHE_HOME") {
                Some(x) if !x.is_empty() => PathBuf::from(x).join("pvgate").join("policy"),
                _ => PathBuf::from("/var/cache/pvgate/policy"),
            }),
        }
    }
}

/// Feeds `Hash` output into SHA-256, so the engine's compatibility hash is
/// stable across processes (std's `DefaultHasher` is randomly keyed).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        let d = self.0.clone().finalize();
        u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// How a component was obtained, for logs and the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    /// Compiled, and stored for next time.
    Stored,
    /// Compiled; the cache was unusable (disabled, unwritable, or the entry
    /// was corrupt and could not be replaced).
    Uncached,
}

pub(crate) struct CompileCache {
    dir: Option<PathBuf>,
    /// Hex digest of the engine's settings (part of every key).
    settings: String,
}

impl CompileCache {
    /// `knobs` describes our own engine settings; wasmtime's compatibility
    /// hash covers its version and codegen flags.
    pub fn new(engine: &Engine, dir: &CacheDir, knobs: &str) -> Self {
        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        knobs.hash(&mut h);
        let settings = hex(&h.0.finalize()[..8]);
        let dir = dir.resolve().and_then(|d| match fs::create_dir_all(&d) {
            Ok(()) => Some(d),
            Err(e) => {
                tracing::warn!(dir = %d.display(), error = %e,
                    "policy plugin cache directory cannot be created; compiling plugins in memory");
                None
            }
        });
        CompileCache { dir, settings }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn entry(&self, plugin_sha: &[u8; 32]) -> Option<(PathBuf, PathBuf)> {
        let dir = self.dir.as_ref()?;
        let key = format!("{}-w48-{}", hex(plugin_sha), self.settings);
        Some((
            dir.join(format!("{key}.cwasm")),
            dir.join(format!("{key}.sha256")),
        ))
    }

    /// The compiled component for `bytes` (whose SHA-256 is `plugin_sha`),
    /// from the cache if a valid entry exists, else compiled (and stored).
    pub fn component(
        &self,
        engine: &Engine,
        bytes: &[u8],
        plugin_sha: &[u8; 32],
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let Some((art, sum)) = self.entry(plugin_sha) else {
            return Ok((
                Component::from_binary(engine, bytes)?,
                CacheOutcome::Uncached,
            ));
        };
        if let Some(c) = load(engine, &art, &sum) {
            return Ok((c, CacheOutcome::Hit));
        }
        let component = Component::from_binary(engine, bytes)?;
        let outcome = match store(&component, &art, &sum) {
            Ok(()) => CacheOutcome::Stored,
            Err(e) => {
                tracing::warn!(file = %art.display(), error = %e,
                    "policy plugin cache entry cannot be written; using the in-memory compile");
                CacheOutcome::Uncached
            }
        };
        Ok((component, outcome))
    }
}

/// A valid cache entry, or `None` (missing, corrupt, or from another
/// engine) after logging why, for anything but "missing".
fn load(engine: &Engine, art: &Path, sum: &Path) -> Option<Component> {
    let bytes = match fs::read(art) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %art.display(), error = %e, "policy plugin cache entry unreadable; recompiling");
            return None;
        }
    };
    let want = fs::read_to_string(sum).unwrap_or_default();
    if want.trim() != hex(&Sha256::digest(&bytes)) {
        tracing::warn!(file = %art.display(), "policy plugin cache entry corrupt (digest mismatch); recompiling");
        return None;
    }
    // Not `deserialize_file`: it maps the file, and anything truncating or
    // rewriting it in place while mapped (an operator's cleanup, another
    // tool) would kill the gateway with SIGBUS on the next plugin call. We
    // read the bytes anyway to check the digest, so we load that copy.
    //
    // SAFETY: wasmtime requires bytes produced by `Component::serialize` of
    // a compatible engine. These are exactly the bytes we stored (their
    // digest matches the one written beside them), the key covers the
    // engine's compatibility hash, and wasmtime re-checks its version and
    // settings in the artifact's header.
    match unsafe { Component::deserialize(engine, &bytes) } {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(file = %art.display(), error = %e, "policy plugin cache entry not loadable; recompiling");
            None
        }
    }
}

fn store(component: &Component, art: &Path, sum: &Path) -> std::io::Result<()> {
    let bytes = component.serialize().map_err(std::io::Error::other)?;
    let digest = hex(&Sha256::digest(&bytes));
    // The digest goes first: an artifact without a matching digest is
    // ignored, so a crash between the two renames costs a recompile only.
    write_atomic(sum, digest.as_bytes())?;
    write_atomic(art, &bytes)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    // Unique per process and call: two tenants loading the same plugin at
    // once must not write through one temporary file.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{seq}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
