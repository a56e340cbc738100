//! The bare message pool of the baselines (`benches/messages.rs` in process, `messages-bare` as
//! a whole process): numbers pushed through a bounded crossbeam channel into plain threads. No
//! backpressure beyond the channel's, no stop, no error handling: the floor that this crate's
//! pool is measured against.

use std::thread;

/// Push `1..=messages` through a channel of `capacity` into `pool` threads that each run
/// `handle` on what they receive; return once every thread has ended.
pub fn run(
    pool: usize,
    capacity: usize,
    messages: u64,
    handle: impl Fn(u64) + Clone + Send + 'static,
) {
    let (sender, receiver) = crossbeam_channel::bounded::<u64>(capacity);
    let workers: Vec<_> = (0..pool)
        .map(|_| {
            let receiver = receiver.clone();
            let handle = handle.clone();
            thread::spawn(move || {
                for n in receiver {
                    handle(n);
                }
            })
        })
        .collect();
    for n in 1..=messages {
        sender.send(n).expect("workers alive");
    }
    drop(sender);
    for worker in workers {
        worker.join().expect("worker");
    }
}
