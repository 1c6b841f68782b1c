//! The gateway's TOML configuration: tenants, their guests and viewer
//! tokens, the WebSocket origins, streaming settings.
//!
//! deploy/pvgate.example.toml is the commented reference of the format.
//! Everything is validated at load, and every error names the file, the line
//! and column, and what to change: a gateway that starts has a configuration
//! that means what its operator thinks it means (no guest claimed by two
//! tenants, no token that opens two accounts).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::ops::{Range, RangeInclusive};
use std::path::Path;

use pvgate_media::Codec;
use pvgate_platform::DomId;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::access::Role;
use crate::policy::settings::{PolicySettings, TenantPolicyConfig};

mod policy;

/// A STUN or TURN server handed to browsers and used by the gateway's ICE agent.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// How video and audio reach browsers.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamingConfig {
    /// Offer WebRTC; when false every session uses the WebSocket fallback.
    pub webrtc: bool,
    /// STUN/TURN servers; none by default (host candidates only).
    pub ice_servers: Vec<IceServer>,
    /// Codec preference, first preferred, among those the browser decodes.
    pub codecs: Vec<Codec>,
    /// Bounds for the encoder bitrate the congestion controller picks.
    pub min_bitrate_bps: u32,
    pub start_bitrate_bps: u32,
    pub max_bitrate_bps: u32,
    pub max_fps: u32,
    /// Opus bitrate of the audio the viewer hears.
    pub opus_bitrate_bps: u32,
    /// Local addresses WebRTC binds its UDP sockets on. `0.0.0.0` means
    /// every interface except loopback (one socket and candidate each).
    pub udp_addresses: Vec<IpAddr>,
    /// The UDP ports peer connections may use (one per viewer); `None`:
    /// ephemeral ports.
    pub udp_ports: Option<RangeInclusive<u16>>,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            webrtc: true,
            ice_servers: Vec::new(),
            codecs: vec![Codec::H264, Codec::Vp8],
            min_bitrate_bps: 300_000,
            start_bitrate_bps: 4_000_000,
            max_bitrate_bps: 12_000_000,
            max_fps: 30,
            opus_bitrate_bps: 96_000,
            udp_addresses: vec![IpAddr::from([0, 0, 0, 0]), IpAddr::from([127, 0, 0, 1])],
            udp_ports: None,
        }
    }
}

/// Which guests a tenant owns: one domid, or guests whose xenstore name
/// matches a pattern (`*` any run of characters, `?` one character).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestRef {
    Domid(DomId),
    Pattern(String),
}

/// A viewer token as configured: only its SHA-256 is ever stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenConfig {
    pub user: String,
    pub role: Role,
    pub sha256: [u8; 32],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    pub name: String,
    pub guests: Vec<GuestRef>,
    pub tokens: Vec<TokenConfig>,
    /// Its policy plugin (or the built-in policy), `config-get` values and
    /// guest labels.
    pub policy: TenantPolicyConfig,
}

/// A loaded, validated configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    /// Origins (`scheme://host[:port]`, normalised) allowed to open the
    /// session WebSocket besides the gateway's own.
    pub allowed_origins: Vec<String>,
    /// Believe `X-Forwarded-Host`/`X-Forwarded-Proto` (only behind a reverse
    /// proxy that sets them: anyone can send them otherwise).
    pub trust_proxy_headers: bool,
    /// When set, `/metrics` also answers to the token with this hash and then
    /// shows every tenant's guests.
    pub metrics_token_sha256: Option<[u8; 32]>,
    pub streaming: StreamingConfig,
    /// `[policy]`: limits of tenants' policy plugins, their compile cache.
    pub policy: PolicySettings,
    pub tenants: Vec<Tenant>,
}

