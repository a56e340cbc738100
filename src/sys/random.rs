//! Random bits for names that nobody may foresee.

/// 64 bits that nobody can foresee, for the temporary names of files that another user could
/// otherwise create first: `getrandom` on Linux (which does not wait for the entropy pool at
/// early boot: `/dev/urandom` then), `arc4random_buf` elsewhere.
pub(crate) fn random() -> u64 {
    let mut bytes = [0u8; 8];
    #[cfg(target_os = "linux")]
    {
        // SAFETY: the kernel writes at most `bytes.len()` bytes into `bytes`, which outlives the
        // call.
        let n =
            unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), libc::GRND_NONBLOCK) };
        if n != bytes.len() as isize {
            use std::io::Read;
            let urandom = std::fs::File::open("/dev/urandom");
            if urandom.and_then(|mut f| f.read_exact(&mut bytes)).is_err() {
                // No kernel source at all: the clock and the pid, the best there is.
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                bytes = (now ^ (u64::from(std::process::id()) << 32)).to_ne_bytes();
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        // SAFETY: arc4random_buf fills exactly `bytes.len()` bytes of `bytes`, and cannot fail.
        unsafe { libc::arc4random_buf(bytes.as_mut_ptr().cast(), bytes.len()) };
    }
    u64::from_ne_bytes(bytes)
}
