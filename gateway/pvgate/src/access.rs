//! Who may see and control which guest: viewer tokens → (tenant, user,
//! role), guest ownership per tenant, and the WebSocket Origin check
//! (web/PROTOCOL.md, "Authentication").
//!
//! Tokens are only ever held as SHA-256 hashes (the configuration stores
//! nothing else), and a presented token is hashed and compared with every
//! configured hash in constant time, so neither a leaked config nor response
//! timing gives a token away.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use pvgate_platform::DomId;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::config::{self, Config, GuestRef};

/// What a viewer may do with a guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Watch and listen.
    View,
    /// Also keyboard, pointer, touch and microphone.
    Control,
}

/// An authenticated viewer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Viewer {
    pub tenant: String,
    pub user: String,
    pub role: Role,
}

/// Why a request was refused; maps to 401 or 403.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("no viewer token: pass ?token= or an Authorization: Bearer header")]
    MissingToken,
    #[error("the Authorization header must be `Bearer <token>`")]
    BadAuthorization,
    #[error("unknown viewer token (ask the gateway's operator for a valid one)")]
    UnknownToken,
    #[error("tenant {tenant:?} may not open guest {domid}")]
    ForeignGuest { tenant: String, domid: DomId },
    #[error("origin {0:?} is not allowed to open a session (add it to allowed_origins in the gateway's configuration)")]
    BadOrigin(String),
    #[error("no Origin header: browsers always send one; other clients must authenticate with an Authorization: Bearer header")]
    MissingOrigin,
}

impl AccessError {
    pub fn status(&self) -> StatusCode {
        match self {
            AccessError::MissingToken
            | AccessError::BadAuthorization
            | AccessError::UnknownToken => StatusCode::UNAUTHORIZED,
            AccessError::ForeignGuest { .. }
            | AccessError::BadOrigin(_)
            | AccessError::MissingOrigin => StatusCode::FORBIDDEN,
        }
    }
}

/// `{"error": "..."}` with the status, like every API error.
impl IntoResponse for AccessError {
    fn into_response(self) -> Response {
        let mut rsp = (
            self.status(),
            axum::Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response();
        if self.status() == StatusCode::UNAUTHORIZED {
            rsp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"pvgate\""),
            );
        }
        rsp
    }
}

/// What `/metrics` may show to a caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricsScope {
    /// Every guest (the metrics token, or no authentication configured).
    All,
    /// Only the guests of this viewer's tenant.
    Tenant(Viewer),
}

/// One tenant's claim on guests.
#[derive(Debug)]
struct TenantRule {
    name: String,
    domids: Vec<DomId>,
    patterns: Vec<String>,
}

#[derive(Debug)]
enum Mode {
    /// `--insecure-no-auth`: everyone is a controlling viewer of every guest.
    Open,
    Tenants {
        tokens: Vec<([u8; 32], Viewer)>,
        tenants: Vec<TenantRule>,
    },
}

/// The access rules of a running gateway.
#[derive(Debug)]
pub struct Access {
    mode: Mode,
    allowed_origins: Vec<String>,
    trust_proxy_headers: bool,
    metrics_token: Option<[u8; 32]>,
}

/// Longer "tokens" are not hashed at all: nobody is issued one, and hashing
/// megabytes per request would be a cheap way to burn our CPU.
const MAX_TOKEN_LEN: usize = 512;

/// The tenant and user of every viewer when authentication is off.
pub const OPEN_TENANT: &str = "local";

impl Access {
    /// The rules of `config`: only its tokens get in, each to its tenant's
    /// guests.
    pub fn from_config(config: &Config) -> Access {
        let mut tokens = Vec::new();
        let mut tenants = Vec::new();
        for t in &config.tenants {
            for tok in &t.tokens {
                tokens.push((
                    tok.sha256,
                    Viewer {
                        tenant: t.name.clone(),
                        user: tok.user.clone(),
                        role: tok.role,
                    },
                ));
            }
            let mut rule = TenantRule {
                name: t.name.clone(),
                domids: Vec::new(),
                patterns: Vec::new(),
            };
            for g in &t.guests {
                match g {
                    GuestRef::Domid(d) => rule.domids.push(*d),
                    GuestRef::Pattern(p) => rule.patterns.push(p.clone()),
                }
            }
            tenants.push(rule);
        }
        Access {
            mode: Mode::Tenants { tokens, tenants },
            allowed_origins: config.allowed_origins.clone(),
            trust_proxy_headers: config.trust_proxy_headers,
            metrics_token: config.metrics_token_sha256,
        }
    }