/// A configuration error, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// The hex SHA-256 of a token, as the configuration stores it.
pub fn sha256_hex(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// A fresh random token: 20 bytes (160 bits) from the system's CSPRNG as
/// 40 hex digits, which survive URLs, shells and TOML unquoted.
pub fn generate_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("cannot read random bytes from the system: {e}"))?;
    Ok(hex(&bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_sha256_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Whether `name` matches `pattern` (`*` any run, `?` one character; every
/// other character literally). Linear time, no backtracking blow-up.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == n[ni])) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether some name matches both patterns (so two tenants would claim it).
fn globs_overlap(a: &str, b: &str) -> bool {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // reach[i][j]: some string takes pattern a to position i and b to j.
    let mut reach = vec![vec![false; b.len() + 1]; a.len() + 1];
    reach[0][0] = true;
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            if !reach[i][j] {
                continue;
            }
            let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
            // A star may match nothing.
            if ca == Some('*') {
                reach[i + 1][j] = true;
            }
            if cb == Some('*') {
                reach[i][j + 1] = true;
            }
            match (ca, cb) {
                // Both stars: each may swallow the same character; covered
                // by the skips above plus these.
                (Some('*'), Some('*')) => {
                    reach[i + 1][j + 1] = true;
                }
                // One star eats the other side's next character.
                (Some('*'), Some(_)) => reach[i][j + 1] = true,
                (Some(_), Some('*')) => reach[i + 1][j] = true,
                (Some(x), Some(y)) if x == '?' || y == '?' || x == y => reach[i + 1][j + 1] = true,
                _ => {}
            }
        }
    }
    reach[a.len()][b.len()]
}

/// Xen's first reserved domid (DOMID_FIRST_RESERVED): guests are below it.
const DOMID_FIRST_RESERVED: i64 = 0x7FF0;

/// A guest entry as written: an integer domid or a pattern string.
#[derive(Debug)]
enum RawGuest {
    Domid(i64),
    Pattern(String),
}

impl<'de> Deserialize<'de> for RawGuest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawGuest;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a domid (an integer like 5) or a name pattern (a string like \"acme-*\")",
                )
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawGuest, E> {
                Ok(RawGuest::Domid(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawGuest, E> {
                Ok(RawGuest::Domid(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawGuest, E> {
                Ok(RawGuest::Pattern(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    allowed_origins: Vec<Spanned<String>>,
    #[serde(default)]
    trust_proxy_headers: bool,
    #[serde(default)]
    metrics_token_sha256: Option<Spanned<String>>,
    #[serde(default)]
    streaming: Option<RawStreaming>,
    #[serde(default)]
    policy: Option<policy::RawPolicy>,
    #[serde(default, rename = "tenant")]
    tenants: Vec<RawTenant>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStreaming {
    webrtc: Option<bool>,
    #[serde(default)]
    ice_servers: Vec<Spanned<RawIce>>,
    codecs: Option<Spanned<Vec<Spanned<String>>>>,
    min_bitrate_bps: Option<Spanned<u32>>,
    start_bitrate_bps: Option<Spanned<u32>>,
    max_bitrate_bps: Option<Spanned<u32>>,
    max_fps: Option<Spanned<u32>>,
    opus_bitrate_bps: Option<Spanned<u32>>,
    udp_addresses: Option<Spanned<Vec<Spanned<String>>>>,
    udp_ports: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIce {
    urls: Vec<String>,
    username: Option<String>,
    credential: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    name: Spanned<String>,
    #[serde(default)]
    guests: Vec<Spanned<RawGuest>>,
    #[serde(default, rename = "token")]
    tokens: Vec<RawToken>,
    policy: Option<Spanned<String>>,
    #[serde(default)]
    policy_config: BTreeMap<String, Spanned<toml::Value>>,
    policy_fuel_per_call: Option<Spanned<u64>>,
    policy_deadline_ms: Option<Spanned<u64>>,
    #[serde(default)]
    labels: Vec<policy::RawLabels>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    user: Spanned<String>,
    role: Spanned<String>,
    sha256: Spanned<String>,
}

/// Turns byte spans into `file:line:column` errors.
struct Source<'a> {
    file: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let start = span.start.min(self.text.len());
        let before = &self.text[..floor_char_boundary(self.text, start)];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ConfigError {
            file: self.file.to_string(),
            line,
            column,
            message: message.into(),
        }
    }

    fn line_of(&self, span: Range<usize>) -> usize {
        self.error(span, "").line
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// `scheme://host[:port]` in the form browsers send in `Origin`: lowercase,
/// default port dropped. None if `s` is not such an origin.
pub fn normalize_origin(s: &str) -> Option<String> {
    let s = s.trim();
    let (scheme, rest) = s.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    normalize_host_port(&scheme, rest).map(|hp| format!("{scheme}://{hp}"))
}

/// `host[:port]` lowercase with the scheme's default port dropped; None if
/// it has a path, user info, or a bad port.
pub fn normalize_host_port(scheme: &str, hp: &str) -> Option<String> {
    if hp.is_empty()
        || hp
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "/?#@\\".contains(c))
    {
        return None;
    }
    let hp = hp.to_ascii_lowercase();
    // An IPv6 literal keeps its brackets; its port follows "]:".
    let (host, port) = if let Some(end) = hp.find(']') {
        let (h, p) = hp.split_at(end + 1);
        if !h.starts_with('[') {
            return None;
        }
        (h.to_string(), p.strip_prefix(':').map(str::to_string))
    } else {
        match hp.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.to_string())),
            None => (hp.clone(), None),
        }
    };
    if host.is_empty() || host.contains(':') && !host.starts_with('[') {
        return None;
    }
    let default = if scheme == "https" { 443 } else { 80 };
    match port {
        None => Some(host),
        Some(p) => {
            let p: u16 = p.parse().ok()?;
            Some(if p == default {
                host
            } else {
                format!("{host}:{p}")
            })
        }
    }
}

fn valid_tenant_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

impl Config {
    /// Read and validate `path`.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read the configuration {}: {e} (deploy/pvgate.example.toml shows the format)",
                path.display()
            )
        })?;
        Ok(Config::parse(&text, &path.display().to_string())?)
    }

    /// Parse and validate `text`; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let src = Source { file, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim_end().to_string();
            src.error(
                e.span().unwrap_or(0..0),
                format!("{msg} (deploy/pvgate.example.toml shows the format)"),
            )
        })?;

        let mut config = Config {
            trust_proxy_headers: raw.trust_proxy_headers,
            ..Config::default()
        };
        for origin in &raw.allowed_origins {
            if origin.get_ref().trim() == "*" {
                return Err(src.error(
                    origin.span(),
                    "allowed_origins cannot be \"*\": list each origin that may embed the client (e.g. \"https://console.example.com\")",
                ));
            }
            let norm = normalize_origin(origin.get_ref()).ok_or_else(|| {
                src.error(
                    origin.span(),
                    format!(
                        "{:?} is not an origin: write scheme://host[:port] with no path, e.g. \"https://console.example.com\"",
                        origin.get_ref()
                    ),
                )
            })?;
            if !config.allowed_origins.contains(&norm) {
                config.allowed_origins.push(norm);
            }
        }
        if let Some(h) = &raw.metrics_token_sha256 {
            config.metrics_token_sha256 = Some(parse_sha256_hex(h.get_ref()).ok_or_else(|| {
                src.error(
                    h.span(),
                    "metrics_token_sha256 must be 64 hex digits: the output of `pvgate hash-token`",
                )
            })?);
        }
        config.streaming = streaming(&src, raw.streaming.unwrap_or_default())?;
        config.policy = policy::settings(&src, raw.policy)?;

        // Every token hash, and every domid and pattern, with who has it.
        let mut hashes: BTreeMap<[u8; 32], (String, usize)> = BTreeMap::new();
        let mut domids: BTreeMap<DomId, (String, usize)> = BTreeMap::new();
        let mut patterns: Vec<(String, String, usize)> = Vec::new();
        if let Some(metrics) = &raw.metrics_token_sha256 {
            if let Some(h) = config.metrics_token_sha256 {
                hashes.insert(
                    h,
                    ("metrics_token_sha256".into(), src.line_of(metrics.span())),
                );
            }
        }
        for t in raw.tenants {
            let name = t.name.get_ref().clone();
            if !valid_tenant_name(&name) {
                return Err(src.error(
                    t.name.span(),
                    format!("tenant name {name:?}: use 1-64 letters, digits, '-', '_' or '.'"),
                ));
            }
            if let Some(prev) = config.tenants.iter().find(|p: &&Tenant| p.name == name) {
                return Err(src.error(
                    t.name.span(),
                    format!(
                        "tenant {:?} is defined twice: merge the two [[tenant]] tables",
                        prev.name
                    ),
                ));
            }
            let tenant_policy = policy::tenant(
                &src,
                &name,
                policy::RawTenantPolicy {
                    policy: t.policy,
                    policy_config: t.policy_config,
                    policy_fuel_per_call: t.policy_fuel_per_call,
                    policy_deadline_ms: t.policy_deadline_ms,
                    labels: t.labels,
                },
            )?;
            let mut tenant = Tenant {
                name: name.clone(),
                guests: Vec::new(),
                tokens: Vec::new(),
                policy: tenant_policy,
            };
            for g in t.guests {
                let line = src.line_of(g.span());
                match g.get_ref() {
                    RawGuest::Domid(d) => {
                        if !(1..DOMID_FIRST_RESERVED).contains(d) {
                            return Err(src.error(
                                g.span(),
                                format!(
                                    "domid {d} is not a guest's: domids are 1 to {}",
                                    DOMID_FIRST_RESERVED - 1
                                ),
                            ));
                        }
                        let d = *d as DomId;
                        if let Some((other, other_line)) = domids.get(&d) {
                            return Err(src.error(
                                g.span(),
                                format!("guest {d} is already claimed by tenant {other:?} (line {other_line}): a guest belongs to one tenant"),
                            ));
                        }
                        domids.insert(d, (name.clone(), line));
                        tenant.guests.push(GuestRef::Domid(d));
                    }
                    RawGuest::Pattern(p) => {
                        if p.is_empty()
                            || p.len() > 128
                            || p.chars().any(|c| c.is_control() || c == '/')
                        {
                            return Err(src.error(
                                g.span(),
                                format!("guest pattern {p:?}: write a guest name, with * for any run of characters and ? for one (no '/', at most 128 characters)"),
                            ));
                        }
                        if let Some((other, q, other_line)) = patterns
                            .iter()
                            .find(|(other, q, _)| *other != name && globs_overlap(p, q))
                        {
                            return Err(src.error(
                                g.span(),
                                format!("guest pattern {p:?} can match the same guest as tenant {other:?}'s {q:?} (line {other_line}): a guest belongs to one tenant, make the patterns disjoint"),
                            ));
                        }
                        patterns.push((name.clone(), p.clone(), line));
                        tenant.guests.push(GuestRef::Pattern(p.clone()));
                    }
                }
            }
            for tok in t.tokens {
                let user = tok.user.get_ref().trim().to_string();
                if user.is_empty() || user.len() > 128 || user.chars().any(char::is_control) {
                    return Err(src.error(
                        tok.user.span(),
                        "user must be a name of 1-128 printable characters (it shows in logs and /metrics)",
                    ));
                }
                let role = match tok.role.get_ref().as_str() {
                    "view" => Role::View,
                    "control" => Role::Control,
                    other => {
                        return Err(src.error(
                            tok.role.span(),
                            format!("unknown role {other:?}: use \"view\" (watch and listen) or \"control\" (also keyboard, pointer, microphone)"),
                        ))
                    }
                };
                let sha256 = parse_sha256_hex(tok.sha256.get_ref()).ok_or_else(|| {
                    src.error(
                        tok.sha256.span(),
                        "sha256 must be 64 hex digits: the SHA-256 of the token, as printed by `pvgate hash-token` (never the token itself)",
                    )
                })?;
                let line = src.line_of(tok.sha256.span());
                if let Some((who, other_line)) = hashes.get(&sha256) {
                    return Err(src.error(
                        tok.sha256.span(),
                        format!("this token is already used by {who} (line {other_line}): give every user its own token (`pvgate hash-token` makes one)"),
                    ));
                }
                hashes.insert(sha256, (format!("{name}/{user}"), line));
                tenant.tokens.push(TokenConfig { user, role, sha256 });
            }
            config.tenants.push(tenant);
        }
        Ok(config)
    }
}

