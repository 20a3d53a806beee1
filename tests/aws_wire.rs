//! The AWS codecs against moto's real EC2 and ECS servers (support/moto: a `moto_server`
//! started per test): the strategies' own request builders send `DescribeInstances`,
//! `ListTasks` and `DescribeTasks`, and the decoders read what moto answers, pages and
//! errors included.
#![allow(clippy::unwrap_used)] // tests unwrap what they set up themselves

use std::collections::BTreeSet;

use muster::core::proto::ec2::{self, DescribeInstances, Ec2Error};
use muster::core::proto::ecs::{self, Action, EcsError};

#[path = "support/moto.rs"]
mod moto;
use moto::{Moto, REGION, amz_now, creds};

fn describe(moto: &Moto, call: DescribeInstances<'_>) -> ec2::DescribeInstancesPage {
    let r = moto.exchange(&call.signed_request(&moto.host(), &creds(), REGION, &amz_now()));
    assert_eq!(r.status, 200, "{}", r.body_excerpt(500));
    ec2::parse_describe_instances(&r.body).unwrap()
}

#[test]
fn describe_instances_pages_filters_and_errors() {
    let moto = Moto::start();
    let mut web = BTreeSet::new();
    for _ in 0..6 {
        web.extend(moto.run_instances(1, &[("app", "web"), ("Name", "web & <co>")]));
    }
    web.extend(moto.run_instances(2, &[("app", "web")]));
    let db = moto.run_instances(1, &[("app", "db")]);
    let stopped = web.pop_first().unwrap();
    let r = moto.ec2("StopInstances", &[("InstanceId.1", &stopped)]);
    assert_eq!(r.status, 200, "{}", r.body_excerpt(500));
    assert_eq!(web.len(), 7);

    // Running web instances, five reservations a page (moto pages by reservation).
    let mut seen = BTreeSet::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = describe(
            &moto,
            DescribeInstances {
                tag_key: "app",
                tag_values: &["web"],
                running_only: true,
                max_results: Some(5),
                next_token: token.as_deref(),
            },
        );
        pages += 1;
        for i in &page.instances {
            assert!(i.is_running(), "{i:?}");
            assert_eq!(i.tag("app"), Some("web"));
            let ip = i
                .private_ip
                .unwrap_or_else(|| panic!("no private IP: {i:?}"));
            assert!(ip.is_ipv4() && !ip.is_loopback(), "{ip}");
            assert!(i.private_dns_name.is_some(), "{i:?}");
            assert!(
                seen.insert(i.instance_id.clone()),
                "twice: {}",
                i.instance_id
            );
        }
        token = page.next_token;
        if token.is_none() {
            break;
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 2);
    assert_eq!(seen, web, "the running web instances, and only them");
    let named = describe(
        &moto,
        DescribeInstances {
            tag_key: "Name",
            tag_values: &["web & <co>"],
            ..DescribeInstances::default()
        },
    );
    assert_eq!(
        named.instances.len(),
        6,
        "entities in tag values round-trip"
    );

    // A tag-key filter without the state filter: every instance carrying the key.
    let any = describe(
        &moto,
        DescribeInstances {
            tag_key: "app",
            ..DescribeInstances::default()
        },
    );
    let ids: BTreeSet<String> = any
        .instances
        .iter()
        .map(|i| i.instance_id.clone())
        .collect();
    assert_eq!(ids.len(), 9);
    assert!(ids.contains(&stopped) && ids.contains(&db[0]));
    assert!(any.instances.iter().any(|i| !i.is_running()));

    // moto's error document for an unknown instance.
    let r = moto.ec2(
        "DescribeInstances",
        &[("InstanceId.1", "i-00000000000000000")],
    );
    assert_eq!(r.status, 400);
    let e = ec2::parse_error(&r.body).unwrap();
    assert_eq!(e.code, "InvalidInstanceID.NotFound");
    assert!(e.message.contains("i-00000000000000000"), "{}", e.message);
    assert!(!e.is_throttling());
    assert!(matches!(ec2::parse_describe_instances(&r.body), Err(Ec2Error::Api(x)) if x == e));
}

#[test]
fn list_and_describe_tasks() {
    let moto = Moto::start();
    let started: BTreeSet<String> = moto
        .run_fargate_tasks("prod", "web", 3)
        .into_iter()
        .collect();
    assert_eq!(started.len(), 3);
    let host = moto.host();
    let send = |action: Action, body: &[u8]| {
        moto.exchange(&ecs::signed_request(
            &host,
            action,
            body,
            &creds(),
            REGION,
            &amz_now(),
        ))
    };

    let r = send(
        Action::ListTasks,
        &ecs::list_tasks_body(Some("prod"), None, Some(100), None),
    );
    assert_eq!(r.status, 200, "{}", r.body_excerpt(500));
    let page = ecs::parse_list_tasks(&r.body).unwrap();
    assert_eq!(page.next_token, None);
    assert_eq!(
        page.task_arns.iter().cloned().collect::<BTreeSet<_>>(),
        started
    );

    let arns: Vec<&str> = page.task_arns.iter().map(String::as_str).collect();
    let bodies = ecs::describe_tasks_bodies(Some("prod"), &arns);
    assert_eq!(bodies.len(), 1);
    let r = send(Action::DescribeTasks, &bodies[0]);
    assert_eq!(r.status, 200, "{}", r.body_excerpt(500));
    let described = ecs::parse_describe_tasks(&r.body).unwrap();
    assert!(described.failures.is_empty(), "{:?}", described.failures);
    assert_eq!(described.tasks.len(), 3);
    let mut ips = BTreeSet::new();
    for t in &described.tasks {
        assert!(started.contains(&t.task_arn), "{t:?}");
        // moto moves a task's lastStatus along each time it is described.
        assert!(t.last_status.is_some(), "{t:?}");
        assert_eq!(t.desired_status.as_deref(), Some("RUNNING"));
        let ip = t
            .private_ip
            .unwrap_or_else(|| panic!("no ENI address: {t:?}"));
        assert!(ip.is_ipv4(), "{ip}");
        assert!(
            t.private_dns_name
                .as_deref()
                .is_some_and(|n| n.starts_with("ip-")),
            "{t:?}"
        );
        ips.insert(ip);
    }
    assert_eq!(ips.len(), 3, "one address per task");

    // moto's JSON error for an unknown cluster.
    let r = send(
        Action::ListTasks,
        &ecs::list_tasks_body(Some("nope"), None, None, None),
    );
    assert_eq!(r.status, 400);
    let e = ecs::parse_error(&r.body).unwrap();
    assert_eq!(e.code, "ClusterNotFoundException");
    assert!(!e.message.is_empty());
    assert!(matches!(ecs::parse_list_tasks(&r.body), Err(EcsError::Api(x)) if x == e));
}
