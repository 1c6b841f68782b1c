//! Which client message is allowed when (PROTOCOL.md "Order"): `hello`
//! first and once, then `answer` once and only to an offer, `ice` only on
//! WebRTC, media messages only after `welcome`. Sans-IO: the session asks
//! before acting on a message, and shows the refusal to the user.

use super::protocol::{ClientMessage, Transport};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Upgraded; waiting for `hello`.
    AwaitingHello,
    /// `welcome` sent. On WebRTC the offer went out with it and `answered`
    /// says whether the client replied.
    Streaming {
        transport: Transport,
        answered: bool,
    },
    /// A fatal error was sent; nothing more is handled.
    Closed,
}

/// What to do with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Handle,
    /// Tell the user (`error` with this message); `fatal`: close after it.
    Refuse {
        message: String,
        fatal: bool,
    },
    /// Drop silently (after close).
    Ignore,
}

fn refuse(message: &str, fatal: bool) -> Verdict {
    Verdict::Refuse {
        message: message.into(),
        fatal,
    }
}

#[derive(Debug, Clone)]
pub struct Signalling {
    state: State,
}

impl Default for Signalling {
    fn default() -> Self {
        Signalling {
            state: State::AwaitingHello,
        }
    }
}

impl Signalling {
    #[cfg(test)]
    pub fn state(&self) -> State {
        self.state
    }

    /// May `msg` be handled now? Advances the state for `answer`.
    pub fn check(&mut self, msg: &ClientMessage) -> Verdict {
        use ClientMessage::*;
        match (self.state, msg) {
            (State::Closed, _) => Verdict::Ignore,
            (_, Ping { .. }) => Verdict::Handle,
            (State::AwaitingHello, Hello(_)) => Verdict::Handle,
            (State::AwaitingHello, _) => refuse(
                "the first message must be hello (see PROTOCOL.md); reload the page",
                true,
            ),
            (State::Streaming { .. }, Hello(_)) => refuse(
                "hello was already received; open a new session to change transport or display",
                false,
            ),
            (
                State::Streaming {
                    transport: Transport::Webrtc,
                    answered,
                },
                Answer { .. },
            ) => {
                if answered {
                    refuse(
                        "the offer was already answered (renegotiation is not supported)",
                        false,
                    )
                } else {
                    self.state = State::Streaming {
                        transport: Transport::Webrtc,
                        answered: true,
                    };
                    Verdict::Handle
                }
            }
            (
                State::Streaming {
                    transport: Transport::Websocket,
                    ..
                },
                Answer { .. } | Ice(_),
            ) => refuse(
                "this session uses the websocket transport: no WebRTC offer was made",
                false,
            ),
            (State::Streaming { .. }, _) => Verdict::Handle,
        }
    }

    /// `welcome` was sent with `transport`.
    pub fn welcomed(&mut self, transport: Transport) {
        if self.state == State::AwaitingHello {
            self.state = State::Streaming {
                transport,
                answered: false,
            };
        }
    }

    pub fn close(&mut self) {
        self.state = State::Closed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::protocol::{parse_client, IceCandidate};

    fn msg(text: &str) -> ClientMessage {
        parse_client(text).unwrap()
    }

    #[test]
    fn hello_first_then_welcome() {
        let mut s = Signalling::default();
        assert_eq!(s.check(&msg(r#"{"type":"ping","t":1}"#)), Verdict::Handle);
        assert!(matches!(
            s.check(&msg(r#"{"type":"key","code":30,"down":true}"#)),
            Verdict::Refuse { fatal: true, .. }
        ));
        assert_eq!(s.check(&msg(r#"{"type":"hello"}"#)), Verdict::Handle);
        s.welcomed(Transport::Webrtc);
        assert!(matches!(
            s.check(&msg(r#"{"type":"hello"}"#)),
            Verdict::Refuse { fatal: false, .. }
        ));
        assert_eq!(
            s.check(&msg(r#"{"type":"key","code":30,"down":true}"#)),
            Verdict::Handle
        );
    }

    #[test]
    fn one_answer_per_offer_and_only_on_webrtc() {
        let mut s = Signalling::default();
        s.welcomed(Transport::Webrtc);
        let ice = ClientMessage::Ice(IceCandidate {
            candidate: None,
            sdp_mid: None,
            sdp_mline_index: None,
        });
        assert_eq!(s.check(&ice), Verdict::Handle);
        assert_eq!(
            s.check(&msg(r#"{"type":"answer","sdp":"v=0"}"#)),
            Verdict::Handle
        );
        assert_eq!(
            s.state(),
            State::Streaming {
                transport: Transport::Webrtc,
                answered: true
            }
        );
        assert!(matches!(
            s.check(&msg(r#"{"type":"answer","sdp":"v=0"}"#)),
            Verdict::Refuse { fatal: false, .. }
        ));

        let mut w = Signalling::default();
        w.welcomed(Transport::Websocket);
        assert!(matches!(
            w.check(&msg(r#"{"type":"answer","sdp":"v=0"}"#)),
            Verdict::Refuse { .. }
        ));
        assert!(matches!(w.check(&ice), Verdict::Refuse { .. }));
        assert_eq!(w.check(&msg(r#"{"type":"keyframe"}"#)), Verdict::Handle);
        w.close();
        assert_eq!(w.check(&msg(r#"{"type":"ping"}"#)), Verdict::Ignore);
    }
}
