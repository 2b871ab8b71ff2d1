//! Decoding ahead of the consumer on worker threads, in order and with bounded memory.
//!
//! [`ReadAhead`] runs jobs `0..jobs` (one per Parquet row group) on a few worker threads and
//! yields each job's items in job order. A worker starts job `j` only while `j` is fewer than
//! `window` jobs ahead of the one the consumer last took, so at most `window` jobs are decoded or
//! decoding at a time besides the one being consumed: memory is bounded by `window + 1` jobs'
//! output whatever the number of jobs. A consumer that would wait for its next job runs the next
//! job not started yet itself, within the same window: with `n` workers, a consumer busy with
//! each job's items leaves the decoding to them, and one that is not decodes beside them (`n + 1`
//! decoders, no thread idle while a job could start). Dropping the iterator stops the workers
//! (each finishes the job it is running) and joins them.

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

/// A job: its index in, its items out.
type Job<T> = Arc<dyn Fn(usize) -> Vec<T> + Send + Sync>;

/// The items of jobs `0..jobs` in job order, computed ahead on worker threads (and on the
/// consumer's, while it would wait).
pub(crate) struct ReadAhead<T> {
    shared: Arc<Shared<T>>,
    jobs: usize,
    window: usize,
    taken: usize,
    current: std::vec::IntoIter<T>,
    workers: Vec<JoinHandle<()>>,
    /// The job, run by the consumer as the workers run it.
    job: Job<T>,
}

/// Runs job `j`, a panic turned into `on_panic()` as its only item.
fn run_job<T>(job: &Job<T>, on_panic: &(dyn Fn() -> T + Send + Sync), j: usize) -> Vec<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(j)))
        .unwrap_or_else(|_| vec![on_panic()])
}

impl<T: Send + 'static> ReadAhead<T> {
    /// Runs `job(j)` for every `j` in `0..jobs` on `threads` workers (and the consumer, while
    /// it would wait), at most `window` jobs ahead of the consumer. A job that panics yields
    /// `on_panic()` as its only item.
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
        let job: Job<T> = Arc::new(job);
        let on_panic: Arc<dyn Fn() -> T + Send + Sync> = Arc::new(on_panic);
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
                    let items = run_job(&job, &*on_panic, j);
                    let mut s = shared.lock();
                    s.done.insert(j, items);
                    shared.changed.notify_all();
                })
            })
            .collect();
        // the consumer's panics are the job's too
        let job = {
            let (job, on_panic) = (job.clone(), on_panic.clone());
            let wrapped: Job<T> = Arc::new(move |j| run_job(&job, &*on_panic, j));
            wrapped
        };
        ReadAhead {
            shared,
            jobs,
            window,
            taken: 0,
            current: Vec::new().into_iter(),
            workers,
            job,
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
                // rather than wait, run the next job no worker has started (the one wanted, or
                // one after it within the window)
                if s.next < self.jobs && s.next < self.taken + self.window {
                    let j = s.next;
                    s.next += 1;
                    drop(s);
                    let items = (self.job)(j);
                    s = self.shared.lock();
                    if j == self.taken {
                        break items;
                    }
                    s.done.insert(j, items);
                    continue;
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
    fn a_consumer_that_would_wait_runs_jobs_itself() {
        // the one worker's jobs wait (up to 5 s) until the consumer has run a job: either the
        // worker took job 0 and the consumer, waiting for it, runs job 1, or the consumer ran
        // job 0 itself
        let consumer = std::thread::current().id();
        let on_consumer = Arc::new(AtomicUsize::new(0));
        let stuck = Arc::new(AtomicUsize::new(0));
        let (c, k) = (on_consumer.clone(), stuck.clone());
        let it = ReadAhead::new(
            10,
            1,
            3,
            move |j| {
                if std::thread::current().id() == consumer {
                    c.fetch_add(1, Ordering::SeqCst);
                } else {
                    let t0 = std::time::Instant::now();
                    while c.load(Ordering::SeqCst) == 0 {
                        if t0.elapsed() > std::time::Duration::from_secs(5) {
                            k.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
                vec![j]
            },
            || usize::MAX,
        );
        assert_eq!(it.collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
        assert!(on_consumer.load(Ordering::SeqCst) >= 1);
        assert_eq!(
            stuck.load(Ordering::SeqCst),
            0,
            "the worker waited for the consumer"
        );
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
