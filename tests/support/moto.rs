//! moto, the AWS API emulator (PyPI `moto[server]`), started and stopped by the tests: one
//! `moto_server` serves EC2 and ECS on a loopback port. It is installed with pip into a
//! virtual environment the first time (under the target directory, or `MUSTER_MOTO_VENV`),
//! which needs `python3` with its `venv` module (Debian: python3-venv) and the package index.
//!
//! moto does not check signatures: the requests are signed anyway, so that the same builders
//! as the strategies' are what talks to it.
#![allow(clippy::unwrap_used, dead_code)] // tests unwrap what they set up themselves

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use muster::core::proto::http::{self, Response, ResponseReader};
use muster::core::proto::sigv4::{self, Credentials, SignRequest};

/// The region every call names.
pub const REGION: &str = "us-east-1";

/// Credentials moto accepts (any are).
pub fn creds() -> Credentials {
    Credentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        session_token: Some("moto-session".into()),
    }
}

/// The wall clock as SigV4 writes it.
pub fn amz_now() -> String {
    sigv4::amz_date(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap(),
    )
}

/// Only one test at a time installs the environment; the others wait for it.
static INSTALL: Mutex<()> = Mutex::new(());

/// The virtual environment with moto installed, made on first use. A `.ready` file marks a
/// complete install, so an interrupted one is started again rather than used.
pub fn venv() -> PathBuf {
    let dir = std::env::var_os("MUSTER_MOTO_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("moto-venv"));
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if dir.join(".ready").exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&dir)
        .status()
        .unwrap_or_else(|e| panic!("no python3 for moto's venv ({e}): install python3-venv"));
    assert!(
        status.success(),
        "python3 -m venv {} failed: install python3-venv",
        dir.display()
    );
    let status = Command::new(dir.join("bin/pip"))
        .args(["install", "--quiet", "--no-cache-dir", "moto[server]"])
        .status()
        .unwrap();
    assert!(status.success(), "pip install 'moto[server]' failed");
    std::fs::write(dir.join(".ready"), b"").unwrap();
    dir
}

