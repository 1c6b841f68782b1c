//! XenBus device states (`enum xenbus_state`) as written in the `state` node.

use crate::abi::xenbus::*;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum XenbusState {
    Unknown = XenbusStateUnknown,
    Initialising = XenbusStateInitialising,
    InitWait = XenbusStateInitWait,
    Initialised = XenbusStateInitialised,
    Connected = XenbusStateConnected,
    Closing = XenbusStateClosing,
    Closed = XenbusStateClosed,
    Reconfiguring = XenbusStateReconfiguring,
    Reconfigured = XenbusStateReconfigured,
}

/// A `state` node that does not hold a XenBus state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a XenBus state (expected a decimal number 0..=8)")]
pub struct BadXenbusState {
    pub value: String,
}

impl XenbusState {
    pub const ALL: [XenbusState; 9] = [
        XenbusState::Unknown,
        XenbusState::Initialising,
        XenbusState::InitWait,
        XenbusState::Initialised,
        XenbusState::Connected,
        XenbusState::Closing,
        XenbusState::Closed,
        XenbusState::Reconfiguring,
        XenbusState::Reconfigured,
    ];

    pub fn from_u32(v: u32) -> Option<XenbusState> {
        XenbusState::ALL.into_iter().find(|s| *s as u32 == v)
    }

    /// Strict parse of a `state` node value: a decimal number, surrounding
    /// whitespace allowed.
    pub fn parse(value: &str) -> Result<XenbusState, BadXenbusState> {
        value
            .trim()
            .parse::<u32>()
            .ok()
            .and_then(XenbusState::from_u32)
            .ok_or_else(|| BadXenbusState {
                value: value.to_owned(),
            })
    }

    /// What Linux's `xenbus_read_driver_state` makes of a node: anything
    /// unreadable (or absent) is `Unknown`. Lenient on purpose, for the
    /// guest simulator mirroring Linux.
    pub fn parse_like_linux(value: Option<&str>) -> XenbusState {
        value
            .and_then(crate::keys::scan_int_like_linux)
            .and_then(|v| u32::try_from(v).ok())
            .and_then(XenbusState::from_u32)
            .unwrap_or(XenbusState::Unknown)
    }

    /// The node value: the decimal number.
    pub fn to_node_value(self) -> String {
        (self as u32).to_string()
    }

    pub const fn name(self) -> &'static str {
        match self {
            XenbusState::Unknown => "Unknown",
            XenbusState::Initialising => "Initialising",
            XenbusState::InitWait => "InitWait",
            XenbusState::Initialised => "Initialised",
            XenbusState::Connected => "Connected",
            XenbusState::Closing => "Closing",
            XenbusState::Closed => "Closed",
            XenbusState::Reconfiguring => "Reconfiguring",
            XenbusState::Reconfigured => "Reconfigured",
        }
    }
}

impl fmt::Display for XenbusState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), *self as u32)
    }
}

impl std::str::FromStr for XenbusState {
    type Err = BadXenbusState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        XenbusState::parse(s)
    }
}
