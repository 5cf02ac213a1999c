//! Where the kernels run their tasks.
//!
//! A kernel splits its work into tasks, each writing its own part of the results, and [`run_tasks`] runs them: the
//! calling thread takes tasks from a shared queue, and so do the helper threads that are free to join while tasks
//! are left. Helpers sleep between calls and never spin, and the caller waits only for a helper that is running a
//! task, never for one the OS has not run yet.
//!
//! Why not a usual pool: in a torch training step the kernels alternate with torch's own parallel operations a dozen
//! times, and torch's OpenMP threads spin for milliseconds after each of its regions (forever with
//! `OMP_WAIT_POLICY=ACTIVE`), as do rayon's idle workers after each kernel: on two cores, or on a machine busy with
//! other work, the two pools took each other's cores and the kernels measured 2-5x slower inside a step than alone
//! (rayon's pool, the kernels' before). Running the tasks on torch's OpenMP team itself (through `GOMP_parallel`)
//! measured best on an idle machine, but a team ends each call at a barrier that waits for every member, and on a
//! busy machine that cost 3x; threads spawned per call lost to both.
//!
//! How many threads a call may use is the caller's choice ([`with_threads`]; the Python layers pass
//! `torch.get_num_threads()`). The results do not depend on it: every task is taken whole by one thread and sums in
//! its own fixed order.

use std::any::Any;
use std::cell::Cell;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use rayon::prelude::*;

/// How the kernels called on a thread run their tasks (see [`with_threads`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// At most this many threads, the caller among them (the others are the crate's sleeping helpers). 1 runs
    /// everything on the caller.
    AtMost(NonZeroUsize),
    /// Rayon's global pool, one worker per core, whose idle workers spin before they sleep: how the kernels ran
    /// before, kept for comparison (`benches/train_step.py`).
    RayonPool,
}

impl Default for Threads {
    /// One thread per core.
    fn default() -> Self {
        Threads::AtMost(std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN))
    }
}

thread_local! {
    /// The setting of [`with_threads`] on this thread; `None` outside it (then [`Threads::default`]).
    static THREADS: Cell<Option<Threads>> = const { Cell::new(None) };
}

/// Runs `f` with the kernels it calls on this thread using `threads`, and restores the previous setting after (also
/// when `f` panics). Other threads are not affected, so callers on several threads can each choose their own.
pub fn with_threads<R>(threads: Threads, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Threads>);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREADS.with(|t| t.set(self.0));
        }
    }
    let _restore = Restore(THREADS.with(|t| t.replace(Some(threads))));
    f()
}

/// The setting the kernels called on this thread use now.
pub fn current_threads() -> Threads {
    THREADS.with(Cell::get).unwrap_or_default()
}

/// Runs `f` on every task, in parallel as [`current_threads`] says, and returns when all are done. Each task is
/// taken whole by one thread, in the order of the list; a kernel whose tasks write disjoint parts of its results
/// (moved into the tasks as `&mut` slices) therefore computes the same bits on any number of threads. Kernels call
/// it for work worth waking threads for (about [`PARALLEL_MIN`](crate::PARALLEL_MIN) results or more) and run
/// smaller work inline. A panic in `f` reaches the caller once every thread has stopped.
pub fn run_tasks<T: Send>(tasks: Vec<T>, f: impl Fn(T) + Sync) {
    let threads = match current_threads() {
        Threads::RayonPool => {
            tasks.into_par_iter().for_each(&f);
            return;
        }
        Threads::AtMost(n) => n.get().min(tasks.len()),
    };
    if threads <= 1 {
        tasks.into_iter().for_each(f);
        return;
    }
    // One shared queue: a task lasts 10-100 us, so taking the lock once per task costs nothing measurable, and a
    // thread that the OS runs less (a busy machine) simply takes fewer tasks.
    let queue = Mutex::new(tasks.into_iter());
    let panicked: Mutex<Option<Box<dyn Any + Send>>> = Mutex::new(None);
    let work = || loop {
        let Some(task) = queue.lock().unwrap_or_else(|e| e.into_inner()).next() else { break };
        if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(task))) {
            // Drain the queue so the other threads stop, and keep the first panic for the caller.
            queue.lock().unwrap_or_else(|e| e.into_inner()).by_ref().for_each(drop);
            panicked.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(payload);
        }
    };
    helpers::run_with_helpers(threads - 1, &work);
    if let Some(payload) = panicked.into_inner().unwrap_or_else(|e| e.into_inner()) {
        std::panic::resume_unwind(payload);
    }
}

/// Helper threads that sleep (no spinning) until a call needs them, and join a call only while it has tasks left:
/// the caller never waits for a helper that the OS has not run yet, only for those running a task.
mod helpers {
    use std::sync::{Condvar, Mutex, OnceLock};

