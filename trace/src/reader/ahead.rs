//! Decoding ahead of the consumer on worker threads, in order and with bounded memory.
//!
//! [`ReadAhead`] runs jobs `0..jobs` (one per Parquet row group) on a few worker threads and
//! yields each job's items in job order. A worker starts job `j` only while `j` is fewer than
//! `window` jobs ahead of the one the consumer last took, so at most `window` jobs are decoded or
//! decoding at a time besides the one being consumed: memory is bounded by `window + 1` jobs'
//! output whatever the number of jobs. Dropping the iterator stops the workers (each finishes the
//! job it is running) and joins them.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

struct State<T> {
    /// The next job a worker will start.
    next: usize,
    /// Jobs handed to the consumer so far.
    taken: usize,
    /// Finished jobs not yet taken, by job index.
    done: HashMap<usize, Vec<T>>,
    /// Set when the consumer is dropped.
    stop: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    changed: Condvar,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // a worker panicking inside a job is caught before it could poison the lock
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, g: MutexGuard<'a, State<T>>) -> MutexGuard<'a, State<T>> {
        self.changed.wait(g).unwrap_or_else(|e| e.into_inner())
    }
}

/// The items of jobs `0..jobs` in job order, computed ahead on worker threads.
pub(crate) struct ReadAhead<T> {
    shared: Arc<Shared<T>>,
    jobs: usize,
    taken: usize,
    current: std::vec::IntoIter<T>,
    workers: Vec<JoinHandle<()>>,
}

impl<T: Send + 'static> ReadAhead<T> {
    /// Runs `job(j)` for every `j` in `0..jobs` on `threads` workers, at most `window` jobs
    /// ahead of the consumer. A job that panics yields `on_panic()` as its only item.
    pub(crate) fn new<F, P>(
        jobs: usize,
        threads: usize,
        window: usize,
        job: F,
        on_panic: P,
    ) -> ReadAhead<T>
    where
        F: Fn(usize) -> Vec<T> + Send + Sync + 'static,
        P: Fn() -> T + Send + Sync + 'static,
    {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next: 0,
                taken: 0,
                done: HashMap::new(),
                stop: false,
            }),
            changed: Condvar::new(),
        });
        let window = window.max(1);
        let job = Arc::new(job);
        let on_panic = Arc::new(on_panic);
        let workers = (0..threads.clamp(1, jobs.max(1)))
            .map(|_| {
                let shared = shared.clone();
                let job = job.clone();
                let on_panic = on_panic.clone();
                std::thread::spawn(move || loop {
                    let j = {
                        let mut s = shared.lock();
                        loop {
                            if s.stop || s.next >= jobs {
                                return;
                            }
                            if s.next < s.taken + window {
                                break;
                            }
                            s = shared.wait(s);
                        }
                        s.next += 1;
                        s.next - 1
                    };
                    let items = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(j)))
                        .unwrap_or_else(|_| vec![on_panic()]);
                    let mut s = shared.lock();
                    s.done.insert(j, items);
                    shared.changed.notify_all();
                })
            })
            .collect();
        ReadAhead {
            shared,
            jobs,
            taken: 0,
            current: Vec::new().into_iter(),
            workers,
        }
    }
}

impl<T> Iterator for ReadAhead<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        loop {
            if let Some(x) = self.current.next() {
                return Some(x);
            }
            if self.taken >= self.jobs {
                return None;
            }
            let mut s = self.shared.lock();
            let items = loop {
                if let Some(v) = s.done.remove(&self.taken) {
                    break v;
                }
                s = self.shared.wait(s);
            };
            self.taken += 1;
            s.taken = self.taken;
            self.shared.changed.notify_all();
            drop(s);
            self.current = items.into_iter();
        }
    }
}

impl<T> Drop for ReadAhead<T> {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn items_come_in_job_order_whatever_the_finishing_order() {
        // later jobs finish first: job j sleeps (20 - j) ms
        let it = ReadAhead::new(
            20,
            4,
            6,
            |j| {
                std::thread::sleep(std::time::Duration::from_millis(20 - j as u64));
                vec![j * 10, j * 10 + 1]
            },
            || usize::MAX,
        );
        let want: Vec<usize> = (0..20).flat_map(|j| [j * 10, j * 10 + 1]).collect();
        assert_eq!(it.collect::<Vec<_>>(), want);
    }

    #[test]
    fn workers_stay_within_the_window() {
        let started = Arc::new(AtomicUsize::new(0));
        let s = started.clone();
        let mut it = ReadAhead::new(
            100,
            3,
            4,
            move |j| {
                s.fetch_add(1, Ordering::SeqCst);
                vec![j]
            },
            || usize::MAX,
        );
        assert_eq!(it.next(), Some(0));
        std::thread::sleep(std::time::Duration::from_millis(100));
        // job 0 taken: jobs 1..=4 may run, no more
        assert_eq!(started.load(Ordering::SeqCst), 5);
        drop(it);
        assert_eq!(started.load(Ordering::SeqCst), 5);
    }

    #[test]
    fn a_panicking_job_yields_its_replacement_item_and_the_rest_go_on() {
        let it = ReadAhead::new(
            5,
            2,
            2,
            |j| {
                if j == 2 {
                    panic!("job 2");
                }
                vec![j]
            },
            || 99,
        );
        assert_eq!(it.collect::<Vec<_>>(), vec![0, 1, 99, 3, 4]);
    }
}