fn streaming(src: &Source, raw: RawStreaming) -> Result<StreamingConfig, ConfigError> {
    let mut s = StreamingConfig::default();
    if let Some(w) = raw.webrtc {
        s.webrtc = w;
    }
    for ice in raw.ice_servers {
        let span = ice.span();
        let ice = ice.into_inner();
        if ice.urls.is_empty() {
            return Err(src.error(
                span,
                "an ICE server needs urls = [\"stun:host:port\"] (or turn:)",
            ));
        }
        let mut turn = false;
        for u in &ice.urls {
            let scheme = u.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
            match scheme.as_deref() {
                Some("stun" | "stuns") => {}
                Some("turn" | "turns") => turn = true,
                _ => {
                    return Err(src.error(
                        span.clone(),
                        format!(
                            "ICE server URL {u:?} must start with stun:, stuns:, turn: or turns:"
                        ),
                    ))
                }
            }
        }
        if turn && (ice.username.is_none() || ice.credential.is_none()) {
            return Err(src.error(span, "a TURN server needs username and credential"));
        }
        s.ice_servers.push(IceServer {
            urls: ice.urls,
            username: ice.username,
            credential: ice.credential,
        });
    }
    if let Some(codecs) = raw.codecs {
        let span = codecs.span();
        let mut list = Vec::new();
        for c in codecs.into_inner() {
            let codec = match c.get_ref().to_ascii_lowercase().as_str() {
                "h264" => Codec::H264,
                "vp8" => Codec::Vp8,
                other => {
                    return Err(src.error(
                        c.span(),
                        format!("unknown codec {other:?}: use \"h264\" and/or \"vp8\""),
                    ))
                }
            };
            if !list.contains(&codec) {
                list.push(codec);
            }
        }
        if list.is_empty() {
            return Err(src.error(span, "codecs cannot be empty: list \"h264\" and/or \"vp8\""));
        }
        s.codecs = list;
    }
    let bound = |v: Option<Spanned<u32>>,
                 field: &mut u32,
                 range: std::ops::RangeInclusive<u32>,
                 name: &str|
     -> Result<(), ConfigError> {
        if let Some(v) = v {
            if !range.contains(v.get_ref()) {
                return Err(src.error(
                    v.span(),
                    format!(
                        "{name} = {} is out of range: use {} to {}",
                        v.get_ref(),
                        range.start(),
                        range.end()
                    ),
                ));
            }
            *field = *v.get_ref();
        }
        Ok(())
    };
    let rates = 50_000..=100_000_000;
    let start_span = raw.start_bitrate_bps.as_ref().map(|v| v.span());
    bound(
        raw.min_bitrate_bps,
        &mut s.min_bitrate_bps,
        rates.clone(),
        "min_bitrate_bps",
    )?;
    bound(
        raw.start_bitrate_bps,
        &mut s.start_bitrate_bps,
        rates.clone(),
        "start_bitrate_bps",
    )?;
    bound(
        raw.max_bitrate_bps,
        &mut s.max_bitrate_bps,
        rates,
        "max_bitrate_bps",
    )?;
    bound(raw.max_fps, &mut s.max_fps, 1..=120, "max_fps")?;
    bound(
        raw.opus_bitrate_bps,
        &mut s.opus_bitrate_bps,
        6_000..=510_000,
        "opus_bitrate_bps",
    )?;
    if let Some(list) = raw.udp_addresses {
        let span = list.span();
        let mut addresses = Vec::new();
        for a in list.into_inner() {
            let ip = a.get_ref().parse::<IpAddr>().map_err(|_| {
                src.error(
                    a.span(),
                    format!(
                        "udp_addresses: {:?} is not an IP address (write \"0.0.0.0\" for every interface, or one address such as \"192.0.2.10\")",
                        a.get_ref()
                    ),
                )
            })?;
            if !addresses.contains(&ip) {
                addresses.push(ip);
            }
        }
        if addresses.is_empty() {
            return Err(src.error(
                span,
                "udp_addresses cannot be empty: list at least one address, or set webrtc = false",
            ));
        }
        s.udp_addresses = addresses;
    }
    if let Some(ports) = raw.udp_ports {
        s.udp_ports = Some(port_range(ports.get_ref()).ok_or_else(|| {
            src.error(
                ports.span(),
                format!(
                    "udp_ports = {:?}: write a range such as \"40000-40099\" (1024-65535, low-high)",
                    ports.get_ref()
                ),
            )
        })?);
    }
    if !(s.min_bitrate_bps <= s.start_bitrate_bps && s.start_bitrate_bps <= s.max_bitrate_bps) {
        return Err(src.error(
            start_span.unwrap_or(0..0),
            format!(
                "[streaming] bitrates must satisfy min <= start <= max (now {} <= {} <= {})",
                s.min_bitrate_bps, s.start_bitrate_bps, s.max_bitrate_bps
            ),
        ));
    }
    Ok(s)
}

