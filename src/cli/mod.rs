//! The `muster` tool's own parts: the demo, the event lines and the threads writing them,
//! starting a configuration, and simulating one.

pub(crate) mod admin;
pub(crate) mod demo;
pub(crate) mod lines;
pub(crate) mod output;
pub(crate) mod simulate;
pub(crate) mod start;
