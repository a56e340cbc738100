//! Async bodies on tokio (the `tokio` feature): `run_async` and `messages_async`.
//!
//! Both are adapters onto the bodies the engine already runs: the closure builds the runtime
//! when the body starts, which is inside the daemon, after the fork (a runtime's threads and
//! driver do not survive a fork), then `block_on`s the future. Its `Err`, or a panic, is the
//! body's outcome, as for any body. The runtime is current-thread unless
//! `.worker_threads(n)` asks for n workers.
//!
//! The systemd watchdog is pinged by a task on the runtime: a runtime that is wedged (a task
//! that blocks a current-thread runtime, or every worker of a multi-thread one) stops the pings,
//! and the service manager sees it.
//!
//! The message pool is one task per message, under a semaphore of `pool_size` permits taken
//! before `get` is awaited: at most `pool_size` messages are fetched and not yet handled. A stop
//! ends the wait for a permit, for `get` or for the idle time at once; then every message
//! fetched is handled (all the permits come back) before the body returns.

use std::any::Any;
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use tokio::runtime::{Builder, Runtime};
use tokio::sync::Semaphore;

use crate::engine::body::RunFn;
use crate::engine::body::outcome::{Fetch, Outcome};
use crate::engine::body::pool::{MessagesFn, PoolSize, fetched, handled};
use crate::engine::ctl::Ctl;
use crate::engine::lifecycle::Lifecycle;
use crate::engine::log::Log;
use crate::engine::stop_future::StopFuture;
use crate::error::{Failure, UserError};
use crate::sync::lock;

/// The most handlers an async pool may run at once: a task each, a few hundred bytes.
pub(crate) const MAX_ASYNC_POOL_SIZE: usize = 100_000;

/// Which runtime an async body gets: `None` for current-thread, `Some(n)` for n workers. Shared
/// between the builder, which may be told after the body, and the body, which reads it when it
/// starts.
#[derive(Clone, Default)]
pub(crate) struct RuntimeChoice(Arc<Mutex<Option<usize>>>);

impl RuntimeChoice {
    pub(crate) fn set(&self, workers: usize) {
        *lock(&self.0) = Some(workers);
    }

    pub(crate) fn workers(&self) -> Option<usize> {
        *lock(&self.0)
    }

    /// Build the runtime, with every driver tokio was compiled with (I/O if some crate of the
    /// program enabled `net`, the timers always).
    fn build(&self) -> Result<Runtime, UserError> {
        let mut builder = match self.workers() {
            None => Builder::new_current_thread(),
            Some(workers) => {
                let mut builder = Builder::new_multi_thread();
                builder.worker_threads(workers).thread_name("daemons-async");
                builder
            }
        };
        builder
            .enable_all()
            .build()
            .map_err(|e| Failure::because("cannot build the tokio runtime", e.into()))
    }
}

impl std::fmt::Debug for RuntimeChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.workers() {
            None => f.write_str("current-thread"),
            Some(n) => write!(f, "multi-thread({n})"),
        }
    }
}

/// Whether this thread is inside a tokio runtime (`block_on`, a task, `Runtime::enter`), where
/// forking would leave the runtime broken in the child.
pub(crate) fn inside_runtime() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}

/// `run_async`: build the runtime and run the body's future on it to its end.
pub(crate) fn run_adapter<F, Fut, R>(mut body: F, choice: RuntimeChoice) -> RunFn
where
    F: FnMut(Ctl) -> Fut + Send + 'static,
    Fut: Future<Output = R>,
    R: Outcome,
{
    Box::new(move |ctl| {
        let runtime = choice.build()?;
        // Entered while the closure makes its future, so that it may spawn before its first
        // `.await`.
        let future = {
            let _entered = runtime.enter();
            body(ctl.clone())
        };
        on_runtime(runtime, ctl, future).into_result()
    })
}

/// `messages_async`: build the runtime and serve the messages on it.
pub(crate) fn messages_adapter<M, G, GF, F, H, HF, R>(
    mut get: G,
    mut handle: H,
    choice: RuntimeChoice,
) -> MessagesFn
where
    M: Send + 'static,
    G: FnMut() -> GF + Send + 'static,
    GF: Future<Output = F>,
    F: Fetch<M>,
    H: FnMut(M) -> HF + Send + 'static,
    HF: Future<Output = R> + Send + 'static,
    R: Outcome + 'static,
{
    Box::new(move |ctl, pool, log| {
        let runtime = choice.build()?;
        on_runtime(runtime, ctl, serve(ctl, pool, &mut get, &mut handle, log))
    })
}

/// Run `future` on `runtime` beside the watchdog's task, then shut the runtime down without
/// waiting for tasks the body left behind (they are dropped).
fn on_runtime<T>(runtime: Runtime, ctl: &Ctl, future: impl Future<Output = T>) -> T {
    let watchdog = runtime.spawn(watchdog(ctl.lifecycle().clone()));
    let output = runtime.block_on(future);
    watchdog.abort();
    runtime.shutdown_background();
    output
}

