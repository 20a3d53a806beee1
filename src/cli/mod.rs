//! The `muster` tool's own parts: the demo, the event lines, and starting a configuration.

pub(crate) mod demo;
pub(crate) mod output;
pub(crate) mod start;
