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
    sluice_engine::runtime::set_memory_release(|| {
        // SAFETY: mimalloc's collect is thread-safe for the calling thread's heap and the
        // shared arenas.
        unsafe { libmimalloc_sys::mi_collect(true) }
    });
    sluice_connectors::failpoints::init();
    sluice::cli::main()
}
