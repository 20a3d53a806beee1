//! Worker threads for what may block: connector calls, file reads, name resolution.

use std::future::Future;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

type Job = Box<dyn FnOnce() + Send>;

/// A fixed pool of threads taking jobs in order. Dropping it lets each thread finish its
/// current job and exit; nobody waits for them.
pub(crate) struct Workers {
    tx: mpsc::Sender<Job>,
}

impl Workers {
    pub(crate) fn new(n: usize) -> std::io::Result<Workers> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..n.max(1) {
            let rx = rx.clone();
            thread::Builder::new()
                .name(format!("muster-worker-{i}"))
                .spawn(move || {
                    loop {
                        let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })?;
        }
        Ok(Workers { tx })
    }

    pub(crate) fn run(&self, job: impl FnOnce() + Send + 'static) {
        // The threads only stop when this sender is dropped: sending cannot fail before.
        let _ = self.tx.send(Box::new(job));
    }
}

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `f` to completion on this thread, parking between polls.
pub fn block_on<F: Future>(f: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => thread::park(),
        }
    }
}
