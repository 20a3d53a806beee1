//! The `muster` configuration file (feature `config`): TOML in, the cluster's settings, its
//! connector and its topologies out, with every error naming the file, the line and the key.
//! The `muster` tool runs exactly this; a program of your own can load the same file and
//! hand the result to its adapter's builder.
//!
//! ```toml
//! [node]
//! name = "app@127.0.0.1"      # this node; never connected to
//! connector = "tcp"           # none | tcp | erlang
//!
//! [connector]
//! port = 7000                 # tcp: the port each node's service listens on
//!
//! [topologies.app]
//! strategy = "epmd"
//! [topologies.app.config]     # the strategy's options, with libcluster's names
//! hosts = ["app@127.0.0.2", "app@127.0.0.3"]
//! timeout = 5000
//! [topologies.app.connect]    # how its nodes are connected (all in ms but prune)
//! backoff_base = 500
//! ```
//!
//! The full reference is `docs/configuration.md`. Loading one in your own program, on the
//! adapter you run (here tokio):
//!
//! ```
//! # #[cfg(feature = "tokio")] {
//! use muster::config::{ConfigFile, ConnectorConfig};
//! use muster::tokio::{Builder, NoneConnector, TcpConnector};
//!
//! let file = ConfigFile::parse("muster.toml", r#"
//!     [node]
//!     name = "app@127.0.0.1"
//!     connector = "tcp"
//!     [connector]
//!     port = 7000
//!     [topologies.app]
//!     strategy = "epmd"
//!     [topologies.app.config]
//!     hosts = ["app@127.0.0.2", "app@127.0.0.3"]
//! "#)?;
//! let builder = match &file.connector {
//!     ConnectorConfig::Tcp { port } => Builder::new(TcpConnector::new(*port)),
//!     _ => match file.erlang_node() {
//!         Some(node) => Builder::erlang(node),
//!         None => Builder::new(NoneConnector),
//!     },
//! };
//! let builder = file.topologies.into_iter().fold(builder.config(file.cluster), Builder::topology);
//! # let _ = builder;
//! # }
//! # Ok::<(), muster::config::FileError>(())
//! ```

use std::collections::HashMap;
use std::fmt;

use muster_core::config::Options;
use muster_core::dist::DistConfig;
use muster_core::strategy::{Environment, Registry};
use muster_core::{ClusterConfig, ConfigError, NodeName, TopologySpec, Value};
use toml::de::{DeTable, DeValue};

/// The connector a configuration names, with its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectorConfig {
    /// `none`: discovery only.
    None,
    /// `tcp`: one held TCP connection per node.
    Tcp {
        /// The port each node's service listens on (an address hint overrides it).
        port: u16,
    },
    /// `erlang`: Erlang distribution; this process is a node BEAM nodes see connected.
    Erlang(ErlangSettings),
}

/// The `erlang` connector's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErlangSettings {
    /// The cookie (from `cookie`, `MUSTER_COOKIE` or `~/.erlang.cookie`).
    pub cookie: String,
    /// Where the cookie came from, for `muster check`.
    pub cookie_source: String,
    /// The EPMD port (`epmd_port`, else `ERL_EPMD_PORT`, else 4369).
    pub epmd_port: u16,
    /// Where distribution connections are accepted (`listen`, default `0.0.0.0:0`).
    pub listen: std::net::SocketAddr,
    /// `hidden` (default true).
    pub hidden: bool,
    /// `tick_time` in ms (Erlang's `net_ticktime`, default 60000).
    pub tick_time: std::time::Duration,
    /// `embedded_epmd`: `"auto"` (run muster's own when nothing answers on the EPMD port),
    /// `"always"` or `"never"`.
    pub embedded_epmd: EmbeddedEpmd,
    /// `max_handshakes`: the most inbound connections in handshake at once (default 64; one
    /// more closes the oldest).
    pub max_handshakes: usize,
}

/// When the tool runs its own EPMD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddedEpmd {
    /// When nothing answers on the EPMD port.
    Auto,
    /// Always (fails if the port is taken).
    Always,
    /// Never.
    Never,
}

impl ConnectorConfig {
    fn name(&self) -> &'static str {
        match self {
            ConnectorConfig::None => "none",
            ConnectorConfig::Tcp { .. } => "tcp",
            ConnectorConfig::Erlang(_) => "erlang",
        }
    }
}

/// A parsed, validated configuration file.
#[derive(Debug)]
pub struct ConfigFile {
    /// The file's path, as given.
    pub path: String,
    /// The cluster's settings, this node's name among them.
    pub cluster: ClusterConfig,
    /// The connector.
    pub connector: ConnectorConfig,
    /// The topologies, in file order.
    pub topologies: Vec<TopologySpec>,
    /// Keys that were accepted but deserve attention (deprecated aliases), located like
    /// errors.
    pub warnings: Vec<FileError>,
    /// `[node] leave_timeout`: how long leaving may take at SIGTERM before the tool exits
    /// anyway (default 5 s).
    pub leave_timeout: std::time::Duration,
    /// `[admin]`: the health, readiness and metrics endpoint, if the file asks for one.
    pub admin: Option<AdminSettings>,
}