/// Ping the service manager's watchdog whenever it is due, from a task on the runtime: when the
/// runtime cannot run its tasks any more, the pings stop.
async fn watchdog(lifecycle: Arc<Lifecycle>) {
    while let Some(watchdog) = lifecycle.watchdog() {
        let wait = watchdog.until_ping();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        watchdog.ping_if_due();
    }
}

async fn serve<M, G, GF, F, H, HF, R>(
    ctl: &Ctl,
    pool: PoolSize,
    get: &mut G,
    handle: &mut H,
    log: &Log,
) -> Result<(), UserError>
where
    M: Send + 'static,
    G: FnMut() -> GF,
    GF: Future<Output = F>,
    F: Fetch<M>,
    H: FnMut(M) -> HF,
    HF: Future<Output = R> + Send + 'static,
    R: Outcome + 'static,
{
    let lifecycle = ctl.lifecycle();
    let shared = Arc::new(Shared {
        slots: Semaphore::new(pool.workers),
        log: log.clone(),
    });
    let mut stop = ctl.stopped();
    let mut number = 0u64;
    let outcome = loop {
        if lifecycle.stop_requested() {
            break Ok(());
        }
        // A free slot first: `get` is not awaited while `pool_size` handlers run. Awaited even
        // when one is free: the wait spends tokio's cooperative budget, so that the loop yields
        // to the handlers every so often instead of queueing a whole pool of tasks first.
        match race(&mut stop, shared.slots.acquire()).await {
            Some(Ok(permit)) => permit.forget(),
            // The semaphore is never closed.
            Some(Err(_)) | None => break Ok(()),
        }
        let slot = Slot(shared.clone());
        let got = match race(&mut stop, caught(async { get().await.into_message() })).await {
            None => break Ok(()),
            Some(got) => got,
        };
        let message = match fetched(got) {
            Ok(Some(message)) => message,
            Ok(None) => {
                drop(slot);
                if race(&mut stop, tokio::time::sleep(pool.idle_time))
                    .await
                    .is_none()
                {
                    break Ok(());
                }
                continue;
            }
            Err(e) => break Err(e),
        };
        number += 1;
        let work = match catch_unwind(AssertUnwindSafe(|| handle(message))) {
            Ok(work) => work,
            Err(panic) => {
                handled(log, number, Err(panic));
                continue;
            }
        };
        tokio::spawn(async move {
            let ended = caught(work).await.map(Outcome::into_result);
            handled(&slot.0.log, number, ended);
            // Its slot frees only once the message is handled, or lost.
            drop(slot);
        });
    };
    lifecycle.tell_stopping();
    // Every permit back: every message fetched has been handled.
    let all = u32::try_from(pool.workers).unwrap_or(u32::MAX);
    let _ = shared.slots.acquire_many(all).await;
    outcome
}

/// What the handlers' tasks share: one reference each, not one for the permits and another for
/// the log.
struct Shared {
    slots: Semaphore,
    log: Log,
}

/// A slot taken from the semaphore, given back when dropped: when the handler is done, or when
/// its task is dropped.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.slots.add_permits(1);
    }
}

