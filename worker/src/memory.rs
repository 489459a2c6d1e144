//! Memory that holds secrets: wiping it in bulk, once, and which buffers
//! need it (issue 17).
//!
//! [`wipe_vec`] zeroes a vector's whole allocation (its elements and its
//! spare capacity) with one `memset` (`ptr::write_bytes`, vectorized) and
//! then an optimization barrier, so the stores cannot be removed as dead.
//! It replaces `zeroize`'s `Vec` implementation, which writes the
//! initialized elements one volatile word at a time (no vector stores,
//! no streaming stores for large blocks). The semantics are `zeroize`'s: the whole capacity is zeroed and
//! the vector is left empty with its allocation. What a reallocation left
//! behind earlier is not reachable and not wiped (as with `zeroize`);
//! code that grows secret vectors reserves first (see the dealer's
//! `reserve_zeroizing`).
//!
//! What is wiped, once, when it stops being needed:
//!
//! - [`Secret`](crate::sharing::Secret) and [`Share`](crate::sharing::Share)
//!   (plaintext secrets and additive shares), [`Bits`](crate::gf2::Bits) and
//!   [`Packed`](crate::gf2::Packed) (XOR shares), parsed input
//!   [`Values`](crate::data::Values): on drop, with [`wipe_vec`]. A vector
//!   taken out with `into_inner` is the caller's to wipe.
//!
//! What is not wiped, and why:
//!
//! - **Message buffers of an opening** (the transport's buffer pool,
//!   `Mesh::recycle`). An opening's message holds this party's masked
//!   values `x_i - a_i` (Beaver), `r_i + x_i` (a masked opening or a
//!   division), bit-sliced `x_i ^ a_i`: each is sent to every other party,
//!   so every party of the job sees it, and all of them together open only
//!   `x - a`, uniform and independent of `x` while the mask `a` stays
//!   secret (the mask's shares are wiped with the material). A memory
//!   disclosure of such a buffer after the job reveals nothing a corrupted
//!   peer did not see during it. They used to be zeroed on recycling, which
//!   cost a `memset` over every pooled buffer of every layer for nothing.
//!   A buffer that held a share or a secret (an output's shares sent to its
//!   recipients; Rep3's message re-sharing a product to its neighbour, which
//!   is that neighbour's share) goes to `Mesh::recycle_secret`, which
//!   wipes it once, or is wiped by its owner.
//! - Buffers outside this crate's reach: the TLS library's record buffers
//!   and the kernel's socket buffers hold plaintext messages in passing.
//!
//! The binaries' allocator ([`global_allocator!`]): jemalloc, configured
//! to keep freed large blocks mapped for a bounded time (docs/worker.md,
//! "Memory").

use std::mem::MaybeUninit;
use std::sync::atomic::{Ordering, compiler_fence};

/// `len` zeros, written rather than requested zeroed from the allocator.
///
/// `vec![0; len]` asks for zeroed memory, which the kernel maps to its
/// shared zero page until the first write. A vector that is *read* first
/// (a share's zero component in a product) and later written (wiped on
/// drop, or updated in place) then takes a copy-on-write fault per page,
/// each flushing the TLB of every CPU the process runs on: a third of a
/// replicated multiplication's time at 10^6 elements. Writing the zeros
/// up front faults the pages in once, privately.
pub fn zeroed<T: zeroize::DefaultIsZeroes>(len: usize) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    v.resize(len, T::default());
    v
}

/// Zero all of `v`'s allocation, elements and spare capacity, in bulk, and
/// leave it empty (its capacity kept). `T` must be a plain value type for
/// which all-zero bytes are valid (`zeroize::DefaultIsZeroes`: integers,
/// floats, `bool`).
pub fn wipe_vec<T: zeroize::DefaultIsZeroes>(v: &mut Vec<T>) {
    // `T: Copy`, so clearing runs no destructors; now the spare capacity
    // is the whole allocation.
    v.clear();
    wipe_uninit(v.spare_capacity_mut());
}

