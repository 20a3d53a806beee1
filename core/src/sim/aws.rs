//! Simulated AWS APIs: EC2's `DescribeInstances` (the Query API, XML answers) and ECS's
//! `ListTasks` and `DescribeTasks` (the JSON 1.1 API), for the `ec2` and `ecs` strategies.
//!
//! Both follow the simulated world as [`KubernetesApi`](super::KubernetesApi) does: an
//! instance (or a task) is a simulated host named `<app_prefix>@<its address>`, running while
//! that host is up. Both check that a request is signed with SigV4 and, once given the
//! credentials ([`Ec2Api::credentials`], [`EcsApi::credentials`]), that the signature holds.
//! Both show the [`ApiFault`]s as AWS would: an error document with the status AWS sends,
//! `RequestLimitExceeded` / `ThrottlingException` for [`ApiFault::Throttled`], a stall, or a
//! response cut short. Page tokens are deterministic (the offset of the next page), so the
//! same run gives the same bytes.

use core::fmt::Write as _;
use std::net::IpAddr;

use serde_json::{Value, json};

use super::http::{ApiFault, HttpReply, HttpRequest, HttpService, World};
use crate::node::NodeName;
use crate::proto::sigv4::{self, Credentials, SignRequest};
use crate::time::Instant;

/// The account ID in the simulated ARNs.
const ACCOUNT: &str = "123456789012";
/// The region in the simulated ARNs.
const REGION: &str = "us-east-1";

/// Decodes `%XX` escapes (and `+` as a space, as forms write it); `None` for a bad escape or
/// bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `a=b&c=d` decoded; `None` if any part is badly escaped.
fn parse_query(q: &str) -> Option<Vec<(String, String)>> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

/// Escapes text for XML.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Why a signature is refused: the error code AWS sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SigError {
    Missing,
    UnknownKey,
    Mismatch,
}

/// Checks the request's SigV4 signature for `service`: there must be one, and when `creds`
/// are known it must be theirs and hold for what was sent.
fn verify(
    request: &HttpRequest,
    creds: Option<&Credentials>,
    service: &str,
    query: &[(String, String)],
    signed: &[(&str, &str)],
) -> Result<(), SigError> {
    let auth = request.header("Authorization").ok_or(SigError::Missing)?;
    let credential = auth
        .strip_prefix("AWS4-HMAC-SHA256 Credential=")
        .ok_or(SigError::Missing)?;
    let scope = credential.split(',').next().unwrap_or_default();
    let mut parts = scope.split('/');
    let (Some(key), Some(_date), Some(region), Some(svc)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SigError::Missing);
    };
    if svc != service {
        return Err(SigError::Mismatch);
    }
    let Some(creds) = creds else {
        return Ok(());
    };
    if key != creds.access_key_id {
        return Err(SigError::UnknownKey);
    }
    let date = request.header("X-Amz-Date").ok_or(SigError::Missing)?;
    let mut creds = creds.clone();
    creds.session_token = request.header("X-Amz-Security-Token").map(str::to_owned);
    let host = request.header("Host").unwrap_or_default();
    let path = request.path.split_once('?').map_or(&*request.path, |p| p.0);
    let signing = SignRequest {
        method: &request.method,
        host,
        path,
        query,
        headers: signed,
        body: &request.body,
        ..SignRequest::default()
    };
    let expected = sigv4::sign(&signing, &creds, region, service, date);
    let ok = expected
        .iter()
        .any(|(k, v)| k == "Authorization" && v == auth);
    if ok { Ok(()) } else { Err(SigError::Mismatch) }
}

/// The reply for a fault that replaces a good answer: a stall, or the good answer cut short.
fn cut(fault: ApiFault, good: HttpReply) -> Option<HttpReply> {
    match fault {
        ApiFault::Stall => Some(HttpReply::Stall),
        ApiFault::Truncate => {
            let mut bytes = good.encode().unwrap_or_default();
            bytes.truncate(bytes.len() / 2);
            Some(HttpReply::Raw(bytes))
        }
        _ => None,
    }
}