/// `[admin]`: where `muster run` serves `/livez`, `/readyz` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdminSettings {
    /// `listen`: the address (e.g. `127.0.0.1:9568`).
    pub listen: std::net::SocketAddr,
    /// `ready_min_members`: connected members, besides this node, for `/readyz` to answer
    /// 200 (default 0: ready once running).
    pub ready_min_members: usize,
}

impl AdminSettings {
    /// An endpoint on `listen`, ready once running.
    pub fn new(listen: std::net::SocketAddr) -> Self {
        AdminSettings {
            listen,
            ready_min_members: 0,
        }
    }
}

fn admin_section(o: &mut Options<'_>) -> Result<AdminSettings, ConfigError> {
    let listen = o.string("listen")?;
    let listen = o.required("listen", listen)?;
    let listen = listen.parse().map_err(|_| {
        ConfigError::invalid(
            o.key_path("listen"),
            format!("{listen:?} is not an address and port, such as \"127.0.0.1:9568\""),
        )
    })?;
    let ready_min_members = o.u64("ready_min_members")?.unwrap_or(0);
    Ok(AdminSettings {
        listen,
        ready_min_members: usize::try_from(ready_min_members).unwrap_or(usize::MAX),
    })
}

/// The default `[node] leave_timeout`.
pub const DEFAULT_LEAVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A configuration error, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file.
    pub file: String,
    /// The line (1-based), when known.
    pub line: Option<usize>,
    /// The offending key, when there is one.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        match &self.key {
            Some(k) => write!(f, ": `{k}`: {}", self.message),
            None => write!(f, ": {}", self.message),
        }
    }
}

impl std::error::Error for FileError {}

/// Where each key was written: dotted key path to 1-based line.
struct Lines {
    src_lines: Vec<usize>,
    keys: HashMap<String, usize>,
}

impl Lines {
    fn new(src: &str) -> Self {
        let src_lines = src
            .char_indices()
            .filter(|(_, c)| *c == '\n')
            .map(|(i, _)| i)
            .collect();
        Lines {
            src_lines,
            keys: HashMap::new(),
        }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.src_lines.partition_point(|&nl| nl < offset) + 1
    }

    /// The line of `key`, or of the nearest enclosing table that was written.
    fn find(&self, key: &str) -> Option<usize> {
        let mut k = key;
        loop {
            if let Some(l) = self.keys.get(k) {
                return Some(*l);
            }
            let cut = k.rfind(['.', '['])?;
            k = &k[..cut];
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn convert_table(
    t: &DeTable<'_>,
    path: &str,
    lines: &mut Lines,
    env: &Environment,
) -> Result<Value, (String, String)> {
    let mut out = Vec::with_capacity(t.len());
    for (k, v) in t.iter() {
        let key = join(path, k.get_ref());
        let line = lines.line_of(k.span().start);
        lines.keys.entry(key.clone()).or_insert(line);
        out.push((
            k.get_ref().to_string(),
            convert(v.get_ref(), &key, lines, env)?,
        ));
    }
    Ok(Value::Table(out))
}

/// Replaces `${VAR}` and `${VAR:-default}` in a string value with the environment's values;
/// `$${` is a literal `${`. An unset variable without a default is an error naming it.
pub(crate) fn interpolate(s: &str, env: &Environment) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix("${") {
            out.push_str("${");
            rest = r;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let end = body
            .find('}')
            .ok_or_else(|| format!("{s:?}: \"${{\" without its closing \"}}\""))?;
        let (name, default) = match body[..end].split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (&body[..end], None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "{s:?}: {name:?} is not an environment variable's name"
            ));
        }
        match (env.get(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (write ${{{name}:-default}} for a default)"
                ));
            }
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn convert(
    v: &DeValue<'_>,
    path: &str,
    lines: &mut Lines,
    env: &Environment,
) -> Result<Value, (String, String)> {
    Ok(match v {
        // A name given on the command line replaces the file's, unread.
        DeValue::String(s) if path == "node.name" && name_from_env(env).is_some() => {
            Value::Str(s.to_string())
        }
        DeValue::String(s) => Value::Str(interpolate(s, env).map_err(|e| (path.to_owned(), e))?),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Integer(i) => {
            let digits: String = i.as_str().chars().filter(|c| *c != '_').collect();
            let digits = digits.trim_start_matches('+');
            let digits = digits
                .strip_prefix("0x")
                .or_else(|| digits.strip_prefix("0o"))
                .or_else(|| digits.strip_prefix("0b"))
                .unwrap_or(digits);
            let n = i64::from_str_radix(digits, i.radix()).map_err(|_| {
                (
                    path.to_owned(),
                    format!("integer {} is out of range", i.as_str()),
                )
            })?;
            Value::Int(n)
        }
        DeValue::Float(f) => Value::Float(f.as_str().replace('_', "").parse().unwrap_or(f64::NAN)),
        DeValue::Datetime(_) => {
            return Err((path.to_owned(), "dates are not accepted here".to_owned()));
        }
        DeValue::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                let line = lines.line_of(item.span().start);
                lines.keys.entry(p.clone()).or_insert(line);
                out.push(convert(item.get_ref(), &p, lines, env)?);
            }
            Value::List(out)
        }
        DeValue::Table(t) => convert_table(t, path, lines, env)?,
    })
}

