// The async setters exist with the `tokio` feature only: without it, the guide's links to them
// go to the rendered documentation, which is built with the feature.
#![cfg_attr(
    feature = "tokio",
    doc = "[run_async]: crate::DaemonBuilder::run_async\n[messages_async]: crate::DaemonBuilder::messages_async\n[worker_threads]: crate::DaemonBuilder::worker_threads\n"
)]
#![cfg_attr(
    not(feature = "tokio"),
    doc = "[run_async]: https://docs.rs/daemons/latest/daemons/struct.DaemonBuilder.html#method.run_async\n[messages_async]: https://docs.rs/daemons/latest/daemons/struct.DaemonBuilder.html#method.messages_async\n[worker_threads]: https://docs.rs/daemons/latest/daemons/struct.DaemonBuilder.html#method.worker_threads\n"
)]
#![doc = include_str!("guide.md")]
