use std::process::ExitCode;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (the `-sys` crate names only the
/// stable options).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// `mi_option_destroy_on_exit` in the same enum: above 1, mimalloc's exit handler returns at
/// once.
const MI_OPTION_DESTROY_ON_EXIT: libmimalloc_sys::mi_option_t = 22;

fn main() -> ExitCode {
    // Freed memory stays mapped for 10 s (mimalloc's default: 10 ms; jemalloc's decay is
    // 10 s too) before it goes back to the OS: batches and window buffers are freed and
    // allocated again all the time, and pages handed back are faulted in and zeroed by the
    // kernel again (2 MiB at a time with transparent huge pages), which cost a quarter of W1's
    // CPU. The memory budget still gives memory back at once (`mi_collect`).
    // MIMALLOC_PURGE_DELAY in the environment still decides.
    mi_option_unless_env("MIMALLOC_PURGE_DELAY", MI_OPTION_PURGE_DELAY, 10_000);
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
        // The C libraries' free pages too (kept up to 256 MiB, below). SAFETY: malloc_trim
        // takes glibc's arena locks itself.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        unsafe {
            libc::malloc_trim(0);
        }
    });
    // At exit mimalloc's handler collected every heap and gave all its arenas' pages back, one
    // madvise at a time, to an OS about to take them anyway: 1.6% of a W2 run's CPU.
    // MIMALLOC_DESTROY_ON_EXIT in the environment still decides.
    mi_option_unless_env("MIMALLOC_DESTROY_ON_EXIT", MI_OPTION_DESTROY_ON_EXIT, 2);
    c_malloc_keeps_its_pages();
    sluice_connectors::failpoints::init();
    sluice::cli::main()
}

/// Sets a mimalloc option, unless the environment variable mimalloc reads for it is set.
/// Called before any other thread exists.
fn mi_option_unless_env(var: &str, option: libmimalloc_sys::mi_option_t, value: std::ffi::c_long) {
    if std::env::var_os(var).is_none() {
        // SAFETY: a plain setter of mimalloc's, called before any other thread exists.
        unsafe { libmimalloc_sys::mi_option_set(option, value) }
    }
}

/// The C libraries (librdkafka's fetch and decompression buffers above all) allocate with the C
/// library's malloc, not mimalloc. glibc gave each buffer of a fetch's size its own mapping,
/// or trimmed its arenas' freed tops, and every fetch faulted fresh pages in again (page
/// faults under LZ4's decompression were 4% of a W2 run's CPU samples). Up to 32 MiB (glibc's
/// largest mmap threshold) now comes from the arenas, which keep up to 256 MiB of free pages.
/// MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ or GLIBC_TUNABLES in the environment still
/// decide.
fn c_malloc_keeps_its_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set = |var: &str| std::env::var_os(var).is_some();
        if set("GLIBC_TUNABLES") {
            return;
        }
        // SAFETY: mallopt only sets glibc's malloc parameters; called before any other thread
        // exists. A value glibc refuses leaves its default.
        unsafe {
            if !set("MALLOC_MMAP_THRESHOLD_") {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            }
            if !set("MALLOC_TRIM_THRESHOLD_") {
                libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
            }
        }
    }
}