impl ConfigFile {
    /// Reads and validates the file at `path`.
    pub fn load(path: &str) -> Result<ConfigFile, FileError> {
        let text = std::fs::read_to_string(path).map_err(|e| FileError {
            file: path.to_owned(),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
        })?;
        ConfigFile::parse(path, &text)
    }

    /// Validates `text`, naming `path` in errors, with the built-in strategies and this
    /// process's environment.
    pub fn parse(path: &str, text: &str) -> Result<ConfigFile, FileError> {
        let env = Environment::from_vars(std::env::vars_os().map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        }));
        ConfigFile::parse_with(path, text, &Registry::builtin().with_env(env))
    }

    /// [`parse`](ConfigFile::parse) with a registry that may hold your own strategies.
    pub fn parse_with(
        path: &str,
        text: &str,
        registry: &Registry,
    ) -> Result<ConfigFile, FileError> {
        let mut lines = Lines::new(text);
        let err = |lines: &Lines, key: String, message: String| FileError {
            file: path.to_owned(),
            line: lines.find(&key),
            key: Some(key),
            message,
        };
        let doc = DeTable::parse(text).map_err(|e| FileError {
            file: path.to_owned(),
            line: e.span().map(|s| lines.line_of(s.start)),
            key: None,
            message: format!("invalid TOML: {}", e.message()),
        })?;
        let root = convert_table(doc.get_ref(), "", &mut lines, registry.env())
            .map_err(|(key, message)| err(&lines, key, message))?;
        let from_core = |lines: &Lines, e: ConfigError| err(lines, e.key, e.problem.to_string());
        let env = registry.env().clone();
        let built = (|| {
            let mut o = Options::of("", &root)?;
            let (cluster, connector_kind, leave_timeout) = match o.table("node")? {
                Some(mut node) => {
                    let r = node_section(&mut node, &env)?;
                    node.finish()?;
                    r
                }
                None => {
                    let empty = Vec::new();
                    node_section(&mut Options::new("node", &empty), &env)?
                }
            };
            let empty = Vec::new();
            let mut c = o
                .table("connector")?
                .unwrap_or_else(|| Options::new("connector", &empty));
            let connector =
                connector_section(&connector_kind, &mut c, &env, cluster.this_node.as_ref())?;
            let mut warnings = c.take_warnings();
            c.finish()?;
            let admin = match o.table("admin")? {
                Some(mut a) => {
                    let r = admin_section(&mut a)?;
                    a.finish()?;
                    Some(r)
                }
                None => None,
            };
            // Strategies that ask EPMD (local_epmd, erlang_hosts) default to the connector's
            // EPMD port, so one `epmd_port` configures both.
            let registry = match &connector {
                ConnectorConfig::Erlang(e) => registry
                    .clone()
                    .with_env(env.clone().set("ERL_EPMD_PORT", e.epmd_port.to_string())),
                _ => registry.clone(),
            };
            let mut topologies = Vec::new();
            let mut t = o.table("topologies")?;
            let t = o.required("topologies", t.as_mut())?;
            for (name, value) in t.rest() {
                let mut spec = Options::of(t.key_path(name), value)?;
                topologies.push(TopologySpec::from_config(name, &mut spec, &registry)?);
                t.absorb_warnings(&mut spec);
                spec.finish()?;
            }
            if topologies.is_empty() {
                return Err(ConfigError::invalid(
                    "topologies",
                    "needs at least one topology",
                ));
            }
            warnings.extend(t.take_warnings());
            o.finish()?;
            Ok((
                cluster,
                connector,
                topologies,
                warnings,
                leave_timeout,
                admin,
            ))
        })();
        let (cluster, connector, topologies, warnings, leave_timeout, admin) =
            built.map_err(|e| from_core(&lines, e))?;
        let warnings = warnings
            .into_iter()
            .map(|w| err(&lines, w.key, w.message))
            .collect();
        Ok(ConfigFile {
            path: path.to_owned(),
            cluster,
            connector,
            topologies,
            warnings,
            leave_timeout,
            admin,
        })
    }

    /// The Erlang node the configuration describes, for `Builder::erlang` on any adapter:
    /// `None` unless the connector is `erlang` and `[node] name` is set.
    pub fn erlang_node(&self) -> Option<DistConfig> {
        let ConnectorConfig::Erlang(e) = &self.connector else {
            return None;
        };
        let name = self.cluster.this_node.clone()?;
        Some(
            DistConfig::new(name, e.cookie.clone())
                .epmd_port(e.epmd_port)
                .listen(e.listen)
                .hidden(e.hidden)
                .tick_time(e.tick_time)
                .max_handshakes(e.max_handshakes),
        )
    }

    /// The resolved configuration, every default filled in, as TOML.
    pub fn describe(&self) -> String {
        let mut node = Vec::new();
        if let Some(n) = &self.cluster.this_node {
            node.push(("name".to_owned(), Value::str(n.as_str())));
        }
        node.push(("connector".to_owned(), Value::str(self.connector.name())));
        node.push((
            "max_in_flight".to_owned(),
            Value::Int(self.cluster.max_in_flight as i64),
        ));
        node.push((
            "list_timeout".to_owned(),
            Value::millis(self.cluster.list_timeout),
        ));
        node.push((
            "leave_timeout".to_owned(),
            Value::millis(self.leave_timeout),
        ));
        let connector = match &self.connector {
            ConnectorConfig::None => Vec::new(),
            ConnectorConfig::Tcp { port } => {
                vec![("port".to_owned(), Value::Int(i64::from(*port)))]
            }
            ConnectorConfig::Erlang(e) => vec![
                (
                    "#cookie".to_owned(),
                    Value::str(format!("from {} (not shown)", e.cookie_source)),
                ),
                ("epmd_port".to_owned(), Value::Int(i64::from(e.epmd_port))),
                ("listen".to_owned(), Value::str(e.listen.to_string())),
                ("hidden".to_owned(), Value::Bool(e.hidden)),
                ("tick_time".to_owned(), Value::millis(e.tick_time)),
                (
                    "max_handshakes".to_owned(),
                    Value::Int(e.max_handshakes as i64),
                ),
                (
                    "embedded_epmd".to_owned(),
                    Value::str(match e.embedded_epmd {
                        EmbeddedEpmd::Auto => "auto",
                        EmbeddedEpmd::Always => "always",
                        EmbeddedEpmd::Never => "never",
                    }),
                ),
            ],
        };
        let topologies = self
            .topologies
            .iter()
            .map(|t| (t.name.clone(), t.describe()))
            .collect();
        let mut root = vec![
            ("node".to_owned(), Value::Table(node)),
            ("connector".to_owned(), Value::Table(connector)),
        ];
        if let Some(a) = &self.admin {
            root.push((
                "admin".to_owned(),
                Value::Table(vec![
                    ("listen".to_owned(), Value::str(a.listen.to_string())),
                    (
                        "ready_min_members".to_owned(),
                        Value::Int(a.ready_min_members as i64),
                    ),
                ]),
            ));
        }
        root.push(("topologies".to_owned(), Value::Table(topologies)));
        let mut out = String::new();
        write_table(&mut out, "", &root);
        out
    }
}