/// Zero `s` in bulk (see [`wipe_vec`]).
pub fn wipe_slice<T: zeroize::DefaultIsZeroes>(s: &mut [T]) {
    // SAFETY: `T` is `Copy` with all-zero bytes a valid value, so viewing
    // the initialized elements as `MaybeUninit<T>` and zeroing their bytes
    // leaves valid `T`s.
    let uninit = unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<MaybeUninit<T>>(), s.len()) };
    wipe_uninit(uninit);
}

fn wipe_uninit<T>(s: &mut [MaybeUninit<T>]) {
    let bytes = std::mem::size_of_val(s);
    if bytes == 0 {
        return;
    }
    let ptr = s.as_mut_ptr().cast::<u8>();
    // SAFETY: `s` grants exclusive access to `bytes` writable bytes, and
    // `MaybeUninit` accepts any bytes.
    unsafe { std::ptr::write_bytes(ptr, 0, bytes) };
    // Why the `memset` survives even when the memory is freed right after
    // (a dropped share): the barrier is an `asm!` block given the pointer
    // and declared to read memory (`readonly`, no `nomem`), so the compiler
    // must assume the zeroes are read there and cannot drop the stores as
    // dead; it emits no instruction. The fence keeps later code from being
    // moved above the wipe.
    barrier(ptr);
    compiler_fence(Ordering::SeqCst);
}

#[inline(always)]
fn barrier(ptr: *const u8) {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    // SAFETY: an empty assembly block; it only receives the pointer.
    unsafe {
        std::arch::asm!("/* wiped {0} */", in(reg) ptr, options(readonly, preserves_flags, nostack));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    std::hint::black_box(ptr);
}

/// A vector wiped in bulk ([`wipe_vec`]) when dropped: what
/// `zeroize::Zeroizing<Vec<T>>` does for plain values, without its loop of
/// one volatile write per element (per byte, for a `Vec<u8>`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Wiped<T: zeroize::DefaultIsZeroes>(pub Vec<T>);

impl<T: zeroize::DefaultIsZeroes> std::ops::Deref for Wiped<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T: zeroize::DefaultIsZeroes> std::ops::DerefMut for Wiped<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.0
    }
}

impl<T: zeroize::DefaultIsZeroes> Drop for Wiped<T> {
    fn drop(&mut self) {
        wipe_vec(&mut self.0);
    }
}

impl<T: zeroize::DefaultIsZeroes> std::fmt::Debug for Wiped<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Wiped(<{} redacted elements>)", self.0.len())
    }
}

/// The allocator of the binaries that run jobs.
#[cfg(not(target_env = "msvc"))]
pub use tikv_jemallocator::Jemalloc;

/// jemalloc's options for the binaries (read before `main`, through the
/// `malloc_conf` symbol that [`global_allocator!`] defines).
///
/// - `oversize_threshold:0`: no separate arena for blocks over 8 MiB.
///   jemalloc gives that arena a decay time of zero, so each freed 80 MB
///   share, material vector or 160 MB message at 10^7 elements would be
///   unmapped at once and faulted in and zeroed by the kernel on its next
///   use, as glibc does (docs/benchmarks.md, issue 17). In the ordinary
///   arenas freed pages stay mapped and are reused by the next layer or
///   job, and are returned to the OS over `dirty_decay_ms` (10 s default).
/// - `background_thread:true`: that return happens on time in jemalloc's
///   own thread, also in an idle worker that allocates nothing (without it
///   purging only runs as a side effect of allocating).
pub const MALLOC_CONF: &[u8] = b"oversize_threshold:0,background_thread:true\0";

