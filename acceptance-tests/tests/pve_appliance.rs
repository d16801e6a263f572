//! PVE emulator: pluggable guest appliances (the hook the Talos emulator uses), multi-node
//! placement, slow-boot faults.

#[path = "pve_support.rs"]
mod support;

use std::any::Any;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use support::*;
use waddle_acceptance::pve::{
    ApplianceFactory, ExecOutcome, FaultConfig, FaultKind, GuestAppliance, GuestContext,
    GuestInterface,
};

struct FakeTalos {
    boots: Arc<AtomicUsize>,
}

#[async_trait]
impl GuestAppliance for FakeTalos {
    fn kind(&self) -> &str {
        "fake-talos"
    }
    async fn boot(&self, _ctx: &GuestContext) -> Result<(), String> {
        self.boots.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn interfaces(&self, ctx: &GuestContext) -> Vec<GuestInterface> {
        vec![GuestInterface {
            name: "eth0".into(),
            mac: ctx
                .macs
                .get(&0)
                .map(|m| m.to_ascii_lowercase())
                .unwrap_or_default(),
            ipv4: vec![(Ipv4Addr::new(127, 20, 0, 5), 8)],
            ipv6: vec![],
        }]
    }
    async fn exec(
        &self,
        _ctx: &GuestContext,
        _argv: &[String],
        _input: Option<&[u8]>,
    ) -> ExecOutcome {
        ExecOutcome::fail(1, "talos has no shell\n")
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct FakeTalosFactory {
    boots: Arc<AtomicUsize>,
    seen_urls: std::sync::Mutex<Vec<Option<String>>>,
}

impl ApplianceFactory for FakeTalosFactory {
    fn name(&self) -> &str {
        "fake-talos"
    }
    fn matches(&self, ctx: &GuestContext) -> bool {
        ctx.image_hint().contains("talos")
    }
    fn create(&self, ctx: &GuestContext) -> Arc<dyn GuestAppliance> {
        if let Ok(mut s) = self.seen_urls.lock() {
            s.push(ctx.boot_image.as_ref().and_then(|b| b.source_url.clone()));
        }
        Arc::new(FakeTalos {
            boots: self.boots.clone(),
        })
    }
}

#[tokio::test]
async fn registered_appliance_runs_on_second_node_with_slow_boot() {
    let mut t = waddle_acceptance::pve::Timings::fast();
    t.boot = Duration::from_millis(20);
    let api = start(
        fast()
            .timings(t)
            .nodes(&["pve1", "pve2"])
            .faults(FaultConfig::new(3).with(
                "POST /nodes/{node}/qemu/{vmid}/status/start",
                FaultKind::SlowBoot(Duration::from_millis(400)),
                1.0,
            ))
            .build(),
    )
    .await;
    let factory = Arc::new(FakeTalosFactory {
        boots: Arc::new(AtomicUsize::new(0)),
        seen_urls: Default::default(),
    });
    api.emu.appliances().register(factory.clone());
    assert_eq!(api.emu.appliances().names()[0], "fake-talos");

    let url = "https://factory.talos.dev/image/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba/v1.12.0/nocloud-amd64.raw.xz";
    let upid = api
        .ok(
            "POST",
            "/nodes/pve2/storage/local/download-url",
            &[
                ("content", "import"),
                ("filename", "talos-v1.12.0-nocloud-amd64.raw"),
                ("url", url),
            ],
        )
        .await;
    assert_eq!(api.wait_task(upid.as_str().expect("upid")).await, "OK");
    // the image lives on pve2's local storage only
    let r = api
        .call(
            "POST",
            "/nodes/pve1/qemu",
            &[
                ("vmid", "201"),
                (
                    "scsi0",
                    "local-lvm:0,import-from=local:import/talos-v1.12.0-nocloud-amd64.raw",
                ),
            ],
        )
        .await;
    assert_eq!(r.status, 500, "{}", r.reason);
    let upid = api
        .ok(
            "POST",
            "/nodes/pve2/qemu",
            &[
                ("vmid", "201"),
                ("agent", "1"),
                (
                    "scsi0",
                    "local-lvm:0,import-from=local:import/talos-v1.12.0-nocloud-amd64.raw",
                ),
                ("net0", "virtio=BC:24:11:AA:00:01,bridge=vmbr0"),
            ],
        )
        .await;
    assert_eq!(api.wait_task(upid.as_str().expect("upid")).await, "OK");
    let r = api.call("GET", "/nodes/pve1/qemu/201/config", &[]).await;
    assert_eq!(
        r.reason,
        "Configuration file 'nodes/pve1/qemu-server/201.conf' does not exist"
    );
    let started = Instant::now();
    let upid = api
        .ok("POST", "/nodes/pve2/qemu/201/status/start", &[])
        .await;
    assert_eq!(api.wait_task(upid.as_str().expect("upid")).await, "OK");
    let ifaces = loop {
        let r = api
            .call(
                "GET",
                "/nodes/pve2/qemu/201/agent/network-get-interfaces",
                &[],
            )
            .await;
        if r.status == 200 {
            break r.body["data"]["result"].clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "agent never came up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "slow boot was applied"
    );
    assert_eq!(ifaces[0]["ip-addresses"][0]["ip-address"], "127.20.0.5");
    assert_eq!(ifaces[0]["hardware-address"], "bc:24:11:aa:00:01");
    assert_eq!(factory.boots.load(Ordering::SeqCst), 1);
    assert_eq!(
        factory.seen_urls.lock().expect("lock").as_slice(),
        &[Some(url.to_string())]
    );
    assert_eq!(
        api.emu.appliance(201).expect("appliance").kind(),
        "fake-talos"
    );
    assert_eq!(api.emu.fault_log().len(), 1);
    let r = api
        .call(
            "POST",
            "/nodes/pve2/qemu/201/agent/exec",
            &[("command", "ls")],
        )
        .await;
    assert_eq!(r.status, 200);
    api.assert_no_violations();
}
