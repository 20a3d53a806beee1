//! Rancher 1.x's metadata service: the containers of this container's service
//! (`GET /latest/self/service`, `Accept: application/json`).

use std::borrow::Cow;
use std::net::IpAddr;

use serde::Deserialize;

#[derive(Deserialize)]
struct Service<'a> {
    #[serde(borrow, default)]
    containers: Option<Vec<Container<'a>>>,
}

#[derive(Deserialize)]
struct Container<'a> {
    #[serde(borrow, default)]
    ips: Option<Vec<Cow<'a, str>>>,
}

/// What the service lists.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Containers {
    /// The first IP address of each container that has one, in order.
    pub ips: Vec<IpAddr>,
    /// Containers with no IP address, or a first one that is not an IP address.
    pub without_ip: usize,
}

/// Reads the service's containers; the error is serde_json's, naming the line and column.
pub fn parse(body: &[u8]) -> Result<Containers, String> {
    let s: Service<'_> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut out = Containers::default();
    for c in s.containers.unwrap_or_default() {
        match c
            .ips
            .and_then(|ips| ips.into_iter().next())
            .map(|ip| ip.parse::<IpAddr>())
        {
            Some(Ok(ip)) => out.ips.push(ip),
            _ => out.without_ip += 1,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_ip_of_each_container_and_no_crash_without() {
        let body = br#"{"name":"app","containers":[{"name":"a","ips":["10.42.0.5","10.42.0.6"],"primary_ip":"10.42.0.5"},
            {"name":"b","ips":[]},{"name":"c"},{"name":"d","ips":["bogus"]},{"name":"e","ips":["fd00::7"]}]}"#;
        let c = parse(body).unwrap();
        assert_eq!(
            c.ips,
            [
                "10.42.0.5".parse::<IpAddr>().unwrap(),
                "fd00::7".parse().unwrap()
            ]
        );
        assert_eq!(c.without_ip, 3);
        assert!(parse(b"{}").unwrap().ips.is_empty());
        assert!(parse(b"<html>").unwrap_err().contains("line 1"));
    }
}
