//! Where a daemon listens: the addresses given to the builder, as the handle checks them and the
//! listening sockets part binds them.

use std::path::PathBuf;

/// An address given to [`listen`](crate::DaemonBuilder::listen): `host:port` for TCP, an
/// absolute path (or `unix:PATH`) for a Unix stream socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Address {
    Tcp(String),
    Unix(PathBuf),
}

impl Address {
    /// Parse what the builder was given.
    pub(crate) fn parse(given: &str) -> Result<Address, String> {
        if let Some(path) = given.strip_prefix("unix:") {
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        if given.starts_with('/') || given.starts_with('.') {
            return Ok(Address::Unix(PathBuf::from(given)));
        }
        match given.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Address::Tcp(given.to_string()))
            }
            _ => Err(format!(
                "{given:?} is neither host:port nor a socket path: give 127.0.0.1:7000, [::1]:7000 or /run/NAME.sock"
            )),
        }
    }

    /// How the address reads in a message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Address::Tcp(addr) => addr.clone(),
            Address::Unix(path) => path.display().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_tcp_or_unix() {
        assert_eq!(
            Address::parse("127.0.0.1:7000"),
            Ok(Address::Tcp("127.0.0.1:7000".into()))
        );
        assert_eq!(
            Address::parse("[::1]:80"),
            Ok(Address::Tcp("[::1]:80".into()))
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
    }
}
