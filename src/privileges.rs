//! Dropping root: the user and group a daemon runs as.
//!
//! Names are resolved when the daemon is built, so that a typo is a build error and not a daemon
//! that dies after the fork. The switch happens in the daemon after it has taken its pidfile
//! (which stays root's) and opened its logs (given to the user through their descriptors, by the
//! path gate): supplementary groups first (`initgroups`, or `setgroups` to the one group), then
//! `setgid`, then `setuid`, then a check that root cannot be regained.

use std::ffi::CString;
use std::fs::File;
use std::path::Path;

use nix::unistd::{Gid, Group, Uid, User, getegid, geteuid, setgid, setuid};

use crate::error::Error;
use crate::gate::{self, path::Trusted};
use crate::settings::Account;

/// Resolved credentials: what to switch to, if anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Credentials {
    uid: Option<Uid>,
    gid: Option<Gid>,
    /// The user's name, for `initgroups`; `None` when the uid has no entry in the database.
    name: Option<CString>,
}

impl Credentials {
    /// Look up `user` and `group`. A user without a group runs with the user's primary group.
    pub(crate) fn resolve(
        user: Option<&Account>,
        group: Option<&Account>,
    ) -> Result<Credentials, Error> {
        let mut creds = Credentials::default();
        if let Some(user) = user {
            let found = match user {
                Account::Name(name) => User::from_name(name),
                Account::Id(id) => User::from_uid(Uid::from_raw(*id)),
            }
            .map_err(|e| {
                Error::setting(
                    "user",
                    format!("cannot look up {user}: {}", std::io::Error::from(e)),
                )
            })?;
            match (found, user) {
                (Some(entry), _) => {
                    creds.uid = Some(entry.uid);
                    creds.gid = Some(entry.gid);
                    creds.name = CString::new(entry.name).ok();
                }
                (None, Account::Id(id)) => creds.uid = Some(Uid::from_raw(*id)),
                (None, Account::Name(name)) => {
                    return Err(Error::setting(
                        "user",
                        format!(
                            "there is no user named {name:?} on this system: create it, or give a uid"
                        ),
                    ));
                }
            }
        }
        if let Some(group) = group {
            let found = match group {
                Account::Name(name) => Group::from_name(name),
                Account::Id(id) => Group::from_gid(Gid::from_raw(*id)),
            }
            .map_err(|e| {
                Error::setting(
                    "group",
                    format!("cannot look up {group}: {}", std::io::Error::from(e)),
                )
            })?;
            creds.gid = Some(match (found, group) {
                (Some(entry), _) => entry.gid,
                (None, Account::Id(id)) => Gid::from_raw(*id),
                (None, Account::Name(name)) => {
                    return Err(Error::setting(
                        "group",
                        format!(
                            "there is no group named {name:?} on this system: create it, or give a gid"
                        ),
                    ));
                }
            });
        }
        if creds.uid.is_some() && creds.gid.is_none() {
            return Err(Error::setting(
                "user",
                "the uid has no entry in the user database, so it has no primary group: set .group() too",
            ));
        }
        Ok(creds)
    }

    /// Whether a switch was asked for.
    pub(crate) fn is_set(&self) -> bool {
        self.uid.is_some() || self.gid.is_some()
    }

    /// Switch this process to the credentials.
    pub(crate) fn apply(&self) -> Result<(), Error> {
        if !self.is_set() {
            return Ok(());
        }
        let same_uid = self.uid.is_none_or(|uid| uid == geteuid());
        let same_gid = self.gid.is_none_or(|gid| gid == getegid());
        if !geteuid().is_root() {
            if same_uid && same_gid {
                return Ok(());
            }
            return Err(Error::Privileges {
                reason: format!(
                    "only root can switch to {}, and this process runs as uid {}",
                    self.describe(),
                    geteuid()
                ),
            });
        }
        let fail = |call: &str, e: nix::Error| Error::Privileges {
            reason: format!(
                "{call} failed for {}: {}",
                self.describe(),
                std::io::Error::from(e)
            ),
        };
        if let Some(gid) = self.gid {
            match (&self.name, self.uid) {
                // The user's supplementary groups, and no others of root's.
                (Some(name), Some(_)) => {
                    crate::sys::init_groups(name, gid).map_err(|e| fail("initgroups", e))?
                }
                _ => crate::sys::set_groups(gid).map_err(|e| fail("setgroups", e))?,
            }
            setgid(gid).map_err(|e| fail("setgid", e))?;
        }
        if let Some(uid) = self.uid {
            setuid(uid).map_err(|e| fail("setuid", e))?;
            if !uid.is_root() && setuid(Uid::from_raw(0)).is_ok() {
                return Err(Error::Privileges {
                    reason: format!(
                        "root could be regained after switching to {}",
                        self.describe()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Who besides root may own the directories of the daemon's pidfile and logs: the user and
    /// group being switched to.
    pub(crate) fn trusted(&self) -> Trusted {
        Trusted {
            user: self.uid.map(Uid::as_raw),
            group: self.gid.map(Gid::as_raw),
        }
    }

    /// Give `file`, open at `path`, to the user and group being switched to, so that the daemon
    /// can reopen it after the switch (a log file, on SIGHUP after a rotation). Through the
    /// path gate: the descriptor changes hands, never what the path names by then, and only a
    /// regular file of root's (or of the user's already) with no other name.
    pub(crate) fn give(&self, file: &File, path: &Path) -> Result<(), Error> {
        if !self.is_set() || !geteuid().is_root() {
            return Ok(());
        }
        gate::path::give(file, path, self.uid, self.gid, &self.describe())
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(uid) = self.uid {
            parts.push(match &self.name {
                Some(name) => format!("user {} (uid {uid})", name.to_string_lossy()),
                None => format!("uid {uid}"),
            });
        }
        if let Some(gid) = self.gid {
            parts.push(format!("gid {gid}"));
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_resolve() {
        let root = Credentials::resolve(Some(&Account::from("root")), None).expect("root exists");
        assert_eq!(root.uid, Some(Uid::from_raw(0)));
        assert_eq!(root.gid, Some(Gid::from_raw(0)));
        let by_id = Credentials::resolve(Some(&Account::Id(0)), None).expect("uid 0 exists");
        assert_eq!(by_id, root);
    }

    #[test]
    fn unknown_names_are_build_errors() {
        let err = Credentials::resolve(Some(&Account::from("no-such-user-here")), None)
            .expect_err("unknown user");
        assert!(
            matches!(
                err,
                Error::InvalidSetting {
                    setting: "user",
                    ..
                }
            ),
            "{err}"
        );
        let err = Credentials::resolve(None, Some(&Account::from("no-such-group-here")))
            .expect_err("unknown group");
        assert!(
            matches!(
                err,
                Error::InvalidSetting {
                    setting: "group",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn nothing_asked_means_nothing_done() {
        let none = Credentials::resolve(None, None).expect("empty");
        assert!(!none.is_set());
        assert!(none.apply().is_ok());
    }
}
