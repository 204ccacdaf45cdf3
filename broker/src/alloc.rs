//! The process allocator, with one guard: allocations of 1 GiB or more are
//! served as lazily committed anonymous memory (`MAP_NORESERVE`) instead of
//! through malloc.
//!
//! Why: `kafka-protocol` 0.18 decodes an array by first calling
//! `Vec::with_capacity(n)` with `n` read from the wire. A 17-byte frame whose
//! array claims 2^31 elements asks for ~150 GB; malloc refuses, and Rust
//! aborts the whole broker. Reserved but untouched address space costs
//! nothing, so here that allocation succeeds, the decoder then fails on the
//! missing bytes, and the mapping is returned without a page ever being used.
//! (The fix belongs upstream; this keeps one bad frame from killing a broker.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::{self, null_mut};

use rustix::mm::{MapFlags, ProtFlags, mmap_anonymous, munmap};

/// At and above this size, allocations bypass malloc.
const HUGE: usize = 1 << 30;
const PAGE: usize = 4096;

/// The allocator of every binary that links the broker.
#[derive(Debug)]
pub struct GuardedAlloc;

fn is_huge(size: usize, align: usize) -> bool {
    size >= HUGE && align <= PAGE
}

#[allow(unsafe_code)]
// SAFETY: every pointer handed out comes either from `System` (small) or from
// `mmap_anonymous` (huge, page aligned, zero-filled); `dealloc` and `realloc`
// route by the same size test, so each pointer returns to its own source.
unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout.size(), layout.align()) {
            // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
            match unsafe {
                mmap_anonymous(
                    null_mut(),
                    layout.size(),
                    ProtFlags::READ | ProtFlags::WRITE,
                    MapFlags::PRIVATE | MapFlags::NORESERVE,
                )
            } {
                Ok(p) => p.cast(),
                Err(_) => null_mut(),
            }
        } else {
            // SAFETY: forwarded unchanged.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout.size(), layout.align()) {
            // SAFETY: anonymous mappings are zero-filled.
            unsafe { self.alloc(layout) }
        } else {
            // SAFETY: forwarded unchanged.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(layout.size(), layout.align()) {
            // SAFETY: `ptr` came from `mmap_anonymous` with this exact length.
            let _ = unsafe { munmap(ptr.cast(), layout.size()) };
        } else {
            // SAFETY: `ptr` came from `System` with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !is_huge(layout.size(), layout.align()) && !is_huge(new_size, layout.align()) {
            // SAFETY: both sizes belong to `System`.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the caller guarantees a valid layout for `new_size`.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: allocate, copy the common prefix, free the old block.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[global_allocator]
static ALLOCATOR: GuardedAlloc = GuardedAlloc;

#[cfg(test)]
mod tests {
    #[test]
    fn an_absurd_capacity_is_reserved_not_committed() {
        // What a hostile array length makes the decoder do.
        let mut v: Vec<[u8; 64]> = Vec::with_capacity(i32::MAX as usize);
        v.push([1; 64]);
        assert_eq!(v[0][0], 1);
        drop(v);
        // Growing across the threshold moves the contents into a mapping.
        let mut grown: Vec<u8> = (0..10).collect();
        grown.reserve_exact(2 << 30);
        grown.push(10);
        assert_eq!(grown, (0..11).collect::<Vec<u8>>());
        grown.shrink_to_fit();
        assert_eq!(grown.len(), 11);
    }
}
