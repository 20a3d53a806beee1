//! Standard output and standard error written by threads of their own.
//!
//! `muster run` serves its node on one thread. A reader that stops reading (a stalled log
//! collector, a full pipe nobody drains) would block that thread in `write` and, with it,
//! the node: no heartbeats, no distribution ticks, no answer on the admin endpoint, no leave
//! on SIGTERM. Here only the writing thread waits: events wait in the driver's bounded queue
//! (which counts what it drops as `missed`), log lines that find the queue full are dropped
//! and counted, and leaving waits for the output no longer than its deadline.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

/// Lines queued for one output stream's writing thread.
#[derive(Debug)]
pub struct Lines {
    tx: mpsc::Sender<String>,
    dropped: Arc<AtomicU64>,
    /// Lines written so far: whether the thread makes progress.
    written: Arc<AtomicU64>,
    done: oneshot::Receiver<()>,
}

impl Lines {
    /// Starts the thread writing to `sink`, with room for `capacity` lines in its queue; `what`
    /// names the stream in the line saying how many lines were dropped.
    pub fn spawn(
        sink: impl Write + Send + 'static,
        capacity: usize,
        what: &'static str,
    ) -> std::io::Result<Lines> {
        let (tx, rx) = mpsc::channel(capacity);
        let (done_tx, done) = oneshot::channel();
        let dropped = Arc::new(AtomicU64::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let counted = (dropped.clone(), written.clone());
        std::thread::Builder::new()
            .name(format!("muster-{what}"))
            // It formats nothing: a small stack keeps an idle node small.
            .stack_size(64 * 1024)
            .spawn(move || {
                write_all(sink, rx, &counted.0, &counted.1, what);
                let _ = done_tx.send(());
            })?;
        Ok(Lines {
            tx,
            dropped,
            written,
            done,
        })
    }

    /// Queues `line`, waiting while the queue is full.
    #[cfg(test)]
    pub async fn send(&self, line: String) {
        let _ = self.tx.send(line).await;
    }

    /// Room for one line, once there is some: `None` when the thread is gone (there is
    /// nothing left to write to). Waiting for it can be cancelled without losing a line.
    pub async fn room(&self) -> Option<mpsc::Permit<'_, String>> {
        self.tx.reserve().await.ok()
    }

