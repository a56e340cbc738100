//! The message pool: `get` on the body thread, `handle` on up to `pool_size` worker threads.
//!
//! Backpressure is a count of free slots: `get` is called only while a worker is free, so at
//! most `pool_size` messages are ever fetched and not yet handled. The body thread claims every
//! slot freed since its last claim in one go, so that a busy pool does not bounce the count
//! between threads at every message. When no slot is free it spins briefly, then parks, and only
//! a parked body thread is unparked by the worker that frees one; nothing polls. Workers are spawned as
//! the load needs them, up to `pool_size`, so an idle daemon runs none, and a worker that has
//! had no message for [`RETIRE_AFTER`] exits, unless it is the last: a burst does not leave its
//! threads behind. The last one is retired by the body thread, the only one that knows that no
//! message is on its way (it has been idle that long with nothing in flight), with a
//! [`Item::Retire`] through the channel. So one worker is always there while messages may come,
//! and the body thread needs no memory fence per message to make sure of it.
//!
//! At stop, fetching ends, the channel is closed, and the workers drain it before they exit:
//! a graceful stop loses no message that was fetched.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use crossbeam_utils::{Backoff, CachePadded};

use crate::engine::body::outcome::{Fetch, Outcome, panic_message};
use crate::engine::ctl::Ctl;
use crate::engine::log::Log;
use crate::error::{Failure, UserError, chain_text};

/// How large the pool may grow, and how long it rests when there is nothing to fetch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolSize {
    /// Workers at most, and so messages fetched and not yet handled at most.
    pub(in crate::engine) workers: usize,
    /// The wait after `get` found nothing.
    pub(in crate::engine) idle_time: Duration,
}

pub(crate) type MessagesFn = Box<dyn FnMut(&Ctl, PoolSize, &Log) -> Result<(), UserError> + Send>;

/// Wrap the user's `get` and `handle` into a body that the engine can drive.
pub(crate) fn adapter<M, G, F, H, R>(mut get: G, handle: H) -> MessagesFn
where
    M: Send + 'static,
    G: FnMut() -> F + Send + 'static,
    F: Fetch<M>,
    H: Fn(M) -> R + Send + Sync + 'static,
    R: Outcome,
{
    let handle: Arc<HandleFn<M>> = Arc::new(move |m| handle(m).into_result());
    Box::new(move |ctl, pool, log| serve(ctl, pool, &mut || get().into_message(), &handle, log))
}

type HandleFn<M> = dyn Fn(M) -> Result<(), UserError> + Send + Sync;

/// What goes through the channel to the workers.
enum Item<M> {
    /// A message and its number (the first fetched is #1).
    Message(u64, M),
    /// The worker that takes it exits: the body thread has counted it out of `live`. (Should a
    /// message come before the last worker takes it, a new worker is spawned for the message,
    /// and the two overlap for that moment.)
    Retire,
}

#[cfg(test)]
impl PoolSize {
    /// A pool of `workers` that rests 1 ms when there is nothing to fetch.
    pub(in crate::engine) fn quick(workers: usize) -> PoolSize {
        PoolSize {
            workers,
            idle_time: Duration::from_millis(1),
        }
    }
}

/// How long a worker waits for a message before it exits.
#[cfg(not(test))]
const RETIRE_AFTER: Duration = Duration::from_secs(10);
#[cfg(test)]
const RETIRE_AFTER: Duration = Duration::from_millis(200);

struct Slots {
    /// Slots that workers freed and the fetcher has not claimed yet. On a line of its own: the
    /// workers add to it at every message, and nothing else there should move with it.
    free: CachePadded<AtomicUsize>,
    /// Workers that run and have not decided to retire: read by the fetcher at every message,
    /// written only when a worker comes or goes. A worker lowers it only from above 1; from 1 to
    /// 0 only the fetcher does, when it retires the last worker.
    live: CachePadded<AtomicUsize>,
    fetcher: Thread,
    /// Whether the fetcher is parked (or about to park) for want of a slot: only then does a
    /// worker that frees one wake it, so that a busy pool costs no wake-up per message.
    parked: AtomicBool,
    /// How many free slots wake a parked fetcher (see `Slots::release`).
    batch: AtomicUsize,
}

