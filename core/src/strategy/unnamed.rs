//! The report of what a discovery round listed but could not name a node after.

use super::Context;
use crate::reason::Rejection;

/// Reports the entries a round could not name — once, and again only when their number
/// changes: a poll every few seconds must not repeat the same report.
#[derive(Debug, Default)]
pub(crate) struct Unnamed {
    reported: usize,
}

impl Unnamed {
    /// `unnamed` holds each entry (escaped) and why it names no node; `what` says what was
    /// listed ("the listed addresses").
    pub(crate) fn report(
        &mut self,
        cx: &mut Context<'_>,
        what: &str,
        unnamed: &[(String, String)],
    ) {
        if unnamed.len() != self.reported
            && let Some((first, why)) = unnamed.first()
        {
            let why = format!(
                "{} of {what} name no node, e.g. {first}: {why}",
                unnamed.len()
            );
            cx.rejected(None, Rejection::InvalidNode(why));
        }
        self.reported = unnamed.len();
    }
}
