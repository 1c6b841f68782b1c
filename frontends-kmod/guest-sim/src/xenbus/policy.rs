//! What each Linux frontend driver does when the backend's state changes
//! (its `otherend_changed` callback), as sans-IO state machines: input the
//! backend's new state, output the actions to carry out in order.
//!
//! The three drivers differ, and the differences matter for recovery:
//! - xen-drm-front (`displback_changed`) disconnects through Reconfiguring
//!   and back to Initialising when the backend reappears (InitWait,
//!   Initialising, Closed), then publishes again on InitWait.
//! - snd-xen-front (`sndback_changed`) tears down and goes to Initialising on
//!   backend Initialising/InitWait/Closed, and on InitWait publishes again at
//!   once.
//! - xen-kbdfront publishes at probe time, before the backend is ready; it
//!   answers InitWait and Connected with Connected and Closing/Closed with
//!   Closed (`xenbus_frontend_closed`). Its page and event channel stay as
//!   they are, so a backend that comes back to InitWait finds them again.

use super::XenbusState;
use XenbusState::*;

/// One step the device's I/O shell carries out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Free rings, event channels and buffers (the drivers' `*_fini`).
    Teardown,
    /// Read the configuration, allocate and grant rings, allocate event
    /// channels, and publish them all in one transaction.
    Publish,
    /// Start using the rings (the backend has mapped them).
    Connect,
    /// Write our `state` node.
    SwitchState(XenbusState),
}

/// Which Linux driver's rules to follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// xen-drm-front; `be_alloc` decides when it goes back to Initialising
    /// (at once, or when the DRM device is released — for the simulator the
    /// release is immediate, so both end the same way).
    Display { be_alloc: bool },
    /// snd-xen-front.
    Sound,
    /// xen-kbdfront.
    Input,
}

/// A frontend's xenbus state machine.
#[derive(Clone, Debug)]
pub struct FrontendPolicy {
    driver: Driver,
    ours: XenbusState,
    /// Resources are allocated (rings published). For display this is the
    /// drivers' "drm_info exists" test, which is set at Connect.
    connected: bool,
}

impl FrontendPolicy {
    /// The state after probe: every driver switches to Initialising.
    pub fn new(driver: Driver) -> FrontendPolicy {
        FrontendPolicy {
            driver,
            ours: Initialising,
            connected: false,
        }
    }