/// EC2's simulated Query API: `DescribeInstances` over instances that are simulated hosts.
///
/// Every instance carries the tag `tag_key=tag_value` given to [`Ec2Api::new`] (and those
/// added with [`Ec2Api::other`] another value); it is `running` while its host is up and
/// `stopped` otherwise, and its `privateIpAddress` is its host's address. The filters
/// `tag:<key>`, `tag-key`, `instance-state-name` and `instance-id` are applied (the values of
/// one filter ORed, the filters ANDed), `InstanceId.N` too; `MaxResults` (5 to 1000) pages
/// the answer and `NextToken` names the next page. Anything else is refused as EC2 refuses it
/// (`InvalidAction`, `InvalidParameterValue`, `InvalidFilter`, `AuthFailure`, ...).
#[derive(Debug, Clone)]
pub struct Ec2Api {
    tag_key: String,
    instances: Vec<(NodeName, String)>,
    tag_value: String,
    creds: Option<Credentials>,
    fault: ApiFault,
    requests: u64,
}

impl Ec2Api {
    /// An API whose instances carry the tag `tag_key=tag_value`; no instances yet.
    pub fn new(tag_key: &str, tag_value: &str) -> Self {
        Ec2Api {
            tag_key: tag_key.to_owned(),
            tag_value: tag_value.to_owned(),
            instances: Vec::new(),
            creds: None,
            fault: ApiFault::None,
            requests: 0,
        }
    }

    /// Adds instances carrying the tag: simulated hosts, each named `prefix@<its address>`.
    pub fn instances(mut self, hosts: impl IntoIterator<Item = NodeName>) -> Self {
        let v = self.tag_value.clone();
        self.instances
            .extend(hosts.into_iter().map(|h| (h, v.clone())));
        self
    }

    /// Adds instances whose tag has `value` instead (another cluster's instances).
    pub fn other(mut self, value: &str, hosts: impl IntoIterator<Item = NodeName>) -> Self {
        self.instances
            .extend(hosts.into_iter().map(|h| (h, value.to_owned())));
        self
    }

    /// Accepts only requests signed with this access key and secret (`AuthFailure` for
    /// another key, `SignatureDoesNotMatch` for a signature that does not hold); without
    /// this, any SigV4 signature is accepted.
    pub fn credentials(mut self, access_key_id: &str, secret_access_key: &str) -> Self {
        self.creds = Some(Credentials {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
            session_token: None,
        });
        self
    }

    fn error(&self, status: u16, code: &str, message: &str) -> HttpReply {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{}</Message></Error></Errors><RequestID>req-{}</RequestID></Response>",
            xml_escape(message),
            self.requests
        );
        HttpReply::status(status, body)
    }

    fn describe(&self, params: &[(String, String)], world: &World<'_>) -> HttpReply {
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        // Filters: Filter.N.Name and Filter.N.Value.M, in N's order.
        let mut filters: Vec<(u32, String, Vec<String>)> = Vec::new();
        let mut ids: Vec<String> = Vec::new();
        for (k, v) in params {
            if let Some(rest) = k.strip_prefix("Filter.") {
                let (n, field) = rest.split_once('.').unwrap_or((rest, ""));
                let Ok(n) = n.parse::<u32>() else {
                    return self.error(400, "InvalidParameterValue", &format!("bad {k}"));
                };
                let i = match filters.iter().position(|f| f.0 == n) {
                    Some(i) => i,
                    None => {
                        filters.push((n, String::new(), Vec::new()));
                        filters.len() - 1
                    }
                };
                if field == "Name" {
                    filters[i].1 = v.clone();
                } else if field.starts_with("Value.") {
                    filters[i].2.push(v.clone());
                } else {
                    return self.error(400, "InvalidParameterValue", &format!("bad {k}"));
                }
            } else if k.starts_with("InstanceId.") {
                ids.push(v.clone());
            } else if !matches!(
                k.as_str(),
                "Action" | "Version" | "MaxResults" | "NextToken"
            ) {
                return self.error(
                    400,
                    "UnknownParameter",
                    &format!("The parameter {k} is not recognized"),
                );
            }
        }
        for (_, name, _) in &filters {
            let known = name.starts_with("tag:")
                || matches!(
                    name.as_str(),
                    "tag-key" | "instance-state-name" | "instance-id"
                );
            if !known {
                return self.error(
                    400,
                    "InvalidParameterValue",
                    &format!("The filter '{name}' is invalid"),
                );
            }
        }
        let max = match param("MaxResults").map(str::parse::<usize>) {
            None => None,
            Some(Ok(n)) if (5..=1000).contains(&n) => Some(n),
            Some(_) => {
                return self.error(
                    400,
                    "InvalidParameterValue",
                    "Value for parameter maxResults is invalid: it must be between 5 and 1000",
                );
            }
        };
        let from = match param("NextToken") {
            None => 0,
            Some(t) => match t
                .strip_prefix("page-")
                .and_then(|o| o.parse::<usize>().ok())
            {
                Some(o) => o,
                None => return self.error(400, "InvalidParameterValue", "Invalid NextToken"),
            },
        };
        let matching: Vec<String> = self
            .instances
            .iter()
            .enumerate()
            .filter_map(|(i, (host, value))| {
                let ip = world.ip_of(host)?;
                let id = format!("i-{i:017x}");
                let state = if world.is_up(host) {
                    "running"
                } else {
                    "stopped"
                };
                let ok = filters.iter().all(|(_, name, values)| {
                    let any = |x: &str| values.iter().any(|v| v == x);
                    match name.as_str() {
                        "tag-key" => any(&self.tag_key),
                        "instance-state-name" => any(state),
                        "instance-id" => any(&id),
                        tag => tag.strip_prefix("tag:") == Some(&self.tag_key) && any(value),
                    }
                }) && (ids.is_empty() || ids.contains(&id));
                ok.then(|| instance_xml(&id, state, ip, &self.tag_key, value))
            })
            .collect();
        let end = max.map_or(matching.len(), |m| {
            from.saturating_add(m).min(matching.len())
        });
        let page = matching.get(from..end).unwrap_or_default().concat();
        let token = if end < matching.len() {
            format!("<nextToken>page-{end}</nextToken>")
        } else {
            String::new()
        };
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>req-{}</requestId><reservationSet><item><reservationId>r-0</reservationId><ownerId>{ACCOUNT}</ownerId><groupSet/><instancesSet>{page}</instancesSet></item></reservationSet>{token}</DescribeInstancesResponse>",
            self.requests
        );
        HttpReply::status(200, body)
    }
}

