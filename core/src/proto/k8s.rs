//! The Kubernetes API's lists that discovery reads — `EndpointSliceList`
//! (`discovery.k8s.io/v1`), `EndpointsList` and `PodList` (`v1`) — decoded into the addresses
//! they name, and node hosts built from them in the `ip`, `dns` and `hostname` modes.
//!
//! Only the fields discovery needs are decoded; everything else (labels, managed fields,
//! ports, ...) is skipped without being stored, and strings are borrowed from the body where
//! they carry no escapes, so the decoded list is a small fraction of the body.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::IpAddr;

use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Which API objects list the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupMode {
    /// `discovery.k8s.io/v1` EndpointSlices of a Service.
    EndpointSlices,
    /// `v1` Endpoints (deprecated since Kubernetes 1.33).
    Endpoints,
    /// `v1` Pods.
    Pods,
}

impl LookupMode {
    /// The name the configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            LookupMode::EndpointSlices => "endpointslices",
            LookupMode::Endpoints => "endpoints",
            LookupMode::Pods => "pods",
        }
    }

    /// The list's `kind`.
    fn kind(self) -> &'static str {
        match self {
            LookupMode::EndpointSlices => "EndpointSliceList",
            LookupMode::Endpoints => "EndpointsList",
            LookupMode::Pods => "PodList",
        }
    }

    /// The API path of the list in `namespace` (not yet with its query).
    pub fn path(self, namespace: &str) -> String {
        match self {
            LookupMode::EndpointSlices => {
                format!("/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices")
            }
            LookupMode::Endpoints => format!("/api/v1/namespaces/{namespace}/endpoints"),
            LookupMode::Pods => format!("/api/v1/namespaces/{namespace}/pods"),
        }
    }
}

/// How a node's host is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameMode {
    /// The address: `basename@10.1.2.3`.
    Ip,
    /// The pod's DNS name: `basename@10-1-2-3.<namespace>.pod.<domain>`.
    Dns,
    /// The pod's name in its headless Service:
    /// `basename@<hostname>.<service>.<namespace>.svc.<domain>`.
    Hostname,
}

impl NameMode {
    /// The name the configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            NameMode::Ip => "ip",
            NameMode::Dns => "dns",
            NameMode::Hostname => "hostname",
        }
    }
}

/// An address a list named.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Address<'a> {
    /// An IP address.
    Ip(IpAddr),
    /// A name (an EndpointSlice of `addressType: FQDN`).
    Fqdn(Cow<'a, str>),
}

/// One address to name a node after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// The address.
    pub address: Address<'a>,
    /// Its namespace: the pod's (from `targetRef`), else the listing object's.
    pub namespace: Option<Cow<'a, str>>,
    /// The pod's hostname, when the object says (StatefulSet pods behind a headless Service).
    pub hostname: Option<Cow<'a, str>>,
    /// The pod's name, when the object says.
    pub pod: Option<Cow<'a, str>>,
}

/// What a list held besides its targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Addresses not ready (left out unless asked for).
    pub not_ready: usize,
    /// Addresses of terminating pods, or pods being deleted or not running.
    pub terminating: usize,
    /// Pods without an IP yet.
    pub no_ip: usize,
    /// Addresses that are not IP addresses (in an IPv4 or IPv6 slice, or a pod's status).
    pub bad_address: usize,
    /// Second addresses of a pod already listed (dual stack: the first family listed wins,
    /// IPv4 before IPv6).
    pub duplicate: usize,
}

/// A decoded list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed<'a> {
    /// The addresses to name nodes after, in the list's order.
    pub targets: Vec<Target<'a>>,
    /// What was left out, and why.
    pub skipped: Skipped,
}

/// Why a list could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum K8sError {
    /// The body is not JSON of the expected shape (serde_json's message names the field, the
    /// line and the column).
    #[error("{0}")]
    Json(String),
    /// The body is another kind of object.
    #[error("expected a {expected}, got kind {got:?}")]
    Kind {
        /// The kind asked for.
        expected: &'static str,
        /// The kind received.
        got: String,
    },
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow, default)]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "deletionTimestamp")]
    deletion_timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "resourceVersion")]
    resource_version: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ObjectRef<'a> {
    #[serde(borrow, default)]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Slice<'a> {
    #[serde(borrow)]
    metadata: Option<Meta<'a>>,
    #[serde(borrow, rename = "addressType")]
    address_type: Cow<'a, str>,
    #[serde(borrow, default)]
    endpoints: Option<Vec<SliceEndpoint<'a>>>,
}

