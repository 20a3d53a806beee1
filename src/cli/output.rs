//! How the `muster` tool prints events: one readable line, or one JSON object, per event.

use std::time::Duration;

use muster::core::Event;

/// The output format of `muster run` and `muster demo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            other => Err(format!("unknown format {other:?} (text or json)")),
        }
    }
}

/// One line for `event`, which happened `elapsed` after the start, on node `on` (when several
/// nodes share the output, as in the demo).
pub fn event_line(event: &Event, format: Format, elapsed: Duration, on: Option<&str>) -> String {
    match format {
        Format::Text => match on {
            Some(node) => format!("{:>9.3}s {node} {event}", elapsed.as_secs_f64()),
            None => format!("{:>9.3}s {event}", elapsed.as_secs_f64()),
        },
        Format::Json => {
            let mut m = serde_json::Map::new();
            m.insert("t".into(), serde_json::json!(elapsed.as_secs_f64()));
            if let Some(node) = on {
                m.insert("on".into(), node.into());
            }
            m.insert("event".into(), event.name().into());
            if !event.topology().is_empty() {
                m.insert("topology".into(), event.topology().into());
            }
            if let Some(n) = event.node() {
                m.insert("node".into(), n.as_str().into());
            }
            if let Some(r) = event.reason() {
                m.insert("reason".into(), r.into());
            }
            if let Some(c) = event.code() {
                m.insert("code".into(), c.into());
            }
            match event {
                Event::Connected { took, .. } => {
                    m.insert("took_ms".into(), serde_json::json!(took.as_millis() as u64));
                }
                Event::ConnectFailed {
                    attempt, retry_in, ..
                } => {
                    m.insert("attempt".into(), serde_json::json!(attempt));
                    if let Some(d) = retry_in {
                        m.insert(
                            "retry_in_ms".into(),
                            serde_json::json!(d.as_millis() as u64),
                        );
                    }
                }
                Event::Rejected { from: Some(a), .. } => {
                    m.insert("from".into(), a.to_string().into());
                }
                _ => {}
            }
            serde_json::Value::Object(m).to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn json_has_event_topology_node_and_reason() {
        let e = Event::ConnectFailed {
            topology: Arc::from("app"),
            node: "b@h".parse().unwrap(),
            reason: muster::core::ConnectError::Failed(muster::core::Failure::new(
                muster::core::FailureKind::Refused,
                "connection refused",
            )),
            attempt: 2,
            retry_in: Some(Duration::from_millis(750)),
        };
        let line = event_line(&e, Format::Json, Duration::from_millis(1500), None);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "connect_failed");
        assert_eq!(v["topology"], "app");
        assert_eq!(v["node"], "b@h");
        assert_eq!(v["reason"], "connection refused");
        assert_eq!(
            v["code"], "refused",
            "a stable machine code beside the words"
        );
        assert_eq!(v["attempt"], 2);
        assert_eq!(v["retry_in_ms"], 750);
        assert_eq!(v["t"], 1.5);
        let text = event_line(&e, Format::Text, Duration::from_millis(1500), None);
        assert_eq!(
            text,
            "    1.500s [app] connect_failed b@h: connection refused (attempt 2, retry in 750ms)"
        );
    }
}
