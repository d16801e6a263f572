//! Concurrency benchmark of `waddle_talos_cluster` create: 1 (baseline), 3, 10 and 30 nodes
//! against the PVE emulator (3 Proxmox nodes) with the Talos emulator as guest, driven in
//! process through the provider's gRPC service handlers (no CLI overhead).
//!
//!   cargo run --release -p waddle-acceptance --example talos_cluster_concurrency
//!   (args: node counts, e.g. `-- 3 10`)
//!
//! Emulator latencies (per node): PVE task 50 ms, image download 300 ms, VM boot 1 s; Talos
//! boot to maintenance 1.5 s, apply 200 ms, reboot 1.5 s, bootstrap ready 1 s after Running.
//!
//! For each size it prints the create wall time and the critical path measured from the
//! resource's own progress events: image download + the slowest node (VM create to mTLS on
//! its static address) + bootstrap + health + kubeconfig. The ratio wall / critical path
//! shows how much the orchestration adds on top of the slowest chain (target <= 1.15), and
//! the last column compares the critical path with the 1-node baseline (flat = concurrency
//! works; it grows when per-node Proxmox permits or the CPU become the bottleneck).
//! Each run's secrets bundle is generated before the clock starts and passed as
//! `machine_secrets` (its RSA-4096 key generation is CPU work unrelated to concurrency).

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use waddle_acceptance::pve::{EmulatorConfig, PveEmulator, Timings as PveTimings};
use waddle_acceptance::talos::{appliance, FleetOptions, TalosFleet, Timings};
use waddle_framework::Value;
use waddle_provider::resources::talos_cluster::{
    schema, ClusterModel, ImageModel, PlacementModel, TimeoutsModel, TYPE_NAME,
};

#[allow(dead_code)] // `client` is for the tests
#[path = "../tests/inproc/mod.rs"]
mod inproc;
mod talos_bench;

use inproc::harness;

const PVE_NODES: [&str; 3] = ["pve1", "pve2", "pve3"];
const URL: &str = "https://factory.talos.dev/image/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba/v1.12.11/nocloud-amd64.qcow2";

/// Progress events of the resource (message, seconds).
#[derive(Default, Clone)]
struct Events(Arc<Mutex<Vec<(String, f64)>>>);

struct Collector(Events);

struct Visit {
    message: String,
    seconds: Option<f64>,
    fields: String,
}

impl tracing::field::Visit for Visit {
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        if field.name() == "seconds" {
            self.seconds = Some(value);
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields
                .push_str(&format!(" {}={value:?}", field.name()));
        }
    }
}