/// Make jemalloc, configured by [`MALLOC_CONF`], the global allocator of
/// the binary that invokes this at its crate root (not on MSVC targets,
/// which jemalloc does not support). Only binaries: the library's unit
/// tests use their own allocator (`memory::tests`).
#[macro_export]
macro_rules! global_allocator {
    () => {
        #[cfg(not(target_env = "msvc"))]
        #[global_allocator]
        static GLOBAL: $crate::memory::Jemalloc = $crate::memory::Jemalloc;

        // jemalloc reads its options from this C string (`const char *`)
        // at its first allocation; tikv-jemalloc-sys prefixes its symbols
        // with `_rjem_`.
        #[cfg(not(target_env = "msvc"))]
        #[unsafe(export_name = "_rjem_malloc_conf")]
        static MALLOC_CONF: &u8 = &$crate::memory::MALLOC_CONF[0];
    };
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout, System};

    /// The unit tests' allocator: the system's, reporting frees to
    /// [`watch`].
    struct Watching;

    #[global_allocator]
    static GLOBAL: Watching = Watching;

    // SAFETY: every call is forwarded to `System` unchanged.
    unsafe impl GlobalAlloc for Watching {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's contract, forwarded.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            watch::on_free(ptr, layout.size());
            // SAFETY: as above.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as above.
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: as above.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    /// Lets a test observe a block's bytes as the allocator frees it, so
    /// that "wiped on drop" is checked without reading freed memory.
    pub(crate) mod watch {
        use std::cell::Cell;

        thread_local! {
            /// (address watched, and once freed: 1 if it was all zero, 2 if not)
            static WATCH: Cell<(usize, u8)> = const { Cell::new((0, 0)) };
        }

        pub(crate) fn on_free(ptr: *mut u8, size: usize) {
            // `try_with`: the allocator also runs while threads exit.
            let _ = WATCH.try_with(|w| {
                let (at, _) = w.get();
                if at != 0 && at == ptr as usize {
                    // SAFETY: the block is still allocated (freed after this
                    // returns) and `size` bytes long.
                    let bytes = unsafe { std::slice::from_raw_parts(ptr, size) };
                    w.set((at, if bytes.iter().all(|b| *b == 0) { 1 } else { 2 }));
                }
            });
        }

        /// Watch the block at `ptr` (this thread's frees only).
        pub(crate) fn start(ptr: *const u8) {
            WATCH.with(|w| w.set((ptr as usize, 0)));
        }

        /// Whether the watched block was freed, and if so whether all its
        /// bytes were zero then.
        pub(crate) fn freed_zeroed() -> Option<bool> {
            let (_, state) = WATCH.with(|w| w.replace((0, 0)));
            match state {
                0 => None,
                s => Some(s == 1),
            }
        }
    }

    #[test]
    fn wipe_vec_zeroes_elements_and_spare_capacity() {
        let mut v: Vec<u64> = Vec::with_capacity(1000);
        v.extend(std::iter::repeat_n(u64::MAX, 1000));
        v.truncate(300); // the rest of the capacity still holds old values
        let (ptr, cap) = (v.as_ptr(), v.capacity());
        wipe_vec(&mut v);
        assert!(v.is_empty());
        assert_eq!((v.as_ptr(), v.capacity()), (ptr, cap), "the allocation is kept");
        // Read back the whole allocation: the wipe initialized every byte.
        // SAFETY: `cap` elements, all written (zero) by the wipe.
        unsafe { v.set_len(cap) };
        assert_eq!(v.iter().position(|x| *x != 0), None, "a word survived the wipe");
        let mut s = [7u8; 37];
        wipe_slice(&mut s[3..]);
        assert_eq!(&s[..3], &[7, 7, 7]);
        assert!(s[3..].iter().all(|b| *b == 0));
    }

    #[test]
    fn a_dropped_vector_is_freed_wiped_only_when_wiped() {
        // The control: a plain vector is freed with its contents.
        let v = vec![0xa5a5_a5a5_u64; 4096];
        watch::start(v.as_ptr().cast());
        drop(v);
        assert_eq!(watch::freed_zeroed(), Some(false));
        let mut v = vec![0xa5a5_a5a5_u64; 4096];
        watch::start(v.as_ptr().cast());
        wipe_vec(&mut v);
        drop(v);
        assert_eq!(watch::freed_zeroed(), Some(true));
        // `Wiped` wipes on drop, bytes included.
        let w = Wiped(vec![0x5au8; 10_000]);
        watch::start(w.as_ptr());
        drop(w);
        assert_eq!(watch::freed_zeroed(), Some(true));
    }
}
