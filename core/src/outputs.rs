//! The queue of what the core gives the adapter, with a bound on events.

use std::collections::VecDeque;

use crate::event::Event;
use crate::io::{Output, Request, Token};

/// Outputs waiting for `poll_output`. Requests are never dropped; events beyond the bound
/// are, and the caller counts them.
#[derive(Debug)]
pub(crate) struct Outputs {
    queue: VecDeque<Output>,
    events: usize,
    max_events: usize,
}

impl Outputs {
    pub(crate) fn new(max_events: usize) -> Self {
        Outputs {
            queue: VecDeque::new(),
            events: 0,
            max_events,
        }
    }

    /// Queues `event`; false if the queue already holds its most events (it is dropped).
    pub(crate) fn event(&mut self, event: Event) -> bool {
        if self.events >= self.max_events {
            return false;
        }
        self.events += 1;
        self.queue.push_back(Output::Event(event));
        true
    }

    pub(crate) fn request(&mut self, token: Token, request: Request) {
        self.queue.push_back(Output::Request { token, request });
    }

    pub(crate) fn pop(&mut self) -> Option<Output> {
        let o = self.queue.pop_front();
        match &o {
            Some(Output::Event(_)) => self.events -= 1,
            Some(_) => {}
            // A burst (thousands of nodes found at once) leaves the queue large; give the
            // memory back once it is over.
            None => {
                const KEEP: usize = 1024;
                if self.queue.capacity() > KEEP {
                    self.queue.shrink_to(KEEP);
                }
            }
        }
        o
    }

    /// Outputs waiting.
    #[cfg(feature = "sim")]
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}