fn instance_xml(id: &str, state: &str, ip: IpAddr, key: &str, value: &str) -> String {
    let code = if state == "running" { 16 } else { 80 };
    let mut out = format!(
        "<item><instanceId>{id}</instanceId><imageId>ami-0</imageId><instanceState><code>{code}</code><name>{state}</name></instanceState><privateDnsName>ip-{}.ec2.internal</privateDnsName><instanceType>t3.micro</instanceType>",
        ip.to_string().replace(['.', ':'], "-")
    );
    let _ = write!(
        out,
        "<privateIpAddress>{ip}</privateIpAddress><tagSet><item><key>{}</key><value>{}</value></item></tagSet></item>",
        xml_escape(key),
        xml_escape(value)
    );
    out
}

impl HttpService for Ec2Api {
    fn respond(&mut self, _now: Instant, request: &HttpRequest, world: &World<'_>) -> HttpReply {
        self.requests += 1;
        let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
        let mut text = query.to_owned();
        if request.method == "POST" {
            text = String::from_utf8_lossy(&request.body).into_owned();
        } else if request.method != "GET" {
            return self.error(405, "InvalidAction", "Only GET and POST are supported");
        }
        let Some(params) = parse_query(&text) else {
            return self.error(400, "MalformedQueryString", "badly escaped query");
        };
        if path != "/" {
            return self.error(404, "InvalidAction", "no such path");
        }
        let signed_query: &[(String, String)] = if request.method == "GET" {
            &params
        } else {
            &[]
        };
        let content_type = request.header("Content-Type").unwrap_or_default();
        let signed: Vec<(&str, &str)> = if request.method == "POST" {
            vec![("Content-Type", content_type)]
        } else {
            Vec::new()
        };
        match verify(request, self.creds.as_ref(), "ec2", signed_query, &signed) {
            Ok(()) => {}
            Err(SigError::Missing) => {
                return self.error(
                    401,
                    "AuthFailure",
                    "AWS was not able to validate the provided access credentials",
                );
            }
            Err(SigError::UnknownKey) => {
                return self.error(401, "AuthFailure", "The access key ID is not known");
            }
            Err(SigError::Mismatch) => {
                return self.error(
                    403,
                    "SignatureDoesNotMatch",
                    "The request signature we calculated does not match the signature you provided",
                );
            }
        }
        match self.fault {
            ApiFault::Forbidden => {
                return self.error(
                    403,
                    "UnauthorizedOperation",
                    "You are not authorized to perform this operation.",
                );
            }
            ApiFault::ServerError if self.requests.is_multiple_of(2) => {
                return self.error(500, "InternalError", "An internal error has occurred");
            }
            ApiFault::ServerError => {
                return self.error(503, "Unavailable", "The server is overloaded");
            }
            ApiFault::Throttled => {
                return self.error(503, "RequestLimitExceeded", "Request limit exceeded.");
            }
            _ => {}
        }
        let action = params
            .iter()
            .find(|(k, _)| k == "Action")
            .map(|(_, v)| v.as_str());
        let good = match action {
            Some("DescribeInstances") => self.describe(&params, world),
            Some(other) => {
                let m = format!("The action {other} is not valid for this web service.");
                return self.error(400, "InvalidAction", &m);
            }
            None => return self.error(400, "MissingAction", "The request must contain Action"),
        };
        cut(self.fault, good.clone()).unwrap_or(good)
    }