    /// Room for one line if there is some now.
    pub fn try_room(&self) -> Option<mpsc::Permit<'_, String>> {
        self.tx.try_reserve().ok()
    }

    /// Queues `line` if there is room; counts it as dropped otherwise. Never waits.
    pub fn try_send(&self, line: String) {
        if self.tx.try_send(line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A writer for `tracing` that queues each log line with [`Lines::try_send`]. It does
    /// not hold the queue open: [`finish`](Lines::finish) still ends it.
    pub fn log_writer(&self) -> LogWriter {
        LogWriter {
            tx: self.tx.downgrade(),
            dropped: self.dropped.clone(),
        }
    }

    /// Closes the queue and waits for the thread to write what is in it, as long as it
    /// makes progress: at most `stall` without a line written. Whether it wrote everything.
    pub async fn finish(self, stall: Duration) -> bool {
        let Lines {
            tx,
            mut done,
            written,
            ..
        } = self;
        drop(tx);
        let mut seen = written.load(Ordering::Relaxed);
        loop {
            match tokio::time::timeout(stall, &mut done).await {
                Ok(finished) => return finished.is_ok(),
                Err(_) => {
                    let now = written.load(Ordering::Relaxed);
                    if now == seen {
                        return false;
                    }
                    seen = now;
                }
            }
        }
    }
}

/// The writing thread: each line as it comes, flushed whenever the queue is empty, and a
/// line saying how many were dropped before the next one.
fn write_all(
    sink: impl Write,
    mut rx: mpsc::Receiver<String>,
    dropped: &AtomicU64,
    written: &AtomicU64,
    what: &'static str,
) {
    let mut out = std::io::BufWriter::new(sink);
    let mut said = 0;
    // A failing stream is not the node's problem: it is written to, or not.
    let mut say_dropped = |out: &mut std::io::BufWriter<_>| {
        let now = dropped.load(Ordering::Relaxed);
        if now > said {
            let _ = writeln!(
                out,
                "muster: {} lines dropped ({what} fell behind)",
                now - said
            );
            said = now;
        }
    };
    while let Some(line) = rx.blocking_recv() {
        let mut next = Some(line);
        while let Some(line) = next {
            say_dropped(&mut out);
            let _ = writeln!(out, "{line}");
            written.fetch_add(1, Ordering::Relaxed);
            next = rx.try_recv().ok();
        }
        let _ = out.flush();
    }
    say_dropped(&mut out);
    let _ = out.flush();
}

/// [`tracing_subscriber`]'s writer for [`Lines`]: one formatted event, queued whole when it
/// is dropped.
#[derive(Debug, Clone)]
pub struct LogWriter {
    tx: mpsc::WeakSender<String>,
    dropped: Arc<AtomicU64>,
}

/// One log line being formatted.
#[derive(Debug)]
pub struct LogLine {
    buf: Vec<u8>,
    writer: LogWriter,
}

impl Write for LogLine {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        // Once the queue is finished, logging has nowhere left to go.
        let Some(tx) = self.writer.tx.upgrade() else {
            return;
        };
        if !text.is_empty() && tx.try_send(text.to_owned()).is_err() {
            self.writer.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine {
            buf: Vec::new(),
            writer: self.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A sink the test reads back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A sink that never takes anything, a reader that stopped: it says when a write is
    /// waiting, and waits until the test ends.
    struct Stalled {
        waiting: std::sync::mpsc::Sender<()>,
        release: std::sync::mpsc::Receiver<()>,
    }

    impl Write for Stalled {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            let _ = self.waiting.send(());
            let _ = self.release.recv();
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn every_line_is_written_in_order_and_finish_waits_for_them() {
        let sink = Shared::default();
        let lines = Lines::spawn(sink.clone(), 2, "test").unwrap();
        // A log writer does not keep the queue open.
        let _log = lines.log_writer();
        for i in 0..100 {
            lines.send(format!("line {i}")).await;
        }
        assert!(lines.finish(Duration::from_secs(60)).await);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let want: String = (0..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, want);
    }

    #[tokio::test]
    async fn a_stalled_sink_drops_and_counts_log_lines_and_finish_gives_up() {
        let (_release, release) = std::sync::mpsc::channel();
        let (waiting, blocked) = std::sync::mpsc::channel();
        let lines = Lines::spawn(Stalled { waiting, release }, 4, "test").unwrap();
        lines.send("first".into()).await;
        blocked.recv().unwrap();
        // The thread waits in its write of the first line: four more wait in the queue, the
        // rest (and the log line) are dropped.
        for i in 0..20 {
            lines.try_send(format!("log {i}"));
        }
        let log = lines.log_writer();
        let mut line = tracing_subscriber::fmt::MakeWriter::make_writer(&log);
        line.write_all(b"formatted\n").unwrap();
        drop(line);
        assert_eq!(lines.dropped.load(Ordering::Relaxed), 17);
        assert!(!lines.finish(Duration::ZERO).await);
    }

    #[tokio::test]
    async fn the_dropped_count_is_said_before_the_next_line() {
        let sink = Shared::default();
        let lines = Lines::spawn(sink.clone(), 1, "stderr").unwrap();
        lines.dropped.store(3, Ordering::Relaxed);
        lines.send("after".into()).await;
        assert!(lines.finish(Duration::from_secs(60)).await);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "muster: 3 lines dropped (stderr fell behind)\nafter\n"
        );
    }

    #[tokio::test]
    async fn lines_dropped_after_the_last_one_are_said_at_the_end() {
        let sink = Shared::default();
        let lines = Lines::spawn(sink.clone(), 1, "stderr").unwrap();
        lines.send("before".into()).await;
        // Once it is written, so that the count comes after it.
        while lines.written.load(Ordering::Relaxed) < 1 {
            std::thread::yield_now();
        }
        lines.dropped.store(2, Ordering::Relaxed);
        assert!(lines.finish(Duration::from_secs(60)).await);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.ends_with("muster: 2 lines dropped (stderr fell behind)\n"),
            "{text:?}"
        );
    }
}