    pub fn state(&self) -> XenbusState {
        self.ours
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// What probe does before any backend state is seen.
    pub fn probe(&mut self) -> Vec<Action> {
        let mut out = vec![Action::SwitchState(Initialising)];
        self.ours = Initialising;
        if self.driver == Driver::Input {
            // xenkbd_probe → xenkbd_connect_backend: publish and go
            // Initialised without waiting for the backend.
            out.push(Action::Publish);
            out.push(self.switch(Initialised));
        }
        out
    }

    fn switch(&mut self, state: XenbusState) -> Action {
        self.ours = state;
        Action::SwitchState(state)
    }

    /// The backend's `state` node now reads `backend`.
    pub fn on_backend_state(&mut self, backend: XenbusState) -> Vec<Action> {
        let mut out = Vec::new();
        match self.driver {
            Driver::Display { .. } => self.display(backend, &mut out),
            Driver::Sound => self.sound(backend, &mut out),
            Driver::Input => self.input(backend, &mut out),
        }
        out
    }

    fn display_disconnect(&mut self, out: &mut Vec<Action>) {
        if !self.connected {
            return;
        }
        out.push(self.switch(Reconfiguring));
        out.push(Action::Teardown);
        self.connected = false;
        out.push(self.switch(Initialising));
    }

    fn display(&mut self, backend: XenbusState, out: &mut Vec<Action>) {
        match backend {
            Reconfiguring | Reconfigured | Initialised => {}
            Initialising => {
                if self.ours != Reconfiguring {
                    self.display_disconnect(out);
                }
            }
            InitWait => {
                if self.ours == Reconfiguring {
                    return;
                }
                self.display_disconnect(out);
                if self.ours != Initialising {
                    return;
                }
                out.push(Action::Publish);
                out.push(self.switch(Initialised));
            }
            Connected => {
                if self.ours != Initialised {
                    return;
                }
                out.push(Action::Connect);
                self.connected = true;
                out.push(self.switch(Connected));
            }
            Closing => {}
            Unknown | Closed => {
                if self.ours != Closed {
                    self.display_disconnect(out);
                }
            }
        }
    }

    fn sound_disconnect(&mut self, out: &mut Vec<Action>) {
        out.push(Action::Teardown);
        self.connected = false;
        out.push(self.switch(Initialising));
    }

    fn sound(&mut self, backend: XenbusState, out: &mut Vec<Action>) {
        match backend {
            Reconfiguring | Reconfigured | Initialised => {}
            Initialising => self.sound_disconnect(out),
            InitWait => {
                self.sound_disconnect(out);
                out.push(Action::Publish);
                out.push(self.switch(Initialised));
            }
            Connected => {
                if self.ours != Initialised {
                    return;
                }
                out.push(Action::Connect);
                self.connected = true;
                out.push(self.switch(Connected));
            }
            Closing => {}
            Unknown | Closed => {
                if self.ours != Closed {
                    self.sound_disconnect(out);
                }
            }
        }
    }

    fn input(&mut self, backend: XenbusState, out: &mut Vec<Action>) {
        match backend {
            Initialising | Initialised | Reconfiguring | Reconfigured | Unknown => {}
            InitWait => {
                out.push(Action::Connect);
                self.connected = true;
                out.push(self.switch(Connected));
            }
            Connected => {
                if self.ours != Connected {
                    out.push(Action::Connect);
                    self.connected = true;
                    out.push(self.switch(Connected));
                }
            }
            Closed if self.ours == Closed => {}
            Closed | Closing => {
                self.connected = false;
                out.push(self.switch(Closed));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Action::*;
    use super::*;

    #[test]
    fn display_first_handshake_and_backend_restart() {
        let mut p = FrontendPolicy::new(Driver::Display { be_alloc: false });
        assert_eq!(p.probe(), vec![SwitchState(Initialising)]);
        assert_eq!(p.on_backend_state(Initialising), vec![]);
        assert_eq!(
            p.on_backend_state(InitWait),
            vec![Publish, SwitchState(Initialised)]
        );
        assert_eq!(
            p.on_backend_state(Connected),
            vec![Connect, SwitchState(Connected)]
        );
        // Backend restarts: it comes back in InitWait.
        assert_eq!(
            p.on_backend_state(InitWait),
            vec![
                SwitchState(Reconfiguring),
                Teardown,
                SwitchState(Initialising),
                Publish,
                SwitchState(Initialised)
            ]
        );
        assert_eq!(
            p.on_backend_state(Connected),
            vec![Connect, SwitchState(Connected)]
        );
        // Backend closes: tear down and wait in Initialising.
        assert_eq!(p.on_backend_state(Closing), vec![]);
        assert_eq!(
            p.on_backend_state(Closed),
            vec![
                SwitchState(Reconfiguring),
                Teardown,
                SwitchState(Initialising)
            ]
        );
        assert_eq!(
            p.on_backend_state(InitWait),
            vec![Publish, SwitchState(Initialised)]
        );
    }

    #[test]
    fn display_ignores_connected_unless_initialised() {
        let mut p = FrontendPolicy::new(Driver::Display { be_alloc: true });
        p.probe();
        assert_eq!(p.on_backend_state(Connected), vec![]);
        // A repeated InitWait while Initialised (never connected) changes nothing.
        p.on_backend_state(InitWait);
        assert_eq!(p.on_backend_state(InitWait), vec![]);
    }

    #[test]
    fn sound_republishes_on_every_initwait() {
        let mut p = FrontendPolicy::new(Driver::Sound);
        p.probe();
        assert_eq!(
            p.on_backend_state(InitWait),
            vec![
                Teardown,
                SwitchState(Initialising),
                Publish,
                SwitchState(Initialised)
            ]
        );
        assert_eq!(
            p.on_backend_state(Connected),
            vec![Connect, SwitchState(Connected)]
        );
        assert_eq!(
            p.on_backend_state(Closed),
            vec![Teardown, SwitchState(Initialising)]
        );
        assert_eq!(p.on_backend_state(Connected), vec![]);
    }

    #[test]
    fn input_publishes_at_probe_and_closes_with_backend() {
        let mut p = FrontendPolicy::new(Driver::Input);
        assert_eq!(
            p.probe(),
            vec![SwitchState(Initialising), Publish, SwitchState(Initialised)]
        );
        assert_eq!(
            p.on_backend_state(InitWait),
            vec![Connect, SwitchState(Connected)]
        );
        assert_eq!(p.on_backend_state(Connected), vec![]);
        assert_eq!(p.on_backend_state(Closing), vec![SwitchState(Closed)]);
        assert_eq!(p.on_backend_state(Closed), vec![]);
        // The backend comes back: same page and channel, Connected again.
        assert_eq!(
            p.on_backend_state(InitWait),
            vec![Connect, SwitchState(Connected)]
        );
    }
}
