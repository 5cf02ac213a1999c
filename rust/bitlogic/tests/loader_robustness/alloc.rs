//! Allocation accounting: a global allocator that counts what each thread requests, so a test can bound what one
//! call allocates.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

/// Counts the bytes requested by each thread (never decremented), so a test can bound what one call allocates.
pub(crate) struct Counting;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

pub(crate) fn note(bytes: usize) {
    // `try_with`: the slot may already be gone while a thread is being torn down.
    let _ = ALLOCATED.try_with(|a| a.set(a.get().saturating_add(bytes)));
}

// SAFETY: every call is forwarded unchanged to the system allocator; only a thread-local counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
pub(crate) static GLOBAL: Counting = Counting;

/// Runs `f`, returning its result, the bytes it allocated on this thread, and how long it took.
pub(crate) fn measured<T>(f: impl FnOnce() -> T) -> (T, usize, Duration) {
    let before = ALLOCATED.with(Cell::get);
    let start = Instant::now();
    let out = f();
    let elapsed = start.elapsed();
    (out, ALLOCATED.with(Cell::get) - before, elapsed)
}

/// What a loader may allocate for a file of `len` bytes: a constant plus a multiple of the file (unpacking a
/// table byte into a word is 8x; parsing and the network's own copies add some more).
pub(crate) fn allocation_budget(len: usize) -> usize {
    (1 << 20) + 64 * len
}
