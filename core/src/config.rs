//! Configuration values and their validation, with the offending key named in every error.
//!
//! The core does not parse files: a front end (the `muster` tool reads TOML) turns its input
//! into a [`Value`] tree, and strategies read their options from it with [`Options`], which
//! tracks the dotted path of every key so that an error names it exactly:
//! `topologies.app.config.hosts[2]`.

use core::fmt;
use core::time::Duration;

/// A configuration value. Tables keep their keys in the order they were written.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// `true` or `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A list.
    List(Vec<Value>),
    /// A table of keys and values, in order.
    Table(Vec<(String, Value)>),
}

impl Value {
    /// The type's name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
            Value::Table(_) => "a table",
        }
    }

    /// A string value.
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    /// A duration, as integer milliseconds (libcluster's unit for every interval).
    pub fn millis(d: Duration) -> Value {
        Value::Int(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A configuration error: which key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {problem}")]
pub struct ConfigError {
    /// The dotted path of the key, e.g. `topologies.app.config.timeout`.
    pub key: String,
    /// What is wrong.
    pub problem: Problem,
}

/// What is wrong with a configuration key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The key is not one this table accepts.
    #[error("unknown key{}", hint(.0))]
    Unknown(Vec<&'static str>),
    /// A required key is absent.
    #[error("missing required key")]
    Missing,
    /// The value has the wrong type.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What was expected.
        expected: &'static str,
        /// What was there.
        found: &'static str,
    },
    /// The value has the right type but is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// No strategy of that name exists.
    #[error("unknown strategy {0:?} (known: {1})")]
    UnknownStrategy(String, String),
}

fn hint(known: &[&'static str]) -> String {
    if known.is_empty() {
        String::new()
    } else {
        format!(" (accepted here: {})", known.join(", "))
    }
}

impl ConfigError {
    /// An error at `key`.
    pub fn new(key: impl Into<String>, problem: Problem) -> Self {
        ConfigError {
            key: key.into(),
            problem,
        }
    }

    /// An [`Problem::Invalid`] error at `key`.
    pub fn invalid(key: impl Into<String>, why: impl fmt::Display) -> Self {
        ConfigError::new(key, Problem::Invalid(why.to_string()))
    }
}

/// A key that is accepted but deserves the user's attention, such as a deprecated alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The dotted path of the key.
    pub key: String,
    /// What to do about it.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.key, self.message)
    }
}

/// Reads the options of one table, remembering which keys were read so that [`Options::finish`]
/// can report the unknown ones.
#[derive(Debug)]
pub struct Options<'a> {
    path: String,
    entries: &'a [(String, Value)],
    used: Vec<bool>,
    known: Vec<&'static str>,
    warnings: Vec<ConfigWarning>,
}

impl<'a> Options<'a> {
    /// The options of the table at `path` (a dotted key path, empty for the root).
    pub fn new(path: impl Into<String>, entries: &'a [(String, Value)]) -> Self {
        Options {
            path: path.into(),
            used: vec![false; entries.len()],
            entries,
            known: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The options of `value`, which must be a table, at `path`.
    pub fn of(path: impl Into<String>, value: &'a Value) -> Result<Self, ConfigError> {
        let path = path.into();
        match value {
            Value::Table(t) => Ok(Options::new(path, t)),
            other => Err(ConfigError::new(
                path,
                Problem::WrongType {
                    expected: "a table",
                    found: other.type_name(),
                },
            )),
        }
    }

    /// The dotted path of `key` in this table.
    pub fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// This table's own path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether `key` is present, without reading it.
    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k == key)
    }