/// A fetcher that was parked longer than this waits for slow handlers: it is then woken for
/// every single free slot, so that no worker waits for work. Shorter waits mean handlers that
/// take less than a wake-up costs, and it is woken for a batch of slots.
const SLOW_HANDLERS: Duration = Duration::from_micros(200);

impl Slots {
    /// A worker finished a message: free its slot, and wake the fetcher once `batch` slots are
    /// free.
    ///
    /// Waking it for every freed slot would cost two context switches a message when handlers
    /// are quick: it would fetch one, find the pool full and park again. Woken for a quarter of
    /// the pool, it refills a run of slots at once while the other workers keep going.
    fn release(&self) {
        let free = self.free.fetch_add(1, Ordering::SeqCst) + 1;
        if self.parked.load(Ordering::SeqCst)
            && free >= self.batch.load(Ordering::Relaxed)
            && self.parked.swap(false, Ordering::SeqCst)
        {
            self.fetcher.unpark();
        }
    }

    /// Park until enough slots are free, and adapt the batch to how long that took.
    fn wait(&self, quick_batch: usize) {
        let parked = Instant::now();
        // Said before the last look: a worker that frees a slot after it sees the flag, and
        // one that freed it before is seen here (both sides are sequentially consistent).
        self.parked.store(true, Ordering::SeqCst);
        if self.free.load(Ordering::SeqCst) < self.batch.load(Ordering::Relaxed) {
            thread::park();
        }
        self.parked.store(false, Ordering::Relaxed);
        let batch = if parked.elapsed() > SLOW_HANDLERS {
            1
        } else {
            quick_batch
        };
        self.batch.store(batch, Ordering::Relaxed);
    }

    /// Claim every free slot at once, waiting (spinning, then parked) while there is none;
    /// how many were claimed, or 0 once a stop is asked.
    fn claim(&self, ctl: &Ctl, quick_batch: usize) -> usize {
        // A busy pool frees a slot within microseconds: spin and yield a little before
        // parking, as crossbeam's own channels do, so that a saturated pool does not pay two
        // context switches per message.
        let backoff = Backoff::new();
        loop {
            if !ctl.running() {
                return 0;
            }
            if self.free.load(Ordering::Acquire) > 0 {
                return self.free.swap(0, Ordering::AcqRel);
            }
            if backoff.is_completed() {
                self.wait(quick_batch);
            } else {
                backoff.snooze();
            }
        }
    }
}