impl tracing::Subscriber for Collector {
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        m.target().starts_with("waddle_provider") && *m.level() <= tracing::Level::INFO
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        let mut v = Visit {
            message: String::new(),
            seconds: None,
            fields: String::new(),
        };
        e.record(&mut v);
        if std::env::var_os("BENCH_VERBOSE").is_some() {
            eprintln!("  [{}] {}{}", e.metadata().target(), v.message, v.fields);
        }
        if let Some(s) = v.seconds {
            if let Ok(mut l) = self.0 .0.lock() {
                l.push((v.message, s));
            }
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn cluster(n: usize, run: u8, secrets: &str) -> ClusterModel {
    let net = |host: usize| format!("127.20.{}.{}", 90 + run, host);
    let nodes = talos_bench::nodes(n, net, |i| PlacementModel {
        node: Some(PVE_NODES[i % PVE_NODES.len()].into()),
        vmid: Some(1000 * u32::from(run) + 100 + i as u32),
        ..Default::default()
    });
    ClusterModel {
        cluster_name: format!("bench{run}"),
        endpoint: format!("https://{}:6443", net(250)),
        vip: Some(net(250)),
        image: Some(ImageModel {
            installer: None,
            disk_image_url: Some(URL.into()),
        }),
        machine_secrets: Some(secrets.to_string()),
        timeouts: Some(TimeoutsModel {
            create: Some("3m".into()),
            update: None,
            delete: Some("3m".into()),
        }),
        nodes: Some(nodes),
        ..Default::default()
    }
}

struct Row {
    nodes: usize,
    wall: f64,
    critical: f64,
    destroy: f64,
}

fn main() {
    let sizes = talos_bench::sizes();
    let events = Events::default();
    tracing::subscriber::set_global_default(Collector(events.clone())).expect("subscriber");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let pve_timings = PveTimings {
            boot: Duration::from_millis(1000),
            download: Duration::from_millis(300),
            task: Duration::from_millis(50),
            ..Default::default()
        };
        let b = EmulatorConfig::builder()
            .ip(Ipv4Addr::new(127, 40, 90, 1))
            .nodes(&PVE_NODES)
            .timings(pve_timings)
            .validate_responses(false);
        let emu = PveEmulator::start(b.build()).await.expect("PVE emulator");
        let fleet = TalosFleet::new(FleetOptions {
            timings: Timings {
                boot: Duration::from_millis(1500),
                apply: Duration::from_millis(200),
                reboot: Duration::from_millis(1500),
                bootstrap_ready: Duration::from_millis(1000),
                rpc: Duration::ZERO,
                boot_done: Duration::from_millis(500),
                upgrade: Duration::from_millis(1000),
            },
            ..Default::default()
        });
        appliance::register(emu.appliances(), fleet.clone());

        // The provider's default node is the first, `pve1`.
        let h = harness(&emu).await;

        let mut rows = Vec::new();
        let mut all = vec![1usize];
        all.extend(sizes);
        for (run, n) in all.into_iter().enumerate() {
            let run = run as u8;
            // A fresh cluster identity per run (the emulated etcd keeps stale members of a
            // force-reset last control plane, as real Talos does).
            let t = Instant::now();
            let secrets = talos_bench::fresh_secrets().await;
            eprintln!(
                "run {run}: {n} nodes (secrets generated in {:.2}s, not timed)",
                t.elapsed().as_secs_f64()
            );
            let config = schema()
                .from_typed(&cluster(n, run, &secrets))
                .expect("config");
            events.0.lock().unwrap().clear();
            let t = Instant::now();
            let state = match h.plan_and_apply(TYPE_NAME, &Value::Null, &config).await {
                Ok(s) => s,
                Err(d) => panic!("create of {n} nodes failed: {d:?}"),
            };
            let wall = t.elapsed().as_secs_f64();
            let ev = events.0.lock().unwrap().clone();
            let get = |m: &str| {
                ev.iter()
                    .filter(|(x, _)| x == m)
                    .map(|(_, s)| *s)
                    .fold(0.0, f64::max)
            };
            let critical = get("disk images ready")
                + get("node configured")
                + get("etcd bootstrapped")
                + get("cluster healthy")
                + get("kubeconfig fetched");
            let t = Instant::now();
            if let Err(d) = h.plan_and_apply(TYPE_NAME, &state, &Value::Null).await {
                panic!("destroy of {n} nodes failed: {d:?}");
            }
            let destroy = t.elapsed().as_secs_f64();
            assert!(emu.vms().is_empty(), "VMs left after destroy");
            rows.push(Row {
                nodes: n,
                wall,
                critical,
                destroy,
            });
        }
        let base = rows[0].critical;
        println!();
        println!("nodes  create wall  critical path  wall/critical  critical/1-node  destroy");
        for r in &rows {
            println!(
                "{:>5}  {:>10.2}s  {:>12.2}s  {:>12.3}x  {:>14.3}x  {:>6.2}s",
                r.nodes,
                r.wall,
                r.critical,
                r.wall / r.critical,
                r.critical / base,
                r.destroy
            );
        }
        fleet.shutdown().await;
        emu.shutdown().await;
    });
}
