//! Where a daemon listens: the addresses given to the builder, as the handle checks them and the
//! listening sockets part binds them.

use std::path::PathBuf;

/// An address given to [`listen`](crate::DaemonBuilder::listen): `host:port` (or
/// `tcp:host:port`) for a TCP listener, `udp:host:port` for a UDP socket, an absolute path (or
/// `unix:PATH`) for a Unix stream socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Address {
    Tcp(String),
    Udp(String),
    Unix(PathBuf),
}

/// One `listen` call: an address, and the name that a service manager's socket for it has
/// (systemd's `FileDescriptorName=`), when one was given as `NAME=ADDRESS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listen {
    pub(crate) name: Option<String>,
    pub(crate) address: Address,
}

impl Listen {
    /// Parse what the builder was given: `[NAME=]ADDRESS`.
    pub(crate) fn parse(given: &str) -> Result<Listen, String> {
        let (name, address) = match given.split_once('=') {
            Some((name, address)) if is_name(name) => (Some(name.to_string()), address),
            _ => (None, given),
        };
        Ok(Listen {
            name,
            address: Address::parse(address)?,
        })
    }
}

/// Whether `name` may name a socket: what `FileDescriptorName=` accepts, less what would read
/// as the start of an address (a path begins with `/` or `.`).
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with(['/', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
}

impl Address {
    /// Parse an address without a name.
    pub(crate) fn parse(given: &str) -> Result<Address, String> {
        if let Some(path) = given.strip_prefix("unix:") {
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        if given.starts_with('/') || given.starts_with('.') {
            return Ok(Address::Unix(PathBuf::from(given)));
        }
        let (udp, host_port) = match given.strip_prefix("udp:") {
            Some(rest) => (true, rest),
            None => (false, given.strip_prefix("tcp:").unwrap_or(given)),
        };
        match host_port.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(match udp {
                    true => Address::Udp(host_port.to_string()),
                    false => Address::Tcp(host_port.to_string()),
                })
            }
            _ => Err(format!(
                "{given:?} is neither host:port nor a socket path: give 127.0.0.1:7000, [::1]:7000, udp:127.0.0.1:5353 or /run/NAME.sock (NAME=... before it names the socket)"
            )),
        }
    }

    /// How the address reads in a message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Address::Tcp(addr) => addr.clone(),
            Address::Udp(addr) => format!("udp:{addr}"),
            Address::Unix(path) => path.display().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_tcp_udp_or_unix() {
        assert_eq!(
            Address::parse("127.0.0.1:7000"),
            Ok(Address::Tcp("127.0.0.1:7000".into()))
        );
        assert_eq!(
            Address::parse("tcp:127.0.0.1:7000"),
            Ok(Address::Tcp("127.0.0.1:7000".into()))
        );
        assert_eq!(
            Address::parse("[::1]:80"),
            Ok(Address::Tcp("[::1]:80".into()))
        );
        assert_eq!(
            Address::parse("udp:[::1]:53"),
            Ok(Address::Udp("[::1]:53".into()))
        );
        assert_eq!(
            Address::parse("/run/x.sock"),
            Ok(Address::Unix("/run/x.sock".into()))
        );
        assert_eq!(
            Address::parse("unix:/run/x.sock"),
            Ok(Address::Unix("/run/x.sock".into()))
        );
        assert!(Address::parse("localhost").is_err());
        assert!(Address::parse("127.0.0.1:99999").is_err());
        assert!(Address::parse("udp:nowhere").is_err());
    }

    #[test]
    fn a_name_comes_before_an_equals_sign() {
        assert_eq!(
            Listen::parse("web=127.0.0.1:80"),
            Ok(Listen {
                name: Some("web".into()),
                address: Address::Tcp("127.0.0.1:80".into())
            })
        );
        assert_eq!(
            Listen::parse("/run/a=b.sock"),
            Ok(Listen {
                name: None,
                address: Address::Unix("/run/a=b.sock".into())
            })
        );
        assert!(Listen::parse("web=").is_err());
    }
}