fn serve<M: Send + 'static>(
    ctl: &Ctl,
    pool: PoolSize,
    get: &mut dyn FnMut() -> Result<Option<M>, UserError>,
    handle: &Arc<HandleFn<M>>,
    log: &Log,
) -> Result<(), UserError> {
    let slots = Arc::new(Slots {
        free: CachePadded::new(AtomicUsize::new(pool.workers)),
        live: CachePadded::new(AtomicUsize::new(0)),
        fetcher: thread::current(),
        parked: AtomicBool::new(false),
        batch: AtomicUsize::new(1),
    });
    let quick_batch = (pool.workers / 4).max(1);
    // The slots keep at most `size` messages in flight, so a send never waits for room; a
    // retirement is sent only with nothing in flight.
    let (sender, receiver) = crossbeam_channel::bounded::<Item<M>>(pool.workers);
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    let mut spawned = 0usize;
    let mut number = 0u64;
    // Slots claimed from `slots.free` and not used yet: what the workers freed is taken in one
    // go, so that the fetcher does not write the line they write at every message. Claimed
    // slots, free slots and messages in flight add up to the pool's size.
    let mut claimed = 0usize;
    // Since when `get` has had nothing, if it has had nothing since the last message.
    let mut idle_since: Option<Instant> = None;

    let outcome = loop {
        if claimed == 0 {
            claimed = slots.claim(ctl, quick_batch);
        }
        if !ctl.running() {
            break Ok(());
        }
        let message = match fetched(catch_unwind(AssertUnwindSafe(&mut *get))) {
            Ok(Some(message)) => message,
            Ok(None) => {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= RETIRE_AFTER
                    && claimed + slots.free.load(Ordering::Acquire) == pool.workers
                    && slots
                        .live
                        .compare_exchange(1, 0, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                {
                    // Nothing in flight, so there is room, and the last worker takes it; should
                    // an earlier retirement still fill it, the worker stays counted.
                    if sender.try_send(Item::Retire).is_err() {
                        slots.live.fetch_add(1, Ordering::AcqRel);
                    }
                }
                ctl.sleep(pool.idle_time);
                continue;
            }
            Err(e) => break Err(e),
        };
        idle_since = None;
        number += 1;
        claimed -= 1;
        // The fetcher holds a receiver: the channel stays open, and the slots keep room in it.
        let _ = sender.send(Item::Message(number, message));
        // A worker is there to take it: the last one leaves only by a retirement sent above. A
        // count a little behind only delays a spawn to the next message.
        let live = slots.live.load(Ordering::Relaxed);
        // One worker per message in flight, at most: an idle daemon runs none, a saturated one
        // `size`. The slots not claimed bound the messages in flight from above; only when
        // that bound says "spawn" are the slots freed since the claim read, to be sure.
        if pool.workers - claimed > live
            && (pool.workers - claimed).saturating_sub(slots.free.load(Ordering::Acquire)) > live
        {
            // Retired workers' handles go: a finished thread is let go of at once.
            workers.retain(|worker| !worker.is_finished());
            slots.live.fetch_add(1, Ordering::SeqCst);
            spawned += 1;
            match spawn_worker(spawned, &receiver, handle, &slots, log) {
                Ok(worker) => workers.push(worker),
                Err(e) => {
                    slots.live.fetch_sub(1, Ordering::SeqCst);
                    if slots.live.load(Ordering::SeqCst) == 0 {
                        break Err(Failure::because("cannot spawn a worker thread", e.into()));
                    }
                    log.warn(&format!("cannot spawn another worker thread: {e}"));
                }
            }
        }
    };

    // Closing the channel lets the workers drain what is in it, then exit.
    ctl.lifecycle().tell_stopping();
    drop(sender);
    for worker in workers {
        let _ = worker.join();
    }
    // What no worker took (none could be spawned) is handled here: nothing fetched is lost.
    for item in receiver.try_iter() {
        if let Item::Message(number, message) = item {
            handle_one(&**handle, log, number, message);
        }
    }
    outcome
}

/// Handle one message; a failure or a panic loses only this message, and is logged.
fn handle_one<M>(handle: &HandleFn<M>, log: &Log, number: u64, message: M) {
    handled(
        log,
        number,
        catch_unwind(AssertUnwindSafe(|| handle(message))),
    );
}

/// What a call of `get` came to, for both pools: a message, or nothing now; or the end of the
/// body, with its error or its panic.
pub(super) fn fetched<M>(
    got: std::thread::Result<Result<Option<M>, UserError>>,
) -> Result<Option<M>, UserError> {
    match got {
        Ok(got) => got.map_err(|e| Failure::because("get failed", e)),
        Err(panic) => Err(Failure::text(format!(
            "get panicked: {}",
            panic_message(&*panic)
        ))),
    }
}

/// Log how the handler of message `number` ended, for both pools, unless it ended well: a
/// failure or a panic loses that message only.
pub(super) fn handled(log: &Log, number: u64, ended: std::thread::Result<Result<(), UserError>>) {
    match ended {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log.error(&format!(
            "message #{number}: the handler failed: {}",
            chain_text(&*e)
        )),
        Err(panic) => log.error(&format!(
            "message #{number}: the handler panicked: {} (the message is lost; the daemon goes on)",
            panic_message(&*panic)
        )),
    }
}

fn spawn_worker<M: Send + 'static>(
    index: usize,
    receiver: &Receiver<Item<M>>,
    handle: &Arc<HandleFn<M>>,
    slots: &Arc<Slots>,
    log: &Log,
) -> std::io::Result<JoinHandle<()>> {
    let receiver = receiver.clone();
    let handle = handle.clone();
    let slots = slots.clone();
    let log = log.clone();
    thread::Builder::new()
        .name(format!("daemons-worker-{index}"))
        .spawn(move || {
            loop {
                // Taken at once when there is one: `recv_timeout` reads the clock for its
                // deadline, which would cost a busy worker more than the message.
                let next = match receiver.try_recv() {
                    Ok(next) => Ok(next),
                    Err(_) => receiver.recv_timeout(RETIRE_AFTER),
                };
                let (number, message) = match next {
                    Ok(Item::Message(number, message)) => (number, message),
                    Ok(Item::Retire) => return,
                    Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) => {
                        // Retire, unless this is the last worker: the others take what comes
                        // meanwhile, and the last waits for the fetcher to retire it.
                        let fewer =
                            slots
                                .live
                                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |live| {
                                    (live > 1).then(|| live - 1)
                                });
                        match fewer {
                            Ok(_) => return,
                            Err(_) => continue,
                        }
                    }
                };
                handle_one(&*handle, &log, number, message);
                slots.release();
            }
            slots.live.fetch_sub(1, Ordering::SeqCst);
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicU64;

    fn quiet() -> Log {
        Log::quiet()
    }

    #[test]
    fn every_fetched_message_is_handled_once_at_stop() {
        let ctl = Ctl::for_tests();
        let handled = Arc::new(Mutex::new(Vec::new()));
        let seen = handled.clone();
        let stopper = ctl.clone();
        let mut next = 0u64;
        let mut body = adapter(
            move || {
                next += 1;
                if next == 500 {
                    stopper.stop();
                }
                Some(next)
            },
            move |n: u64| {
                seen.lock().expect("seen").push(n);
            },
        );
        body(&ctl, PoolSize::quick(4), &quiet()).expect("clean stop");
        let mut handled = handled.lock().expect("handled").clone();
        handled.sort_unstable();
        assert_eq!(handled, (1..=500).collect::<Vec<_>>());
    }

    #[test]
    fn fetched_minus_handled_never_exceeds_the_pool() {
        let ctl = Ctl::for_tests();
        let fetched = Arc::new(AtomicU64::new(0));
        let handled = Arc::new(AtomicU64::new(0));
        let worst = Arc::new(AtomicU64::new(0));
        let (f, h, w) = (fetched.clone(), handled.clone(), worst.clone());
        let stopper = ctl.clone();
        let mut body = adapter(
            move || {
                let n = f.fetch_add(1, Ordering::SeqCst) + 1;
                let outstanding = n - h.load(Ordering::SeqCst);
                w.fetch_max(outstanding, Ordering::SeqCst);
                if n == 200 {
                    stopper.stop();
                }
                Some(n)
            },
            move |_n: u64| {
                thread::sleep(Duration::from_micros(200));
                handled.fetch_add(1, Ordering::SeqCst);
            },
        );
        body(&ctl, PoolSize::quick(3), &quiet()).expect("clean stop");
        assert!(worst.load(Ordering::SeqCst) <= 3, "{worst:?}");
        assert!(
            worst.load(Ordering::SeqCst) >= 2,
            "the pool was used: {worst:?}"
        );
    }

    #[test]
    fn a_panicking_handler_loses_only_its_message() {
        let ctl = Ctl::for_tests();
        let handled = Arc::new(AtomicU64::new(0));
        let count = handled.clone();
        let stopper = ctl.clone();
        let mut next = 0u64;
        let mut body = adapter(
            move || {
                next += 1;
                if next == 10 {
                    stopper.stop();
                }
                Some(next)
            },
            move |n: u64| {
                if n.is_multiple_of(3) {
                    panic!("message {n} is poison");
                }
                count.fetch_add(1, Ordering::SeqCst);
            },
        );
        body(&ctl, PoolSize::quick(2), &quiet()).expect("the daemon survives");
        assert_eq!(handled.load(Ordering::SeqCst), 7);
    }

    #[test]
    fn get_failing_ends_the_body_after_draining() {
        let ctl = Ctl::for_tests();
        let handled = Arc::new(AtomicU64::new(0));
        let count = handled.clone();
        let mut next = 0u64;
        let mut body = adapter(
            move || {
                next += 1;
                if next == 5 {
                    return Err("queue unreachable");
                }
                Ok(Some(next))
            },
            move |_n: u64| {
                thread::sleep(Duration::from_millis(2));
                count.fetch_add(1, Ordering::SeqCst);
            },
        );
        let err = body(&ctl, PoolSize::quick(8), &quiet()).expect_err("get failed");
        assert_eq!(chain_text(&*err), "get failed: queue unreachable");
        assert_eq!(handled.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn idle_workers_retire_and_new_ones_come_with_the_next_burst() {
        use std::cell::RefCell;
        use std::collections::VecDeque;

        thread_local! {
            // A clone of the test's token, dropped when the worker thread exits.
            static TOKEN: RefCell<Option<Arc<()>>> = const { RefCell::new(None) };
        }
        let token = Arc::new(());
        // The test's own and the handler's, besides one per worker that has handled a message.
        let alive = || Arc::strong_count(&token) - 2;
        let queue = Arc::new(Mutex::new(VecDeque::new()));
        let handled = Arc::new(AtomicU64::new(0));
        let ctl = Ctl::for_tests();
        let (q, h, t) = (queue.clone(), handled.clone(), token.clone());
        let mut body = adapter(
            move || q.lock().expect("queue").pop_front(),
            move |_n: u64| {
                TOKEN.with(|slot| {
                    slot.borrow_mut().get_or_insert_with(|| t.clone());
                });
                thread::sleep(Duration::from_millis(20));
                h.fetch_add(1, Ordering::SeqCst);
            },
        );
        let runner = ctl.clone();
        let daemon = thread::spawn(move || body(&runner, PoolSize::quick(8), &quiet()));
        let wait = |what: &str, cond: &dyn Fn() -> bool| {
            let end = Instant::now() + Duration::from_secs(10);
            while !cond() {
                assert!(Instant::now() < end, "{what}");
                thread::sleep(Duration::from_millis(5));
            }
        };

        queue.lock().expect("queue").extend(1..=32u64);
        wait("the burst is handled", &|| {
            handled.load(Ordering::SeqCst) == 32
        });
        assert!(alive() >= 2, "the burst took several workers: {}", alive());
        wait("every idle worker retires", &|| alive() == 0);

        queue.lock().expect("queue").extend(33..=40u64);
        wait("the next burst is handled", &|| {
            handled.load(Ordering::SeqCst) == 40
        });
        assert!(alive() >= 1, "new workers came");
        ctl.stop();
        daemon.join().expect("join").expect("clean stop");
    }

    #[test]
    fn messages_that_come_as_workers_retire_are_each_handled() {
        use std::collections::VecDeque;

        let queue = Arc::new(Mutex::new(VecDeque::new()));
        let handled = Arc::new(AtomicU64::new(0));
        let ctl = Ctl::for_tests();
        let (q, h) = (queue.clone(), handled.clone());
        let mut body = adapter(
            move || q.lock().expect("queue").pop_front(),
            move |_n: u64| {
                h.fetch_add(1, Ordering::SeqCst);
            },
        );
        let runner = ctl.clone();
        let daemon = thread::spawn(move || body(&runner, PoolSize::quick(4), &quiet()));
        // Bursts spaced around the retirement time, so that messages come while the workers of
        // the last burst time out, and while the fetcher retires the last of them.
        let mut sent = 0u64;
        for gap_ms in [150u64, 190, 200, 205, 210, 230, 260, 300] {
            thread::sleep(Duration::from_millis(gap_ms));
            let burst = gap_ms % 7 + 1;
            queue.lock().expect("queue").extend(sent + 1..=sent + burst);
            sent += burst;
        }
        let end = Instant::now() + Duration::from_secs(10);
        while handled.load(Ordering::SeqCst) < sent {
            assert!(
                Instant::now() < end,
                "{} of {sent} handled",
                handled.load(Ordering::SeqCst)
            );
            thread::sleep(Duration::from_millis(5));
        }
        ctl.stop();
        daemon.join().expect("join").expect("clean stop");
        assert_eq!(handled.load(Ordering::SeqCst), sent);
    }

    #[test]
    fn idle_waits_end_at_stop() {
        let ctl = Ctl::for_tests();
        let stopper = ctl.clone();
        let (asked, first_get) = std::sync::mpsc::channel();
        // Stop once `get` has said "nothing now": the body is then in (or entering) its idle
        // wait of an hour, which only the stop can end.
        let waker = thread::spawn(move || {
            first_get.recv().expect("get was called");
            stopper.stop();
        });
        let mut body = adapter(
            move || {
                let _ = asked.send(());
                None::<u8>
            },
            |_m: u8| {},
        );
        let idle = PoolSize {
            workers: 1,
            idle_time: Duration::from_secs(3600),
        };
        body(&ctl, idle, &quiet()).expect("clean stop");
        waker.join().expect("join");
    }
}
