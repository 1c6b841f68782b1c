//! Lines in the gateway's log (`host.log`), tagged there with the tenant and
//! plugin. The gateway rate-limits them, so logging in every call is safe but
//! lines may be dropped.
//!
//! Functions take a `&str`; the macros [`error!`](crate::error),
//! [`warn!`](crate::warn), [`info!`](crate::info) and [`debug!`](crate::debug)
//! take `format!` arguments.

use crate::bindings::pvgate::policy::host;
pub use crate::types::Level;

/// Logs `message` at `level`.
pub fn log(level: Level, message: &str) {
    host::log(level, message);
}

pub fn error(message: &str) {
    log(Level::Error, message);
}

pub fn warn(message: &str) {
    log(Level::Warn, message);
}

pub fn info(message: &str) {
    log(Level::Info, message);
}

pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// `error!("...", args)`: a formatted line at level error.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => {
        $crate::log::error(&$crate::__private::format!($($arg)*))
    };
}

/// `warn!("...", args)`: a formatted line at level warn.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => {
        $crate::log::warn(&$crate::__private::format!($($arg)*))
    };
}

/// `info!("...", args)`: a formatted line at level info.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => {
        $crate::log::info(&$crate::__private::format!($($arg)*))
    };
}

/// `debug!("...", args)`: a formatted line at level debug.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => {
        $crate::log::debug(&$crate::__private::format!($($arg)*))
    };
}