/// `work`'s output, or `None` once a stop is asked (`work` is then dropped where it waits).
async fn race<T>(stop: &mut StopFuture, work: impl Future<Output = T>) -> Option<T> {
    let mut work = pin!(work);
    poll_fn(|cx| {
        if let Poll::Ready(output) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        match Pin::new(&mut *stop).poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// `future`'s output, or the payload of the panic of one of its polls.
async fn caught<F: Future>(future: F) -> Result<F::Output, Box<dyn Any + Send>> {
    let mut future = pin!(future);
    poll_fn(
        |cx| match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::chain_text;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    #[test]
    fn every_fetched_message_is_handled_once_at_stop_and_never_more_than_the_pool_waits() {
        let ctl = Ctl::for_tests();
        let fetched = Arc::new(AtomicU64::new(0));
        let handled = Arc::new(AtomicU64::new(0));
        let worst = Arc::new(AtomicU64::new(0));
        let (f, h, w) = (fetched.clone(), handled.clone(), worst.clone());
        let done = handled.clone();
        let stopper = ctl.clone();
        let mut body = messages_adapter(
            move || {
                let (f, h, w, stopper) = (f.clone(), h.clone(), w.clone(), stopper.clone());
                async move {
                    let n = f.fetch_add(1, Ordering::SeqCst) + 1;
                    w.fetch_max(n - h.load(Ordering::SeqCst), Ordering::SeqCst);
                    if n == 500 {
                        stopper.stop();
                    }
                    Some(n)
                }
            },
            move |_n: u64| {
                let done = done.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    done.fetch_add(1, Ordering::SeqCst);
                }
            },
            RuntimeChoice::default(),
        );
        body(&ctl, PoolSize::quick(50), &Log::quiet()).expect("clean stop");
        assert_eq!(fetched.load(Ordering::SeqCst), 500);
        assert_eq!(
            handled.load(Ordering::SeqCst),
            500,
            "every fetched message was handled"
        );
        let worst = worst.load(Ordering::SeqCst);
        assert!((2..=50).contains(&worst), "{worst} outstanding at most");
    }

    #[test]
    fn a_panicking_or_failing_handler_loses_only_its_message_and_is_logged_with_its_number() {
        let ctl = Ctl::for_tests();
        let logged = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = logged.clone();
        let log = Log::to(move |m| sink.lock().expect("log").push(m.to_string()));
        let handled = Arc::new(AtomicU64::new(0));
        let count = handled.clone();
        let stopper = ctl.clone();
        let mut next = 0u64;
        let mut body = messages_adapter(
            move || {
                next += 1;
                if next == 10 {
                    stopper.stop();
                }
                std::future::ready(Some(next))
            },
            move |n: u64| {
                let count = count.clone();
                async move {
                    tokio::task::yield_now().await;
                    if n == 3 {
                        panic!("message {n} is poison");
                    }
                    if n == 5 {
                        return Err("no room");
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            },
            RuntimeChoice::default(),
        );
        body(&ctl, PoolSize::quick(4), &log).expect("the daemon survives");
        assert_eq!(handled.load(Ordering::SeqCst), 8);
        let logged = logged.lock().expect("log").clone();
        assert!(
            logged
                .iter()
                .any(|l| l.starts_with("message #3: the handler panicked: message 3 is poison")),
            "{logged:?}"
        );
        assert!(
            logged
                .iter()
                .any(|l| l == "message #5: the handler failed: no room"),
            "{logged:?}"
        );
    }

    #[test]
    fn get_failing_ends_the_body_after_draining() {
        let ctl = Ctl::for_tests();
        let handled = Arc::new(AtomicU64::new(0));
        let count = handled.clone();
        let mut next = 0u64;
        let mut body = messages_adapter(
            move || {
                next += 1;
                std::future::ready(if next == 5 {
                    Err("queue unreachable")
                } else {
                    Ok(Some(next))
                })
            },
            move |_n: u64| {
                let count = count.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    count.fetch_add(1, Ordering::SeqCst);
                }
            },
            RuntimeChoice::default(),
        );
        let err = body(&ctl, PoolSize::quick(8), &Log::quiet()).expect_err("get failed");
        assert_eq!(chain_text(&*err), "get failed: queue unreachable");
        assert_eq!(handled.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn a_stop_ends_a_get_that_waits_and_the_idle_wait() {
        for idle in [false, true] {
            let ctl = Ctl::for_tests();
            let stopper = ctl.clone();
            let other = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                stopper.stop();
            });
            let since = Instant::now();
            let mut body = messages_adapter(
                move || async move {
                    if !idle {
                        // A get that waits for a message that never comes.
                        std::future::pending::<()>().await;
                    }
                    None::<u8>
                },
                |_m: u8| async {},
                RuntimeChoice::default(),
            );
            let pool = PoolSize {
                workers: 1,
                idle_time: Duration::from_secs(3600),
            };
            body(&ctl, pool, &Log::quiet()).expect("clean stop");
            assert!(since.elapsed() < Duration::from_secs(5));
            other.join().expect("join");
        }
    }

    #[test]
    fn run_async_outcomes_and_panics_are_the_bodys() {
        let ctl = Ctl::for_tests();
        let mut body = run_adapter(
            |ctl: Ctl| async move {
                let stopper = ctl.clone();
                tokio::spawn(async move { stopper.stop() });
                ctl.stopped().await;
                Err::<(), _>("bound nothing")
            },
            RuntimeChoice::default(),
        );
        assert_eq!(
            body(&ctl).map_err(|e| e.to_string()),
            Err("bound nothing".to_string())
        );

        let multi = RuntimeChoice::default();
        multi.set(2);
        let mut body = run_adapter(
            |_ctl: Ctl| async move {
                let worker =
                    tokio::spawn(async { std::thread::current().name().map(String::from) });
                let name = worker.await.expect("the task ran");
                assert_eq!(name.as_deref(), Some("daemons-async"));
            },
            multi,
        );
        assert!(body(&Ctl::for_tests()).is_ok());

        let mut crate_body = crate::engine::body::Body::Run(run_adapter(
            |_ctl: Ctl| async {
                if std::hint::black_box(true) {
                    panic!("async boom");
                }
            },
            RuntimeChoice::default(),
        ));
        let settings = crate::settings::SettingsBuilder::default()
            .pidfile("x.pid")
            .build()
            .expect("settings");
        let err = crate_body
            .drive(&Ctl::for_tests(), &Log::quiet(), &settings)
            .unwrap_err();
        assert_eq!(err.to_string(), "panicked: async boom");
    }

    #[test]
    fn inside_a_runtime_is_known() {
        assert!(!inside_runtime());
        let runtime = Builder::new_current_thread().build().expect("a runtime");
        assert!(runtime.block_on(async { inside_runtime() }));
    }
}
