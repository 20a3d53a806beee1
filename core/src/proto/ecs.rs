//! ECS for the `ecs` strategy: the JSON 1.1 API's `ListTasks` (the running tasks of a
//! service, a page at a time) and `DescribeTasks` (their addresses, 100 tasks a call), and
//! the API's JSON error shape.
//!
//! Every call is a signed `POST /` whose `X-Amz-Target` names the action and whose body is a
//! JSON object.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::Deserialize;
use serde_json::json;

use super::aws_credentials::excerpt;
use super::sigv4::{self, Credentials, SignRequest};

pub use super::ec2::ApiError;

/// The most tasks one `DescribeTasks` call may name.
pub const DESCRIBE_TASKS_MAX: usize = 100;

/// The most tasks one `ListTasks` page holds (`maxResults`' upper bound).
pub const LIST_TASKS_MAX: u32 = 100;

/// The largest response body decoded: the HTTP layer's body limit.
pub const MAX_BODY: usize = super::http::DEFAULT_MAX_BODY;

/// The `Content-Type` of every request.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// The regional ECS endpoint's host (`ecs.eu-west-1.amazonaws.com`, with `.com.cn` in the
/// China regions).
pub fn endpoint_host(region: &str) -> String {
    if region.starts_with("cn-") {
        format!("ecs.{region}.amazonaws.com.cn")
    } else {
        format!("ecs.{region}.amazonaws.com")
    }
}

/// An action of the API this module speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `ListTasks`.
    ListTasks,
    /// `DescribeTasks`.
    DescribeTasks,
}

impl Action {
    /// The `X-Amz-Target` header's value.
    pub fn target(self) -> &'static str {
        match self {
            Action::ListTasks => "AmazonEC2ContainerServiceV20141113.ListTasks",
            Action::DescribeTasks => "AmazonEC2ContainerServiceV20141113.DescribeTasks",
        }
    }

    /// The headers that make a body this action's call (to sign and send).
    pub fn headers(self) -> [(&'static str, &'static str); 2] {
        [
            ("Content-Type", CONTENT_TYPE),
            ("X-Amz-Target", self.target()),
        ]
    }
}

/// The `ListTasks` body: the tasks of `cluster` (a name or ARN; `None` for the `default`
/// cluster) that should be running, optionally of one service, `max_results` (clamped to
/// 1..=[`LIST_TASKS_MAX`]) at a time, from the page `next_token` names.
pub fn list_tasks_body(
    cluster: Option<&str>,
    service_name: Option<&str>,
    max_results: Option<u32>,
    next_token: Option<&str>,
) -> Vec<u8> {
    let mut body = json!({ "desiredStatus": "RUNNING" });
    if let Some(map) = body.as_object_mut() {
        if let Some(c) = cluster {
            map.insert("cluster".into(), c.into());
        }
        if let Some(s) = service_name {
            map.insert("serviceName".into(), s.into());
        }
        if let Some(n) = max_results {
            map.insert("maxResults".into(), n.clamp(1, LIST_TASKS_MAX).into());
        }
        if let Some(t) = next_token {
            map.insert("nextToken".into(), t.into());
        }
    }
    body.to_string().into_bytes()
}

/// The `DescribeTasks` bodies for `tasks` (ARNs or IDs): one per [`DESCRIBE_TASKS_MAX`]
/// tasks, none for no task.
pub fn describe_tasks_bodies(cluster: Option<&str>, tasks: &[&str]) -> Vec<Vec<u8>> {
    tasks
        .chunks(DESCRIBE_TASKS_MAX)
        .map(|chunk| {
            let mut body = json!({ "tasks": chunk });
            if let (Some(c), Some(map)) = (cluster, body.as_object_mut()) {
                map.insert("cluster".into(), c.into());
            }
            body.to_string().into_bytes()
        })
        .collect()
}

