//! The `muster` tool's own parts: the demo, the event lines, starting a configuration, and
//! simulating one.

pub(crate) mod admin;
pub(crate) mod demo;
pub(crate) mod output;
pub(crate) mod simulate;
pub(crate) mod start;
