//! The XenBus state machine of one backend device, sans-IO.
//!
//! What the Linux frontends do, and so what we must do (checked against
//! xen-drm-front's `displback_changed`, snd-xen-front's `sndback_changed` and
//! xen-kbdfront's `xenkbd_backend_changed`):
//!
//! - xen-drm-front and snd-xen-front publish their rings only after they see
//!   the backend in InitWait, then go Initialised and wait for the backend to
//!   be Connected. Seeing InitWait again while connected means "the backend
//!   restarted": they drop everything and publish fresh rings. So a gateway
//!   that restarts simply writes InitWait and the frontends come back.
//! - xen-drm-front may park in Reconfiguring while userspace still holds the
//!   DRM device, and only later goes Initialising. It re-publishes only when
//!   it *sees* InitWait while Initialising, so we write InitWait again every
//!   time the frontend enters Initialising (xenstore fires the watch even
//!   when the value does not change).
//! - snd-xen-front, by contrast, tears down and publishes afresh on *every*
//!   InitWait it sees, whatever its state (`sndback_changed`), passing
//!   through Initialising on the way. Writing InitWait again when it shows
//!   Initialising would restart it again, for ever; so for sndif
//!   ([`Lifecycle::frontend_restarts_on_initwait`]) InitWait is written only
//!   when it is not already on offer.
//! - xen-kbdfront publishes its page at probe time and goes Connected as soon
//!   as it sees InitWait, without waiting for us: for input devices a
//!   Connected frontend is one to connect to. After a gateway restart its
//!   keys are still valid (its event channel went back to unbound when the
//!   old backend closed), so we simply connect again.
//! - Closing/Closed: release the guest's pages at once (the frontend cannot
//!   free granted pages we still map), follow it to Closed, and when it
//!   comes back (Initialising) offer InitWait again, as Linux backends do.

use pvgate_protocol::xenbus::XenbusState;

/// Which frontend states mean "its rings are published, connect now".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectWhen {
    /// displif, sndif: the frontend says Initialised.
    Initialised,
    /// kbdif: Initialised or already Connected.
    InitialisedOrConnected,
}

/// What the driver must do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write our `state` node.
    SwitchState(XenbusState),
    /// Read the frontend's keys, map its pages, bind its channels, serve.
    /// Report the outcome with [`Lifecycle::connect_result`].
    Connect,
    /// Stop serving and release every mapping and channel of the device.
    Disconnect,
    /// The device is gone (frontend or backend nodes removed): stop for good.
    Remove,
}

/// The lifecycle of one device.
#[derive(Debug)]
pub struct Lifecycle {
    connect_when: ConnectWhen,
    state: XenbusState,
    connected: bool,
    connecting: bool,
    restarts_on_initwait: bool,
}

impl Lifecycle {
    pub fn new(connect_when: ConnectWhen) -> Lifecycle {
        Lifecycle {
            connect_when,
            state: XenbusState::Initialising,
            connected: false,
            connecting: false,
            restarts_on_initwait: false,
        }
    }

    /// For frontends that republish on every InitWait they see
    /// (snd-xen-front): never write InitWait while it is already offered.
    pub fn frontend_restarts_on_initwait(mut self) -> Lifecycle {
        self.restarts_on_initwait = true;
        self
    }

