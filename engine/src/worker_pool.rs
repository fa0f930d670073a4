//! [`WorkerPool`]: SoulBox's one async boundary.
//!
//! Guest code is CPU-bound and blocking, and interpreters want deep native stacks. So it never
//! runs on the async runtime's threads: a backend hands each job to this pool, whose dedicated
//! threads (with [`DEFAULT_STACK_BYTES`] stacks) run it while the caller's future waits.
//!
//! Admission is bounded: at most `workers + queue` jobs are admitted at once (running or
//! waiting). Past that, [`WorkerPool::run`] refuses at once with [`BackendError::Busy`] instead
//! of queueing without bound. A job that panics is reported as an internal error; the worker
//! thread survives.

use crate::backend::BackendError;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// Native stack for each worker thread: interpreters recurse deeply and wasmtime runs the guest
/// on the calling thread's stack.
pub const DEFAULT_STACK_BYTES: usize = 16 * 1024 * 1024;
/// Jobs that may wait for a worker, per worker, when the configuration names no queue length.
pub const DEFAULT_QUEUE_PER_WORKER: usize = 16;

/// Sizes of a [`WorkerPool`].
#[derive(Debug, Clone)]
pub struct WorkerPoolConfig {
    /// Threads running jobs at once. Default: the number of CPUs.
    pub workers: usize,
    /// Jobs that may wait for a free worker. Default: [`DEFAULT_QUEUE_PER_WORKER`] per worker.
    pub queue: usize,
    /// Each worker's native stack. Default: [`DEFAULT_STACK_BYTES`].
    pub stack_bytes: usize,
    /// Thread name prefix. Default: `soulbox-worker`.
    pub name: String,
}

impl Default for WorkerPoolConfig {
    fn default() -> Self {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        WorkerPoolConfig {
            workers,
            queue: workers * DEFAULT_QUEUE_PER_WORKER,
            stack_bytes: DEFAULT_STACK_BYTES,
            name: "soulbox-worker".into(),
        }
    }
}

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of big-stack threads with bounded admission. Dropping the pool lets its threads
/// finish the admitted jobs and exit.
#[derive(Debug)]
pub struct WorkerPool {
    jobs: mpsc::Sender<Job>,
    admission: Arc<Semaphore>,
    capacity: usize,
    workers: usize,
}

impl WorkerPool {
    /// Starts the pool's threads.
    pub fn new(config: &WorkerPoolConfig) -> std::io::Result<Self> {
        let workers = config.workers.max(1);
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..workers {
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new()
                .name(format!("{}-{index}", config.name))
                .stack_size(config.stack_bytes)
                .spawn(move || worker_loop(&receiver))?;
        }
        let capacity = workers + config.queue;
        Ok(WorkerPool { jobs: sender, admission: Arc::new(Semaphore::new(capacity)), capacity, workers })
    }

    /// Jobs admitted at once, running plus waiting.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether more jobs are admitted than there are workers, so some are waiting.
    pub fn is_backlogged(&self) -> bool {
        self.in_use() > self.workers
    }

    /// Jobs admitted right now, running plus waiting.
    pub fn in_use(&self) -> usize {
        self.capacity - self.admission.available_permits()
    }

