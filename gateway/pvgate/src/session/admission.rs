//! The tenant's admission policy for viewer sessions: asked once before the
//! WebSocket upgrade (deny → 403 with the policy's reason; control may be
//! lowered to view), then again every `[policy] recheck_seconds` while the
//! session lives, so a time- or revocation-based rule (office hours) takes
//! effect without a reconnect: a lost control role drops input and the
//! microphone, a denial ends the session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use pvgate_policy::types::{self as pt, Admission};

use crate::access::{Role, Viewer};
use crate::http::GuestInfo;
use crate::policy::{role_from_policy, Policies};

/// `viewer` as the tenant's policy admits them to `guest` (never with more
/// than the token's role), or the reason to show them.
pub fn admit(
    policies: &Policies,
    guest: &GuestInfo,
    mut viewer: Viewer,
    remote: Option<SocketAddr>,
) -> Result<Viewer, String> {
    let g = policies.guest(guest.domid, &guest.name);
    match policies.admit(&g, &viewer, remote) {
        Admission::Allow(role) => {
            let role = role_from_policy(role).min(viewer.role);
            if role < viewer.role {
                tracing::info!(domid = guest.domid, tenant = %viewer.tenant, user = %viewer.user, "the tenant's policy admits this viewer to watch only");
            }
            viewer.role = role;
            Ok(viewer)
        }
        Admission::Deny(reason) => {
            tracing::info!(domid = guest.domid, tenant = %viewer.tenant, user = %viewer.user, %reason, "the tenant's policy refused a viewer");
            Err(format!(
                "the tenant's access policy refuses this session: {reason}"
            ))
        }
    }
}

/// What a periodic re-check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecheckOutcome {
    /// Nothing changed (or it was not time yet).
    Same,
    /// The role changed: apply it to input and the microphone.
    Role(Role),
    /// No longer admitted: end the session with this message.
    Denied(String),
}

/// A live session's admission, asked again every `recheck` interval.
pub struct Recheck {
    policies: Arc<Policies>,
    guest: pt::Guest,
    viewer: Viewer,
    remote: Option<SocketAddr>,
    /// The role admitted at the start: the ceiling of later re-checks.
    ceiling: Role,
    current: Role,
    next: Instant,
}

impl Recheck {
    pub fn new(
        policies: Arc<Policies>,
        guest: pt::Guest,
        viewer: Viewer,
        remote: Option<SocketAddr>,
    ) -> Recheck {
        let next = Instant::now() + policies.settings().recheck;
        Recheck {
            ceiling: viewer.role,
            current: viewer.role,
            policies,
            guest,
            viewer,
            remote,
            next,
        }
    }

    /// Ask again if the interval has passed. One policy call (bounded by
    /// the plugin's deadline), at most once per interval.
    pub fn due(&mut self, now: Instant) -> RecheckOutcome {
        if now < self.next {
            return RecheckOutcome::Same;
        }
        self.next = now + self.policies.settings().recheck;
        self.ask()
    }

    /// Ask now.
    pub fn ask(&mut self) -> RecheckOutcome {
        let mut asking = self.viewer.clone();
        asking.role = self.ceiling;
        match self.policies.admit(&self.guest, &asking, self.remote) {
            Admission::Deny(reason) => RecheckOutcome::Denied(format!(
                "the tenant's access policy ended this session: {reason}"
            )),
            Admission::Allow(role) => {
                let role = role_from_policy(role).min(self.ceiling);
                if role == self.current {
                    RecheckOutcome::Same
                } else {
                    tracing::info!(domid = self.guest.domid, user = %self.viewer.user, ?role, "the tenant's policy changed a live session's role");
                    self.current = role;
                    RecheckOutcome::Role(role)
                }
            }
        }
    }

    /// What the viewer is told when the role changes. `microphone`: the
    /// session's microphone works again with control (it is set up only
    /// when a session starts with control and asks for it).
    pub fn role_message(&self, role: Role, microphone: bool) -> String {
        match (role, microphone) {
            (Role::View, _) => "the tenant's access policy withdrew control: keyboard, pointer, touch and microphone are ignored from now on".into(),
            (Role::Control, true) => "the tenant's access policy gives control again: keyboard, pointer, touch and microphone are delivered".into(),
            (Role::Control, false) => "the tenant's access policy gives control again: keyboard, pointer and touch are delivered (reconnect to use the microphone)".into(),
        }
    }
}
