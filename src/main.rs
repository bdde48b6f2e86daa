use std::process::ExitCode;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (the `-sys` crate names only the
/// stable options).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // Freed memory stays mapped for 10 s (mimalloc's default: 10 ms; jemalloc's decay is
    // 10 s too) before it goes back to the OS: batches and window buffers are freed and
    // allocated again all the time, and pages handed back are faulted in and zeroed by the
    // kernel again (2 MiB at a time with transparent huge pages), which cost a quarter of W1's
    // CPU. The memory budget still gives memory back at once (`mi_collect`).
    // MIMALLOC_PURGE_DELAY in the environment still decides.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: a plain setter of mimalloc's, called before any other thread exists.
        unsafe {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 10_000);
        }
    }
    // No transparent huge pages for this process: each first touch of a 2 MiB region had the
    // kernel zero all of it, and a pipeline's buffers are touched all over as they grow. On W1
    // (1M events, 8 alternating runs, twice) CPU fell by 5-6%, system time by half and peak
    // memory by a sixth. MIMALLOC_ALLOW_THP in the environment still decides.
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: PR_SET_THP_DISABLE only sets a flag of this process's memory map; a failure
        // (an old kernel) leaves huge pages on, as before.
        unsafe {
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
    }
    sluice_engine::runtime::set_memory_release(|| {
        // SAFETY: mimalloc's collect is thread-safe for the calling thread's heap and the
        // shared arenas.
        unsafe { libmimalloc_sys::mi_collect(true) }
    });
    sluice_connectors::failpoints::init();
    sluice::cli::main()
}
