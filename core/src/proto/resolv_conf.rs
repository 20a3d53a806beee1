//! `resolv.conf`, read the way glibc's resolver reads it.
//!
//! `nameserver` (up to three, as glibc's `MAXNS`; a port may follow an IPv4 address as
//! `a.b.c.d:port` or an IPv6 one as `[addr]:port`, a muster extension for tests), `search` and
//! `domain` (the last of them wins), and `options` `ndots:n` (capped at 15), `timeout:n`
//! (seconds, capped at 30), `attempts:n` (capped at 5), `rotate` and `edns0`. Like glibc,
//! lines it does not understand, and bad values, are ignored, and `#` or `;` start comments.

use core::time::Duration;
use std::net::{IpAddr, SocketAddr};

/// The most name servers used, as glibc's `MAXNS`.
pub const MAX_NAMESERVERS: usize = 3;

/// A resolver configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResolvConf {
    /// The name servers, in order.
    pub nameservers: Vec<SocketAddr>,
    /// The search list.
    pub search: Vec<String>,
    /// A name with at least this many dots is tried as given before the search list.
    pub ndots: u8,
    /// How long to wait for each server.
    pub timeout: Duration,
    /// How many times to try each server.
    pub attempts: u32,
    /// Spread lookups over the servers instead of always starting with the first.
    pub rotate: bool,
    /// Ask with EDNS0 (a 1232-byte UDP payload) so that large answers fit.
    pub edns0: bool,
}

impl Default for ResolvConf {
    /// glibc's defaults, with a name server on 127.0.0.1:53 (as glibc uses when none is set).
    fn default() -> Self {
        ResolvConf {
            nameservers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            attempts: 2,
            rotate: false,
            edns0: false,
        }
    }
}

fn server(s: &str) -> Option<SocketAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    // Link-local scope (fe80::1%eth0) is not kept: the core has no interface table.
    let s = s.split('%').next().unwrap_or(s);
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    s.parse::<SocketAddr>().ok()
}

impl ResolvConf {
    /// The configuration in `text`.
    pub fn parse(text: &str) -> ResolvConf {
        let mut c = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if c.nameservers.len() < MAX_NAMESERVERS
                        && let Some(a) = words.next().and_then(server)
                    {
                        c.nameservers.push(a);
                    }
                }
                Some("domain") => {
                    c.search = words
                        .next()
                        .map(|d| vec![d.trim_end_matches('.').to_owned()])
                        .unwrap_or_default();
                }
                Some("search") => {
                    c.search = words
                        .map(|d| d.trim_end_matches('.').to_owned())
                        .filter(|d| !d.is_empty())
                        .collect();
                }
                Some("options") => {
                    for opt in words {
                        let (k, v) = opt.split_once(':').unwrap_or((opt, ""));
                        let n = v.parse::<u32>().ok();
                        match (k, n) {
                            ("ndots", Some(n)) => c.ndots = n.min(15) as u8,
                            ("timeout", Some(n)) => {
                                c.timeout = Duration::from_secs(u64::from(n.clamp(1, 30)))
                            }
                            ("attempts", Some(n)) => c.attempts = n.clamp(1, 5),
                            ("rotate", _) => c.rotate = true,
                            ("edns0", _) => c.edns0 = true,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        c
    }

    /// The name servers to ask: the configured ones, or 127.0.0.1:53 as glibc falls back to.
    pub fn servers(&self) -> Vec<SocketAddr> {
        if self.nameservers.is_empty() {
            vec![SocketAddr::from(([127, 0, 0, 1], 53))]
        } else {
            self.nameservers.clone()
        }
    }

    /// The names to try for `name`, in order, as glibc's `res_nsearch` tries them: an
    /// absolute name (ending with `.`) only as given; a name with at least `ndots` dots as
    /// given first, then with each search domain; any other name with each search domain
    /// first, then as given.
    pub fn candidates(&self, name: &str) -> Vec<String> {
        if let Some(abs) = name.strip_suffix('.') {
            return vec![abs.to_owned()];
        }
        let dots = name.matches('.').count();
        let searched = self.search.iter().map(|d| format!("{name}.{d}"));
        if dots >= usize::from(self.ndots) {
            std::iter::once(name.to_owned()).chain(searched).collect()
        } else {
            searched.chain(std::iter::once(name.to_owned())).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_a_kubernetes_pods_resolv_conf() {
        let c = ResolvConf::parse(
            "# generated\nnameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:2 attempts:3 rotate edns0\n",
        );
        assert_eq!(c.nameservers, vec!["10.96.0.10:53".parse().unwrap()]);
        assert_eq!(
            c.search,
            [
                "default.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
        assert_eq!(
            (c.ndots, c.timeout, c.attempts, c.rotate, c.edns0),
            (5, Duration::from_secs(2), 3, true, true)
        );
        assert_eq!(
            c.candidates("myapp-headless"),
            [
                "myapp-headless.default.svc.cluster.local",
                "myapp-headless.svc.cluster.local",
                "myapp-headless.cluster.local",
                "myapp-headless"
            ]
        );
        assert_eq!(c.candidates("example.com.")[..], ["example.com"]);
    }

    #[test]
    fn glibc_rules_limits_and_leniency() {
        let c = ResolvConf::parse(
            "nameserver 1.1.1.1\nnameserver ::1\nnameserver 127.0.0.1:5353\nnameserver 9.9.9.9\nnameserver bogus\n\
             search a.example b.example\ndomain c.example ; the last one wins\noptions ndots:99 timeout:0 attempts:9 nonsense:3\n",
        );
        assert_eq!(c.nameservers.len(), 3);
        assert_eq!(c.nameservers[2], "127.0.0.1:5353".parse().unwrap());
        assert_eq!(c.search, ["c.example"]);
        assert_eq!(
            (c.ndots, c.timeout, c.attempts),
            (15, Duration::from_secs(1), 5)
        );
        let d = ResolvConf::parse("");
        assert_eq!(d.servers(), vec!["127.0.0.1:53".parse().unwrap()]);
        let one = ResolvConf {
            search: vec!["x".into()],
            ..ResolvConf::default()
        };
        assert_eq!(one.candidates("a.b"), ["a.b", "a.b.x"]);
        assert_eq!(one.candidates("ab"), ["ab.x", "ab"]);
    }

    proptest! {
        #[test]
        fn never_panics(text in ".{0,400}") {
            let _ = ResolvConf::parse(&text);
        }

        /// The search expansion always tries the name as given exactly once, every search
        /// domain exactly once, and nothing else; the number of dots decides the order.
        #[test]
        fn search_expansion(name in "[a-z]{1,5}(\\.[a-z]{1,5}){0,4}", search in proptest::collection::vec("[a-z]{1,6}\\.[a-z]{2,3}", 0..6), ndots in 0u8..6) {
            let c = ResolvConf { search: search.clone(), ndots, ..ResolvConf::default() };
            let got = c.candidates(&name);
            prop_assert_eq!(got.len(), search.len() + 1);
            prop_assert_eq!(got.iter().filter(|g| **g == name).count(), 1);
            for d in &search {
                let full = format!("{name}.{d}");
                prop_assert!(got.contains(&full));
            }
            let as_given_first = name.matches('.').count() >= usize::from(ndots);
            let pos = got.iter().position(|g| *g == name).unwrap();
            prop_assert_eq!(pos == 0, as_given_first || search.is_empty());
            let abs = format!("{name}.");
            prop_assert_eq!(c.candidates(&abs), vec![name.clone()]);
        }
    }
}
