//! A global allocator for programs that move large tiles around: the system
//! allocator, plus a request for transparent huge pages on every block of
//! 4 MiB or more, plus a small cache of freed blocks of 16 MiB or more.
//!
//! glibc hands blocks of [`GLIBC_MAX_MMAP_THRESHOLD`] (32 MiB) and more
//! straight back to the kernel when they are freed (even after
//! [`prepare_process`](crate::prepare_process) raised its threshold), and the kernel zeroes every page of the next one: when the
//! in-memory store still held encoded tiles, decoding 2048² tiles spent most
//! of its time in the kernel's page clearing (58–77% of all CPU in a
//! randomized SVD of 16384²). Kernel outputs are fresh blocks too. Freed
//! large blocks therefore wait in a few slots for a request of the same size
//! (at most 64 blocks and 1 GiB or an eighth of physical memory, whichever is
//! smaller), and with the kernel's transparent huge pages in `madvise` mode
//! (a common default) a fresh one faults 16 times instead of 8192.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// The system allocator, advising the kernel to back large blocks with huge
/// pages. Install it in a binary:
///
/// ```
/// #[global_allocator]
/// static ALLOCATOR: wukong::LargePages = wukong::LargePages;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct LargePages;

/// glibc's largest mmap threshold on 64-bit targets: [`prepare_process`]
/// raises the threshold to it, so that blocks below it are reused from the
/// heap; blocks of this size and more still come from `mmap`, which is what
/// the slots here are for.
///
/// [`prepare_process`]: crate::prepare_process
pub(crate) const GLIBC_MAX_MMAP_THRESHOLD: usize = 32 << 20;

/// Blocks at least this large are advised.
const LARGE: usize = 4 << 20;
/// Freed blocks at least this large are kept for reuse.
const CACHED: usize = 16 << 20;
const SLOTS: usize = 64;

/// Freed large blocks: a slot is empty when its pointer is null; its size
/// and alignment are written before the pointer is published.
struct Slots {
    ptr: [AtomicPtr<u8>; SLOTS],
    size: [AtomicUsize; SLOTS],
    align: [AtomicUsize; SLOTS],
    /// Bytes held in slots.
    held: AtomicUsize,
    /// The cap on `held`, computed on first use (0: not yet).
    cap: AtomicUsize,
}

static FREED: Slots = Slots {
    ptr: [const { AtomicPtr::new(std::ptr::null_mut()) }; SLOTS],
    size: [const { AtomicUsize::new(0) }; SLOTS],
    align: [const { AtomicUsize::new(0) }; SLOTS],
    held: AtomicUsize::new(0),
    cap: AtomicUsize::new(0),
};

impl Slots {
    /// A kept block of exactly this layout, if any.
    fn take(&self, layout: Layout) -> Option<*mut u8> {
        if layout.size() < CACHED || self.held.load(Ordering::Relaxed) == 0 {
            return None;
        }
        for i in 0..SLOTS {
            let ptr = self.ptr[i].load(Ordering::Acquire);
            // Null: empty; dangling: being filled by `keep`.
            if ptr.is_null()
                || ptr == std::ptr::dangling_mut::<u8>()
                || self.size[i].load(Ordering::Relaxed) != layout.size()
                || self.align[i].load(Ordering::Relaxed) != layout.align()
            {
                continue;
            }
            if self.ptr[i]
                .compare_exchange(
                    ptr,
                    std::ptr::null_mut(),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                self.held.fetch_sub(layout.size(), Ordering::Relaxed);
                return Some(ptr);
            }
        }
        None
    }

    /// Keeps a freed block; `false` when it is small or there is no room.
    fn keep(&self, ptr: *mut u8, layout: Layout) -> bool {
        let size = layout.size();
        if size < CACHED || self.held.load(Ordering::Relaxed) + size > self.cap() {
            return false;
        }
        for i in 0..SLOTS {
            if !self.ptr[i].load(Ordering::Relaxed).is_null() {
                continue;
            }
            // Claim the slot with a marker so that its size can be written
            // before the block is published.
            let busy = std::ptr::dangling_mut::<u8>();
            if self.ptr[i]
                .compare_exchange(
                    std::ptr::null_mut(),
                    busy,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                continue;
            }
            self.size[i].store(size, Ordering::Relaxed);
            self.align[i].store(layout.align(), Ordering::Relaxed);
            self.held.fetch_add(size, Ordering::Relaxed);
            self.ptr[i].store(ptr, Ordering::Release);
            return true;
        }
        false
    }