    /// Runs `job` on a worker thread and waits for its value, or refuses at once with
    /// [`BackendError::Busy`] when the pool is full.
    pub async fn run<F, R>(&self, job: F) -> Result<R, BackendError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.run_then(job, || ()).await
    }

    /// Like [`WorkerPool::run`], and then, on the same worker thread after the value has been
    /// handed back and the job's admission slot released, runs `then`: optional follow-up work
    /// (preparing for the next job) that should not delay this caller. `then` should check
    /// [`WorkerPool::is_backlogged`] and skip its work when jobs are waiting.
    pub async fn run_then<F, R, T>(&self, job: F, then: T) -> Result<R, BackendError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
        T: FnOnce() + Send + 'static,
    {
        let permit = self.admit()?;
        let (reply, answer) = oneshot::channel();
        let boxed: Job = Box::new(move || {
            let value = catch_unwind(AssertUnwindSafe(job));
            drop::<OwnedSemaphorePermit>(permit);
            // The caller may have gone away; then nobody wants the value.
            let _ = reply.send(value);
            if let Err(panic) = catch_unwind(AssertUnwindSafe(then)) {
                tracing::error!(panic = panic_message(&*panic), "worker follow-up panicked");
            }
        });
        self.jobs.send(boxed).map_err(|_| BackendError::Internal("worker pool has stopped".into()))?;
        match answer.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(panic)) => Err(BackendError::Internal(format!("job panicked: {}", panic_message(&*panic)))),
            Err(_) => Err(BackendError::Internal("worker dropped the job".into())),
        }
    }

    fn admit(&self) -> Result<OwnedSemaphorePermit, BackendError> {
        Arc::clone(&self.admission).try_acquire_owned().map_err(|_| BackendError::Busy { capacity: self.capacity })
    }
}

/// How long an idle worker polls for its next job before parking.
const SPIN_BEFORE_PARKING: std::time::Duration = std::time::Duration::from_micros(100);

fn worker_loop(receiver: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = match receiver.lock() {
            Ok(guard) => next_job(&guard),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return, // the pool was dropped
        }
    }
}

/// The next job: polled for up to [`SPIN_BEFORE_PARKING`] first (a caller driving a session
/// sends its next cell right after the last answer, and waking a parked thread costs more than
/// the cell itself on small VMs), then waited for.
fn next_job(receiver: &mpsc::Receiver<Job>) -> Result<Job, mpsc::RecvError> {
    let spinning = std::time::Instant::now();
    while spinning.elapsed() < SPIN_BEFORE_PARKING {
        match receiver.try_recv() {
            Ok(job) => return Ok(job),
            Err(mpsc::TryRecvError::Disconnected) => return Err(mpsc::RecvError),
            Err(mpsc::TryRecvError::Empty) => std::thread::yield_now(),
        }
    }
    receiver.recv()
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pool(workers: usize, queue: usize) -> Arc<WorkerPool> {
        let config = WorkerPoolConfig { workers, queue, ..WorkerPoolConfig::default() };
        Arc::new(WorkerPool::new(&config).unwrap())
    }

    #[tokio::test]
    async fn runs_jobs_off_the_runtime_threads() {
        let pool = pool(2, 2);
        let name = pool.run(|| std::thread::current().name().map(str::to_owned)).await.unwrap();
        assert!(name.unwrap().starts_with("soulbox-worker"));
    }

    #[tokio::test]
    async fn refuses_when_full_and_recovers() {
        let pool = pool(1, 1);
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let mut held = Vec::new();
        for _ in 0..2 {
            let (pool, gate) = (Arc::clone(&pool), Arc::clone(&gate));
            held.push(tokio::spawn(async move { pool.run(move || gate.lock().unwrap().recv().ok()).await }));
        }
        while pool.in_use() < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let refused = pool.run(|| ()).await.unwrap_err();
        assert!(matches!(refused, BackendError::Busy { capacity: 2 }));
        release.send(()).unwrap();
        release.send(()).unwrap();
        for h in held {
            h.await.unwrap().unwrap();
        }
        pool.run(|| ()).await.unwrap();
    }

    #[tokio::test]
    async fn follow_up_runs_on_the_same_thread_after_the_reply() {
        let pool = pool(1, 0);
        let (tell, heard) = std::sync::mpsc::channel();
        let job_thread = pool
            .run_then(|| std::thread::current().id(), move || tell.send(std::thread::current().id()).unwrap())
            .await
            .unwrap();
        assert_eq!(heard.recv().unwrap(), job_thread);
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_and_the_worker_survives() {
        let pool = pool(1, 0);
        let err = pool.run(|| panic!("guest glue bug")).await.unwrap_err();
        assert!(err.to_string().contains("guest glue bug"));
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
    }
}
