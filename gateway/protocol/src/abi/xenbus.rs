#![allow(non_upper_case_globals)]
//! `xenbus.h`: the `enum xenbus_state` values.

use super::LayoutValue;

pub const XenbusStateUnknown: u32 = 0;
pub const XenbusStateInitialising: u32 = 1;
pub const XenbusStateInitWait: u32 = 2;
pub const XenbusStateInitialised: u32 = 3;
pub const XenbusStateConnected: u32 = 4;
pub const XenbusStateClosing: u32 = 5;
pub const XenbusStateClosed: u32 = 6;
pub const XenbusStateReconfiguring: u32 = 7;
pub const XenbusStateReconfigured: u32 = 8;

macro_rules! enumerators {
    ($out:expr, $( $name:ident ),* $(,)?) => {
        $( $out.push((concat!("enum ", stringify!($name)).to_string(), LayoutValue::from($name))); )*
    };
}

pub(crate) fn push_entries(out: &mut Vec<(String, LayoutValue)>) {
    enumerators!(
        out,
        XenbusStateUnknown,
        XenbusStateInitialising,
        XenbusStateInitWait,
        XenbusStateInitialised,
        XenbusStateConnected,
        XenbusStateClosing,
        XenbusStateClosed,
        XenbusStateReconfiguring,
        XenbusStateReconfigured,
    );
}