    fn cap(&self) -> usize {
        match self.cap.load(Ordering::Relaxed) {
            0 => {
                let cap = (1usize << 30).min(physical_memory() / 8).max(CACHED);
                self.cap.store(cap, Ordering::Relaxed);
                cap
            }
            cap => cap,
        }
    }
}

// SAFETY: every block handed out was allocated by `System` for exactly the
// layout asked for: a fresh one, or one that `dealloc` kept instead of
// freeing, which `take` hands out only for the same size and alignment and
// only once (a slot's pointer is swapped out atomically before use). Every
// block ends in `System` with the layout it was allocated with: `dealloc`
// keeps it in a slot (to be handed out again as such) or frees it, and
// `realloc` forwards to `System`, which accepts any block it allocated. The
// huge-page advice only changes how the kernel backs the pages, not their
// contents or validity.
unsafe impl GlobalAlloc for LargePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if let Some(ptr) = FREED.take(layout) {
            return ptr;
        }
        // SAFETY: the caller's contract is `System`'s.
        let ptr = unsafe { System.alloc(layout) };
        advise(ptr, layout.size());
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if let Some(ptr) = FREED.take(layout) {
            // SAFETY: the block holds `layout.size()` writable bytes.
            unsafe { std::ptr::write_bytes(ptr, 0, layout.size()) };
            return ptr;
        }
        // SAFETY: as above.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        advise(ptr, layout.size());
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !FREED.keep(ptr, layout) {
            // SAFETY: as above.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let ptr = unsafe { System.realloc(ptr, layout, new_size) };
        advise(ptr, new_size);
        ptr
    }
}

/// Bytes of physical memory (0 when unknown).
#[cfg(target_os = "linux")]
fn physical_memory() -> usize {
    use std::ffi::{c_int, c_long};
    unsafe extern "C" {
        fn sysconf(name: c_int) -> c_long;
    }
    const SC_PAGESIZE: c_int = 30;
    const SC_PHYS_PAGES: c_int = 85;
    // SAFETY: sysconf only reads system parameters.
    let (pages, size) = unsafe { (sysconf(SC_PHYS_PAGES), sysconf(SC_PAGESIZE)) };
    usize::try_from(pages.max(0)).unwrap_or(0) * usize::try_from(size.max(0)).unwrap_or(0)
}

#[cfg(not(target_os = "linux"))]
fn physical_memory() -> usize {
    8 << 30
}

#[cfg(target_os = "linux")]
fn advise(ptr: *mut u8, size: usize) {
    use std::ffi::{c_int, c_void};
    unsafe extern "C" {
        fn madvise(addr: *mut c_void, len: usize, advice: c_int) -> c_int;
    }
    const MADV_HUGEPAGE: c_int = 14;
    const HUGE_PAGE: usize = 2 << 20;
    if ptr.is_null() || size < LARGE {
        return;
    }
    // The whole huge pages inside the block; a failure leaves small pages.
    let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
    let end = (ptr as usize + size) / HUGE_PAGE * HUGE_PAGE;
    if end > start {
        // SAFETY: the range lies inside the block just allocated, and the
        // advice does not change its contents or validity.
        unsafe {
            madvise(start as *mut c_void, end - start, MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise(_: *mut u8, _: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_blocks_are_reused_zeroed_when_asked_and_small_ones_pass_through() {
        let layout = Layout::from_size_align(CACHED + 4096, 64).unwrap();
        let a = LargePages;
        // SAFETY: the layouts are non-zero; each block is freed with its layout.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            p.write_bytes(7, layout.size());
            a.dealloc(p, layout);
            // The same size comes back (from a slot, unless another test
            // thread took it), and a zeroed request is zero.
            let q = a.alloc_zeroed(layout);
            assert!(!q.is_null());
            let bytes = std::slice::from_raw_parts(q, layout.size());
            assert!(bytes.iter().all(|&b| b == 0));
            // Another alignment is not served by that block.
            let other = Layout::from_size_align(layout.size(), 128).unwrap();
            a.dealloc(q, layout);
            let r = a.alloc(other);
            assert_eq!(r as usize % 128, 0);
            a.dealloc(r, other);
            let small = Layout::from_size_align(64, 8).unwrap();
            let s = a.alloc(small);
            assert!(!s.is_null());
            a.dealloc(s, small);
        }
        assert!(FREED.cap() >= CACHED);
    }
}