#[derive(Deserialize)]
struct SliceEndpoint<'a> {
    #[serde(borrow)]
    addresses: Vec<Cow<'a, str>>,
    #[serde(default)]
    conditions: Option<Conditions>,
    #[serde(borrow, default)]
    hostname: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "targetRef")]
    target_ref: Option<ObjectRef<'a>>,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct Conditions {
    #[serde(default)]
    ready: Option<bool>,
    #[serde(default)]
    serving: Option<bool>,
    #[serde(default)]
    terminating: Option<bool>,
}

#[derive(Deserialize)]
struct Endpoints<'a> {
    #[serde(borrow)]
    metadata: Option<Meta<'a>>,
    #[serde(borrow, default)]
    subsets: Option<Vec<Subset<'a>>>,
}

#[derive(Deserialize)]
struct Subset<'a> {
    #[serde(borrow, default)]
    addresses: Option<Vec<EndpointAddress<'a>>>,
    #[serde(borrow, default, rename = "notReadyAddresses")]
    not_ready: Option<Vec<EndpointAddress<'a>>>,
}

#[derive(Deserialize)]
struct EndpointAddress<'a> {
    #[serde(borrow)]
    ip: Cow<'a, str>,
    #[serde(borrow, default)]
    hostname: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "targetRef")]
    target_ref: Option<ObjectRef<'a>>,
}

#[derive(Deserialize)]
struct Pod<'a> {
    #[serde(borrow)]
    metadata: Meta<'a>,
    #[serde(borrow, default)]
    spec: Option<PodSpec<'a>>,
    #[serde(borrow, default)]
    status: Option<PodStatus<'a>>,
}

#[derive(Deserialize)]
struct PodSpec<'a> {
    #[serde(borrow, default)]
    hostname: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct PodStatus<'a> {
    #[serde(borrow, default)]
    phase: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "podIP")]
    pod_ip: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    conditions: Option<Vec<PodCondition<'a>>>,
}

#[derive(Deserialize)]
struct PodCondition<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    status: Cow<'a, str>,
}

/// Reads a list of `mode`'s kind, handing each item to `each` as it is read, so that the
/// items are never all held at once (a 5,000-endpoint list is megabytes). The list's `kind`
/// is checked once it is read, wherever it stands.
fn decode<'a, T: Deserialize<'a>>(
    body: &'a [u8],
    mode: LookupMode,
    each: impl FnMut(T),
) -> Result<Option<String>, K8sError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut wrong = None;
    let read = ListSeed {
        each,
        item: PhantomData,
        expected: mode.kind(),
        wrong: &mut wrong,
    }
    .deserialize(&mut de)
    .and_then(|kind| de.end().map(|()| kind));
    // Another kind said before the items stops the read: say that, not what broke.
    if let Some(got) = wrong {
        return Err(K8sError::Kind {
            expected: mode.kind(),
            got,
        });
    }
    let (kind, version) = read.map_err(|e| K8sError::Json(e.to_string()))?;
    match kind {
        Some(kind) if kind != mode.kind() => Err(K8sError::Kind {
            expected: mode.kind(),
            got: kind.into_owned(),
        }),
        _ => Ok(version),
    }
}

#[derive(Deserialize)]
struct ListMeta<'a> {
    #[serde(borrow, default, rename = "resourceVersion")]
    resource_version: Option<Cow<'a, str>>,
}

/// A list object: its `kind`, and its `items` (which may be null or absent) handed to `each`.
/// A kind other than `expected` seen before the items is put in `wrong` and ends the read.
struct ListSeed<'w, T, F> {
    each: F,
    item: PhantomData<T>,
    expected: &'static str,
    wrong: &'w mut Option<String>,
}

/// A list's `kind` and `metadata.resourceVersion`.
type ListHead<'de> = (Option<Cow<'de, str>>, Option<String>);

impl<'de, T: Deserialize<'de>, F: FnMut(T)> DeserializeSeed<'de> for ListSeed<'_, T, F> {
    type Value = ListHead<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: Deserialize<'de>, F: FnMut(T)> Visitor<'de> for ListSeed<'_, T, F> {
    type Value = ListHead<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list object")
    }

    fn visit_map<M: MapAccess<'de>>(mut self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut kind = None;
        let mut version = None;
        let mut items_seen = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "kind" => {
                    kind = map.next_value::<Option<Cow<'de, str>>>()?;
                    if let Some(k) = kind.as_deref().filter(|k| *k != self.expected)
                        && !items_seen
                    {
                        *self.wrong = Some(k.to_owned());
                        return Err(serde::de::Error::custom("another kind of list"));
                    }
                }
                "metadata" => {
                    let meta = map.next_value::<Option<ListMeta<'de>>>()?;
                    version = meta.and_then(|m| m.resource_version).map(Cow::into_owned);
                }
                "items" => {
                    items_seen = true;
                    map.next_value_seed(Items {
                        each: &mut self.each,
                        item: PhantomData::<T>,
                    })?
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((kind, version))
    }
}