fn node_section(
    o: &mut Options<'_>,
    env: &Environment,
) -> Result<(ClusterConfig, String, std::time::Duration), ConfigError> {
    let mut cluster = ClusterConfig::new();
    let file_name = o.string("name")?;
    // `muster run --name` and MUSTER_NODE_NAME win over the file.
    match (name_from_env(env), file_name) {
        (Some(name), _) => {
            let n = NodeName::new(name)
                .map_err(|e| ConfigError::invalid(format!("{NAME_VAR} (--name)"), e))?;
            cluster = cluster.this_node(n);
        }
        (None, Some(name)) => {
            let n = NodeName::new(name).map_err(|e| ConfigError::invalid(o.key_path("name"), e))?;
            cluster = cluster.this_node(n);
        }
        (None, None) => {}
    }
    let connector = o.string("connector")?.unwrap_or("none").to_owned();
    if let Some(m) = o.u64("max_in_flight")? {
        if m == 0 {
            return Err(ConfigError::invalid(
                o.key_path("max_in_flight"),
                "must be at least 1",
            ));
        }
        cluster = cluster.max_in_flight(usize::try_from(m).unwrap_or(usize::MAX));
    }
    if let Some(d) = o.positive_millis("list_timeout")? {
        cluster = cluster.list_timeout(d);
    }
    let leave = o
        .positive_millis("leave_timeout")?
        .unwrap_or(DEFAULT_LEAVE_TIMEOUT);
    Ok((cluster, connector, leave))
}

/// The environment variable that names this node, over `[node] name` (`--name` sets it).
pub const NAME_VAR: &str = "MUSTER_NODE_NAME";

/// The name `--name` or [`NAME_VAR`] gives; empty is unset, as for `${VAR}` (a manifest's
/// `MUSTER_NODE_NAME: ""` must not stop the node).
fn name_from_env(env: &Environment) -> Option<&str> {
    env.get(NAME_VAR).filter(|n| !n.is_empty())
}

