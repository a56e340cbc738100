//! Who a daemon runs as: a user or a group, as the builder is given it and the privileges part
//! resolves it.

use std::fmt;

/// A user or a group, by name or by number.
///
/// # Examples
///
/// ```
/// use daemons::Account;
///
/// assert_eq!(Account::from("nobody"), Account::Name("nobody".into()));
/// assert_eq!(Account::from(65534), Account::Id(65534));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Account {
    /// A name to look up in the system's user or group database.
    Name(String),
    /// A numeric uid or gid.
    Id(u32),
}

impl From<&str> for Account {
    fn from(name: &str) -> Account {
        Account::Name(name.to_string())
    }
}

impl From<String> for Account {
    fn from(name: String) -> Account {
        Account::Name(name)
    }
}

impl From<u32> for Account {
    fn from(id: u32) -> Account {
        Account::Id(id)
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::Name(name) => f.write_str(name),
            Account::Id(id) => write!(f, "{id}"),
        }
    }
}
