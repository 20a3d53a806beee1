//! The AWS strategies' parser: decoding a DescribeInstances page of 1,000 instances (3 MB, as
//! EC2 answers a full page) with the core's own bounded XML reader — time, and the peak heap
//! the decode adds.
//!
//! `cargo bench --bench aws`. Prints figures; asserts nothing about speed.

#![allow(clippy::unwrap_used)] // a benchmark unwraps what it set up itself

#[path = "support/alloc.rs"]
mod alloc;

use std::hint::black_box;
use std::time::Instant as Wall;

use muster_core::proto::ec2;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

fn main() {
    let body = ec2::sample_page(1000);
    let runs = 30;
    let (mut best, mut total, mut peak, mut allocs) = (f64::MAX, 0.0, 0, 0);
    for _ in 0..runs {
        alloc::reset_peak();
        let base = alloc::live();
        let before = alloc::allocs();
        let start = Wall::now();
        let page = ec2::parse_describe_instances(body.as_bytes()).unwrap();
        let took = start.elapsed().as_secs_f64() * 1e3;
        allocs = alloc::allocs() - before;
        assert_eq!(page.instances.len(), 1000);
        peak = peak.max(alloc::peak() - base);
        black_box(page);
        best = best.min(took);
        total += took;
    }
    println!(
        "decode of a DescribeInstances page of 1000 instances ({} bytes): {:.2} ms mean, {:.2} ms best of {runs}; peak heap added {} bytes ({:.2}× the body), {allocs} allocations",
        body.len(),
        total / f64::from(runs),
        best,
        peak,
        peak as f64 / body.len() as f64
    );
}