    fn requests(&self) -> u64 {
        self.requests
    }

    fn set_fault(&mut self, fault: ApiFault) {
        self.fault = fault;
    }
}

/// ECS's simulated JSON 1.1 API: the tasks of one service of one cluster, each a simulated
/// host, `RUNNING` while that host is up and `STOPPED` otherwise.
///
/// `ListTasks` lists the running tasks (desired status `RUNNING`) of the cluster, or of the
/// service when `serviceName` names it, `maxResults` (1 to 100, default 100) a page;
/// `DescribeTasks` describes up to 100 tasks by ARN or ID, each with an
/// `ElasticNetworkInterface` attachment whose `privateIPv4Address` is its host's address
/// (unknown ones come back as `MISSING` failures). The cluster may be named by name or ARN;
/// another cluster is `ClusterNotFoundException`, another service `ServiceNotFoundException`.
#[derive(Debug, Clone)]
pub struct EcsApi {
    cluster: String,
    service: String,
    tasks: Vec<NodeName>,
    creds: Option<Credentials>,
    fault: ApiFault,
    requests: u64,
}

impl EcsApi {
    /// The API for `service` in `cluster`, with no tasks yet.
    pub fn new(cluster: &str, service: &str) -> Self {
        EcsApi {
            cluster: cluster.to_owned(),
            service: service.to_owned(),
            tasks: Vec::new(),
            creds: None,
            fault: ApiFault::None,
            requests: 0,
        }
    }

    /// Sets the service's tasks: simulated hosts, each named `prefix@<its address>`.
    pub fn tasks(mut self, hosts: impl IntoIterator<Item = NodeName>) -> Self {
        self.tasks = hosts.into_iter().collect();
        self
    }

    /// Accepts only requests signed with this access key and secret; without this, any SigV4
    /// signature is accepted.
    pub fn credentials(mut self, access_key_id: &str, secret_access_key: &str) -> Self {
        self.creds = Some(Credentials {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
            session_token: None,
        });
        self
    }

    fn cluster_arn(&self) -> String {
        format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{}", self.cluster)
    }

    fn task_arn(&self, i: usize) -> String {
        format!(
            "arn:aws:ecs:{REGION}:{ACCOUNT}:task/{}/{i:032x}",
            self.cluster
        )
    }

    fn error(status: u16, kind: &str, message: &str) -> HttpReply {
        HttpReply::status(
            status,
            json!({ "__type": kind, "message": message }).to_string(),
        )
    }

    /// Whether `body` names this cluster (by name or ARN; none is `default`).
    fn our_cluster(&self, body: &Value) -> Result<(), HttpReply> {
        let named = match body.get("cluster") {
            None | Some(Value::Null) => "default",
            Some(Value::String(s)) => s.as_str(),
            Some(_) => {
                return Err(Self::error(
                    400,
                    "InvalidParameterException",
                    "cluster must be a string",
                ));
            }
        };
        if named == self.cluster || named == self.cluster_arn() {
            Ok(())
        } else {
            Err(Self::error(
                400,
                "ClusterNotFoundException",
                "Cluster not found.",
            ))
        }
    }

