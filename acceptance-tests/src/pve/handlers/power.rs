//! `/nodes/{node}/qemu/{vmid}/status/*`: current status, start (and the boot of the guest
//! appliance), stop, shutdown and reboot.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::cluster::{cores, mem_bytes, uptime};
use super::tasks::start_task;
use super::{is_disk_key, is_net_key, no_conf, vm_exists, R};
use crate::pve::guest::{AttachedMedia, BootImage, GuestAppliance, GuestContext};
use crate::pve::server::{ApiError, Ctx};
use crate::pve::state::{now, Power, Sdn, Shared, State, Vm};

pub(super) fn qemu_status(ctx: &Ctx) -> R {
    let (_, id) = vm_exists(ctx)?;
    let st = ctx.shared.st();
    let vm = st.vms.get(&id).ok_or_else(|| ApiError::die("vanished"))?;
    let running = vm.power == Power::Running;
    let mut o = json!({
        "vmid": id,
        "status": if running {"running"} else {"stopped"},
        "qmpstatus": if running {"running"} else {"stopped"},
        "ha": {"managed": 0},
        "cpus": cores(vm),
        "maxmem": mem_bytes(vm),
        "maxdisk": 0,
        "uptime": uptime(vm),
        "cpu": 0, "mem": 0, "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0,
    });
    if agent_enabled(vm) {
        o["agent"] = json!(1);
    }
    if running {
        o["pid"] = json!(10000 + id);
        o["running-qemu"] = json!("10.1.2");
        o["running-machine"] = json!("pc-i440fx-10.1+pve0");
    }
    if let Some(n) = vm.config.get("name") {
        o["name"] = json!(n);
    }
    if let Some(l) = vm.config.get("lock") {
        o["lock"] = json!(l);
    }
    if let Some(t) = vm.config.get("tags") {
        o["tags"] = json!(t);
    }
    Ok(o)
}

pub(super) fn agent_enabled(vm: &Vm) -> bool {
    vm.config
        .get("agent")
        .map(|a| {
            let first = a
                .split(',')
                .find(|p| !p.contains('=') || p.starts_with("enabled="))
                .unwrap_or("0");
            let v = first.trim_start_matches("enabled=");
            matches!(v, "1" | "true" | "yes" | "on")
        })
        .unwrap_or(false)
}