    /// No authentication: every request is a `control` viewer of every
    /// guest (`pvgate serve --insecure-no-auth`, tests). The Origin check
    /// still applies, so other web sites cannot drive a local gateway.
    pub fn insecure_open() -> Access {
        Access {
            mode: Mode::Open,
            allowed_origins: Vec::new(),
            trust_proxy_headers: false,
            metrics_token: None,
        }
    }

    /// Whether anyone may use the gateway without a token.
    pub fn is_open(&self) -> bool {
        matches!(self.mode, Mode::Open)
    }

    /// The token a request carries: `Authorization: Bearer` first, else the
    /// `?token=` query value.
    fn presented<'a>(
        headers: &'a HeaderMap,
        token: Option<&'a str>,
    ) -> Result<&'a str, AccessError> {
        match headers.get(header::AUTHORIZATION) {
            Some(value) => {
                let value = value.to_str().map_err(|_| AccessError::BadAuthorization)?;
                let (scheme, rest) = value
                    .trim()
                    .split_once(' ')
                    .ok_or(AccessError::BadAuthorization)?;
                if !scheme.eq_ignore_ascii_case("bearer") || rest.trim().is_empty() {
                    return Err(AccessError::BadAuthorization);
                }
                Ok(rest.trim())
            }
            None => match token {
                Some(t) if !t.is_empty() => Ok(t),
                _ => Err(AccessError::MissingToken),
            },
        }
    }

    fn hash(token: &str) -> Option<[u8; 32]> {
        (token.len() <= MAX_TOKEN_LEN).then(|| Sha256::digest(token.as_bytes()).into())
    }

    /// The viewer a request speaks for (`token` is the `?token=` query value).
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        token: Option<&str>,
    ) -> Result<Viewer, AccessError> {
        let tokens = match &self.mode {
            Mode::Open => {
                return Ok(Viewer {
                    tenant: OPEN_TENANT.into(),
                    user: "anonymous".into(),
                    role: Role::Control,
                })
            }
            Mode::Tenants { tokens, .. } => tokens,
        };
        let hash = Self::hash(Self::presented(headers, token)?).ok_or(AccessError::UnknownToken)?;
        // Look at every entry whatever matched, so the time taken does not
        // tell which (or whether an early) entry matched.
        let mut found: Option<&Viewer> = None;
        for (h, viewer) in tokens {
            if bool::from(h.ct_eq(&hash)) {
                found = Some(viewer);
            }
        }
        found.cloned().ok_or(AccessError::UnknownToken)
    }

    /// What `/metrics` shows this request: everything for the metrics token
    /// (or with authentication off), else the caller's tenant's guests.
    pub fn metrics_scope(
        &self,
        headers: &HeaderMap,
        token: Option<&str>,
    ) -> Result<MetricsScope, AccessError> {
        if self.is_open() {
            return Ok(MetricsScope::All);
        }
        if let Some(expected) = &self.metrics_token {
            let presented = Self::presented(headers, token)?;
            let is_metrics: Choice =
                Self::hash(presented).map_or(Choice::from(0), |h| h.ct_eq(expected));
            if bool::from(is_metrics) {
                return Ok(MetricsScope::All);
            }
        }
        self.authenticate(headers, token).map(MetricsScope::Tenant)
    }

    /// Whether `viewer` may open guest `domid` (named `name`).
    pub fn may_open(&self, viewer: &Viewer, domid: DomId, name: &str) -> Result<(), AccessError> {
        if self.is_open() || self.tenant_of(domid, name).as_deref() == Some(viewer.tenant.as_str())
        {
            Ok(())
        } else {
            Err(AccessError::ForeignGuest {
                tenant: viewer.tenant.clone(),
                domid,
            })
        }
    }

    /// The tenant that owns guest `domid` (named `name`), if any. A domid
    /// listed by a tenant wins over name patterns (it is the more specific
    /// claim; the configuration refuses two tenants listing one domid or
    /// overlapping patterns).
    pub fn tenant_of(&self, domid: DomId, name: &str) -> Option<String> {
        let Mode::Tenants { tenants, .. } = &self.mode else {
            return None;
        };
        tenants
            .iter()
            .find(|t| t.domids.contains(&domid))
            .or_else(|| {
                tenants
                    .iter()
                    .find(|t| t.patterns.iter().any(|p| config::glob_match(p, name)))
            })
            .map(|t| t.name.clone())
    }

    /// The gateway's own origin as this request reached it.
    fn own_origin(&self, headers: &HeaderMap) -> Option<String> {
        let first = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let (mut scheme, mut host) = ("http", first(header::HOST.as_str()));
        if self.trust_proxy_headers {
            if let Some(h) = first("x-forwarded-host") {
                host = Some(h);
            }
            if let Some(p) = first("x-forwarded-proto") {
                scheme = p;
            }
        }
        config::normalize_origin(&format!("{scheme}://{}", host?))
    }

    /// The WebSocket Origin check (see web/PROTOCOL.md): the gateway's own
    /// origin or one of `allowed_origins`; no Origin only for clients that
    /// authenticate with a header (browsers always send Origin on a
    /// WebSocket, and cannot set Authorization there).
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<(), AccessError> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return if headers.contains_key(header::AUTHORIZATION) {
                Ok(())
            } else {
                Err(AccessError::MissingOrigin)
            };
        };
        let shown = String::from_utf8_lossy(origin.as_bytes()).into_owned();
        let Some(origin) = origin.to_str().ok().and_then(config::normalize_origin) else {
            // "null" (sandboxed frames, file://) and garbage.
            return Err(AccessError::BadOrigin(shown));
        };
        if self.own_origin(headers).as_ref() == Some(&origin)
            || self.allowed_origins.contains(&origin)
        {
            Ok(())
        } else {
            Err(AccessError::BadOrigin(shown))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::sha256_hex;
    use axum::http::HeaderValue;

    fn access(extra: &str) -> Access {
        let text = format!(
            r#"
allowed_origins = ["https://console.example.com"]
{extra}
[[tenant]]
name = "acme"
guests = [5, "acme-*"]
[[tenant.token]]
user = "alice"
role = "control"
sha256 = "{}"
[[tenant.token]]
user = "bob"
role = "view"
sha256 = "{}"
[[tenant]]
name = "beta"
guests = [7, "beta-*"]
[[tenant.token]]
user = "carol"
role = "control"
sha256 = "{}"
"#,
            sha256_hex("alice-token"),
            sha256_hex("bob-token"),
            sha256_hex("carol-token"),
        );
        Access::from_config(&Config::parse(&text, "t.toml").unwrap())
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn tokens_from_the_header_or_the_query() {
        let a = access("");
        let v = a
            .authenticate(&HeaderMap::new(), Some("alice-token"))
            .unwrap();
        assert_eq!(
            (v.tenant.as_str(), v.user.as_str(), v.role),
            ("acme", "alice", Role::Control)
        );
        let v = a
            .authenticate(&headers(&[("authorization", "Bearer bob-token")]), None)
            .unwrap();
        assert_eq!((v.user.as_str(), v.role), ("bob", Role::View));
        // The scheme is case-insensitive; the header wins over the query.
        let v = a
            .authenticate(
                &headers(&[("authorization", "bearer  carol-token ")]),
                Some("alice-token"),
            )
            .unwrap();
        assert_eq!(v.user, "carol");
    }

    #[test]
    fn missing_unknown_and_malformed_tokens_are_401() {
        let a = access("");
        let e = a.authenticate(&HeaderMap::new(), None).unwrap_err();
        assert!(matches!(e, AccessError::MissingToken));
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        assert!(matches!(
            a.authenticate(&HeaderMap::new(), Some("")),
            Err(AccessError::MissingToken)
        ));
        let e = a
            .authenticate(&HeaderMap::new(), Some("alice-tokeN"))
            .unwrap_err();
        assert!(matches!(e, AccessError::UnknownToken));
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        for bad in ["Basic YWxpY2U6eA==", "Bearer", "alice-token"] {
            let e = a
                .authenticate(&headers(&[("authorization", bad)]), Some("alice-token"))
                .unwrap_err();
            assert!(matches!(e, AccessError::BadAuthorization), "{bad}: {e}");
            assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        }
        let huge = "x".repeat(MAX_TOKEN_LEN + 1);
        assert!(matches!(
            a.authenticate(&HeaderMap::new(), Some(&huge)),
            Err(AccessError::UnknownToken)
        ));
        // The hash itself is not a token.
        let hash = sha256_hex("alice-token");
        assert!(a.authenticate(&HeaderMap::new(), Some(&hash)).is_err());
    }

    #[test]
    fn a_tenant_opens_only_its_guests() {
        let a = access("");
        let alice = a
            .authenticate(&HeaderMap::new(), Some("alice-token"))
            .unwrap();
        assert!(a.may_open(&alice, 5, "whatever").is_ok(), "by domid");
        assert!(a.may_open(&alice, 9, "acme-web").is_ok(), "by pattern");
        let e = a.may_open(&alice, 7, "beta-1").unwrap_err();
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        assert!(
            e.to_string().contains("\"acme\" may not open guest 7"),
            "{e}"
        );
        assert!(a.may_open(&alice, 8, "nobody-owns-me").is_err());
        // A listed domid wins over another tenant's name pattern.
        assert_eq!(a.tenant_of(5, "beta-x").as_deref(), Some("acme"));
        assert_eq!(a.tenant_of(11, "beta-x").as_deref(), Some("beta"));
        assert_eq!(a.tenant_of(11, "gamma"), None);
    }

    #[test]
    fn open_mode_lets_everyone_in_but_still_checks_origin() {
        let a = Access::insecure_open();
        let v = a.authenticate(&HeaderMap::new(), None).unwrap();
        assert_eq!(v.role, Role::Control);
        assert!(a.may_open(&v, 42, "x").is_ok());
        assert_eq!(a.tenant_of(42, "x"), None);
        let e = a
            .check_origin(&headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "https://evil.example"),
            ]))
            .unwrap_err();
        assert!(matches!(e, AccessError::BadOrigin(_)));
    }

    #[test]
    fn origin_is_the_gateways_own_or_allowed() {
        let a = access("");
        let ok = |pairs: &[(&str, &str)]| a.check_origin(&headers(pairs));
        assert!(ok(&[
            ("host", "gw.example:8080"),
            ("origin", "http://gw.example:8080")
        ])
        .is_ok());
        assert!(
            ok(&[("host", "GW.example:80"), ("origin", "http://gw.example")]).is_ok(),
            "default port, case"
        );
        assert!(
            ok(&[
                ("host", "gw.example"),
                ("origin", "https://console.example.com")
            ])
            .is_ok(),
            "allowed_origins"
        );
        assert!(
            ok(&[
                ("host", "gw.example:8080"),
                ("origin", "http://gw.example:8081")
            ])
            .is_err(),
            "port differs"
        );
        assert!(
            ok(&[
                ("host", "gw.example:8080"),
                ("origin", "https://gw.example:8080")
            ])
            .is_err(),
            "scheme differs"
        );
        assert!(ok(&[("host", "gw.example"), ("origin", "http://evil.example")]).is_err());
        assert!(
            ok(&[("host", "gw.example"), ("origin", "null")]).is_err(),
            "opaque origins"
        );
        assert!(ok(&[("origin", "http://gw.example")]).is_err(), "no Host");
        let e = ok(&[("host", "gw.example"), ("origin", "http://evil.example")]).unwrap_err();
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        assert!(e.to_string().contains("allowed_origins"), "{e}");
    }

    #[test]
    fn forwarded_headers_count_only_when_trusted() {
        let behind_proxy = [
            ("host", "127.0.0.1:8080"),
            ("x-forwarded-host", "gw.example.com, 10.0.0.1"),
            ("x-forwarded-proto", "https"),
            ("origin", "https://gw.example.com"),
        ];
        assert!(
            access("").check_origin(&headers(&behind_proxy)).is_err(),
            "untrusted"
        );
        assert!(access("trust_proxy_headers = true")
            .check_origin(&headers(&behind_proxy))
            .is_ok());
        // Trusted, but the Origin is still someone else's.
        let mut other = behind_proxy;
        other[3] = ("origin", "https://evil.example");
        assert!(access("trust_proxy_headers = true")
            .check_origin(&headers(&other))
            .is_err());
    }

    #[test]
    fn a_missing_origin_needs_an_authorization_header() {
        let a = access("");
        let e = a.check_origin(&headers(&[("host", "gw")])).unwrap_err();
        assert!(matches!(e, AccessError::MissingOrigin));
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        assert!(a
            .check_origin(&headers(&[
                ("host", "gw"),
                ("authorization", "Bearer alice-token")
            ]))
            .is_ok());
    }

    #[test]
    fn metrics_scope() {
        let a = access(&format!(
            "metrics_token_sha256 = \"{}\"",
            sha256_hex("prom")
        ));
        assert_eq!(
            a.metrics_scope(&headers(&[("authorization", "Bearer prom")]), None)
                .unwrap(),
            MetricsScope::All
        );
        match a
            .metrics_scope(&HeaderMap::new(), Some("carol-token"))
            .unwrap()
        {
            MetricsScope::Tenant(v) => assert_eq!(v.tenant, "beta"),
            s => panic!("{s:?}"),
        }
        assert_eq!(
            a.metrics_scope(&HeaderMap::new(), Some("nope"))
                .unwrap_err()
                .status(),
            StatusCode::UNAUTHORIZED
        );
        assert!(a.metrics_scope(&HeaderMap::new(), None).is_err());
        assert_eq!(
            Access::insecure_open()
                .metrics_scope(&HeaderMap::new(), None)
                .unwrap(),
            MetricsScope::All
        );
    }
}