    fn list_tasks(&self, body: &Value, world: &World<'_>) -> HttpReply {
        if let Err(e) = self.our_cluster(body) {
            return e;
        }
        match body.get("serviceName") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if *s == self.service => {}
            Some(_) => {
                return Self::error(400, "ServiceNotFoundException", "Service not found.");
            }
        }
        let running = match body.get("desiredStatus").and_then(Value::as_str) {
            None | Some("RUNNING") => true,
            Some("STOPPED") => false,
            Some("PENDING") => return HttpReply::json(r#"{"taskArns":[]}"#),
            Some(_) => {
                return Self::error(
                    400,
                    "InvalidParameterException",
                    "desiredStatus must be RUNNING, PENDING or STOPPED",
                );
            }
        };
        let max = match body.get("maxResults") {
            None | Some(Value::Null) => 100,
            Some(v) => match v.as_u64() {
                Some(n @ 1..=100) => n as usize,
                _ => {
                    return Self::error(
                        400,
                        "InvalidParameterException",
                        "maxResults must be between 1 and 100",
                    );
                }
            },
        };
        let from = match body.get("nextToken") {
            None | Some(Value::Null) => 0,
            Some(v) => match v
                .as_str()
                .and_then(|t| t.strip_prefix("tasks-"))
                .and_then(|o| o.parse::<usize>().ok())
            {
                Some(o) => o,
                None => {
                    return Self::error(
                        400,
                        "InvalidParameterException",
                        "Invalid token: bad nextToken",
                    );
                }
            },
        };
        let arns: Vec<String> = self
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, h)| world.ip_of(h).is_some() && world.is_up(h) == running)
            .map(|(i, _)| self.task_arn(i))
            .collect();
        let end = from.saturating_add(max).min(arns.len());
        let mut out = json!({ "taskArns": arns.get(from..end).unwrap_or_default() });
        if end < arns.len()
            && let Some(m) = out.as_object_mut()
        {
            m.insert("nextToken".into(), format!("tasks-{end}").into());
        }
        HttpReply::json(out.to_string())
    }

    fn describe_tasks(&self, body: &Value, world: &World<'_>) -> HttpReply {
        if let Err(e) = self.our_cluster(body) {
            return e;
        }
        let Some(asked) = body.get("tasks").and_then(Value::as_array) else {
            return Self::error(400, "InvalidParameterException", "Tasks cannot be empty.");
        };
        if asked.is_empty() || asked.len() > 100 {
            return Self::error(
                400,
                "InvalidParameterException",
                "Tasks must name between 1 and 100 tasks.",
            );
        }
        let mut tasks = Vec::new();
        let mut failures = Vec::new();
        for a in asked {
            let Some(a) = a.as_str() else {
                return Self::error(400, "InvalidParameterException", "a task must be a string");
            };
            let found = (0..self.tasks.len()).find(|&i| {
                let arn = self.task_arn(i);
                a == arn || arn.rsplit('/').next() == Some(a)
            });
            let host = found.and_then(|i| Some((i, world.ip_of(&self.tasks[i])?)));
            let Some((i, ip)) = host else {
                failures.push(json!({ "arn": a, "reason": "MISSING" }));
                continue;
            };
            let status = if world.is_up(&self.tasks[i]) {
                "RUNNING"
            } else {
                "STOPPED"
            };
            tasks.push(json!({
                "taskArn": self.task_arn(i),
                "clusterArn": self.cluster_arn(),
                "group": format!("service:{}", self.service),
                "lastStatus": status,
                "desiredStatus": status,
                "launchType": "FARGATE",
                "attachments": [{
                    "id": format!("eni-attach-{i}"),
                    "type": "ElasticNetworkInterface",
                    "status": if status == "RUNNING" { "ATTACHED" } else { "DELETED" },
                    "details": [
                        { "name": "subnetId", "value": "subnet-0" },
                        { "name": "networkInterfaceId", "value": format!("eni-{i:08x}") },
                        { "name": "privateIPv4Address", "value": ip.to_string() },
                    ],
                }],
            }));
        }
        HttpReply::json(json!({ "tasks": tasks, "failures": failures }).to_string())
    }
}

