//! What AWS answers the `ec2` and `ecs` strategies: EC2's DescribeInstances XML and error
//! document, ECS's ListTasks and DescribeTasks JSON and error shape, the credentials JSON of
//! the metadata service and the container endpoint, and IMDS text answers. Any bytes decode
//! or fail with a message, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_core::proto::{aws_credentials, ec2, ecs};

fuzz_target!(|data: &[u8]| {
    if let Ok(page) = ec2::parse_describe_instances(data) {
        for i in &page.instances {
            let _ = i.tag("app");
            let _ = i.is_running();
        }
    }
    if let Some(e) = ec2::parse_error(data) {
        let _ = (e.is_throttling(), e.to_string());
    }
    let _ = ecs::parse_list_tasks(data);
    let _ = ecs::parse_describe_tasks(data);
    let _ = ecs::parse_error(data);
    if let Ok(c) = aws_credentials::parse(data) {
        let _ = format!("{:?}", c.credentials);
    }
    if let Some(role) = ec2::parse_imds_text(data) {
        let _ = ec2::imds_credentials_path(role);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = aws_credentials::parse_timestamp(s);
        let _ = aws_credentials::split_full_uri(s);
    }
});
