//! The engine: plain Rust, no Python (covered by `cargo test`).
//!
//! `protocol` (frames), `buffers` (recycled buffers for large frames), `shm`
//! (large payloads through memfds passed over the socket), `jobs` (per-job
//! outcomes), `outbox` (pending output, large payloads not copied),
//! `scheduler` (who runs what), `supervisor` (starting and reaping workers),
//! `event_loop` (the engine thread), `handle` (the handle the bindings hold),
//! `shared` (what the two share: commands, status, the wake-up, the fork gate), `errors`, `sync` (lock helpers), `spin` (how
//! long waits spin), `tally` (how many tasks a worker has begun).

pub mod buffers;
pub mod errors;
pub mod event_loop;
pub mod handle;
pub mod jobs;
pub mod outbox;
pub mod protocol;
pub mod scheduler;
pub mod shared;
pub mod shm;
pub mod spin;
pub mod stats;
pub mod supervisor;
pub mod sync;
pub mod tally;
