//! Node names: canonical form, validity and ancestry, as xenstored defines them.

use crate::xs_client::wire::{Errno, ABS_PATH_MAX, REL_PATH_MAX};
use crate::DomId;

/// The special watch paths xenstored fires on domain introduction and release.
pub const INTRODUCE_DOMAIN: &str = "@introduceDomain";
pub const RELEASE_DOMAIN: &str = "@releaseDomain";

/// `/local/domain/<domid>`: where relative paths of that domain start.
pub fn domain_path(domid: DomId) -> String {
    format!("/local/domain/{domid}")
}

/// A request's path after canonicalisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Name {
    /// An absolute node path. `relative_to` is the domain path that was
    /// prepended when the client gave a relative path (watch events for
    /// relative watches are reported relative again).
    Node {
        path: String,
        relative_to: Option<String>,
    },
    /// `@introduceDomain` or `@releaseDomain`.
    Special(&'static str),
}

/// Canonicalise `input` as sent by a connection of domain `domid`.
/// Special names are accepted only where `allow_special` (WATCH, UNWATCH,
/// GET_PERMS, SET_PERMS), as in xenstored.
pub fn canonicalize(domid: DomId, input: &str, allow_special: bool) -> Result<Name, Errno> {
    if input.starts_with('@') {
        return match input {
            INTRODUCE_DOMAIN if allow_special => Ok(Name::Special(INTRODUCE_DOMAIN)),
            RELEASE_DOMAIN if allow_special => Ok(Name::Special(RELEASE_DOMAIN)),
            _ => Err(Errno::EINVAL),
        };
    }
    let (path, relative_to) = if input.starts_with('/') {
        if input.len() > ABS_PATH_MAX {
            return Err(Errno::EINVAL);
        }
        (input.to_string(), None)
    } else {
        if input.len() > REL_PATH_MAX {
            return Err(Errno::EINVAL);
        }
        let base = domain_path(domid);
        (format!("{base}/{input}"), Some(base))
    };
    if !is_valid_path(&path) {
        return Err(Errno::EINVAL);
    }
    Ok(Name::Node { path, relative_to })
}

/// xenstored's node-name rule: absolute, no trailing or double slash, only
/// `[A-Za-z0-9_@/-]`, at most `XENSTORE_ABS_PATH_MAX` bytes.
pub fn is_valid_path(path: &str) -> bool {
    path.starts_with('/')
        && path.len() <= ABS_PATH_MAX
        && (path == "/" || !path.ends_with('/'))
        && !path.contains("//")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_' | b'@'))
}

/// The parent of an absolute path; `None` for the root.
pub fn parent_of(path: &str) -> Option<&str> {
    if path == "/" || !path.starts_with('/') {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => path.get(..i),
        None => None,
    }
}

/// The last component of an absolute path.
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `parent/child`, without doubling the root's slash.
pub fn join(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// Whether `path` is `ancestor` or lies below it (the watch-matching rule).
pub fn is_at_or_below(path: &str, ancestor: &str) -> bool {
    if ancestor == "/" {
        return true;
    }
    match path.strip_prefix(ancestor) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_start_at_the_domain_path() {
        assert_eq!(
            canonicalize(5, "device/vkbd/0", false),
            Ok(Name::Node {
                path: "/local/domain/5/device/vkbd/0".into(),
                relative_to: Some("/local/domain/5".into())
            })
        );
    }

    #[test]
    fn invalid_names_are_refused() {
        for bad in ["/a/", "/a//b", "/a b", "/a.b", "", "@other", "/é"] {
            assert_eq!(canonicalize(0, bad, true), Err(Errno::EINVAL), "{bad:?}");
        }
        assert_eq!(canonicalize(0, "@releaseDomain", false), Err(Errno::EINVAL));
        assert_eq!(
            canonicalize(0, "@releaseDomain", true),
            Ok(Name::Special(RELEASE_DOMAIN))
        );
        assert!(canonicalize(0, "/", false).is_ok());
    }

    #[test]
    fn path_length_limits_follow_xs_wire() {
        let abs = format!("/{}", "a".repeat(ABS_PATH_MAX - 1));
        assert!(canonicalize(0, &abs, false).is_ok());
        assert_eq!(
            canonicalize(0, &format!("{abs}b"), false),
            Err(Errno::EINVAL)
        );
        let rel = "a".repeat(REL_PATH_MAX);
        assert!(canonicalize(7, &rel, false).is_ok());
        assert_eq!(
            canonicalize(7, &format!("{rel}b"), false),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn ancestry() {
        assert_eq!(parent_of("/a/b"), Some("/a"));
        assert_eq!(parent_of("/a"), Some("/"));
        assert_eq!(parent_of("/"), None);
        assert!(is_at_or_below("/a/b", "/a"));
        assert!(is_at_or_below("/a", "/a"));
        assert!(!is_at_or_below("/ab", "/a"));
        assert!(is_at_or_below("/x", "/"));
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(basename("/a/bc"), "bc");
    }
}