/// "40000-40099" or one port "40000"; privileged ports are refused.
fn port_range(text: &str) -> Option<RangeInclusive<u16>> {
    let (lo, hi) = match text.split_once('-') {
        Some((lo, hi)) => (lo.trim().parse().ok()?, hi.trim().parse().ok()?),
        None => {
            let p = text.trim().parse().ok()?;
            (p, p)
        }
    };
    (1024 <= lo && lo <= hi).then_some(lo..=hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"; // "foo"

    fn err(text: &str) -> ConfigError {
        Config::parse(text, "test.toml").expect_err("should be refused")
    }

    #[test]
    fn the_example_config_loads() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/pvgate.example.toml"
        );
        let c = Config::load(Path::new(path)).unwrap();
        assert!(!c.tenants.is_empty());
        assert!(c.tenants.iter().all(|t| !t.tokens.is_empty()));
    }

    #[test]
    fn a_full_config_parses() {
        let c = Config::parse(
            &format!(
                r#"
allowed_origins = ["HTTPS://Console.Example.com:443/"]
trust_proxy_headers = true
[streaming]
webrtc = false
codecs = ["vp8"]
ice_servers = [{{ urls = ["turn:t.example:3478"], username = "u", credential = "c" }}]
max_fps = 60
udp_addresses = ["192.0.2.10", "::1", "192.0.2.10"]
udp_ports = "40000-40099"
[[tenant]]
name = "acme"
guests = [5, "acme-*"]
[[tenant.token]]
user = "alice"
role = "control"
sha256 = "{H1}"
"#
            ),
            "x",
        )
        .unwrap();
        assert_eq!(c.allowed_origins, ["https://console.example.com"]);
        assert!(c.trust_proxy_headers);
        assert!(!c.streaming.webrtc);
        assert_eq!(c.streaming.codecs, [Codec::Vp8]);
        assert_eq!(c.streaming.max_fps, 60);
        assert_eq!(c.streaming.ice_servers[0].username.as_deref(), Some("u"));
        assert_eq!(
            c.streaming.udp_addresses,
            [
                "192.0.2.10".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert_eq!(c.streaming.udp_ports, Some(40000..=40099));
        let t = &c.tenants[0];
        assert_eq!(
            t.guests,
            [GuestRef::Domid(5), GuestRef::Pattern("acme-*".into())]
        );
        assert_eq!(t.tokens[0].role, Role::Control);
        assert_eq!(hex(&t.tokens[0].sha256), H1);
    }

    #[test]
    fn tenant_policies_parse() {
        let c = Config::parse(
            r#"
[policy]
cache_dir = "cache"
fuel_per_call = 1000000
deadline_ms = 20
recheck_seconds = 30
[[tenant]]
name = "acme"
guests = [5, "acme-*"]
policy = "plugins/tiers.wasm"
policy_deadline_ms = 10
[tenant.policy_config]
hours = "09:00-17:00"
utc-offset-minutes = 60
[[tenant.labels]]
guests = [5, "acme-db-*"]
labels = ["gold"]
[[tenant]]
name = "beta"
"#,
            "/etc/pvgate/pvgate.toml",
        )
        .unwrap();
        assert_eq!(
            c.policy.cache_dir,
            pvgate_policy::CacheDir::Path("/etc/pvgate/cache".into())
        );
        assert_eq!(c.policy.call_limits.fuel, 1_000_000);
        assert_eq!(c.policy.recheck, std::time::Duration::from_secs(30));
        let p = &c.tenants[0].policy;
        assert_eq!(
            p.plugin.as_deref(),
            Some(Path::new("/etc/pvgate/plugins/tiers.wasm"))
        );
        assert_eq!(p.defined_at, "/etc/pvgate/pvgate.toml:10");
        assert_eq!(p.config["utc-offset-minutes"], "60");
        assert_eq!(
            p.call_limits.unwrap().deadline,
            std::time::Duration::from_millis(10)
        );
        assert_eq!(p.labels_of(5, "x"), ["gold"]);
        assert_eq!(p.labels_of(9, "acme-db-2"), ["gold"]);
        assert_eq!(c.tenants[1].policy, TenantPolicyConfig::default());

        let e = |extra: &str| err(&format!("[[tenant]]\nname = \"a\"\n{extra}"));
        assert!(e("policy = \"\"").message.contains("built-in policy"));
        assert!(e("[tenant.policy_config]\nx = [1]")
            .message
            .contains("policy_config.x"));
        assert!(e("[[tenant.labels]]\nguests = [0]\nlabels = [\"gold\"]")
            .message
            .contains("domid 0"));
        assert!(e("[[tenant.labels]]\nguests = [5]\nlabels = [\"a b\"]")
            .message
            .contains("label \"a b\""));
        let bad = err("[policy]\ndeadline_ms = 0");
        assert!(bad.message.contains("deadline_ms = 0"), "{bad}");
        assert_eq!(bad.line, 2);
    }

    #[test]
    fn an_empty_file_is_a_valid_config() {
        assert_eq!(Config::parse("", "x").unwrap(), Config::default());
    }

    #[test]
    fn errors_name_file_line_and_fix() {
        let e = err("[[tenant]]\nname = \"a\"\n[[tenant.token]]\nuser = \"u\"\nrole = \"admin\"\nsha256 = \"00\"\n");
        assert_eq!(
            (e.file.as_str(), e.line, e.column),
            ("test.toml", 5, 8),
            "{e}"
        );
        assert!(e.message.contains("\"view\""), "{e}");
        assert!(
            e.to_string().starts_with("test.toml:5:8: unknown role"),
            "{e}"
        );

        let e = err(&format!("[[tenant]]\nname = \"a\"\n[[tenant.token]]\nuser = \"u\"\nrole = \"view\"\nsha256 = \"{}\"\n", &H1[..60]));
        assert_eq!(e.line, 6);
        assert!(e.message.contains("pvgate hash-token"), "{e}");

        let e = err(&format!("[[tenant]]\nname = \"a\"\n[[tenant.token]]\nuser = \"u\"\nrole = \"view\"\nsha256 = \"{}zz\"\n", &H1[..62]));
        assert_eq!(e.line, 6, "non-hex digits: {e}");
    }

    #[test]
    fn syntax_and_unknown_keys_are_located() {
        let e = err("allowed_origins = [\n  \"https://a\",\n  oops\n]\n");
        assert_eq!(e.line, 3, "{e}");
        let e = err("[streaming]\nmax_fsp = 30\n");
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("max_fsp"), "{e}");
        let e = err("[[tenant]]\nname = \"a\"\nguests = [5, 1.5]\n");
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("domid"), "{e}");
    }

    #[test]
    fn a_token_used_twice_is_refused() {
        let e = err(&format!(
            "[[tenant]]\nname = \"a\"\n[[tenant.token]]\nuser = \"u\"\nrole = \"view\"\nsha256 = \"{H1}\"\n\
             [[tenant]]\nname = \"b\"\n[[tenant.token]]\nuser = \"v\"\nrole = \"view\"\nsha256 = \"{}\"\n",
            H1.to_uppercase()
        ));
        assert_eq!(e.line, 12, "{e}");
        assert!(e.message.contains("a/u (line 6)"), "{e}");
    }

    #[test]
    fn a_guest_claimed_by_two_tenants_is_refused() {
        let e = err(
            "[[tenant]]\nname = \"a\"\nguests = [5]\n[[tenant]]\nname = \"b\"\nguests = [7, 5]\n",
        );
        assert_eq!((e.line, e.column), (6, 14), "{e}");
        assert!(e.message.contains("\"a\" (line 3)"), "{e}");
        let e = err("[[tenant]]\nname = \"a\"\nguests = [\"acme-*\"]\n[[tenant]]\nname = \"b\"\nguests = [\"*-prod\"]\n");
        assert_eq!(e.line, 6, "acme-prod matches both: {e}");
        // Disjoint patterns are fine, and a tenant may repeat itself.
        Config::parse(
            "[[tenant]]\nname = \"a\"\nguests = [\"acme-*\", \"acme-?\"]\n[[tenant]]\nname = \"b\"\nguests = [\"beta-*\"]\n",
            "x",
        )
        .unwrap();
        let e = err("[[tenant]]\nname = \"a\"\n[[tenant]]\nname = \"a\"\n");
        assert_eq!(e.line, 4, "{e}");
    }

    #[test]
    fn bad_values_are_refused() {
        assert_eq!(err("[[tenant]]\nname = \"a\"\nguests = [0]\n").line, 3);
        assert_eq!(err("[[tenant]]\nname = \"a\"\nguests = [40000]\n").line, 3);
        assert_eq!(err("[[tenant]]\nname = \"a b\"\n").line, 2);
        assert_eq!(err("allowed_origins = [\"*\"]").line, 1);
        assert!(err("allowed_origins = [\"https://a/path\"]")
            .message
            .contains("scheme://host"));
        assert!(err("metrics_token_sha256 = \"x\"")
            .message
            .contains("64 hex"));
        assert!(err("[streaming]\ncodecs = [\"av1\"]")
            .message
            .contains("av1"));
        assert!(err("[streaming]\ncodecs = []").message.contains("empty"));
        assert!(err("[streaming]\nmin_bitrate_bps = 5000000\n")
            .message
            .contains("min <= start"));
        assert!(err("[streaming]\nudp_ports = \"80-90\"")
            .message
            .contains("1024-65535"));
        assert!(err("[streaming]\nudp_ports = \"5000-4000\"")
            .message
            .contains("low-high"));
        assert!(err("[streaming]\nudp_addresses = [\"eth0\"]")
            .message
            .contains("not an IP address"));
        assert!(err("[streaming]\nudp_addresses = []")
            .message
            .contains("cannot be empty"));
        assert!(err("[streaming]\nmax_fps = 0\n")
            .message
            .contains("1 to 120"));
        assert!(err("[streaming]\nice_servers = [{urls=[\"http://x\"]}]")
            .message
            .contains("stun:"));
        assert!(err("[streaming]\nice_servers = [{urls=[\"turn:x\"]}]")
            .message
            .contains("username"));
    }

    #[test]
    fn globs() {
        assert!(glob_match("acme-*", "acme-web"));
        assert!(glob_match("acme-*", "acme-"));
        assert!(!glob_match("acme-*", "acm-web"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*", ""));
        assert!(glob_match("*a*b*", "xxaxxbxx"));
        assert!(!glob_match("*a*b*", "xxbxxaxx"));
        assert!(glob_match("guest5", "guest5"));
        assert!(!glob_match("guest5", "guest50"));
        assert!(globs_overlap("acme-*", "*-prod"));
        assert!(globs_overlap("a*", "a?"));
        assert!(globs_overlap("*", "x"));
        assert!(!globs_overlap("acme-*", "beta-*"));
        assert!(!globs_overlap("a?", "abc"));
        assert!(!globs_overlap("*x", "*y"));
        assert!(globs_overlap("**", "abc"));
    }

    #[test]
    fn origins_normalise_like_browsers() {
        assert_eq!(normalize_origin("http://H:80").as_deref(), Some("http://h"));
        assert_eq!(
            normalize_origin("https://h:8443").as_deref(),
            Some("https://h:8443")
        );
        assert_eq!(
            normalize_origin("http://[::1]:8080").as_deref(),
            Some("http://[::1]:8080")
        );
        assert_eq!(normalize_origin("ftp://h"), None);
        assert_eq!(normalize_origin("http://u@h"), None);
        assert_eq!(normalize_origin("http://h:99999"), None);
        assert_eq!(normalize_origin("null"), None);
    }

    #[test]
    fn hashing_and_generation() {
        assert_eq!(sha256_hex("foo"), H1);
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert_eq!(a.len(), 40);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
