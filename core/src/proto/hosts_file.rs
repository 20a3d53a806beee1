//! `.hosts.erlang`: host names written as Erlang terms, one per `.`, as `net_adm:host_file/0`
//! reads them.
//!
//! ```text
//! % The hosts of this cluster
//! 'app1.example.com'.
//! 'app2.example.com'.   app3.
//! "app4.example.com".
//! ```
//!
//! Quoted atoms (with Erlang's escapes), unquoted atoms and strings are host names; `%` starts
//! a comment that runs to the end of the line. Anything else is an error naming its line.

/// A mistake in the file, with its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what}")]
pub struct HostsFileError {
    /// The line.
    pub line: usize,
    /// What is wrong.
    pub what: String,
}

struct Scan<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
}

impl Scan<'_> {
    fn err<T>(&self, what: impl Into<String>) -> Result<T, HostsFileError> {
        Err(HostsFileError {
            line: self.line,
            what: what.into(),
        })
    }

    fn next(&mut self) -> Option<char> {
        let c = self.chars.next();
        if c == Some('\n') {
            self.line += 1;
        }
        c
    }

    /// Skips whitespace and comments; false at the end.
    fn skip_blank(&mut self) -> bool {
        while let Some(&c) = self.chars.peek() {
            if c.is_whitespace() {
                self.next();
            } else if c == '%' {
                while let Some(c) = self.next() {
                    if c == '\n' {
                        break;
                    }
                }
            } else {
                return true;
            }
        }
        false
    }

    fn quoted(&mut self, close: char) -> Result<String, HostsFileError> {
        let mut s = String::new();
        loop {
            match self.next() {
                None => return self.err(format!("unterminated {close}...{close}")),
                Some(c) if c == close => return Ok(s),
                Some('\\') => match self.next() {
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    Some('s') => s.push(' '),
                    Some(c) => s.push(c),
                    None => return self.err("unterminated escape"),
                },
                Some(c) => s.push(c),
            }
        }
    }

    fn unquoted(&mut self, first: char) -> String {
        let mut s = String::from(first);
        while let Some(&c) = self.chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' || c == '@' {
                s.push(c);
                self.next();
            } else if c == '.' {
                // A dot inside an unquoted atom only when a name character follows
                // (`host.example.com`); otherwise it ends the term.
                let mut ahead = self.chars.clone();
                ahead.next();
                match ahead.peek() {
                    Some(n) if n.is_ascii_alphanumeric() || *n == '_' => {
                        s.push('.');
                        self.next();
                    }
                    _ => break,
                }
            } else {
                break;
            }
        }
        s
    }
}

/// The host names in a `.hosts.erlang` file's text.
pub fn parse(text: &str) -> Result<Vec<String>, HostsFileError> {
    let mut sc = Scan {
        chars: text.chars().peekable(),
        line: 1,
    };
    let mut hosts = Vec::new();
    while sc.skip_blank() {
        let host = match sc.next() {
            Some('\'') => sc.quoted('\'')?,
            Some('"') => sc.quoted('"')?,
            Some(c) if c.is_ascii_lowercase() => sc.unquoted(c),
            Some(c) => {
                return sc.err(format!(
                    "expected a host name like 'host.example.com', found {c:?}"
                ));
            }
            None => break,
        };
        if host.is_empty() {
            return sc.err("empty host name");
        }
        sc.skip_blank();
        match sc.next() {
            Some('.') => {}
            Some(c) => return sc.err(format!("expected '.' after {host:?}, found {c:?}")),
            None => return sc.err(format!("expected '.' after {host:?}")),
        }
        hosts.push(host);
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_what_net_adm_reads() {
        let text = "% hosts\n'app1.example.com'.\n'app2.example.com'.   app3.\n\"app4\". % four\nh5.example.\n'it''s'.";
        // 'it''s' is two atoms in a row: not a term.
        assert!(parse(text).is_err());
        let text = "% hosts\n'app1.example.com'.\n'app2.example.com'.   app3.\n\"app4\". % four\nh5.example.\n'a\\'b'.\n";
        assert_eq!(
            parse(text).unwrap(),
            [
                "app1.example.com",
                "app2.example.com",
                "app3",
                "app4",
                "h5.example",
                "a'b"
            ]
        );
        assert_eq!(parse("").unwrap(), Vec::<String>::new());
        assert_eq!(parse("% nothing\n\n").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(parse("'a'.\n'b'\n'c'.").unwrap_err().line, 3);
        assert_eq!(parse("'a'.\n\n{x}.").unwrap_err().line, 3);
        assert_eq!(
            parse("'unterminated.\n").unwrap_err().what,
            "unterminated '...'"
        );
        assert!(
            parse("Host.")
                .unwrap_err()
                .what
                .contains("expected a host name")
        );
    }

    proptest! {
        #[test]
        fn never_panics(text in ".{0,200}") {
            let _ = parse(&text);
        }

        #[test]
        fn quoted_hosts_round_trip(hosts in proptest::collection::vec("[a-z0-9.-]{1,30}", 0..10)) {
            let text: String = hosts.iter().map(|h| format!("'{h}'.\n")).collect();
            prop_assert_eq!(parse(&text).unwrap(), hosts);
        }
    }
}
