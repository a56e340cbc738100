//! The stop request as a future ([`StopFuture`], from [`Ctl::stopped`](crate::Ctl::stopped))
//! that any executor can await: tokio, async-std, smol, a hand-made `block_on`. Nothing here
//! depends on a runtime: its waker is called by the lifecycle's watcher thread (see
//! `lifecycle.rs`), since a stop signal's handler cannot call one.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::engine::lifecycle::Lifecycle;

/// A future that resolves once a stop is asked: a stop signal, [`Ctl::stop`](crate::Ctl::stop), or the end of the
/// daemon. Get one from [`Ctl::stopped`](crate::Ctl::stopped); it works with any executor.
///
/// It is cheap to poll again with the same waker (one atomic load, no lock), and it may be
/// raced against other futures (`select!`) in a loop: a new `StopFuture` each time costs one
/// lock and one map entry when it has to wait, nothing when the stop is there already.
///
/// # Examples
///
/// ```
/// use daemons::{Ctl, StopFuture};
/// use std::future::Future;
///
/// // What an executor sees: a future of `()`, `Send`, `Unpin` and `'static`.
/// fn usable<F: Future<Output = ()> + Send + Unpin + 'static>(_: F) {}
/// fn body(ctl: &Ctl) {
///     let stopped: StopFuture = ctl.stopped();
///     usable(stopped);
/// }
/// ```
#[must_use = "a future does nothing unless it is awaited"]
pub struct StopFuture {
    lifecycle: Arc<Lifecycle>,
    /// This future's entry in the wakers, once it has waited.
    slot: Option<u64>,
    /// The waker registered last, so that a poll with the same one takes no lock.
    registered: Option<Waker>,
}

impl StopFuture {
    pub(in crate::engine) fn new(lifecycle: Arc<Lifecycle>) -> StopFuture {
        StopFuture {
            lifecycle,
            slot: None,
            registered: None,
        }
    }

    fn forget(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.lifecycle.forget_waker(slot);
        }
        self.registered = None;
    }
}

impl Future for StopFuture {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.lifecycle.stop_requested() {
            this.forget();
            this.lifecycle.tell_stopping();
            return Poll::Ready(());
        }
        if this
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        let lifecycle = this.lifecycle.clone();
        if lifecycle.register_waker(&mut this.slot, cx.waker()) {
            this.registered = Some(cx.waker().clone());
        } else {
            // No thread could be started to wake it: ask to be polled again, so that the stop
            // is seen late rather than never.
            this.registered = None;
            cx.waker().wake_by_ref();
        }
        // The stop may have come between the first look and the registration; once the
        // registration is in, the watcher will see it if this look does not.
        if lifecycle.stop_requested() {
            this.forget();
            lifecycle.tell_stopping();
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for StopFuture {
    fn drop(&mut self) {
        self.forget();
    }
}

impl fmt::Debug for StopFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopFuture")
            .field("stopped", &self.lifecycle.stop_requested())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Signal;
    use crate::engine::ctl::Ctl;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::Wake;
    use std::thread;
    use std::time::Duration;
    use std::time::Instant;

    /// The smallest executor: poll on this thread, park until woken.
    struct Unpark(thread::Thread, AtomicBool);

    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.1.store(true, Ordering::Release);
            self.0.unpark();
        }
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let unpark = Arc::new(Unpark(thread::current(), AtomicBool::new(false)));
        let waker = Waker::from(unpark.clone());
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            while !unpark.1.swap(false, Ordering::AcqRel) {
                thread::park();
            }
        }
    }

    #[test]
    fn a_stop_from_another_thread_wakes_the_future() {
        let ctl = Ctl::for_tests();
        let stopper = ctl.clone();
        let since = Instant::now();
        let other = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            stopper.stop();
        });
        block_on(ctl.stopped());
        assert!(since.elapsed() >= Duration::from_millis(50));
        assert!(!ctl.running());
        other.join().expect("join");
    }

    #[test]
    fn a_stop_signal_wakes_the_future_through_the_watcher() {
        // What a signal handler does: the flag and the pipe, no lock and no waker.
        let ctl = Ctl::for_tests();
        let lifecycle = ctl.lifecycle().clone();
        let other = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            lifecycle.request_stop(Some(Signal::SIGTERM));
        });
        block_on(ctl.stopped());
        assert_eq!(ctl.lifecycle().stop_signal(), Some(Signal::SIGTERM));
        other.join().expect("join");
    }

    #[test]
    fn a_stop_asked_already_is_ready_at_once_and_waits_for_nothing() {
        let ctl = Ctl::for_tests();
        ctl.stop();
        block_on(ctl.stopped());
        block_on(ctl.stopped());
        assert_eq!(ctl.lifecycle().wakers(), (0, false));
    }

    #[test]
    fn many_waiters_all_wake_and_dropped_ones_leave_no_waker() {
        let ctl = Ctl::for_tests();
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let ctl = ctl.clone();
                thread::spawn(move || block_on(ctl.stopped()))
            })
            .collect();
        {
            // Polled once, then dropped: its waker goes with it.
            let mut abandoned = ctl.stopped();
            let waker = Waker::from(Arc::new(Unpark(thread::current(), AtomicBool::new(false))));
            let pending = Pin::new(&mut abandoned).poll(&mut Context::from_waker(&waker));
            assert!(pending.is_pending());
        }
        let registry = || ctl.lifecycle().wakers().0;
        let end = Instant::now() + Duration::from_secs(10);
        while registry() < 8 && Instant::now() < end {
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            registry(),
            8,
            "the eight blocked waiters, not the dropped one"
        );
        ctl.stop();
        for waiter in waiters {
            waiter.join().expect("every waiter wakes");
        }
        assert_eq!(registry(), 0);
    }

    #[test]
    fn the_stop_descriptor_is_readable_only_after_a_stop() {
        let ctl = Ctl::for_tests();
        let readable = |ctl: &Ctl| crate::sys::wait_readable(ctl.stop_fd(), Duration::ZERO);
        assert!(!readable(&ctl).expect("poll"));
        ctl.stop();
        assert!(readable(&ctl).expect("poll"));
        assert!(readable(&ctl).expect("poll"), "and stays readable");
    }
}