    /// The raw value of `key`, marking it read.
    pub fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.known.push(key);
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        self.used[i] = true;
        Some(&self.entries[i].1)
    }

    fn wrong(&self, key: &str, expected: &'static str, v: &Value) -> ConfigError {
        ConfigError::new(
            self.key_path(key),
            Problem::WrongType {
                expected,
                found: v.type_name(),
            },
        )
    }

    /// A required value, or a [`Problem::Missing`] error.
    pub fn required<T>(&self, key: &str, v: Option<T>) -> Result<T, ConfigError> {
        v.ok_or_else(|| ConfigError::new(self.key_path(key), Problem::Missing))
    }

    /// An optional string.
    pub fn string(&mut self, key: &'static str) -> Result<Option<&'a str>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong(key, "a string", v)),
        }
    }

    /// An optional boolean.
    pub fn bool(&mut self, key: &'static str) -> Result<Option<bool>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong(key, "a boolean", v)),
        }
    }

    /// An optional non-negative integer.
    pub fn u64(&mut self, key: &'static str) -> Result<Option<u64>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Int(i)) => u64::try_from(*i).map(Some).map_err(|_| {
                ConfigError::invalid(self.key_path(key), format!("must not be negative, got {i}"))
            }),
            Some(v) => Err(self.wrong(key, "a non-negative integer", v)),
        }
    }

    /// An optional duration given in integer milliseconds.
    pub fn millis(&mut self, key: &'static str) -> Result<Option<Duration>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Int(i)) => u64::try_from(*i)
                .map(|ms| Some(Duration::from_millis(ms)))
                .map_err(|_| {
                    ConfigError::invalid(
                        self.key_path(key),
                        format!("must not be negative, got {i}"),
                    )
                }),
            Some(v) => Err(self.wrong(key, "an integer number of milliseconds", v)),
        }
    }

    /// An optional duration in milliseconds that must be positive.
    pub fn positive_millis(&mut self, key: &'static str) -> Result<Option<Duration>, ConfigError> {
        match self.millis(key)? {
            Some(d) if d.is_zero() => Err(ConfigError::invalid(
                self.key_path(key),
                "must be greater than zero",
            )),
            d => Ok(d),
        }
    }

    /// An optional list of strings; each element comes with its own key path (`key[i]`) so a
    /// caller that validates elements can name the bad one.
    pub fn strings(
        &mut self,
        key: &'static str,
    ) -> Result<Option<Vec<(String, &'a str)>>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::List(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let path = format!("{}[{i}]", self.key_path(key));
                    match item {
                        Value::Str(s) => out.push((path, s.as_str())),
                        other => {
                            return Err(ConfigError::new(
                                path,
                                Problem::WrongType {
                                    expected: "a string",
                                    found: other.type_name(),
                                },
                            ));
                        }
                    }
                }
                Ok(Some(out))
            }
            Some(v) => Err(self.wrong(key, "a list of strings", v)),
        }
    }

    /// An optional sub-table.
    pub fn table(&mut self, key: &'static str) -> Result<Option<Options<'a>>, ConfigError> {
        let path = self.key_path(key);
        match self.get(key) {
            None => Ok(None),
            Some(v) => Options::of(path, v).map(Some),
        }
    }

    /// Every entry not read yet, marking them all read: for tables whose keys are names
    /// (`[topologies.NAME]`).
    pub fn rest(&mut self) -> Vec<(&'a str, &'a Value)> {
        let mut out = Vec::new();
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if !self.used[i] {
                self.used[i] = true;
                out.push((k.as_str(), v));
            }
        }
        out
    }

    /// Records a warning about `key` of this table.
    pub fn warn(&mut self, key: &str, message: impl Into<String>) {
        let key = self.key_path(key);
        self.warnings.push(ConfigWarning {
            key,
            message: message.into(),
        });
    }

    /// The warnings recorded so far (this table's and those passed up from sub-tables),
    /// leaving none.
    pub fn take_warnings(&mut self) -> Vec<ConfigWarning> {
        core::mem::take(&mut self.warnings)
    }

    /// Passes a sub-table's warnings up to this table, so that one `take_warnings` at the
    /// root gets them all.
    pub fn absorb_warnings(&mut self, from: &mut Options<'_>) {
        self.warnings.append(&mut from.warnings);
    }

    /// Fails on the first key that was never read.
    pub fn finish(self) -> Result<(), ConfigError> {
        match self.used.iter().position(|u| !u) {
            None => Ok(()),
            Some(i) => {
                let key = self.key_path(&self.entries[i].0);
                let mut known = self.known;
                known.sort_unstable();
                known.dedup();
                Err(ConfigError::new(key, Problem::Unknown(known)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, Value)]) -> Vec<(String, Value)> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn names_the_key_of_every_problem() {
        let t = table(&[
            ("hosts", Value::List(vec![Value::str("a@b"), Value::Int(3)])),
            ("timeout", Value::Int(-5)),
            ("flag", Value::str("yes")),
            ("extra", Value::Bool(true)),
        ]);
        let mut o = Options::new("topologies.app.config", &t);
        let e = o.strings("hosts").unwrap_err();
        assert_eq!(e.key, "topologies.app.config.hosts[1]");
        assert_eq!(
            e.to_string(),
            "`topologies.app.config.hosts[1]`: expected a string, found an integer"
        );
        let e = o.millis("timeout").unwrap_err();
        assert_eq!(e.key, "topologies.app.config.timeout");
        assert!(e.to_string().contains("must not be negative"));
        let e = o.bool("flag").unwrap_err();
        assert_eq!(e.key, "topologies.app.config.flag");
        let e = o.string("absent").map(|v| o.required("absent", v));
        assert_eq!(
            e.unwrap().unwrap_err().to_string(),
            "`topologies.app.config.absent`: missing required key"
        );
        let e = o.finish().unwrap_err();
        assert_eq!(e.key, "topologies.app.config.extra");
        assert_eq!(
            e.to_string(),
            "`topologies.app.config.extra`: unknown key (accepted here: absent, flag, hosts, timeout)"
        );
    }

    #[test]
    fn finish_accepts_fully_read_tables() {
        let t = table(&[("timeout", Value::Int(5))]);
        let mut o = Options::new("", &t);
        assert_eq!(o.millis("timeout").unwrap(), Some(Duration::from_millis(5)));
        assert!(o.finish().is_ok());
    }

    #[test]
    fn zero_is_rejected_where_a_positive_interval_is_needed() {
        let t = table(&[("polling_interval", Value::Int(0))]);
        let mut o = Options::new("x", &t);
        let e = o.positive_millis("polling_interval").unwrap_err();
        assert_eq!(e.key, "x.polling_interval");
    }
}