/// A list's `items`: null, or an array whose elements go to `each` one by one.
struct Items<'f, T, F> {
    each: &'f mut F,
    item: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>, F: FnMut(T)> DeserializeSeed<'de> for Items<'_, T, F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, T: Deserialize<'de>, F: FnMut(T)> Visitor<'de> for Items<'_, T, F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of items, or null")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        while let Some(item) = seq.next_element::<T>()? {
            (self.each)(item);
        }
        Ok(())
    }
}

/// One API object of a list or a watch event: who it is, and the addresses it names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Object<'a> {
    /// `namespace/name`, which a watch's later events about the object carry too.
    pub key: String,
    /// The object's `resourceVersion`, if it says.
    pub resource_version: Option<String>,
    /// The addresses it names, and what it left out.
    pub parsed: Parsed<'a>,
}

/// A list read object by object, for a watch to continue from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct List<'a> {
    /// The list's `metadata.resourceVersion`: where a watch starts.
    pub resource_version: Option<String>,
    /// Its objects, in the list's order.
    pub objects: Vec<Object<'a>>,
}

fn key(meta: Option<&Meta<'_>>) -> String {
    let (ns, name) = meta.map_or(("", ""), |m| {
        (
            m.namespace.as_deref().unwrap_or(""),
            m.name.as_deref().unwrap_or(""),
        )
    });
    format!("{ns}/{name}")
}

fn slice_object<'a>(slice: Slice<'a>, include_not_ready: bool) -> Object<'a> {
    let mut out = Parsed::default();
    let family = slice.address_type;
    let (key, rv) = (
        key(slice.metadata.as_ref()),
        version(slice.metadata.as_ref()),
    );
    let slice_ns = slice.metadata.and_then(|m| m.namespace);
    for ep in slice.endpoints.unwrap_or_default() {
        let c = ep.conditions.unwrap_or_default();
        if c.terminating == Some(true) {
            out.skipped.terminating += 1;
            continue;
        }
        // A condition the API leaves out means ready (its documentation says so).
        if !include_not_ready && !c.ready.or(c.serving).unwrap_or(true) {
            out.skipped.not_ready += 1;
            continue;
        }
        // Every address of an endpoint is the same pod: the first one names it.
        let Some(addr) = ep.addresses.into_iter().next() else {
            out.skipped.bad_address += 1;
            continue;
        };
        let address = if family == "FQDN" {
            Address::Fqdn(addr)
        } else {
            match addr.parse::<IpAddr>() {
                Ok(ip) if (family == "IPv4") == ip.is_ipv4() => Address::Ip(ip),
                _ => {
                    out.skipped.bad_address += 1;
                    continue;
                }
            }
        };
        let (namespace, pod) = match ep.target_ref {
            Some(r) => (r.namespace.or_else(|| slice_ns.clone()), r.name),
            None => (slice_ns.clone(), None),
        };
        out.targets.push(Target {
            address,
            namespace,
            hostname: ep.hostname,
            pod,
        });
    }
    Object {
        key,
        resource_version: rv,
        parsed: out,
    }
}

fn endpoints_object<'a>(item: Endpoints<'a>, include_not_ready: bool) -> Object<'a> {
    let mut out = Parsed::default();
    let (key, rv) = (key(item.metadata.as_ref()), version(item.metadata.as_ref()));
    let item_ns = item.metadata.and_then(|m| m.namespace);
    for subset in item.subsets.unwrap_or_default() {
        let not_ready = subset.not_ready.unwrap_or_default();
        if !include_not_ready {
            out.skipped.not_ready += not_ready.len();
        }
        let ready = subset.addresses.unwrap_or_default();
        let taken = if include_not_ready {
            ready.into_iter().chain(not_ready).collect::<Vec<_>>()
        } else {
            ready
        };
        for a in taken {
            let Ok(ip) = a.ip.parse::<IpAddr>() else {
                out.skipped.bad_address += 1;
                continue;
            };
            let (namespace, pod) = match a.target_ref {
                Some(r) => (r.namespace.or_else(|| item_ns.clone()), r.name),
                None => (item_ns.clone(), None),
            };
            out.targets.push(Target {
                address: Address::Ip(ip),
                namespace,
                hostname: a.hostname,
                pod,
            });
        }
    }
    Object {
        key,
        resource_version: rv,
        parsed: out,
    }
}