/// The whole HTTP request for `action` with `body` to `host` ([`endpoint_host`], or a test
/// server's `host:port`), signed for `region` at `amz_date` ([`sigv4::amz_date`] of the wall
/// clock).
pub fn signed_request(
    host: &str,
    action: Action,
    body: &[u8],
    creds: &Credentials,
    region: &str,
    amz_date: &str,
) -> Vec<u8> {
    let own = action.headers();
    let signing = SignRequest {
        method: "POST",
        host,
        path: "/",
        headers: &own,
        body,
        ..SignRequest::default()
    };
    let added = sigv4::sign(&signing, creds, region, "ecs", amz_date);
    let mut headers: Vec<(&str, &str)> = own.to_vec();
    headers.extend(added.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    super::http::request("POST", host, "/", &headers, body)
}

/// A `ListTasks` page.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListTasksPage {
    /// The tasks' ARNs.
    pub task_arns: Vec<String>,
    /// The token of the next page; `None` on the last.
    pub next_token: Option<String>,
}

/// A task as `DescribeTasks` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Task {
    /// `taskArn`.
    pub task_arn: String,
    /// `lastStatus` (`PROVISIONING`, `PENDING`, `RUNNING`, `STOPPED`, ...).
    pub last_status: Option<String>,
    /// `desiredStatus`.
    pub desired_status: Option<String>,
    /// The private IPv4 address of the task's network interface (`awsvpc` networking: the
    /// `ElasticNetworkInterface` attachment's `privateIPv4Address`, else the first container's
    /// `networkInterfaces[].privateIpv4Address`); `None` for tasks in `bridge` or `host` mode,
    /// which have the address of their container instance.
    pub private_ip: Option<IpAddr>,
    /// The attachment's `privateDnsName`, if it has one.
    pub private_dns_name: Option<String>,
}

impl Task {
    /// Whether `lastStatus` is `RUNNING`.
    pub fn is_running(&self) -> bool {
        self.last_status.as_deref() == Some("RUNNING")
    }
}

/// A task `DescribeTasks` could not describe.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Failure {
    /// The ARN asked for.
    pub arn: Option<String>,
    /// Why (`MISSING`), escaped and shortened.
    pub reason: Option<String>,
    /// More detail, escaped and shortened.
    pub detail: Option<String>,
}

/// A decoded `DescribeTasks` response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DescribedTasks {
    /// The tasks described, in order.
    pub tasks: Vec<Task>,
    /// The tasks that could not be.
    pub failures: Vec<Failure>,
}

/// Why an ECS response could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EcsError {
    /// The body is larger than [`MAX_BODY`].
    #[error("ECS response larger than {MAX_BODY} bytes")]
    TooLarge,
    /// The body is not the JSON expected (serde_json's message, with the line and column).
    #[error("malformed ECS response: {0}")]
    Json(String),
    /// The body is an error (`__type` and `message`).
    #[error("ECS answered {0}")]
    Api(ApiError),
}

#[derive(Deserialize)]
struct ErrorFields<'a> {
    #[serde(rename = "__type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
    #[serde(rename = "Message", borrow, default)]
    message_upper: Option<Cow<'a, str>>,
}

impl ErrorFields<'_> {
    fn api_error(&self) -> Option<ApiError> {
        let kind = self.kind.as_deref()?;
        // `__type` may carry a namespace (`com.amazonaws.ecs#ClientException`) or, from
        // older services, a trailing URI (`ThrottlingException:http://...`).
        let kind = kind.rsplit_once('#').map_or(kind, |(_, k)| k);
        let kind = kind.split_once(':').map_or(kind, |(k, _)| k);
        let code = excerpt(kind, 100);
        if code.is_empty() {
            return None;
        }
        let message = self
            .message
            .as_deref()
            .or(self.message_upper.as_deref())
            .unwrap_or("");
        Some(ApiError {
            code,
            message: excerpt(message, 500),
            request_id: None,
        })
    }
}

#[derive(Deserialize)]
struct ListTasksBody<'a> {
    // The error shape's fields, read in the same pass (no `flatten`, which would buffer
    // the whole body first).
    #[serde(rename = "__type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
    #[serde(rename = "Message", borrow, default)]
    message_upper: Option<Cow<'a, str>>,
    #[serde(rename = "taskArns", default)]
    task_arns: Option<Vec<String>>,
    #[serde(rename = "nextToken", default)]
    next_token: Option<String>,
}

