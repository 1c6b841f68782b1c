//! Who may see and control which guest: viewer tokens → (tenant, user,
//! role), guest ownership per tenant, and the WebSocket Origin check.
//!
//! OWNER: the tenants-and-auth work. This first version lets everyone in as
//! `control` so the session layer can be built against the final shape.

use axum::http::HeaderMap;
use pvgate_platform::DomId;

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
    #[error("unknown viewer token")]
    UnknownToken,
    #[error("tenant {tenant:?} may not open guest {domid}")]
    ForeignGuest { tenant: String, domid: DomId },
    #[error("origin {0:?} is not allowed to open a session (add it to allowed_origins)")]
    BadOrigin(String),
}

impl AccessError {
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            AccessError::MissingToken | AccessError::UnknownToken => StatusCode::UNAUTHORIZED,
            AccessError::ForeignGuest { .. } | AccessError::BadOrigin(_) => StatusCode::FORBIDDEN,
        }
    }
}

/// The access rules of a running gateway.
#[derive(Debug, Default)]
pub struct Access {}

impl Access {
    /// The viewer a request speaks for (`token` is the `?token=` query value).
    pub fn authenticate(
        &self,
        _headers: &HeaderMap,
        _token: Option<&str>,
    ) -> Result<Viewer, AccessError> {
        Ok(Viewer {
            tenant: "demo".into(),
            user: "demo".into(),
            role: Role::Control,
        })
    }

    /// Whether `viewer` may open guest `domid` (named `name`).
    pub fn may_open(&self, _viewer: &Viewer, _domid: DomId, _name: &str) -> Result<(), AccessError> {
        Ok(())
    }

    /// The tenant that owns guest `domid` (named `name`), if any.
    pub fn tenant_of(&self, _domid: DomId, _name: &str) -> Option<String> {
        None
    }

    /// The WebSocket Origin check (see web/PROTOCOL.md).
    pub fn check_origin(&self, _headers: &HeaderMap) -> Result<(), AccessError> {
        Ok(())
    }
}