impl HttpService for EcsApi {
    fn respond(&mut self, _now: Instant, request: &HttpRequest, world: &World<'_>) -> HttpReply {
        self.requests += 1;
        if request.method != "POST" || request.path != "/" {
            return Self::error(404, "UnknownOperationException", "only POST / is served");
        }
        let target = request.header("X-Amz-Target").unwrap_or_default();
        let content_type = request.header("Content-Type").unwrap_or_default();
        let signed = [("Content-Type", content_type), ("X-Amz-Target", target)];
        match verify(request, self.creds.as_ref(), "ecs", &[], &signed) {
            Ok(()) => {}
            Err(SigError::Missing) => {
                return Self::error(
                    400,
                    "MissingAuthenticationTokenException",
                    "Missing Authentication Token",
                );
            }
            Err(SigError::UnknownKey) => {
                return Self::error(
                    400,
                    "UnrecognizedClientException",
                    "The security token included in the request is invalid.",
                );
            }
            Err(SigError::Mismatch) => {
                return Self::error(
                    400,
                    "InvalidSignatureException",
                    "The request signature we calculated does not match the signature you provided.",
                );
            }
        }
        match self.fault {
            ApiFault::Forbidden => {
                return Self::error(
                    400,
                    "AccessDeniedException",
                    "User is not authorized to perform: ecs:ListTasks",
                );
            }
            ApiFault::ServerError if self.requests.is_multiple_of(2) => {
                return Self::error(500, "ServerException", "Service unavailable.");
            }
            ApiFault::ServerError => {
                return Self::error(503, "ServiceUnavailableException", "Try again.");
            }
            ApiFault::Throttled => {
                return Self::error(400, "ThrottlingException", "Rate exceeded");
            }
            _ => {}
        }
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return Self::error(400, "SerializationException", "the body is not JSON");
        };
        if !body.is_object() {
            return Self::error(400, "SerializationException", "the body is not an object");
        }
        let good = match target {
            "AmazonEC2ContainerServiceV20141113.ListTasks" => self.list_tasks(&body, world),
            "AmazonEC2ContainerServiceV20141113.DescribeTasks" => self.describe_tasks(&body, world),
            _ => {
                return Self::error(400, "UnknownOperationException", "unknown operation");
            }
        };
        cut(self.fault, good.clone()).unwrap_or(good)
    }

    fn requests(&self) -> u64 {
        self.requests
    }

    fn set_fault(&mut self, fault: ApiFault) {
        self.fault = fault;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ec2, ecs};
    use crate::rng::Rng;

    fn hosts(n: usize) -> Vec<NodeName> {
        (0..n)
            .map(|i| {
                format!("n@10.0.0.{}", i + 1)
                    .parse()
                    .unwrap_or_else(|_| unreachable!())
            })
            .collect()
    }

    /// A world where every third host is down.
    fn world(names: &[NodeName]) -> World<'_> {
        World {
            hosts: names
                .iter()
                .enumerate()
                .filter_map(|(i, n)| Some((n, n.host().parse().ok()?, i % 3 != 2)))
                .collect(),
        }
    }

    fn creds(secret: &str) -> Credentials {
        Credentials {
            access_key_id: "AKIDSIM".into(),
            secret_access_key: secret.into(),
            session_token: None,
        }
    }

    fn send(s: &mut impl HttpService, bytes: &[u8], w: &World<'_>) -> (u16, Vec<u8>) {
        let req = HttpRequest::parse(bytes).unwrap_or_else(|| unreachable!());
        match s.respond(Instant::ZERO, &req, w) {
            HttpReply::Response { status, body, .. } => (status, body),
            other => panic!("not a response: {other:?}"),
        }
    }

    const HOST: &str = "10.98.0.1:80";
    const DATE: &str = "20261201T000000Z";

    fn describe(values: &[&str], max: Option<u32>, token: Option<&str>, secret: &str) -> Vec<u8> {
        DescribeInstancesCall {
            tag_key: "app",
            tag_values: values,
            running_only: true,
            max_results: max,
            next_token: token,
        }
        .signed_request(HOST, &creds(secret), "us-east-1", DATE)
    }

    use ec2::DescribeInstances as DescribeInstancesCall;

    #[test]
    fn describe_instances_pages_through_the_running_tagged_instances() {
        let names = hosts(12);
        let w = world(&names);
        let mut api = Ec2Api::new("app", "web")
            .instances(names[..10].iter().cloned())
            .other("db", names[10..].iter().cloned())
            .credentials("AKIDSIM", "s3cr3t");
        let mut ips = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let (status, body) = send(
                &mut api,
                &describe(&["web"], Some(5), token.as_deref(), "s3cr3t"),
                &w,
            );
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            let page = ec2::parse_describe_instances(&body).unwrap_or_else(|e| panic!("{e}"));
            pages += 1;
            for i in &page.instances {
                assert!(i.is_running());
                assert_eq!(i.tag("app"), Some("web"));
                ips.extend(i.private_ip);
            }
            match page.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        // Hosts 0..10, of which 2, 5 and 8 are down: 7 running, two pages of 5.
        assert_eq!(pages, 2);
        let want: Vec<IpAddr> = [1, 2, 4, 5, 7, 8, 10]
            .iter()
            .map(|i| {
                format!("10.0.0.{i}")
                    .parse()
                    .unwrap_or_else(|_| unreachable!())
            })
            .collect();
        assert_eq!(ips, want);
        // Any value of the key, every state: all twelve.
        let (_, body) = send(&mut api, &describe(&[], None, None, "s3cr3t"), &w);
        let all = ec2::parse_describe_instances(&body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(all.instances.len(), 8);
        assert_eq!(api.requests(), 3);
    }

    #[test]
    fn ec2_refuses_bad_signatures_parameters_and_shows_faults() {
        let names = hosts(3);
        let w = world(&names);
        let mut api = Ec2Api::new("app", "web")
            .instances(names.iter().cloned())
            .credentials("AKIDSIM", "s3cr3t");
        let code = |r: (u16, Vec<u8>)| (r.0, ec2::parse_error(&r.1).map(|e| e.code));
        let c = code(send(&mut api, &describe(&["web"], None, None, "wrong"), &w));
        assert_eq!(c, (403, Some("SignatureDoesNotMatch".into())));
        let unsigned = b"GET /?Action=DescribeInstances HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(
            code(send(&mut api, unsigned, &w)),
            (401, Some("AuthFailure".into()))
        );
        let mut open = Ec2Api::new("app", "web").instances(names.iter().cloned());
        let signed = |q: &str| {
            format!(
                "GET /?{q} HTTP/1.1\r\nHost: x\r\nAuthorization: AWS4-HMAC-SHA256 Credential=K/20261201/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0\r\n\r\n"
            )
        };
        for (q, want) in [
            ("Action=RunInstances", "InvalidAction"),
            ("Version=1", "MissingAction"),
            (
                "Action=DescribeInstances&MaxResults=2",
                "InvalidParameterValue",
            ),
            (
                "Action=DescribeInstances&NextToken=zz",
                "InvalidParameterValue",
            ),
            (
                "Action=DescribeInstances&Filter.1.Name=vpc-id",
                "InvalidParameterValue",
            ),
            ("Action=DescribeInstances&Bogus=1", "UnknownParameter"),
            ("Action=%zz", "MalformedQueryString"),
        ] {
            let (status, body) = send(&mut open, signed(q).as_bytes(), &w);
            assert_eq!(status / 100, 4, "{q}");
            assert_eq!(
                ec2::parse_error(&body).map(|e| e.code).as_deref(),
                Some(want),
                "{q}"
            );
        }
        let (_, body) = send(
            &mut open,
            signed("Action=DescribeInstances&NextToken=page-18446744073709551615&MaxResults=5")
                .as_bytes(),
            &w,
        );
        assert!(ec2::parse_describe_instances(&body).is_ok_and(|p| p.instances.is_empty()));

        let ok = describe(&["web"], None, None, "s3cr3t");
        for (fault, status, want) in [
            (ApiFault::Forbidden, 403, "UnauthorizedOperation"),
            (ApiFault::Throttled, 503, "RequestLimitExceeded"),
        ] {
            api.set_fault(fault);
            let r = code(send(&mut api, &ok, &w));
            assert_eq!(r, (status, Some(want.into())));
            let e = ec2::parse_error(&send(&mut api, &ok, &w).1);
            assert!(e.is_some_and(|e| e.is_throttling() == (fault == ApiFault::Throttled)));
        }
        api.set_fault(ApiFault::ServerError);
        let a = send(&mut api, &ok, &w).0;
        let b = send(&mut api, &ok, &w).0;
        assert_eq!([a.min(b), a.max(b)], [500, 503]);
        api.set_fault(ApiFault::Stall);
        let req = HttpRequest::parse(&ok).unwrap_or_else(|| unreachable!());
        assert_eq!(api.respond(Instant::ZERO, &req, &w), HttpReply::Stall);
        api.set_fault(ApiFault::Truncate);
        assert!(matches!(
            api.respond(Instant::ZERO, &req, &w),
            HttpReply::Raw(_)
        ));
        api.set_fault(ApiFault::None);
        assert_eq!(send(&mut api, &ok, &w).0, 200);
    }

    fn ecs_call(action: ecs::Action, body: &[u8], secret: &str) -> Vec<u8> {
        ecs::signed_request(HOST, action, body, &creds(secret), "us-east-1", DATE)
    }

    #[test]
    fn list_and_describe_tasks() {
        let names = hosts(9);
        let w = world(&names);
        let mut api = EcsApi::new("prod", "web")
            .tasks(names.iter().cloned())
            .credentials("AKIDSIM", "s3cr3t");
        let mut arns = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let body = ecs::list_tasks_body(Some("prod"), Some("web"), Some(2), token.as_deref());
            let (status, body) = send(
                &mut api,
                &ecs_call(ecs::Action::ListTasks, &body, "s3cr3t"),
                &w,
            );
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            let page = ecs::parse_list_tasks(&body).unwrap_or_else(|e| panic!("{e}"));
            arns.extend(page.task_arns);
            match page.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(arns.len(), 6);
        let mut asked: Vec<&str> = arns.iter().map(String::as_str).collect();
        asked.push("arn:aws:ecs:us-east-1:123456789012:task/prod/00000000000000000000000000000002");
        asked.push("nope");
        let bodies = ecs::describe_tasks_bodies(Some("prod"), &asked);
        let (status, body) = send(
            &mut api,
            &ecs_call(ecs::Action::DescribeTasks, &bodies[0], "s3cr3t"),
            &w,
        );
        assert_eq!(status, 200);
        let d = ecs::parse_describe_tasks(&body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.tasks.len(), 7);
        assert_eq!(d.tasks.iter().filter(|t| t.is_running()).count(), 6);
        assert_eq!(d.tasks[0].private_ip, "10.0.0.1".parse().ok());
        assert_eq!(d.failures.len(), 1);
        assert_eq!(d.failures[0].reason.as_deref(), Some("MISSING"));

        let list = ecs::list_tasks_body(Some("other"), None, None, None);
        let e = |r: (u16, Vec<u8>)| (r.0, ecs::parse_error(&r.1).map(|e| e.code));
        let r = send(
            &mut api,
            &ecs_call(ecs::Action::ListTasks, &list, "s3cr3t"),
            &w,
        );
        assert_eq!(e(r), (400, Some("ClusterNotFoundException".into())));
        let list = ecs::list_tasks_body(Some("prod"), None, None, None);
        let good = ecs_call(ecs::Action::ListTasks, &list, "s3cr3t");
        let r = send(
            &mut api,
            &ecs_call(ecs::Action::ListTasks, &list, "bad"),
            &w,
        );
        assert_eq!(e(r), (400, Some("InvalidSignatureException".into())));
        api.set_fault(ApiFault::Throttled);
        let r = send(&mut api, &good, &w);
        assert!(ecs::parse_error(&r.1).is_some_and(|e| e.is_throttling()));
        api.set_fault(ApiFault::Forbidden);
        assert_eq!(
            e(send(&mut api, &good, &w)).1.as_deref(),
            Some("AccessDeniedException")
        );
        api.set_fault(ApiFault::None);
        assert_eq!(send(&mut api, &good, &w).0, 200);
    }

    /// Whatever bytes arrive, the services answer (or stall) and never panic.
    #[test]
    fn no_panic_on_any_request() {
        let names = hosts(4);
        let w = world(&names);
        let mut ec2 = Ec2Api::new("app", "web").instances(names.iter().cloned());
        let mut ecs = EcsApi::new("prod", "web").tasks(names.iter().cloned());
        let mut rng = Rng::from_seed([7; 32]);
        let pieces: [&[u8]; 14] = [
            b"GET /?",
            b"POST / HTTP/1.1\r\n",
            b"Action=DescribeInstances&",
            b"Filter.1.Name=tag:app&Filter.1.Value.1=web&",
            b"MaxResults=5&NextToken=page-9&",
            b"%",
            b"%e2%82",
            b"\xff\xfe",
            b" HTTP/1.1\r\nHost: x\r\n",
            b"Authorization: AWS4-HMAC-SHA256 Credential=K/d/r/ec2/aws4_request\r\n",
            b"Authorization: AWS4-HMAC-SHA256 Credential=K/d/r/ecs/aws4_request\r\n",
            b"X-Amz-Target: AmazonEC2ContainerServiceV20141113.ListTasks\r\n",
            b"\r\n",
            br#"{"cluster":"prod","maxResults":1e9,"nextToken":"tasks-99999999999999999999999","tasks":[1,"x"]}"#,
        ];
        for _ in 0..4000 {
            let mut bytes = Vec::new();
            for _ in 0..rng.range_inclusive(1, 10) {
                bytes.extend_from_slice(pieces[rng.range_inclusive(0, 13) as usize]);
            }
            if rng.chance(0.2) {
                let mut junk = [0u8; 16];
                rng.fill_bytes(&mut junk);
                bytes.extend_from_slice(&junk);
            }
            if let Some(req) = HttpRequest::parse(&bytes) {
                let _ = ec2.respond(Instant::ZERO, &req, &w);
                let _ = ecs.respond(Instant::ZERO, &req, &w);
            }
        }
    }
}