#[derive(Deserialize)]
struct DescribeTasksBody<'a> {
    // The error shape's fields, read in the same pass (no `flatten`, which would buffer
    // the whole body first).
    #[serde(rename = "__type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
    #[serde(rename = "Message", borrow, default)]
    message_upper: Option<Cow<'a, str>>,
    #[serde(default)]
    tasks: Option<Vec<TaskBody<'a>>>,
    #[serde(borrow, default)]
    failures: Option<Vec<FailureBody<'a>>>,
}

#[derive(Deserialize)]
struct TaskBody<'a> {
    #[serde(rename = "taskArn", default)]
    task_arn: Option<String>,
    #[serde(rename = "lastStatus", borrow, default)]
    last_status: Option<Cow<'a, str>>,
    #[serde(rename = "desiredStatus", borrow, default)]
    desired_status: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    attachments: Option<Vec<Attachment<'a>>>,
    #[serde(borrow, default)]
    containers: Option<Vec<Container<'a>>>,
}

#[derive(Deserialize)]
struct Attachment<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    details: Option<Vec<Detail<'a>>>,
}

#[derive(Deserialize)]
struct Detail<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    value: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Container<'a> {
    #[serde(rename = "networkInterfaces", borrow, default)]
    network_interfaces: Option<Vec<NetworkInterface<'a>>>,
}

#[derive(Deserialize)]
struct NetworkInterface<'a> {
    #[serde(rename = "privateIpv4Address", borrow, default)]
    private_ipv4_address: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct FailureBody<'a> {
    #[serde(default)]
    arn: Option<String>,
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    detail: Option<Cow<'a, str>>,
}

fn json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, EcsError> {
    if body.len() > MAX_BODY {
        return Err(EcsError::TooLarge);
    }
    serde_json::from_slice(body).map_err(|e| EcsError::Json(e.to_string()))
}

/// Decodes a `ListTasks` response; an error body comes back as [`EcsError::Api`].
pub fn parse_list_tasks(body: &[u8]) -> Result<ListTasksPage, EcsError> {
    let b: ListTasksBody<'_> = json(body)?;
    let error = ErrorFields {
        kind: b.kind,
        message: b.message,
        message_upper: b.message_upper,
    };
    if let Some(e) = error.api_error() {
        return Err(EcsError::Api(e));
    }
    Ok(ListTasksPage {
        task_arns: b.task_arns.unwrap_or_default(),
        next_token: b.next_token.filter(|t| !t.is_empty()),
    })
}

/// Decodes a `DescribeTasks` response; an error body comes back as [`EcsError::Api`].
pub fn parse_describe_tasks(body: &[u8]) -> Result<DescribedTasks, EcsError> {
    let b: DescribeTasksBody<'_> = json(body)?;
    let error = ErrorFields {
        kind: b.kind,
        message: b.message,
        message_upper: b.message_upper,
    };
    if let Some(e) = error.api_error() {
        return Err(EcsError::Api(e));
    }
    let tasks = b
        .tasks
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let eni_details = t
                .attachments
                .iter()
                .flatten()
                .filter(|a| a.kind.as_deref() == Some("ElasticNetworkInterface"))
                .flat_map(|a| a.details.iter().flatten());
            let detail = |wanted: &str| {
                eni_details
                    .clone()
                    .find(|d| d.name.as_deref() == Some(wanted))
                    .and_then(|d| d.value.as_deref())
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
            };
            let from_containers = || {
                t.containers
                    .iter()
                    .flatten()
                    .flat_map(|c| c.network_interfaces.iter().flatten())
                    .find_map(|n| n.private_ipv4_address.as_deref()?.trim().parse().ok())
            };
            let private_ip = detail("privateIPv4Address")
                .and_then(|ip| ip.parse().ok())
                .or_else(from_containers);
            Task {
                private_dns_name: detail("privateDnsName").map(str::to_owned),
                task_arn: t.task_arn.unwrap_or_default(),
                last_status: t.last_status.map(Cow::into_owned),
                desired_status: t.desired_status.map(Cow::into_owned),
                private_ip,
            }
        })
        .collect();
    let failures = b
        .failures
        .unwrap_or_default()
        .into_iter()
        .map(|f| Failure {
            arn: f.arn,
            reason: f.reason.map(|r| excerpt(&r, 100)),
            detail: f.detail.map(|d| excerpt(&d, 300)),
        })
        .collect();
    Ok(DescribedTasks { tasks, failures })
}