/// The cookie, as the issue of precedence says: the file's `cookie`, then `MUSTER_COOKIE`,
/// then `~/.erlang.cookie` as Erlang reads it.
fn cookie(o: &mut Options<'_>, env: &Environment) -> Result<(String, String), ConfigError> {
    if let Some(c) = o.string("cookie")? {
        if c.is_empty() {
            return Err(ConfigError::invalid(
                o.key_path("cookie"),
                "must not be empty",
            ));
        }
        return Ok((c.to_owned(), "the config file".to_owned()));
    }
    if let Some(c) = env.get("MUSTER_COOKIE").filter(|c| !c.is_empty()) {
        return Ok((c.to_owned(), "MUSTER_COOKIE".to_owned()));
    }
    if let Some(home) = env.get("HOME") {
        let path = format!("{}/.erlang.cookie", home.trim_end_matches('/'));
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Some(c) = muster_core::dist::cookie_from_file(&text)
        {
            return Ok((c.to_owned(), path));
        }
    }
    Err(ConfigError::new(
        o.key_path("cookie"),
        muster_core::Problem::Invalid(
            "no cookie: set it here, or MUSTER_COOKIE, or write ~/.erlang.cookie".to_owned(),
        ),
    ))
}

fn erlang_section(
    o: &mut Options<'_>,
    env: &Environment,
    me: Option<&NodeName>,
) -> Result<ErlangSettings, ConfigError> {
    if me.is_none() {
        return Err(ConfigError::new("node.name", muster_core::Problem::Missing));
    }
    let (cookie, cookie_source) = cookie(o, env)?;
    let epmd_port = match o.u64("epmd_port")? {
        Some(p) => u16::try_from(p).ok().filter(|p| *p != 0).ok_or_else(|| {
            ConfigError::invalid(o.key_path("epmd_port"), format!("{p} is not a TCP port"))
        })?,
        None => match env.get("ERL_EPMD_PORT") {
            Some(v) => v.trim().parse().map_err(|_| {
                ConfigError::invalid(
                    o.key_path("epmd_port"),
                    format!("ERL_EPMD_PORT={v:?} is not a port"),
                )
            })?,
            None => muster_core::dist::epmd::DEFAULT_PORT,
        },
    };
    let listen = match o.string("listen")? {
        Some(s) => s.parse().map_err(|_| {
            ConfigError::invalid(
                o.key_path("listen"),
                format!("{s:?} is not an address:port"),
            )
        })?,
        None => std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
    };
    let hidden = o.bool("hidden")?.unwrap_or(true);
    if !hidden {
        o.warn(
            "hidden",
            "a visible node does not speak OTP's global protocol: global:sync() on every BEAM \
             node connected to it does not return while it is connected (keep it hidden unless \
             no one there calls global:sync())",
        );
    }
    let tick_time = o
        .positive_millis("tick_time")?
        .unwrap_or(std::time::Duration::from_secs(60));
    let embedded_epmd = match o.string("embedded_epmd")? {
        None | Some("auto") => EmbeddedEpmd::Auto,
        Some("always") => EmbeddedEpmd::Always,
        Some("never") => EmbeddedEpmd::Never,
        Some(other) => {
            return Err(ConfigError::invalid(
                o.key_path("embedded_epmd"),
                format!("{other:?} is not auto, always or never"),
            ));
        }
    };
    let max_handshakes = match o.u64("max_handshakes")? {
        None => 64,
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| (1..=65_536).contains(n))
            .ok_or_else(|| {
                ConfigError::invalid(
                    o.key_path("max_handshakes"),
                    format!("{n} is not between 1 and 65536"),
                )
            })?,
    };
    Ok(ErlangSettings {
        cookie,
        cookie_source,
        epmd_port,
        listen,
        hidden,
        tick_time,
        embedded_epmd,
        max_handshakes,
    })
}

fn connector_section(
    kind: &str,
    o: &mut Options<'_>,
    env: &Environment,
    me: Option<&NodeName>,
) -> Result<ConnectorConfig, ConfigError> {
    match kind {
        "erlang" => erlang_section(o, env, me).map(ConnectorConfig::Erlang),
        "none" => Ok(ConnectorConfig::None),
        "tcp" => {
            let port = o.u64("port")?;
            let port = o.required("port", port)?;
            let port = u16::try_from(port)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| {
                    ConfigError::invalid(
                        o.key_path("port"),
                        format!("{port} is not a TCP port (1-65535)"),
                    )
                })?;
            Ok(ConnectorConfig::Tcp { port })
        }
        other => Err(ConfigError::invalid(
            "node.connector",
            format!("unknown connector {other:?} (known: none, tcp, erlang)"),
        )),
    }
}

