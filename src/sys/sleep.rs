//! Sleeps that end when they were asked to. Linux lengthens every sleep of a thread by the
//! thread's timer slack (50 µs unless changed) so that wake-ups batch: a pause of 50 µs lasts
//! about 105 µs, 56 µs with a slack of one microsecond (measured here on `nanosleep`). A wait
//! that looks again every few tens of microseconds for something that nothing announces lowers
//! the slack while it looks. The other systems have no slack that a program sets.

/// While it lives, the calling thread's sleeps end within about a microsecond of when they were
/// asked to (Linux's `PR_SET_TIMERSLACK`); the thread's slack is put back when it is dropped.
/// Nothing elsewhere.
pub(crate) struct FineSleeps {
    /// The thread's slack before, in nanoseconds, to put back; `None` when it was left alone.
    #[cfg(target_os = "linux")]
    before: Option<libc::c_ulong>,
}

/// The slack while a [`FineSleeps`] lives: one microsecond.
#[cfg(target_os = "linux")]
const FINE: libc::c_ulong = 1_000;

impl FineSleeps {
    /// Lower the calling thread's timer slack until the value is dropped.
    pub(crate) fn new() -> FineSleeps {
        #[cfg(target_os = "linux")]
        {
            use nix::sys::prctl::{get_timerslack, set_timerslack};
            // A slack that the call cannot report faithfully (above `i32::MAX` ns) is left
            // alone, since it could not be put back.
            let before = get_timerslack()
                .ok()
                .and_then(|ns| libc::c_ulong::try_from(ns).ok())
                .filter(|&ns| ns > FINE && set_timerslack(FINE).is_ok());
            FineSleeps { before }
        }
        #[cfg(not(target_os = "linux"))]
        FineSleeps {}
    }
}

impl Drop for FineSleeps {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(ns) = self.before {
            let _ = nix::sys::prctl::set_timerslack(ns);
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use nix::sys::prctl::{get_timerslack, set_timerslack};

    #[test]
    fn the_slack_is_lowered_while_the_sleeps_are_fine_and_put_back_after() {
        // A thread of its own: the slack is per thread, and the harness's threads are shared.
        std::thread::spawn(|| {
            set_timerslack(50_000).expect("set the slack");
            {
                let _fine = FineSleeps::new();
                assert_eq!(get_timerslack().ok(), Some(1_000));
            }
            assert_eq!(get_timerslack().ok(), Some(50_000));
        })
        .join()
        .expect("the test thread");
    }
}
