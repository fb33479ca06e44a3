//! Process-wide settings for the long jobs (`aggregate` and what calls it).

/// Freed memory glibc's malloc keeps at the top of a heap before returning it to the system.
pub const TRIM_THRESHOLD_BYTES: i32 = 16 << 20;

/// Lets glibc's malloc keep up to [`TRIM_THRESHOLD_BYTES`] freed at the top of each heap
/// (default: 128 KiB, raised dynamically only as large blocks are freed). Reading a batch
/// allocates and frees a few MB (page buffers, record batches, trajectories) on every thread;
/// with the default those pages go back to the system after each batch and are faulted in,
/// zeroed, again for the next: about a sixth of aggregate's CPU on a 2 000-rollout run
/// (`perf`: page faults, madvise). Memory held grows by at most this much per heap (one per
/// thread). Does nothing on other C libraries.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tuning value of the allocator; it may be called at any time.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
    }
}
