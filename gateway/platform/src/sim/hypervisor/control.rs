//! The event channel control protocol: parsing and formatting only (no I/O).
//!
//! One request line per connection, one reply line; the connection then stays
//! open for as long as the port lives (see the module docs of [`super`]).

use crate::{DomId, Port};

/// The longest request or reply line we accept, newline included.
pub const MAX_LINE: usize = 256;
/// The longest notification socket name.
pub const MAX_SOCKET_NAME: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `ALLOC <remote-domid> <socket-name>`: a new unbound port that `remote` may bind.
    Alloc { remote: DomId, socket: String },
    /// `BIND <remote-domid> <remote-port> <socket-name>`: bind to a port of `remote`.
    Bind {
        remote: DomId,
        remote_port: Port,
        socket: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `OK <local-port>`
    Ok(Port),
    /// `ERR <reason>`
    Err(String),
}

/// A socket name is a plain file name in the domain's `ports/` directory.
pub fn valid_socket_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SOCKET_NAME
        && !name.starts_with('.')
        && name.ends_with(".sock")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}

fn number<T: std::str::FromStr>(word: Option<&str>, what: &str) -> Result<T, String> {
    let word = word.ok_or_else(|| format!("missing {what}"))?;
    // Decimal digits only: no signs, no spaces, no hex.
    if word.is_empty() || !word.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad {what} {word:?}"));
    }
    word.parse()
        .map_err(|_| format!("{what} {word:?} out of range"))
}

fn socket(word: Option<&str>) -> Result<String, String> {
    let name = word.ok_or("missing socket name")?;
    if !valid_socket_name(name) {
        return Err(format!(
            "bad socket name {name:?} (want 1..={MAX_SOCKET_NAME} of [A-Za-z0-9._-], ending .sock, not starting with .)"
        ));
    }
    Ok(name.to_string())
}

impl Request {
    /// Parse one line (without its newline).
    pub fn parse(line: &str) -> Result<Request, String> {
        let mut words = line.split(' ');
        let verb = words.next().unwrap_or("");
        let request = match verb {
            "ALLOC" => Request::Alloc {
                remote: number(words.next(), "remote domid")?,
                socket: socket(words.next())?,
            },
            "BIND" => Request::Bind {
                remote: number(words.next(), "remote domid")?,
                remote_port: number(words.next(), "remote port")?,
                socket: socket(words.next())?,
            },
            _ => return Err(format!("unknown request {verb:?}")),
        };
        if words.next().is_some() {
            return Err("trailing words in request".into());
        }
        Ok(request)
    }

    /// The line, newline included.
    pub fn to_line(&self) -> String {
        match self {
            Request::Alloc { remote, socket } => format!("ALLOC {remote} {socket}\n"),
            Request::Bind {
                remote,
                remote_port,
                socket,
            } => format!("BIND {remote} {remote_port} {socket}\n"),
        }
    }
}

impl Reply {
    pub fn parse(line: &str) -> Result<Reply, String> {
        if let Some(port) = line.strip_prefix("OK ") {
            return number(Some(port), "port").map(Reply::Ok);
        }
        if let Some(reason) = line.strip_prefix("ERR ") {
            return Ok(Reply::Err(reason.to_string()));
        }
        Err(format!("bad reply {line:?}"))
    }

    /// The line, newline included. Newlines in a reason become spaces.
    pub fn to_line(&self) -> String {
        match self {
            Reply::Ok(port) => format!("OK {port}\n"),
            Reply::Err(reason) => format!("ERR {}\n", reason.replace(['\n', '\r'], " ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for r in [
            Request::Alloc {
                remote: 0,
                socket: "a-1.sock".into(),
            },
            Request::Bind {
                remote: 65535,
                remote_port: 4095,
                socket: "p12_3.sock".into(),
            },
        ] {
            let line = r.to_line();
            assert_eq!(Request::parse(line.trim_end_matches('\n')), Ok(r));
        }
        assert_eq!(Reply::parse("OK 7"), Ok(Reply::Ok(7)));
        assert_eq!(
            Reply::parse("ERR no such port"),
            Ok(Reply::Err("no such port".into()))
        );
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            "",
            "ALLOC",
            "ALLOC 1",
            "ALLOC -1 a.sock",
            "ALLOC 65536 a.sock",
            "ALLOC 1 ../x.sock",
            "ALLOC 1 .hidden.sock",
            "ALLOC 1 a.peer",
            "ALLOC 1 a.sock extra",
            "BIND 1 x a.sock",
            "BIND 1 +2 a.sock",
            "ALLOC  1 a.sock",
            "NOTIFY 1",
        ] {
            assert!(Request::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Reply::parse("OK x").is_err());
        assert!(Reply::parse("HELLO").is_err());
    }
}