    /// Our current state as last written.
    pub fn state(&self) -> XenbusState {
        self.state
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The device appeared (or the gateway started and found it): announce
    /// we are ready for the frontend's rings. `frontend` is its current state,
    /// which matters after a gateway restart.
    pub fn start(&mut self, frontend: XenbusState) -> Vec<Action> {
        let mut actions = vec![self.switch(XenbusState::InitWait)];
        // A kbdif frontend that is already Connected will not publish again:
        // connect to what it published before.
        if self.connect_when == ConnectWhen::InitialisedOrConnected
            && matches!(frontend, XenbusState::Initialised | XenbusState::Connected)
        {
            actions.extend(self.frontend_changed(frontend));
        }
        actions
    }

    /// The frontend's `state` node changed (or a watch fired on it).
    pub fn frontend_changed(&mut self, frontend: XenbusState) -> Vec<Action> {
        let mut actions = Vec::new();
        match frontend {
            XenbusState::Initialising => {
                // A new frontend instance (driver reload, guest reboot) or the
                // end of a Reconfiguring: offer InitWait (again).
                let on_offer = self.state == XenbusState::InitWait;
                self.release(&mut actions);
                if !(self.restarts_on_initwait && on_offer) {
                    actions.push(self.switch(XenbusState::InitWait));
                }
            }
            XenbusState::Initialised | XenbusState::Connected => {
                let ready = frontend == XenbusState::Initialised
                    || self.connect_when == ConnectWhen::InitialisedOrConnected;
                // xen-kbdfront goes Initialising → Initialised at probe
                // without waiting for us, so a new instance after we closed
                // may show only Initialised: offer InitWait again and
                // connect. Only from Closed (it acknowledged our close), so
                // a stale state read while we are closing never reconnects.
                if self.connect_when == ConnectWhen::InitialisedOrConnected
                    && frontend == XenbusState::Initialised
                    && self.state == XenbusState::Closed
                    && !self.connected
                    && !self.connecting
                {
                    actions.push(self.switch(XenbusState::InitWait));
                }
                if ready
                    && !self.connected
                    && !self.connecting
                    && self.state == XenbusState::InitWait
                {
                    self.connecting = true;
                    actions.push(Action::Connect);
                }
            }
            XenbusState::Reconfiguring | XenbusState::Reconfigured => {
                // The frontend is tearing down to re-publish: let go of its
                // pages so it can free them, and wait for Initialising.
                self.release(&mut actions);
            }
            XenbusState::InitWait => {}
            XenbusState::Closing => {
                self.release(&mut actions);
                if self.state != XenbusState::Closing && self.state != XenbusState::Closed {
                    actions.push(self.switch(XenbusState::Closing));
                }
            }
            XenbusState::Closed => {
                self.release(&mut actions);
                if self.state != XenbusState::Closed {
                    actions.push(self.switch(XenbusState::Closed));
                }
            }
            XenbusState::Unknown => {
                // The frontend node is gone: the toolstack removed the device.
                self.release(&mut actions);
                actions.push(Action::Remove);
            }
        }
        actions
    }

    /// The outcome of an [`Action::Connect`].
    pub fn connect_result(&mut self, ok: bool) -> Vec<Action> {
        if !self.connecting {
            return Vec::new();
        }
        self.connecting = false;
        if ok {
            self.connected = true;
            vec![self.switch(XenbusState::Connected)]
        } else {
            // Like xenbus_dev_fatal: the frontend published something we
            // cannot use. Closing tells it so; it may come back Initialising.
            vec![Action::Disconnect, self.switch(XenbusState::Closing)]
        }
    }

    /// A connect failed while the frontend's state changed under it:
    /// snd-xen-front tears down and re-publishes when it sees InitWait
    /// twice (xenstore may fire the watch twice), so the refs we read may be
    /// its previous instance's, already revoked. Not the frontend's fault:
    /// stay on offer and let its current state decide (feed it through
    /// [`Self::frontend_changed`]). Closing here left it waiting for our
    /// Closed while we waited for it: a reloaded sound device was dead
    /// (seen under real Xen, tests/xen-qemu).
    pub fn connect_failed_while_frontend_moved(&mut self) -> Vec<Action> {
        if !self.connecting {
            return Vec::new();
        }
        self.connecting = false;
        vec![Action::Disconnect]
    }

    /// The backend failed while connected (a bad ring, a flood): close the
    /// device, as Linux backends do on a fatal protocol error.
    pub fn fatal(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        self.release(&mut actions);
        if self.state != XenbusState::Closing && self.state != XenbusState::Closed {
            actions.push(self.switch(XenbusState::Closing));
        }
        actions
    }

    fn release(&mut self, actions: &mut Vec<Action>) {
        if self.connected || self.connecting {
            self.connected = false;
            self.connecting = false;
            actions.push(Action::Disconnect);
        }
    }

    fn switch(&mut self, to: XenbusState) -> Action {
        self.state = to;
        Action::SwitchState(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;

    #[test]
    fn a_connect_that_raced_a_republishing_sound_frontend_tries_again() {
        let mut lc = Lifecycle::new(ConnectWhen::Initialised).frontend_restarts_on_initwait();
        lc.start(XenbusState::Initialising);
        assert_eq!(lc.frontend_changed(Initialised), vec![Connect]);
        // Its rings changed while we mapped them: no Closing.
        assert_eq!(lc.connect_failed_while_frontend_moved(), vec![Disconnect]);
        assert_eq!(lc.state(), XenbusState::InitWait);
        // The watch's queued events all read the state as it is now.
        assert_eq!(lc.frontend_changed(Initialised), vec![Connect]);
        assert_eq!(
            lc.connect_result(true),
            vec![SwitchState(XenbusState::Connected)]
        );
        // Without a connect in flight it does nothing.
        assert_eq!(lc.connect_failed_while_frontend_moved(), vec![]);
    }
    use XenbusState::*;

    #[test]
    fn display_handshake_then_frontend_restart() {
        let mut lc = Lifecycle::new(ConnectWhen::Initialised);
        assert_eq!(lc.start(Initialising), vec![SwitchState(InitWait)]);
        assert_eq!(
            lc.frontend_changed(Initialising),
            vec![SwitchState(InitWait)]
        );
        assert_eq!(lc.frontend_changed(Initialised), vec![Connect]);
        // A duplicate watch event while connecting changes nothing.
        assert_eq!(lc.frontend_changed(Initialised), vec![]);
        assert_eq!(lc.connect_result(true), vec![SwitchState(Connected)]);
        assert_eq!(lc.frontend_changed(Connected), vec![]);
        // xen-drm-front unloading/reloading: Reconfiguring, then Initialising.
        assert_eq!(lc.frontend_changed(Reconfiguring), vec![Disconnect]);
        assert_eq!(
            lc.frontend_changed(Initialising),
            vec![SwitchState(InitWait)]
        );
        assert_eq!(lc.frontend_changed(Initialised), vec![Connect]);
        assert_eq!(lc.connect_result(true), vec![SwitchState(Connected)]);
    }

    #[test]
    fn close_and_come_back() {
        let mut lc = Lifecycle::new(ConnectWhen::Initialised);
        lc.start(Initialising);
        lc.frontend_changed(Initialised);
        lc.connect_result(true);
        assert_eq!(
            lc.frontend_changed(Closing),
            vec![Disconnect, SwitchState(Closing)]
        );
        assert_eq!(lc.frontend_changed(Closed), vec![SwitchState(Closed)]);
        assert_eq!(lc.frontend_changed(Closed), vec![]);
        assert_eq!(
            lc.frontend_changed(Initialising),
            vec![SwitchState(InitWait)]
        );
        assert_eq!(lc.frontend_changed(Initialised), vec![Connect]);
    }

    #[test]
    fn a_display_frontend_connected_to_a_previous_gateway_is_not_reused() {
        // After a gateway restart, xen-drm-front re-publishes when it sees
        // InitWait; its old ring refs may already be freed, so never map them.
        let mut lc = Lifecycle::new(ConnectWhen::Initialised);
        assert_eq!(lc.start(Connected), vec![SwitchState(InitWait)]);
        assert_eq!(lc.frontend_changed(Connected), vec![]);
        assert_eq!(
            lc.frontend_changed(Initialising),
            vec![SwitchState(InitWait)]
        );
        assert_eq!(lc.frontend_changed(Initialised), vec![Connect]);
    }

    #[test]
    fn a_sound_frontend_is_offered_initwait_once() {
        // snd-xen-front republishes on every InitWait it sees, passing
        // through Initialising: offering InitWait again then would loop.
        let mut lc = Lifecycle::new(ConnectWhen::Initialised).frontend_restarts_on_initwait();
        assert_eq!(lc.start(Initialising), vec![SwitchState(InitWait)]);
        assert_eq!(lc.frontend_changed(Initialising), vec![]);
        assert_eq!(lc.frontend_changed(Initialised), vec![Connect]);
        assert_eq!(lc.connect_result(true), vec![SwitchState(Connected)]);
        // Connected and starting over (driver reload): offer it again.
        assert_eq!(
            lc.frontend_changed(Initialising),
            vec![Disconnect, SwitchState(InitWait)]
        );
        assert_eq!(lc.frontend_changed(Initialising), vec![]);
        assert_eq!(lc.frontend_changed(Initialised), vec![Connect]);
        // After a gateway restart: it was Connected to the old one, sees our
        // InitWait, tears down and publishes: one offer is enough.
        let mut lc = Lifecycle::new(ConnectWhen::Initialised).frontend_restarts_on_initwait();
        assert_eq!(lc.start(Connected), vec![SwitchState(InitWait)]);
        assert_eq!(lc.frontend_changed(Initialising), vec![]);
        assert_eq!(lc.frontend_changed(Initialised), vec![Connect]);
        // A refused connect closes; coming back from Closed is offered anew.
        assert_eq!(
            lc.connect_result(false),
            vec![Disconnect, SwitchState(Closing)]
        );
        assert_eq!(
            lc.frontend_changed(Initialising),
            vec![SwitchState(InitWait)]
        );
    }

    #[test]
    fn a_keyboard_frontend_reprobing_after_a_close_is_served_again() {
        // Its Initialising may be overwritten before we read it.
        let mut lc = Lifecycle::new(ConnectWhen::InitialisedOrConnected);
        lc.start(Initialised);
        lc.connect_result(true);
        assert_eq!(
            lc.frontend_changed(Closing),
            vec![Disconnect, SwitchState(Closing)]
        );
        // Still closing: a stale Initialised does not reconnect.
        assert_eq!(lc.frontend_changed(Initialised), vec![]);
        assert_eq!(lc.frontend_changed(Closed), vec![SwitchState(Closed)]);
        assert_eq!(
            lc.frontend_changed(Initialised),
            vec![SwitchState(InitWait), Connect]
        );
        // Displays are not affected: they publish only after our InitWait.
        let mut lc = Lifecycle::new(ConnectWhen::Initialised);
        lc.start(Initialising);
        lc.frontend_changed(Closed);
        assert_eq!(lc.frontend_changed(Initialised), vec![]);
    }

    #[test]
    fn a_keyboard_frontend_connected_to_a_previous_gateway_is_reconnected() {
        let mut lc = Lifecycle::new(ConnectWhen::InitialisedOrConnected);
        assert_eq!(lc.start(Connected), vec![SwitchState(InitWait), Connect]);
        assert_eq!(lc.connect_result(true), vec![SwitchState(Connected)]);
    }

    #[test]
    fn a_failed_connect_closes_the_device_and_a_fatal_error_too() {
        let mut lc = Lifecycle::new(ConnectWhen::Initialised);
        lc.start(Initialising);
        lc.frontend_changed(Initialised);
        assert_eq!(
            lc.connect_result(false),
            vec![Disconnect, SwitchState(Closing)]
        );
        assert!(!lc.is_connected());
        // A stale connect result is ignored.
        assert_eq!(lc.connect_result(true), vec![]);
        lc.frontend_changed(Initialising);
        lc.frontend_changed(Initialised);
        lc.connect_result(true);
        assert_eq!(lc.fatal(), vec![Disconnect, SwitchState(Closing)]);
        assert_eq!(lc.fatal(), vec![]);
    }

    #[test]
    fn a_vanished_frontend_removes_the_device() {
        let mut lc = Lifecycle::new(ConnectWhen::Initialised);
        lc.start(Initialising);
        lc.frontend_changed(Initialised);
        lc.connect_result(true);
        assert_eq!(lc.frontend_changed(Unknown), vec![Disconnect, Remove]);
    }

    #[test]
    fn no_sequence_of_frontend_states_connects_twice() {
        // Exhaustive over every sequence of four frontend states, for both
        // kinds: a Connect is never issued while the device is live, and
        // every Connect that succeeds ends in our Connected state.
        for kind in [
            ConnectWhen::Initialised,
            ConnectWhen::InitialisedOrConnected,
        ] {
            for seq in 0..XenbusState::ALL.len().pow(4) * 2 {
                let mut lc = Lifecycle::new(kind);
                if seq % 2 == 1 {
                    lc = lc.frontend_restarts_on_initwait();
                }
                let seq = seq / 2;
                let mut live = false;
                let mut rest = seq;
                for i in 0..4 {
                    let s = XenbusState::ALL[rest % XenbusState::ALL.len()];
                    rest /= XenbusState::ALL.len();
                    let mut pending = if i == 0 {
                        lc.start(s)
                    } else {
                        lc.frontend_changed(s)
                    };
                    while let Some(act) = (!pending.is_empty()).then(|| pending.remove(0)) {
                        match act {
                            Connect => {
                                assert!(!live, "connect while live: {kind:?} seq {seq}");
                                live = true;
                                pending.extend(lc.connect_result(true));
                                assert_eq!(lc.state(), Connected);
                            }
                            Disconnect => live = false,
                            _ => {}
                        }
                    }
                    assert_eq!(live, lc.is_connected());
                }
            }
        }
    }
}