/// Decodes an error body (`{"__type": "...", "message": "..."}`), as sent with a 4xx or 5xx
/// status; `None` if the body is not one.
pub fn parse_error(body: &[u8]) -> Option<ApiError> {
    json::<ErrorFields<'_>>(body).ok()?.api_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bodies_and_headers() {
        let body: serde_json::Value = serde_json::from_slice(&list_tasks_body(
            Some("prod"),
            Some("web"),
            Some(500),
            Some("t1"),
        ))
        .unwrap();
        assert_eq!(
            body,
            json!({"cluster":"prod","desiredStatus":"RUNNING","maxResults":100,"nextToken":"t1","serviceName":"web"})
        );
        assert_eq!(
            String::from_utf8(list_tasks_body(None, None, None, None)).unwrap(),
            r#"{"desiredStatus":"RUNNING"}"#
        );
        let arns: Vec<String> = (0..250)
            .map(|i| format!("arn:aws:ecs:eu-west-1:1:task/prod/{i}"))
            .collect();
        let refs: Vec<&str> = arns.iter().map(String::as_str).collect();
        let bodies = describe_tasks_bodies(Some("prod"), &refs);
        assert_eq!(bodies.len(), 3);
        let first: serde_json::Value = serde_json::from_slice(&bodies[0]).unwrap();
        assert_eq!(first["cluster"], "prod");
        assert_eq!(first["tasks"].as_array().unwrap().len(), 100);
        let last: serde_json::Value = serde_json::from_slice(&bodies[2]).unwrap();
        assert_eq!(last["tasks"].as_array().unwrap().len(), 50);
        assert!(describe_tasks_bodies(None, &[]).is_empty());

        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "secret".into(),
            session_token: None,
        };
        let body = list_tasks_body(Some("prod"), None, None, None);
        let r = signed_request(
            &endpoint_host("us-east-1"),
            Action::ListTasks,
            &body,
            &creds,
            "us-east-1",
            "20260101T000000Z",
        );
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("POST / HTTP/1.1\r\nHost: ecs.us-east-1.amazonaws.com\r\n"));
        assert!(text.contains("\r\nContent-Type: application/x-amz-json-1.1\r\n"));
        assert!(
            text.contains("\r\nX-Amz-Target: AmazonEC2ContainerServiceV20141113.ListTasks\r\n")
        );
        assert!(
            text.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=")
        );
        assert!(text.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
        assert!(text.ends_with(std::str::from_utf8(&body).unwrap()));
    }

    #[test]
    fn list_tasks_pages() {
        let p = parse_list_tasks(br#"{"taskArns":["arn:aws:ecs:us-east-1:012345678910:task/prod/0b69d5c0d30c4a1b9c8a36e2d8fd3a37"],"nextToken":"eyJ0b2tlbiI6IDF9"}"#).unwrap();
        assert_eq!(p.task_arns.len(), 1);
        assert_eq!(p.next_token.as_deref(), Some("eyJ0b2tlbiI6IDF9"));
        let last = parse_list_tasks(br#"{"taskArns":[]}"#).unwrap();
        assert_eq!(last, ListTasksPage::default());
        assert!(matches!(parse_list_tasks(b"[1]"), Err(EcsError::Json(_))));
    }

    #[test]
    fn describe_tasks_addresses_and_failures() {
        let body = br#"{
  "failures": [{"arn": "arn:aws:ecs:us-east-1:1:task/prod/gone", "reason": "MISSING"}],
  "tasks": [
    {
      "taskArn": "arn:aws:ecs:us-east-1:1:task/prod/a",
      "lastStatus": "RUNNING", "desiredStatus": "RUNNING", "launchType": "FARGATE",
      "attachments": [
        {"id": "x", "type": "Service Connect", "status": "ATTACHED",
         "details": [{"name": "privateIPv4Address", "value": "192.0.2.1"}]},
        {"id": "y", "type": "ElasticNetworkInterface", "status": "ATTACHED",
         "details": [
           {"name": "subnetId", "value": "subnet-0"},
           {"name": "networkInterfaceId", "value": "eni-0"},
           {"name": "privateDnsName", "value": "ip-10-0-1-5.ec2.internal"},
           {"name": "privateIPv4Address", "value": "10.0.1.5"}
         ]}
      ],
      "containers": [{"name": "app", "networkInterfaces": [{"attachmentId": "y", "privateIpv4Address": "10.0.1.99"}]}]
    },
    {
      "taskArn": "arn:aws:ecs:us-east-1:1:task/prod/b",
      "lastStatus": "PROVISIONING", "desiredStatus": "RUNNING",
      "attachments": [{"type": "ElasticNetworkInterface", "status": "PRECREATED", "details": []}],
      "containers": [{"name": "app", "networkInterfaces": [{"privateIpv4Address": "10.0.1.6"}]}]
    },
    {"taskArn": "arn:aws:ecs:us-east-1:1:task/prod/c", "lastStatus": "RUNNING", "containers": [{"name": "app", "networkInterfaces": []}]}
  ]
}"#;
        let d = parse_describe_tasks(body).unwrap();
        assert_eq!(d.tasks.len(), 3);
        let a = &d.tasks[0];
        assert!(a.is_running());
        assert_eq!(a.private_ip, Some("10.0.1.5".parse().unwrap()));
        assert_eq!(
            a.private_dns_name.as_deref(),
            Some("ip-10-0-1-5.ec2.internal")
        );
        let b = &d.tasks[1];
        assert!(!b.is_running());
        assert_eq!(b.desired_status.as_deref(), Some("RUNNING"));
        assert_eq!(b.private_ip, Some("10.0.1.6".parse().unwrap()));
        assert_eq!(
            (
                d.tasks[2].private_ip,
                d.tasks[2].private_dns_name.as_deref()
            ),
            (None, None)
        );
        assert_eq!(
            d.failures,
            [Failure {
                arn: Some("arn:aws:ecs:us-east-1:1:task/prod/gone".into()),
                reason: Some("MISSING".into()),
                detail: None,
            }]
        );
    }

    #[test]
    fn error_bodies() {
        let throttled = br#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
        let e = parse_error(throttled).unwrap();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("ThrottlingException", "Rate exceeded")
        );
        assert!(e.is_throttling());
        assert_eq!(parse_list_tasks(throttled), Err(EcsError::Api(e.clone())));
        assert_eq!(parse_describe_tasks(throttled), Err(EcsError::Api(e)));

        let namespaced = br#"{"__type":"com.amazonaws.ecs#ClusterNotFoundException","Message":"Cluster not found."}"#;
        let e = parse_error(namespaced).unwrap();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("ClusterNotFoundException", "Cluster not found.")
        );
        let uri = br#"{"__type":"UnrecognizedClientException:http://internal.amazon.com/coral/com.amazon.coral.service/","message":"The security token included in the request is invalid."}"#;
        let e = parse_error(uri).unwrap();
        assert_eq!(e.code, "UnrecognizedClientException");
        assert!(e.is_credentials_problem());

        assert_eq!(parse_error(br#"{"taskArns":[]}"#), None);
        assert_eq!(parse_error(br#"{"__type":""}"#), None);
        assert_eq!(parse_error(b"<html>"), None);
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse_list_tasks(&data);
            let _ = parse_describe_tasks(&data);
            let _ = parse_error(&data);
        }

        #[test]
        fn jsonish_text_never_panics(s in r#"(\{|\}|\[|\]|"(tasks|attachments|details|containers|networkInterfaces|name|value|type|privateIPv4Address|ElasticNetworkInterface|__type|10\.0\.0\.1)"|:|,|null|1){0,60}"#) {
            let _ = parse_list_tasks(s.as_bytes());
            let _ = parse_describe_tasks(s.as_bytes());
        }
    }
}
