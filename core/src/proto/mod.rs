//! Pure codecs: bytes in, values out, never a panic, no I/O.

pub mod aws_credentials;
pub mod base64;
pub mod dist;
pub mod dns;
pub mod ec2;
pub mod ecs;
pub mod epmd;
pub mod etcd;
pub mod etf;
pub mod gossip;
pub mod hosts_file;
pub mod http;
pub mod k8s;
pub mod postgres;
pub mod rancher;
pub mod resolv_conf;
pub mod sigv4;
pub mod term;