pub(super) fn guest_context(shared: &Shared, st: &State, vm: &Vm) -> GuestContext {
    let mut macs = BTreeMap::new();
    for (k, v) in &vm.config {
        if is_net_key(k) {
            if let Some(first) = v.split(',').next() {
                if let Some((_, mac)) = first.split_once('=') {
                    macs.insert(k[3..].parse().unwrap_or(0), mac.to_string());
                }
            }
        }
    }
    let mut media = Vec::new();
    for (k, v) in &vm.config {
        if is_disk_key(k) && v.contains("media=cdrom") {
            let volid = v.split(',').next().unwrap_or("").to_string();
            let data = st
                .volumes
                .get(&(vm.node.clone(), volid.clone()))
                .and_then(|x| x.data.clone());
            media.push(AttachedMedia {
                key: k.clone(),
                volid,
                data,
            });
        }
    }
    let boot_image = vm
        .imported_from
        .iter()
        .next()
        .map(|(k, src)| BootImage {
            disk: k.clone(),
            volid: src.clone(),
            source_url: st
                .volumes
                .values()
                .find(|v| &v.volid == src)
                .and_then(|v| v.source_url.clone()),
        })
        .or_else(|| {
            media.iter().find(|m| m.data.is_none()).map(|m| BootImage {
                disk: m.key.clone(),
                volid: m.volid.clone(),
                source_url: st
                    .volumes
                    .values()
                    .find(|v| v.volid == m.volid)
                    .and_then(|v| v.source_url.clone()),
            })
        });
    let _ = shared;
    GuestContext {
        vmid: vm.vmid,
        node: vm.node.clone(),
        name: vm.config.get("name").cloned(),
        config: vm.config.clone(),
        tags: vm
            .config
            .get("tags")
            .map(|t| {
                t.split([';', ',', ' '])
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        macs,
        dhcp: vm.dhcp.clone(),
        boot_image,
        media,
    }
}

/// SDN vnets with a DHCP server in the applied SDN configuration: the zone has `dhcp` set
/// (dnsmasq) and a subnet of the vnet has a `dhcp-range`.
fn dhcp_vnets(sdn: &Sdn) -> Vec<String> {
    let Some(running) = sdn.running.as_deref() else {
        return Vec::new();
    };
    let (zones, vnets, subnets) = running;
    vnets
        .iter()
        .filter(|(_, v)| {
            v.get("zone")
                .and_then(Value::as_str)
                .and_then(|z| zones.get(z))
                .is_some_and(|z| z.get("dhcp").and_then(Value::as_str).is_some())
        })
        .filter(|(name, _)| {
            subnets.values().any(|s| {
                s.get("vnet").and_then(Value::as_str) == Some(name.as_str())
                    && s.get("dhcp-range").is_some_and(|r| match r {
                        Value::Array(a) => !a.is_empty(),
                        Value::String(x) => !x.is_empty(),
                        _ => false,
                    })
            })
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// Mark the VM running and schedule its boot.
pub(super) fn power_on(shared: &Arc<Shared>, node: &str, id: u32, slow: Option<Duration>) {
    let generation = {
        let mut st = shared.st();
        let start = shared.cfg.dhcp_pool_start;
        let mut next = st.dhcp_next;
        let Some(vm) = st.vms.get_mut(&id) else {
            return;
        };
        // Pending changes apply on a fresh start.
        let pending = std::mem::take(&mut vm.pending);
        vm.config.extend(pending);
        for k in std::mem::take(&mut vm.pending_delete) {
            vm.config.remove(&k);
        }
        vm.power = Power::Running;
        vm.started_at = now();
        vm.generation += 1;
        vm.booted = false;
        let nics: Vec<u32> = vm
            .config
            .keys()
            .filter(|k| is_net_key(k))
            .filter_map(|k| k[3..].parse().ok())
            .collect();
        // A NIC gets a lease only when its bridge has a DHCP server; static addresses are
        // the guest's business (its NoCloud network configuration).
        let bridges: Vec<(u32, String)> = nics
            .into_iter()
            .filter_map(|i| {
                let net = vm.config.get(&format!("net{i}"))?;
                let bridge = net.split(',').find_map(|p| p.strip_prefix("bridge="))?;
                Some((i, bridge.to_string()))
            })
            .collect();
        let sdn_dhcp = dhcp_vnets(&st.sdn);
        let served: Vec<u32> = bridges
            .into_iter()
            .filter(|(_, b)| shared.cfg.dhcp_bridges.contains(b) || sdn_dhcp.contains(b))
            .map(|(i, _)| i)
            .collect();
        let Some(vm) = st.vms.get_mut(&id) else {
            return;
        };
        vm.dhcp.retain(|i, _| served.contains(i));
        for i in served {
            if vm.dhcp.contains_key(&i) {
                continue;
            }
            let ip = Ipv4Addr::from(u32::from(start).wrapping_add(next));
            next += 1;
            vm.dhcp.insert(i, ip);
        }
        let g = vm.generation;
        st.dhcp_next = next;
        g
    };
    let shared = shared.clone();
    let node = node.to_string();
    let delay = shared.cfg.timings.boot + slow.unwrap_or_default();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let (gctx, existing) = {
            let st = shared.st();
            let Some(vm) = st.vms.get(&id) else { return };
            if vm.generation != generation || vm.power != Power::Running || vm.node != node {
                return;
            }
            (guest_context(&shared, &st, vm), vm.appliance.clone())
        };
        let app: Arc<dyn GuestAppliance> = match existing {
            Some(a) => a,
            None => shared.appliances.select(&gctx),
        };
        let r = app.boot(&gctx).await;
        let mut st = shared.st();
        if let Some(vm) = st.vms.get_mut(&id) {
            if vm.generation == generation && vm.power == Power::Running {
                vm.appliance = Some(app);
                vm.booted = r.is_ok();
            }
        }
    });
}

pub(super) async fn qemu_start(ctx: &mut Ctx) -> R {
    let (node, id) = vm_exists(ctx)?;
    {
        let st = ctx.shared.st();
        let vm = st.vms.get(&id).ok_or_else(|| no_conf(&node, id))?;
        if let Some(l) = vm.config.get("lock") {
            if !ctx.flag("skiplock").unwrap_or(false) {
                return Err(ApiError::die(format!("VM is locked ({l})")));
            }
        }
        if vm.power == Power::Running {
            return Err(ApiError::die(format!("VM {id} already running")));
        }
    }
    let shared = ctx.shared.clone();
    let slow = ctx.slow_boot;
    let t = shared.cfg.timings.task;
    let node2 = node.clone();
    let upid = start_task(ctx, &node, "qmstart", &id.to_string(), move |log| {
        Box::pin(async move {
            tokio::time::sleep(t).await;
            // Bridges must exist at start.
            let missing = {
                let st = shared.st();
                let Some(vm) = st.vms.get(&id) else {
                    return Err(format!(
                        "Configuration file 'nodes/{node2}/qemu-server/{id}.conf' does not exist"
                    ));
                };
                let mut missing = None;
                for (k, v) in &vm.config {
                    if is_net_key(k) {
                        if let Some(br) = v.split(',').find_map(|p| p.strip_prefix("bridge=")) {
                            let ok = st
                                .net
                                .get(&node2)
                                .map(|n| n.active.contains_key(br))
                                .unwrap_or(false)
                                || st
                                    .sdn
                                    .running
                                    .as_ref()
                                    .map(|r| r.1.contains_key(br))
                                    .unwrap_or(false);
                            if !ok {
                                missing = Some(br.to_string());
                            }
                        }
                    }
                }
                missing
            };
            if let Some(br) = missing {
                return Err(format!("bridge '{br}' does not exist"));
            }
            log.log(format!("starting VM {id}"));
            power_on(&shared, &node2, id, slow);
            Ok(())
        })
    });
    Ok(json!(upid))
}

pub(super) async fn qemu_stop(ctx: &mut Ctx, kind: &str) -> R {
    let (node, id) = vm_exists(ctx)?;
    {
        let st = ctx.shared.st();
        let vm = st.vms.get(&id).ok_or_else(|| no_conf(&node, id))?;
        if vm.power != Power::Running {
            return Err(ApiError::die(format!("VM {id} not running")));
        }
        if let Some(l) = vm.config.get("lock") {
            if !ctx.flag("skiplock").unwrap_or(false) {
                return Err(ApiError::die(format!("VM is locked ({l})")));
            }
        }
    }
    let shared = ctx.shared.clone();
    let graceful = kind == "qmshutdown";
    let delay = if graceful {
        shared.cfg.timings.shutdown
    } else {
        shared.cfg.timings.task
    };
    let upid = start_task(ctx, &node, kind, &id.to_string(), move |_log| {
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            let (app, gctx) = {
                let st = shared.st();
                let Some(vm) = st.vms.get(&id) else {
                    return Ok(());
                };
                (vm.appliance.clone(), guest_context(&shared, &st, vm))
            };
            if let Some(a) = app {
                a.shutdown(&gctx).await;
            }
            let mut st = shared.st();
            if let Some(vm) = st.vms.get_mut(&id) {
                vm.power = Power::Stopped;
                vm.generation += 1;
                vm.booted = false;
                vm.exec.clear();
                let pending = std::mem::take(&mut vm.pending);
                vm.config.extend(pending);
                for k in std::mem::take(&mut vm.pending_delete) {
                    vm.config.remove(&k);
                }
            }
            Ok(())
        })
    });
    Ok(json!(upid))
}

pub(super) async fn qemu_reboot(ctx: &mut Ctx) -> R {
    let (node, id) = vm_exists(ctx)?;
    {
        let st = ctx.shared.st();
        if st.vms.get(&id).map(|v| v.power) != Some(Power::Running) {
            return Err(ApiError::die(format!("VM {id} not running")));
        }
    }
    let shared = ctx.shared.clone();
    let slow = ctx.slow_boot;
    let d = shared.cfg.timings.shutdown;
    let node2 = node.clone();
    let upid = start_task(ctx, &node, "qmreboot", &id.to_string(), move |_| {
        Box::pin(async move {
            tokio::time::sleep(d).await;
            power_on(&shared, &node2, id, slow);
            Ok(())
        })
    });
    Ok(json!(upid))
}