fn pod_object<'a>(pod: Pod<'a>, include_not_ready: bool) -> Object<'a> {
    let mut object = Object {
        key: key(Some(&pod.metadata)),
        resource_version: version(Some(&pod.metadata)),
        parsed: Parsed::default(),
    };
    let out = &mut object.parsed;
    let status = pod.status;
    let phase = status.as_ref().and_then(|s| s.phase.as_deref());
    if pod.metadata.deletion_timestamp.is_some() || phase != Some("Running") {
        out.skipped.terminating += 1;
        return object;
    }
    let Some(status) = status else { return object };
    let ready = status.conditions.as_ref().is_none_or(|cs| {
        cs.iter()
            .find(|c| c.kind == "Ready")
            .is_none_or(|c| c.status == "True")
    });
    if !include_not_ready && !ready {
        out.skipped.not_ready += 1;
        return object;
    }
    let Some(ip) = status.pod_ip else {
        out.skipped.no_ip += 1;
        return object;
    };
    let Ok(ip) = ip.parse::<IpAddr>() else {
        out.skipped.bad_address += 1;
        return object;
    };
    out.targets.push(Target {
        address: Address::Ip(ip),
        namespace: pod.metadata.namespace,
        hostname: pod.spec.and_then(|s| s.hostname),
        pod: pod.metadata.name,
    });
    object
}

fn version(meta: Option<&Meta<'_>>) -> Option<String> {
    meta.and_then(|m| m.resource_version.as_deref())
        .map(str::to_owned)
}

/// Reads a list of `mode`'s kind object by object, with its `resourceVersion`. Not-ready
/// addresses are left out unless `include_not_ready`; terminating addresses, and pods being
/// deleted or not running, always. Addresses are not yet de-duplicated across objects:
/// [`merge`] does that.
pub fn parse_list(
    body: &[u8],
    mode: LookupMode,
    include_not_ready: bool,
) -> Result<List<'_>, K8sError> {
    let mut objects = Vec::new();
    let inr = include_not_ready;
    let resource_version = match mode {
        LookupMode::EndpointSlices => {
            decode::<Slice<'_>>(body, mode, |o| objects.push(slice_object(o, inr)))?
        }
        LookupMode::Endpoints => {
            decode::<Endpoints<'_>>(body, mode, |o| objects.push(endpoints_object(o, inr)))?
        }
        LookupMode::Pods => decode::<Pod<'_>>(body, mode, |o| objects.push(pod_object(o, inr)))?,
    };
    Ok(List {
        resource_version,
        objects,
    })
}

/// Every object's addresses as one list, one address per pod (a dual-stack pod is listed
/// once per family, in two objects).
pub fn merge<'a>(objects: impl IntoIterator<Item = Object<'a>>) -> Parsed<'a> {
    let mut out = Parsed::default();
    for o in objects {
        out.targets.extend(o.parsed.targets);
        let (s, t) = (&mut out.skipped, &o.parsed.skipped);
        s.not_ready += t.not_ready;
        s.terminating += t.terminating;
        s.no_ip += t.no_ip;
        s.bad_address += t.bad_address;
    }
    dedupe(&mut out);
    out
}

/// Reads a list of `mode`'s kind. Not-ready addresses are left out unless
/// `include_not_ready`; terminating addresses, and pods being deleted or not running, always.
pub fn parse(
    body: &[u8],
    mode: LookupMode,
    include_not_ready: bool,
) -> Result<Parsed<'_>, K8sError> {
    Ok(merge(parse_list(body, mode, include_not_ready)?.objects))
}

/// One event of a watch stream (a line of JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchEvent {
    /// `ADDED` or `MODIFIED`: the object as it is now.
    Upsert(Object<'static>),
    /// `DELETED`: the object is gone.
    Deleted {
        /// Its `namespace/name`.
        key: String,
        /// The `resourceVersion` of the deletion.
        resource_version: Option<String>,
    },
    /// `BOOKMARK`: nothing changed up to this `resourceVersion`.
    Bookmark {
        /// Where a watch may resume.
        resource_version: Option<String>,
    },
    /// `ERROR`: the watch is over; `410` means its `resourceVersion` is too old to resume
    /// from, and the list must be read again.
    Error {
        /// The Status object's `code`.
        code: u16,
        /// Its `message`, escaped.
        message: String,
    },
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    object: serde_json::Value,
}