    /// The `work` of a call, its lifetime erased: helpers call it only between joining the call (under the lock,
    /// while the call is posted) and leaving it, and the caller withdraws it and waits for them to leave first.
    #[derive(Clone, Copy)]
    struct Work(*const (dyn Fn() + Sync));
    // SAFETY: the closure is `Sync`, and the protocol above keeps it alive while helpers use it.
    unsafe impl Send for Work {}

    struct State {
        /// The posted call, if any (one at a time; other callers run alone meanwhile).
        work: Option<Work>,
        /// Helpers the posted call still takes.
        wanted: usize,
        /// Helpers inside the posted call's `work`.
        active: usize,
        /// Helper threads started so far.
        started: usize,
        /// Bumped per posted call, so that a helper joins each call at most once.
        call: u64,
    }

    struct Pool {
        state: Mutex<State>,
        /// Signals helpers that a call was posted.
        posted: Condvar,
        /// Signals the caller that the last active helper left.
        left: Condvar,
    }

    fn pool() -> &'static Pool {
        static POOL: OnceLock<Pool> = OnceLock::new();
        POOL.get_or_init(|| Pool {
            state: Mutex::new(State { work: None, wanted: 0, active: 0, started: 0, call: 0 }),
            posted: Condvar::new(),
            left: Condvar::new(),
        })
    }

    fn helper(pool: &'static Pool) {
        let mut last = 0;
        let mut state = pool.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match state.work {
                Some(work) if state.wanted > 0 && state.call != last => {
                    last = state.call;
                    state.wanted -= 1;
                    state.active += 1;
                    drop(state);
                    // SAFETY: joined under the lock while posted; the caller waits for `active` to fall to 0.
                    unsafe { (*work.0)() };
                    state = pool.state.lock().unwrap_or_else(|e| e.into_inner());
                    state.active -= 1;
                    if state.active == 0 {
                        pool.left.notify_all();
                    }
                }
                _ => state = pool.posted.wait(state).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }

    /// Runs `work` on the calling thread and on up to `helpers` helper threads at once; returns when the caller's
    /// `work` has returned and no helper is inside it. `work` must not unwind.
    pub(super) fn run_with_helpers(helpers: usize, work: &(dyn Fn() + Sync)) {
        let pool = pool();
        {
            let mut state = pool.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.work.is_some() {
                drop(state);
                return work(); // another call holds the helpers: this one runs alone
            }
            while state.started < helpers {
                if std::thread::Builder::new().name("bitlogic-train".into()).spawn(move || helper(pool)).is_err() {
                    break; // no thread today: the caller does the work
                }
                state.started += 1;
            }
            // SAFETY (of the erasure): see `Work`; the pointer is withdrawn below before `work` goes out of scope.
            let erased = unsafe { std::mem::transmute::<&(dyn Fn() + Sync), &'static (dyn Fn() + Sync)>(work) };
            state.work = Some(Work(erased));
            state.wanted = helpers;
            state.call += 1;
            pool.posted.notify_all();
        }
        work();
        let mut state = pool.state.lock().unwrap_or_else(|e| e.into_inner());
        state.work = None;
        state.wanted = 0;
        while state.active > 0 {
            state = pool.left.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_tasks_runs_every_task_once_on_the_threads_allowed() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        for n in [1, 2, 4] {
            let threads = Threads::AtMost(NonZeroUsize::new(n).unwrap());
            let mut done = vec![0u32; 1000];
            let seen = Mutex::new(std::collections::HashSet::new());
            let calls = AtomicUsize::new(0);
            with_threads(threads, || {
                run_tasks(done.iter_mut().enumerate().collect(), |(i, d)| {
                    *d += i as u32 + 1;
                    calls.fetch_add(1, Ordering::Relaxed);
                    seen.lock().unwrap().insert(std::thread::current().id());
                })
            });
            assert!(done.iter().enumerate().all(|(i, &d)| d == i as u32 + 1));
            assert_eq!(calls.into_inner(), 1000);
            assert!(seen.into_inner().unwrap().len() <= n, "at most {n} threads");
        }
        with_threads(Threads::AtMost(NonZeroUsize::MIN), || {
            let caller = std::thread::current().id();
            run_tasks(vec![(); 10], |()| assert_eq!(std::thread::current().id(), caller, "one thread: the caller"));
        });
        run_tasks(Vec::<()>::new(), |()| unreachable!("no tasks"));
    }

    #[test]
    fn a_panicking_task_reaches_the_caller_after_the_others_stop() {
        for threads in [Threads::AtMost(NonZeroUsize::new(2).unwrap()), Threads::AtMost(NonZeroUsize::MIN)] {
            let result = std::panic::catch_unwind(|| {
                with_threads(threads, || run_tasks((0..100).collect(), |i: i32| assert!(i != 37, "task 37")))
            });
            let payload = result.expect_err("the panic of task 37");
            let message = (payload.downcast_ref::<&str>().copied())
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or_default();
            assert!(message.contains("task 37"), "{message}");
            assert_eq!(current_threads(), Threads::default(), "with_threads restores the setting after a panic");
        }
    }
}
