//! The tenant's plugin configuration: the `[tenants.<name>.policy.config]`
//! table of the gateway's config, read through `host.config-get`. Values are
//! strings; [`FromConfig`] parses the common shapes.
//!
//! ```ignore
//! let offset: i32 = config::parsed_or("utc-offset-minutes", 0);
//! let hours: Option<TimeRange> = config::parsed("hours").ok().flatten();
//! ```

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::bindings::pvgate::policy::host;

/// The raw value of `key`, or `None` when the config does not set it.
pub fn get(key: &str) -> Option<String> {
    host::config_get(key)
}

/// A value that is set but does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub key: String,
    pub value: String,
    /// What was expected, e.g. "u32" or "HH:MM-HH:MM".
    pub expected: &'static str,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "config key `{}`: `{}` is not a valid {}",
            self.key, self.value, self.expected
        )
    }
}

/// `key` parsed as `T`: `Ok(None)` when unset, `Err` (also logged as a
/// warning) when set but malformed — so a plugin can fail closed on a typo.
pub fn parsed<T: FromConfig>(key: &str) -> Result<Option<T>, Invalid> {
    let Some(value) = get(key) else {
        return Ok(None);
    };
    match T::from_config(&value) {
        Some(v) => Ok(Some(v)),
        None => {
            let err = Invalid {
                key: key.to_string(),
                value,
                expected: T::EXPECTED,
            };
            crate::warn!("{err}");
            Err(err)
        }
    }
}

/// `key` parsed as `T`, or `default` when unset or malformed (a malformed
/// value is logged as a warning).
pub fn parsed_or<T: FromConfig>(key: &str, default: T) -> T {
    parsed(key).ok().flatten().unwrap_or(default)
}

/// A type a config string parses into. Surrounding whitespace is ignored.
pub trait FromConfig: Sized {
    /// What a valid value looks like, for messages.
    const EXPECTED: &'static str;
    fn from_config(value: &str) -> Option<Self>;
}

macro_rules! from_str_config {
    ($($t:ty),*) => {$(
        impl FromConfig for $t {
            const EXPECTED: &'static str = stringify!($t);
            fn from_config(value: &str) -> Option<Self> {
                value.trim().parse().ok()
            }
        }
    )*};
}
from_str_config!(u32, u64, i32, i64);

impl FromConfig for bool {
    const EXPECTED: &'static str = "boolean (true/false, yes/no, on/off, 1/0)";
    fn from_config(value: &str) -> Option<bool> {
        let v = value.trim();
        if ["true", "yes", "on", "1"]
            .iter()
            .any(|t| v.eq_ignore_ascii_case(t))
        {
            Some(true)
        } else if ["false", "no", "off", "0"]
            .iter()
            .any(|f| v.eq_ignore_ascii_case(f))
        {
            Some(false)
        } else {
            None
        }
    }
}

impl FromConfig for String {
    const EXPECTED: &'static str = "string";
    fn from_config(value: &str) -> Option<String> {
        Some(value.trim().to_string())
    }
}

/// A comma-separated list; items are trimmed and empty items skipped, so
/// `"a, b,"` is `["a", "b"]` and `""` is `[]`.
impl FromConfig for Vec<String> {
    const EXPECTED: &'static str = "comma-separated list";
    fn from_config(value: &str) -> Option<Vec<String>> {
        Some(
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(ToString::to_string)
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn numbers_and_bools() {
        assert_eq!(u32::from_config(" 42 "), Some(42));
        assert_eq!(u32::from_config("-1"), None);
        assert_eq!(i32::from_config("-60"), Some(-60));
        assert_eq!(bool::from_config("Yes"), Some(true));
        assert_eq!(bool::from_config("off"), Some(false));
        assert_eq!(bool::from_config("maybe"), None);
    }

    #[test]
    fn lists_skip_empty_items() {
        assert_eq!(
            Vec::<String>::from_config(" a, b,,c , "),
            Some(vec!["a".to_string(), "b".to_string(), "c".to_string()])
        );
        assert_eq!(Vec::<String>::from_config(""), Some(Vec::new()));
    }
}