#[derive(Deserialize)]
struct StatusObject {
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct MetaOnly<'a> {
    #[serde(borrow, default)]
    metadata: Option<Meta<'a>>,
}

/// Reads one event of a watch of `mode`'s objects.
pub fn parse_watch_event(
    line: &[u8],
    mode: LookupMode,
    include_not_ready: bool,
) -> Result<WatchEvent, K8sError> {
    let json = |e: serde_json::Error| K8sError::Json(e.to_string());
    let raw: RawEvent = serde_json::from_slice(line).map_err(json)?;
    let upsert = match raw.kind.as_str() {
        "ADDED" | "MODIFIED" => true,
        "DELETED" => false,
        "BOOKMARK" => {
            let m = MetaOnly::deserialize(&raw.object).map_err(json)?;
            return Ok(WatchEvent::Bookmark {
                resource_version: version(m.metadata.as_ref()),
            });
        }
        "ERROR" => {
            let s = StatusObject::deserialize(&raw.object).map_err(json)?;
            return Ok(WatchEvent::Error {
                code: s.code.unwrap_or(0),
                message: crate::reason::escape(s.message.as_deref().unwrap_or("")).into_owned(),
            });
        }
        other => {
            return Err(K8sError::Json(format!(
                "unknown watch event type {:?}",
                crate::reason::escape(other)
            )));
        }
    };
    let inr = include_not_ready;
    let object = match mode {
        LookupMode::EndpointSlices => {
            slice_object(Slice::deserialize(&raw.object).map_err(json)?, inr)
        }
        LookupMode::Endpoints => {
            endpoints_object(Endpoints::deserialize(&raw.object).map_err(json)?, inr)
        }
        LookupMode::Pods => pod_object(Pod::deserialize(&raw.object).map_err(json)?, inr),
    };
    Ok(if upsert {
        WatchEvent::Upsert(object.into_owned())
    } else {
        WatchEvent::Deleted {
            key: object.key,
            resource_version: object.resource_version,
        }
    })
}

impl Object<'_> {
    /// The object, owning what it borrowed.
    pub fn into_owned(self) -> Object<'static> {
        Object {
            key: self.key,
            resource_version: self.resource_version,
            parsed: Parsed {
                targets: self
                    .parsed
                    .targets
                    .into_iter()
                    .map(Target::into_owned)
                    .collect(),
                skipped: self.parsed.skipped,
            },
        }
    }
}

impl Target<'_> {
    /// The target, owning what it borrowed.
    pub fn into_owned(self) -> Target<'static> {
        let own = |c: Option<Cow<'_, str>>| c.map(|c| Cow::Owned(c.into_owned()));
        Target {
            address: match self.address {
                Address::Ip(ip) => Address::Ip(ip),
                Address::Fqdn(n) => Address::Fqdn(Cow::Owned(n.into_owned())),
            },
            namespace: own(self.namespace),
            hostname: own(self.hostname),
            pod: own(self.pod),
        }
    }
}

/// Keeps one address per pod: a dual-stack pod is listed once per family.
fn dedupe(out: &mut Parsed<'_>) {
    let mut seen: std::collections::BTreeMap<(&str, &str), usize> = Default::default();
    let mut drop = vec![false; out.targets.len()];
    for (i, t) in out.targets.iter().enumerate() {
        let (Some(ns), Some(pod)) = (t.namespace.as_deref(), t.pod.as_deref()) else {
            continue;
        };
        match seen.get(&(ns, pod)) {
            None => {
                seen.insert((ns, pod), i);
            }
            Some(&first) => {
                let v6_first = matches!(out.targets[first].address, Address::Ip(IpAddr::V6(_)));
                let v4_here = matches!(t.address, Address::Ip(IpAddr::V4(_)));
                if v6_first && v4_here {
                    drop[first] = true;
                    seen.insert((ns, pod), i);
                } else {
                    drop[i] = true;
                }
            }
        }
    }
    let n = drop.iter().filter(|d| **d).count();
    if n > 0 {
        out.skipped.duplicate += n;
        let mut i = 0;
        out.targets.retain(|_| {
            i += 1;
            !drop[i - 1]
        });
    }
}