/// A running `moto_server`; killed when dropped.
pub struct Moto {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Moto {
    /// Starts moto on a free loopback port and waits until it accepts connections (at most
    /// 60 s, polling every 50 ms).
    pub fn start() -> Moto {
        let venv = venv();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log =
            std::env::temp_dir().join(format!("muster-moto-{}-{port}.log", std::process::id()));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(venv.join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut moto = Moto { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return moto;
            }
            if let Some(status) = moto.child.try_wait().unwrap() {
                panic!("moto_server exited with {status}: {}", moto.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen within 60 s: {}",
                moto.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The `Host` header for it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// What moto logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `request` on a new connection and reads the response to the close.
    pub fn exchange(&self, request: &[u8]) -> Response {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(request).unwrap();
        let mut reader = ResponseReader::new(http::DEFAULT_MAX_HEAD, http::DEFAULT_MAX_BODY);
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            reader.feed(&buf[..n]);
        }
        reader.finish().unwrap()
    }

    /// An EC2 Query API call with `params` (besides `Version`), as a signed `GET`.
    pub fn ec2(&self, action: &str, params: &[(&str, &str)]) -> Response {
        let mut query: Vec<(String, String)> = vec![
            ("Action".into(), action.into()),
            ("Version".into(), "2016-11-15".into()),
        ];
        query.extend(
            params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let host = self.host();
        let signed = sigv4::sign(
            &SignRequest {
                method: "GET",
                host: &host,
                path: "/",
                query: &query,
                ..SignRequest::default()
            },
            &creds(),
            REGION,
            "ec2",
            &amz_now(),
        );
        let headers: Vec<(&str, &str)> = signed
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.exchange(&http::request(
            "GET",
            &host,
            &sigv4::request_target("/", &query),
            &headers,
            b"",
        ))
    }

    /// An ECS JSON API call (`action` as in `X-Amz-Target`, after the service's prefix).
    pub fn ecs(&self, action: &str, body: &serde_json::Value) -> Response {
        let host = self.host();
        let target = format!("AmazonEC2ContainerServiceV20141113.{action}");
        let body = body.to_string();
        let own = [
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", target.as_str()),
        ];
        let signed = sigv4::sign(
            &SignRequest {
                method: "POST",
                host: &host,
                path: "/",
                headers: &own,
                body: body.as_bytes(),
                ..SignRequest::default()
            },
            &creds(),
            REGION,
            "ecs",
            &amz_now(),
        );
        let mut headers = own.to_vec();
        headers.extend(signed.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.exchange(&http::request(
            "POST",
            &host,
            "/",
            &headers,
            body.as_bytes(),
        ))
    }

    /// Keeps moto's ECS tasks in the state they are in however often they are described: by
    /// default moto moves a task one state along at each `DescribeTasks` (RUNNING,
    /// DEACTIVATING, STOPPING, DEPROVISIONING, STOPPED), as if it were stopping.
    pub fn hold_task_states(&self) {
        let body = r#"{"model_name":"ecs::task","transition":{"progression":"manual","times":1000000000}}"#;
        let r = self.exchange(&http::request(
            "POST",
            &self.host(),
            "/moto-api/state-manager/set-transition",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        ));
        assert_eq!(r.status, 201, "set-transition: {}", r.body_excerpt(300));
    }

    /// Runs `count` instances in one reservation, tagged with `tags`, and returns their IDs.
    pub fn run_instances(&self, count: usize, tags: &[(&str, &str)]) -> Vec<String> {
        let count = count.to_string();
        let mut params: Vec<(String, String)> = vec![
            ("ImageId".into(), "ami-12c6146b".into()),
            ("MinCount".into(), count.clone()),
            ("MaxCount".into(), count),
            ("InstanceType".into(), "t3.micro".into()),
            ("TagSpecification.1.ResourceType".into(), "instance".into()),
        ];
        for (i, (k, v)) in tags.iter().enumerate() {
            params.push((format!("TagSpecification.1.Tag.{}.Key", i + 1), (*k).into()));
            params.push((
                format!("TagSpecification.1.Tag.{}.Value", i + 1),
                (*v).into(),
            ));
        }
        let params: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let r = self.ec2("RunInstances", &params);
        let body = String::from_utf8(r.body).unwrap();
        assert_eq!(r.status, 200, "RunInstances: {body}");
        elements(&body, "instanceId")
    }

    /// The ID of one of the default VPC's subnets.
    pub fn subnet(&self) -> String {
        let r = self.ec2("DescribeSubnets", &[]);
        let body = String::from_utf8(r.body).unwrap();
        elements(&body, "subnetId")
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no subnet: {body}"))
    }

    /// Creates the ECS cluster `cluster` and a Fargate task definition `family` (awsvpc
    /// networking), and runs `count` tasks of it; returns their ARNs.
    pub fn run_fargate_tasks(&self, cluster: &str, family: &str, count: usize) -> Vec<String> {
        let ok = |r: Response, what: &str| -> serde_json::Value {
            let text = String::from_utf8_lossy(&r.body).into_owned();
            assert_eq!(r.status, 200, "{what}: {text}");
            serde_json::from_str(&text).unwrap()
        };
        ok(
            self.ecs(
                "CreateCluster",
                &serde_json::json!({ "clusterName": cluster }),
            ),
            "CreateCluster",
        );
        ok(
            self.ecs(
                "RegisterTaskDefinition",
                &serde_json::json!({
                    "family": family, "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
                    "cpu": "256", "memory": "512",
                    "containerDefinitions": [{"name": "app", "image": "app:1", "essential": true, "memory": 512}]
                }),
            ),
            "RegisterTaskDefinition",
        );
        let subnet = self.subnet();
        let run = ok(
            self.ecs(
                "RunTask",
                &serde_json::json!({
                    "cluster": cluster, "taskDefinition": family, "count": count, "launchType": "FARGATE",
                    "networkConfiguration": {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": []}}
                }),
            ),
            "RunTask",
        );
        run["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["taskArn"].as_str().unwrap().to_owned())
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The text of every `<name>` element, in order: enough to pick IDs out of the answers of the
/// set-up calls, which the codecs under test do not decode.
fn elements(xml: &str, name: &str) -> Vec<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        rest = &rest[i + open.len()..];
        let Some(j) = rest.find(&close) else { break };
        if !out.iter().any(|v| v == &rest[..j]) {
            out.push(rest[..j].to_owned());
        }
        rest = &rest[j..];
    }
    out
}
