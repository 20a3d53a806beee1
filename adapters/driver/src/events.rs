//! The stream of events a cluster emits.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::Stream;
use muster_core::Event;

/// A stream of events: [`recv`](Events::recv) them, or use it as a
/// [`Stream`](futures_core::Stream). A subscriber that falls more than the builder's
/// `event_capacity` behind misses the oldest ones; [`missed`](Events::missed) counts them.
#[derive(Debug)]
pub struct Events {
    rx: async_broadcast::Receiver<Event>,
    missed: u64,
}

impl Events {
    pub(crate) fn new(rx: async_broadcast::Receiver<Event>) -> Self {
        Events { rx, missed: 0 }
    }

    /// The next event; `None` once the cluster has stopped and every event was received.
    pub async fn recv(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        loop {
            match self.rx.try_recv() {
                Ok(e) => return Some(e),
                Err(async_broadcast::TryRecvError::Overflowed(n)) => self.missed += n,
                Err(_) => return None,
            }
        }
    }

    /// Events this subscriber missed because it fell behind.
    pub fn missed(&self) -> u64 {
        self.missed
    }
}

impl Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        loop {
            match Pin::new(&mut self.rx).poll_recv(cx) {
                Poll::Ready(Some(Ok(e))) => return Poll::Ready(Some(e)),
                Poll::Ready(Some(Err(async_broadcast::RecvError::Overflowed(n)))) => {
                    self.missed += n
                }
                Poll::Ready(Some(Err(async_broadcast::RecvError::Closed)) | None) => {
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