fn bare_key(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn key_text(k: &str) -> String {
    if bare_key(k) {
        k.to_owned()
    } else {
        basic_string(k)
    }
}

/// `s` as a TOML basic string: quotes, backslashes and every control character (DEL
/// included, which TOML forbids raw) escaped.
fn basic_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A string value as the configuration reads it back: `${` would be interpolated, so it is
/// written `$${`.
fn string_value(s: &str) -> String {
    basic_string(&s.replace("${", "$${"))
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{f:?}"),
        Value::Str(s) => string_value(s),
        Value::List(items) => {
            let inner: Vec<String> = items.iter().map(scalar).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Table(t) => {
            let inner: Vec<String> = t
                .iter()
                .map(|(k, v)| format!("{} = {}", key_text(k), scalar(v)))
                .collect();
            format!("{{ {} }}", inner.join(", "))
        }
        _ => String::new(),
    }
}

/// TOML for `table` at `path`: its scalars first, then each sub-table under its own header.
fn write_table(out: &mut String, path: &str, table: &[(String, Value)]) {
    for (k, v) in table {
        // A key starting with '#' is a comment: a secret's source, a value read at run time.
        if let Some(name) = k.strip_prefix('#') {
            let text = match v {
                Value::Str(s) => s.clone(),
                other => scalar(other),
            };
            out.push_str(&format!("# {name}: {}\n", text.replace('\n', " ")));
        } else if !matches!(v, Value::Table(_)) {
            out.push_str(&format!("{} = {}\n", key_text(k), scalar(v)));
        }
    }
    for (k, v) in table {
        if let Value::Table(t) = v {
            let p = if path.is_empty() {
                key_text(k)
            } else {
                format!("{path}.{}", key_text(k))
            };
            let has_scalars = t.iter().any(|(_, v)| !matches!(v, Value::Table(_)));
            if has_scalars || t.is_empty() {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(&format!("[{p}]\n"));
            }
            write_table(out, &p, t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(text: &str) -> Result<ConfigFile, FileError> {
        ConfigFile::parse("muster.toml", text)
    }

    const GOOD: &str = r#"
[node]
name = "app@127.0.0.1"
connector = "tcp"

[connector]
port = 7000

[topologies.app]
strategy = "epmd"

[topologies.app.config]
hosts = ["app@127.0.0.2", "app@127.0.0.3"]
timeout = 5_000

[topologies.app.connect]
backoff_base = 100
"#;

    #[test]
    fn a_visible_erlang_node_is_warned_about_with_its_line() {
        let text = r#"
[node]
name = "app@127.0.0.1"
connector = "erlang"

[connector]
cookie = "c"
hidden = false

[topologies.app]
strategy = "local_epmd"
"#;
        let c = parse(text).unwrap();
        let w = c
            .warnings
            .iter()
            .find(|w| w.key.as_deref() == Some("connector.hidden"))
            .expect("a warning about hidden = false");
        assert_eq!(w.line, Some(8));
        assert!(w.message.contains("global:sync()"), "{w}");
        let hidden = parse(&text.replace("hidden = false", "hidden = true")).unwrap();
        assert!(hidden.warnings.is_empty(), "{:?}", hidden.warnings);
    }

    #[test]
    fn max_handshakes_is_read_and_checked() {
        let text = "[node]\nname = \"app@127.0.0.1\"\nconnector = \"erlang\"\n\n[connector]\n\
                    cookie = \"c\"\nmax_handshakes = 8\n\n[topologies.app]\nstrategy = \"local_epmd\"\n";
        let c = parse(text).unwrap();
        let ConnectorConfig::Erlang(e) = &c.connector else {
            panic!("{:?}", c.connector)
        };
        assert_eq!(e.max_handshakes, 8);
        assert!(
            c.describe().contains("max_handshakes = 8"),
            "{}",
            c.describe()
        );
        let e = parse(&text.replace("= 8", "= 0")).unwrap_err().to_string();
        assert!(
            e.contains("muster.toml:7: `connector.max_handshakes`: 0 is not between 1 and 65536"),
            "{e}"
        );
    }

    #[test]
    fn a_good_file_resolves_with_every_default() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.connector, ConnectorConfig::Tcp { port: 7000 });
        assert_eq!(c.topologies.len(), 1);
        assert_eq!(
            c.topologies[0].policy.backoff_base,
            Duration::from_millis(100)
        );
        let d = c.describe();
        for line in [
            "name = \"app@127.0.0.1\"",
            "connector = \"tcp\"",
            "max_in_flight = 128",
            "port = 7000",
            "[topologies.app]",
            "strategy = \"epmd\"",
            "hosts = [\"app@127.0.0.2\", \"app@127.0.0.3\"]",
            "timeout = 5000",
            "connect_timeout = 7000",
            "backoff_base = 100",
            "backoff_max = 30000",
            "prune = true",
            "grace = 0",
        ] {
            assert!(d.contains(line), "{line:?} missing from:\n{d}");
        }
        // The description is itself a valid configuration that resolves the same.
        let again = parse(&d).unwrap();
        assert_eq!(again.describe(), d);
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_key() {
        let unknown = GOOD.replace("timeout = 5_000", "timeout = 5_000\nbogus = 1");
        assert_eq!(
            error(&unknown),
            "muster.toml:15: `topologies.app.config.bogus`: unknown key (accepted here: hosts, timeout)"
        );
        let wrong = GOOD.replace("timeout = 5_000", "timeout = \"5s\"");
        assert_eq!(
            error(&wrong),
            "muster.toml:14: `topologies.app.config.timeout`: expected an integer number of milliseconds, found a string"
        );
        let bad_host = GOOD.replace("\"app@127.0.0.3\"", "\n  \"app@@x\"");
        assert_eq!(
            error(&bad_host),
            "muster.toml:14: `topologies.app.config.hosts[1]`: node name has more than one '@'"
        );
        let strategy = GOOD.replace("strategy = \"epmd\"", "strategy = \"consul\"");
        let known: Vec<&str> = Registry::builtin().names().collect();
        assert_eq!(
            error(&strategy),
            format!(
                "muster.toml:10: `topologies.app.strategy`: unknown strategy \"consul\" (known: {})",
                known.join(", ")
            )
        );
        let missing = GOOD.replace("strategy = \"epmd\"", "");
        assert_eq!(
            error(&missing),
            "muster.toml:9: `topologies.app.strategy`: missing required key"
        );
        let port = GOOD.replace("port = 7000", "");
        assert_eq!(
            error(&port),
            "muster.toml:6: `connector.port`: missing required key"
        );
        let connector = GOOD.replace("connector = \"tcp\"", "connector = \"carrier-pigeon\"");
        assert!(
            error(&connector).starts_with("muster.toml:4: `node.connector`: unknown connector")
        );
        assert_eq!(
            error("[topologies]\n"),
            "muster.toml:1: `topologies`: needs at least one topology"
        );
        assert_eq!(
            error("[node]\n"),
            "muster.toml: `topologies`: missing required key"
        );
        let toml = error("[node\nname = 1");
        assert!(toml.starts_with("muster.toml:1: invalid TOML"), "{toml}");
        let top = GOOD.replace("[node]", "extra = true\n[node]");
        assert!(error(&top).starts_with("muster.toml:2: `extra`: unknown key"));
        let policy = GOOD.replace("backoff_base = 100", "backoff_base = -1");
        assert_eq!(
            error(&policy),
            "muster.toml:17: `topologies.app.connect.backoff_base`: must not be negative, got -1"
        );
    }

    fn parse_env(text: &str, env: Environment) -> Result<ConfigFile, FileError> {
        ConfigFile::parse_with("m.toml", text, &Registry::builtin().with_env(env))
    }

    #[test]
    fn names_and_values_come_from_the_environment() {
        let text = "[node]\nname = \"app@${POD_IP}\"\n[topologies.k]\nstrategy = \"epmd\"\n\
                    config = { hosts = [\"b@${PEER:-10.0.0.9}\"] }\n";
        let env = Environment::new().set("POD_IP", "10.1.2.3");
        let f = parse_env(text, env.clone()).unwrap();
        assert_eq!(
            f.cluster.this_node.as_ref().unwrap().as_str(),
            "app@10.1.2.3"
        );
        assert!(f.describe().contains("b@10.0.0.9"), "the default");
        // --name (MUSTER_NODE_NAME) wins over the file.
        let empty = parse_env(text, env.clone().set(NAME_VAR, "")).unwrap();
        assert_eq!(
            empty.cluster.this_node.unwrap().as_str(),
            "app@10.1.2.3",
            "empty is unset: the file's name"
        );
        let f = parse_env(text, env.set(NAME_VAR, "other@10.9.9.9")).unwrap();
        assert_eq!(f.cluster.this_node.unwrap().as_str(), "other@10.9.9.9");
        // Unset, no default: the key and the variable are named.
        let e = parse_env(text, Environment::new()).unwrap_err().to_string();
        assert!(e.contains("node.name"), "{e}");
        assert!(e.contains("POD_IP is not set"), "{e}");
        assert_eq!(line_of(&e), Some(2));
        // A literal, and nonsense.
        let env = Environment::new();
        assert_eq!(interpolate("a$${B}c$", &env).unwrap(), "a${B}c$");
        // What describe writes reads back as the value it was.
        for v in ["${HOME}", "$${x}", "a\u{7f}b\u{1}c\"d\\e\n", "plain"] {
            let text = format!("k = {}", string_value(v));
            let doc = DeTable::parse(&text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            let Some(DeValue::String(raw)) = doc.get_ref().get("k").map(|v| v.get_ref()) else {
                panic!("{text}: no string")
            };
            assert_eq!(interpolate(raw, &env).unwrap(), v, "{text}");
        }
        assert!(interpolate("x${A", &env).unwrap_err().contains("closing"));
        assert!(
            interpolate("x${A B}", &env)
                .unwrap_err()
                .contains("not an environment")
        );
    }

    fn line_of(e: &str) -> Option<u32> {
        e.split(':').nth(1)?.trim().parse().ok()
    }

    /// `muster check`'s output is itself a valid configuration, and checking it again gives
    /// the same output — for every strategy and connector.
    #[test]
    fn check_round_trips_every_strategy() {
        let env = Environment::new()
            .set("MUSTER_COOKIE", "from-env")
            .set("KUBERNETES_SERVICE_HOST", "10.96.0.1")
            .set("KUBERNETES_SERVICE_PORT", "443");
        let topologies = [
            "strategy = \"epmd\"\nconfig = { hosts = [\"b@10.0.0.2\"] }",
            "strategy = \"local_epmd\"",
            "strategy = \"erlang_hosts\"",
            "strategy = \"gossip\"",
            "strategy = \"gossip\"\nconfig = { multicast_addr = \"ff12::1\", multicast_if = \"lo\" }",
            "strategy = \"kubernetes\"\nconfig = { kubernetes_node_basename = \"app\", kubernetes_selector = \"app=x\" }",
            "strategy = \"kubernetes\"\nconfig = { kubernetes_node_basename = \"app\", kubernetes_service_name = \"svc\", kubernetes_namespace = \"prod\", mode = \"hostname\" }",
            "strategy = \"kubernetes_dns\"\nconfig = { service = \"svc\", application_name = \"app\" }",
            "strategy = \"kubernetes_dns_srv\"\nconfig = { service = \"svc\", namespace = \"ns\", application_name = \"app\" }",
            "strategy = \"dns_poll\"\nconfig = { query = \"app.test\", node_basename = \"app\" }",
            "strategy = \"rancher\"\nconfig = { node_basename = \"web\" }",
            "strategy = \"etcd\"\nconfig = { endpoints = [\"http://10.0.0.5:2379\"] }",
            "strategy = \"etcd\"\nconfig = { endpoints = [\"https://etcd.test\", \"https://[fd00::1]:2390/\"], ca_file = \"/ca.pem\", prefix = \"/x/\", ttl = 30 }",
        ];
        let connectors = [
            "connector = \"none\"\n",
            "connector = \"tcp\"\n[connector]\nport = 7000\n",
            "connector = \"erlang\"\n",
        ];
        for t in topologies {
            for c in connectors {
                let text = format!(
                    "[node]\nname = \"a@10.0.0.1\"\n{c}[admin]\nlisten = \"127.0.0.1:9568\"\n[topologies.t]\n{t}\n"
                );
                let first = parse_env(&text, env.clone())
                    .unwrap_or_else(|e| panic!("{text}\n{e}"))
                    .describe();
                let second = parse_env(&first, env.clone())
                    .unwrap_or_else(|e| panic!("check's own output is refused: {e}\n{first}"))
                    .describe();
                assert_eq!(first, second, "{t}");
                assert!(
                    !first.contains("= \"("),
                    "no placeholder as a value: {first}"
                );
                assert!(!first.contains("from-env"), "no secret: {first}");
            }
        }
        let text = "[node]\nname = \"a@h\"\n[topologies.g]\nstrategy = \"gossip\"\n\
                    config = { secret = \"hush-hush\" }\n";
        let out = parse_env(text, env).unwrap().describe();
        assert!(!out.contains("hush-hush"), "{out}");
        assert!(
            out.contains("# secret: set in the configuration (not shown)"),
            "{out}"
        );
    }

    /// The docs name every strategy the registry knows, in the error sample and the table.
    #[test]
    fn the_docs_list_every_strategy() {
        let doc = include_str!("../docs/configuration.md");
        let known: Vec<&str> = Registry::builtin().names().collect();
        assert!(
            doc.contains(&format!("(known: {})", known.join(", "))),
            "the error sample"
        );
        let row = doc
            .lines()
            .find(|l| l.starts_with("| `strategy` | required |"))
            .unwrap();
        for k in &known {
            assert!(row.contains(&format!("`{k}`")), "{k} in {row}");
        }
    }

    /// libcluster's module names and `timeout = "infinity"` read as libcluster means them.
    #[test]
    fn libcluster_names_are_aliases() {
        let text = "[topologies.t]\nstrategy = \"Cluster.Strategy.Epmd\"\n\
                    config = { hosts = [\"b@h\"], timeout = \"infinity\" }\n";
        let f = parse_env(text, Environment::new()).unwrap();
        assert!(f.describe().contains("strategy = \"epmd\""));
        assert!(!f.describe().contains("\ntimeout = "), "never reconnects");
        assert!(
            f.warnings
                .iter()
                .any(|w| w.to_string().contains("libcluster's name")),
            "{:?}",
            f.warnings
        );
    }
}