/// Why a target cannot name a node in some mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unnamed {
    /// `hostname` mode, and the object gives the pod no hostname.
    #[error("no hostname (mode = \"hostname\" needs pods with one, as a StatefulSet's are)")]
    NoHostname,
    /// `dns` or `hostname` mode, and no namespace is known.
    #[error("no namespace")]
    NoNamespace,
    /// `dns` mode, and the address is a name, not an IP address.
    #[error("an FQDN address has no pod DNS name")]
    Fqdn,
}

/// Writes the host of `t`'s node into `out` (cleared first) in `mode`: `domain` is the
/// cluster domain without a trailing dot, `service` the headless Service's name.
pub fn write_host(
    out: &mut String,
    t: &Target<'_>,
    mode: NameMode,
    service: &str,
    domain: &str,
) -> Result<(), Unnamed> {
    out.clear();
    match mode {
        NameMode::Ip => match &t.address {
            Address::Ip(ip) => {
                let _ = write!(out, "{ip}");
            }
            Address::Fqdn(name) => out.push_str(name.trim_end_matches('.')),
        },
        NameMode::Dns => {
            let ns = t.namespace.as_deref().ok_or(Unnamed::NoNamespace)?;
            match &t.address {
                Address::Ip(IpAddr::V4(a)) => {
                    let [a, b, c, d] = a.octets();
                    let _ = write!(out, "{a}-{b}-{c}-{d}");
                }
                // Every group written out, so that no label starts or ends with a dash:
                // fd00-0-0-0-0-0-0-1 (CoreDNS reads the dashes back as colons).
                Address::Ip(IpAddr::V6(a)) => {
                    for (i, s) in a.segments().iter().enumerate() {
                        if i > 0 {
                            out.push('-');
                        }
                        let _ = write!(out, "{s:x}");
                    }
                }
                Address::Fqdn(_) => return Err(Unnamed::Fqdn),
            }
            let _ = write!(out, ".{ns}.pod.{domain}");
        }
        NameMode::Hostname => {
            let ns = t.namespace.as_deref().ok_or(Unnamed::NoNamespace)?;
            let host = t.hostname.as_deref().ok_or(Unnamed::NoHostname)?;
            let _ = write!(out, "{host}.{service}.{ns}.svc.{domain}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLICES: &str = r#"{"kind":"EndpointSliceList","apiVersion":"discovery.k8s.io/v1","metadata":{"resourceVersion":"9"},"items":[
      {"metadata":{"name":"myapp-x1","namespace":"default","labels":{"kubernetes.io/service-name":"myapp"}},"addressType":"IPv4",
       "endpoints":[
         {"addresses":["10.1.0.1"],"conditions":{"ready":true,"serving":true,"terminating":false},"hostname":"myapp-0","targetRef":{"kind":"Pod","namespace":"default","name":"myapp-0"}},
         {"addresses":["10.1.0.2"],"conditions":{"ready":false,"serving":false,"terminating":false},"targetRef":{"kind":"Pod","namespace":"default","name":"myapp-1"}},
         {"addresses":["10.1.0.3"],"conditions":{"ready":false,"serving":true,"terminating":true},"targetRef":{"kind":"Pod","namespace":"default","name":"myapp-2"}},
         {"addresses":["10.1.0.4"],"conditions":{}},
         {"addresses":["not-an-ip"],"conditions":{"ready":true}}],
       "ports":[{"name":"epmd","port":4369,"protocol":"TCP"}]},
      {"metadata":{"name":"myapp-x2","namespace":"default"},"addressType":"IPv6",
       "endpoints":[{"addresses":["fd00::1"],"conditions":{"ready":true},"targetRef":{"kind":"Pod","namespace":"default","name":"myapp-0"}},
                    {"addresses":["fd00::5"],"conditions":{"ready":true},"targetRef":{"kind":"Pod","namespace":"default","name":"myapp-5"}}]},
      {"metadata":{"name":"myapp-x3","namespace":"default"},"addressType":"IPv4","endpoints":null}]}"#;

    #[test]
    fn endpoint_slices_honour_conditions_families_and_dual_stack() {
        let p = parse(SLICES.as_bytes(), LookupMode::EndpointSlices, false).unwrap();
        let addrs: Vec<String> = p
            .targets
            .iter()
            .map(|t| format!("{:?}", t.address))
            .collect();
        assert_eq!(addrs, ["Ip(10.1.0.1)", "Ip(10.1.0.4)", "Ip(fd00::5)"]);
        assert_eq!(
            p.skipped,
            Skipped {
                not_ready: 1,
                terminating: 1,
                no_ip: 0,
                bad_address: 1,
                duplicate: 1
            }
        );
        assert_eq!(
            p.targets[1].namespace.as_deref(),
            Some("default"),
            "from the slice"
        );
        let all = parse(SLICES.as_bytes(), LookupMode::EndpointSlices, true).unwrap();
        assert_eq!(
            all.targets.len(),
            4,
            "not-ready included, terminating never"
        );
    }

    #[test]
    fn endpoints_with_and_without_target_ref() {
        let body = r#"{"kind":"EndpointsList","items":[{"metadata":{"name":"myapp","namespace":"airatel"},
          "subsets":[{"addresses":[{"ip":"10.48.33.136","hostname":"my-hostname-0","nodeName":"n","targetRef":{"kind":"Pod","namespace":"airatel-service-localization","name":"p0","uid":"u"}},
                                   {"ip":"10.48.33.134"}],
                      "notReadyAddresses":[{"ip":"10.48.33.137"}]}]},
          {"metadata":{"name":"empty"}}]}"#;
        let p = parse(body.as_bytes(), LookupMode::Endpoints, false).unwrap();
        assert_eq!(p.targets.len(), 2);
        assert_eq!(
            p.targets[0].namespace.as_deref(),
            Some("airatel-service-localization")
        );
        assert_eq!(
            p.targets[1].namespace.as_deref(),
            Some("airatel"),
            "no targetRef: the object's"
        );
        assert_eq!(p.skipped.not_ready, 1);
        let mut host = String::new();
        write_host(
            &mut host,
            &p.targets[0],
            NameMode::Dns,
            "",
            "my_cluster.local",
        )
        .unwrap();
        assert_eq!(
            host,
            "10-48-33-136.airatel-service-localization.pod.my_cluster.local"
        );
        write_host(
            &mut host,
            &p.targets[0],
            NameMode::Hostname,
            "my_service",
            "my_cluster.local",
        )
        .unwrap();
        assert_eq!(
            host,
            "my-hostname-0.my_service.airatel-service-localization.svc.my_cluster.local"
        );
        assert_eq!(
            write_host(
                &mut host,
                &p.targets[1],
                NameMode::Hostname,
                "s",
                "cluster.local"
            ),
            Err(Unnamed::NoHostname)
        );
        assert_eq!(
            parse(body.as_bytes(), LookupMode::Endpoints, true)
                .unwrap()
                .targets
                .len(),
            3
        );
    }

    #[test]
    fn pods_running_ready_and_not_deleted() {
        let body = r#"{"kind":"PodList","items":[
          {"metadata":{"name":"a","namespace":"ns"},"spec":{"hostname":"a-0"},"status":{"phase":"Running","podIP":"10.0.0.1","conditions":[{"type":"Ready","status":"True"}]}},
          {"metadata":{"name":"b","namespace":"ns","deletionTimestamp":"2026-01-01T00:00:00Z"},"status":{"phase":"Running","podIP":"10.0.0.2"}},
          {"metadata":{"name":"c","namespace":"ns"},"status":{"phase":"Succeeded","podIP":"10.0.0.3"}},
          {"metadata":{"name":"d","namespace":"ns"},"status":{"phase":"Running"}},
          {"metadata":{"name":"e","namespace":"ns"},"status":{"phase":"Running","podIP":"fd00::e","conditions":[{"type":"Ready","status":"False"}]}}]}"#;
        let p = parse(body.as_bytes(), LookupMode::Pods, false).unwrap();
        assert_eq!(p.targets.len(), 1);
        assert_eq!(p.targets[0].hostname.as_deref(), Some("a-0"));
        assert_eq!(p.skipped.terminating, 2);
        assert_eq!(p.skipped.no_ip, 1);
        assert_eq!(p.skipped.not_ready, 1);
        let all = parse(body.as_bytes(), LookupMode::Pods, true).unwrap();
        let mut host = String::new();
        write_host(
            &mut host,
            &all.targets[1],
            NameMode::Dns,
            "",
            "cluster.local",
        )
        .unwrap();
        assert_eq!(host, "fd00-0-0-0-0-0-0-e.ns.pod.cluster.local");
        write_host(
            &mut host,
            &all.targets[1],
            NameMode::Ip,
            "",
            "cluster.local",
        )
        .unwrap();
        assert_eq!(host, "fd00::e");
    }

    #[test]
    fn a_list_is_read_object_by_object_with_its_version() {
        let l = parse_list(SLICES.as_bytes(), LookupMode::EndpointSlices, false).unwrap();
        assert_eq!(l.resource_version.as_deref(), Some("9"));
        let keys: Vec<&str> = l.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            ["default/myapp-x1", "default/myapp-x2", "default/myapp-x3"]
        );
        // Dual stack across two objects: merged, one address per pod.
        assert_eq!(merge(l.objects).targets.len(), 3);
    }

    #[test]
    fn watch_events_of_every_type() {
        let mode = LookupMode::EndpointSlices;
        let added = br#"{"type":"ADDED","object":{"kind":"EndpointSlice","metadata":{"name":"s1","namespace":"ns","resourceVersion":"12"},"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.7"],"conditions":{"ready":true}}]}}"#;
        let WatchEvent::Upsert(o) = parse_watch_event(added, mode, false).unwrap() else {
            panic!("not an upsert")
        };
        assert_eq!(
            (o.key.as_str(), o.resource_version.as_deref()),
            ("ns/s1", Some("12"))
        );
        assert_eq!(o.parsed.targets.len(), 1);
        let deleted = br#"{"type":"DELETED","object":{"metadata":{"name":"s1","namespace":"ns","resourceVersion":"13"},"addressType":"IPv4"}}"#;
        assert_eq!(
            parse_watch_event(deleted, mode, false).unwrap(),
            WatchEvent::Deleted {
                key: "ns/s1".into(),
                resource_version: Some("13".into())
            }
        );
        let bookmark = br#"{"type":"BOOKMARK","object":{"kind":"EndpointSlice","metadata":{"resourceVersion":"20"}}}"#;
        assert_eq!(
            parse_watch_event(bookmark, mode, false).unwrap(),
            WatchEvent::Bookmark {
                resource_version: Some("20".into())
            }
        );
        let gone = br#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version: 1 (20)\u001b[2J","reason":"Expired","code":410}}"#;
        let WatchEvent::Error { code, message } = parse_watch_event(gone, mode, false).unwrap()
        else {
            panic!("not an error")
        };
        assert_eq!(code, 410);
        assert!(message.starts_with("too old resource version") && !message.contains('\x1b'));
        let pod = br#"{"type":"MODIFIED","object":{"metadata":{"name":"p","namespace":"ns"},"status":{"phase":"Running","podIP":"10.0.0.9"}}}"#;
        assert!(matches!(
            parse_watch_event(pod, LookupMode::Pods, false),
            Ok(WatchEvent::Upsert(o)) if o.parsed.targets.len() == 1
        ));
        assert!(parse_watch_event(br#"{"type":"EXPLODED","object":{}}"#, mode, false).is_err());
        assert!(parse_watch_event(b"{\"type\":", mode, false).is_err());
        assert!(
            parse_watch_event(
                br#"{"type":"ADDED","object":{"endpoints":[]}}"#,
                mode,
                false
            )
            .is_err()
        );
    }

    #[test]
    fn wrong_shapes_are_errors_that_say_where() {
        let status = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"forbidden","code":403}"#;
        assert_eq!(
            parse(status.as_bytes(), LookupMode::Pods, false),
            Err(K8sError::Kind {
                expected: "PodList",
                got: "Status".into()
            })
        );
        let e = parse(
            br#"{"items":[{"subsets":[{"addresses":[{"hostname":"x"}]}]}]}"#,
            LookupMode::Endpoints,
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("missing field `ip`"), "{e}");
        // A PodList read as EndpointSlices: the kind, said first, is the error, not the
        // fields its items lack.
        let pods = br#"{"kind":"PodList","items":[{"metadata":{"name":"a"},"status":{}}]}"#;
        assert_eq!(
            parse(pods, LookupMode::EndpointSlices, false),
            Err(K8sError::Kind {
                expected: "EndpointSliceList",
                got: "PodList".into()
            })
        );
        let e = parse(b"{\"items\": [", LookupMode::EndpointSlices, false).unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        assert!(
            parse(b"{}", LookupMode::Pods, false)
                .unwrap()
                .targets
                .is_empty()
        );
        let escaped = r#"{"items":[{"metadata":{"name":"a","namespace":"n\u0073"},"status":{"phase":"Running","podIP":"10.0.0.1"}}]}"#;
        let p = parse(escaped.as_bytes(), LookupMode::Pods, false).unwrap();
        assert_eq!(p.targets[0].namespace.as_deref(), Some("ns"));
    }
}
