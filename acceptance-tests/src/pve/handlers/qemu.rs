//! `/nodes/{node}/qemu`: list, create (with its disks and the worker that finishes it) and delete.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Value};

use super::cluster::{cores, mem_bytes, uptime};
use super::power::power_on;
use super::qemu_config::{check_key_perms, config_updates, normalize_net, plan_disk};
use super::tasks::start_task;
use super::{is_disk_key, is_net_key, no_conf, node_check, vm_exists, vmid, R};
use crate::pve::server::{ApiError, Ctx};
use crate::pve::state::{Power, Vm, Volume};

pub(super) fn qemu_list(ctx: &Ctx) -> R {
    let node = node_check(ctx)?;
    let st = ctx.shared.st();
    let list: Vec<Value> = st
        .vms
        .values()
        .filter(|v| v.node == node && ctx.caller.has(&format!("/vms/{}", v.vmid), "VM.Audit"))
        .map(|vm| {
            let mut o = json!({"vmid": vm.vmid, "status": if vm.power == Power::Running {"running"} else {"stopped"},
                "maxmem": mem_bytes(vm), "cpus": cores(vm), "uptime": uptime(vm), "mem": 0, "cpu": 0, "maxdisk": 0,
                "disk": 0, "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0});
            if let Some(map) = o.as_object_mut() {
                map.remove("disk");
            }
            if let Some(n) = vm.config.get("name") {
                o["name"] = json!(n);
            }
            if let Some(t) = vm.config.get("tags") {
                o["tags"] = json!(t);
            }
            if let Some(l) = vm.config.get("lock") {
                o["lock"] = json!(l);
            }
            o
        })
        .collect();
    Ok(Value::Array(list))
}

pub(super) async fn qemu_create(ctx: &mut Ctx) -> R {
    let node = node_check(ctx)?;
    let id = vmid(ctx)?;
    ctx.require(&format!("/vms/{id}"), "VM.Allocate")?;
    let updates = config_updates(ctx);
    let keys: Vec<String> = updates.iter().map(|(k, _)| k.clone()).collect();
    check_key_perms(ctx, id, &keys)?;
    if ctx.p("archive").is_some() {
        return Err(ApiError::new(501, "restore is not emulated"));
    }
    let start_after = ctx.flag("start").unwrap_or(false);
    let mut nets = BTreeMap::new();
    for (k, v) in &updates {
        if is_net_key(k) {
            nets.insert(k.clone(), normalize_net(ctx, id, k, v)?);
        }
    }
    // Plan everything before touching state.
    let (config, volumes, imported) = {
        let st = ctx.shared.st();
        if let Some(vm) = st.vms.get(&id) {
            return Err(ApiError::die(format!(
                "VM {id} already exists on node '{}'",
                vm.node
            )));
        }
        let mut config = BTreeMap::new();
        let mut volumes = Vec::new();
        let mut imported = BTreeMap::new();
        let mut counter = 0;
        for (k, v) in &updates {
            if is_disk_key(k) {
                let plan = plan_disk(ctx, &st, &node, id, k, v, &mut counter)?;
                volumes.extend(plan.new_volumes);
                if let Some(src) = plan.imported_from {
                    imported.insert(k.clone(), src);
                }
                config.insert(k.clone(), plan.value);
            } else if let Some(n) = nets.get(k) {
                config.insert(k.clone(), n.clone());
            } else {
                config.insert(k.clone(), v.clone());
            }
        }
        (config, volumes, imported)
    };
    finish_create(ctx, node, id, config, volumes, imported, start_after)
}

fn finish_create(
    ctx: &mut Ctx,
    node: String,
    id: u32,
    mut config: BTreeMap<String, String>,
    volumes: Vec<Volume>,
    imported: BTreeMap<String, String>,
    start_after: bool,
) -> R {
    config.insert("lock".into(), "create".into());
    config
        .entry("smbios1".into())
        .or_insert_with(|| format!("uuid={}", pseudo_uuid(id)));
    config
        .entry("vmgenid".into())
        .or_insert_with(|| pseudo_uuid(id ^ 0x5a5a));
    {
        let mut st = ctx.shared.st();
        if st.vms.contains_key(&id) {
            return Err(ApiError::die(format!(
                "VM {id} already exists on node '{node}'"
            )));
        }
        st.vms.insert(
            id,
            Vm {
                vmid: id,
                node: node.clone(),
                config,
                pending: BTreeMap::new(),
                pending_delete: BTreeSet::new(),
                power: Power::Stopped,
                started_at: 0,
                generation: 0,
                booted: false,
                imported_from: imported.clone(),
                appliance: None,
                exec: Default::default(),
                next_pid: 1000,
                dhcp: BTreeMap::new(),
            },
        );
    }
    let shared = ctx.shared.clone();
    let task_time = shared.cfg.timings.task;
    let import_time = if imported.is_empty() {
        Duration::ZERO
    } else {
        shared.cfg.timings.download
    };
    let node2 = node.clone();
    // A failing create rolls back like PVE's: no config, no disks left.
    let fail = ctx.fail_task.take();
    let upid = start_task(ctx, &node, "qmcreate", &id.to_string(), move |log| {
        Box::pin(async move {
            let lock = shared.vm_lock(id);
            let _g = lock.lock_owned().await;
            // Allocations on a storage are serialised cluster-wide (PVE's cfs-lock).
            let mut storages: Vec<String> = volumes.iter().map(|v| v.storage.clone()).collect();
            storages.sort();
            storages.dedup();
            let mut guards = Vec::new();
            for sid in &storages {
                let l = shared.storage_lock(sid);
                match tokio::time::timeout(shared.cfg.timings.storage_lock_timeout, l.lock_owned())
                    .await
                {
                    Ok(g) => guards.push(g),
                    Err(_) => {
                        shared.st().vms.remove(&id);
                        let msg = format!("unable to create VM {id} - cfs-lock 'storage-{sid}' error: got lock request timeout");
                        log.log(msg.clone());
                        return Err(msg);
                    }
                }
            }
            tokio::time::sleep(shared.cfg.timings.storage_alloc).await;
            drop(guards);
            tokio::time::sleep(task_time + import_time).await;
            if let Some(msg) = fail {
                shared.st().vms.remove(&id);
                log.log(format!("unable to create VM {id} - {msg}"));
                return Err(format!("unable to create VM {id} - {msg}"));
            }
            for v in &volumes {
                log.log(format!(
                    "  Logical volume \"{}\" created.",
                    v.volid.split(':').nth(1).unwrap_or("")
                ));
            }
            for (k, src) in &imported {
                log.log(format!("importing disk '{src}' to VM {id} ..."));
                log.log("transferred 100.0% (100.00%)".to_string());
                log.log(format!("{k}: successfully created disk"));
            }
            {
                let mut st = shared.st();
                for v in volumes {
                    st.volumes.insert((node2.clone(), v.volid.clone()), v);
                }
                if let Some(vm) = st.vms.get_mut(&id) {
                    vm.config.remove("lock");
                } else {
                    return Err(format!("VM {id} vanished during create"));
                }
            }
            Ok(())
        })
    });
    if start_after {
        // Start when the create task has finished (like `qm create --start`).
        let shared = ctx.shared.clone();
        let up = upid.clone();
        let node = node.clone();
        let slow = ctx.slow_boot;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let done = shared
                    .st()
                    .tasks
                    .iter()
                    .find(|t| t.upid == up)
                    .map(|t| t.exitstatus.clone());
                match done {
                    Some(Some(s)) if s == "OK" => break,
                    Some(None) => continue,
                    _ => return,
                }
            }
            power_on(&shared, &node, id, slow);
        });
    }
    Ok(json!(upid))
}

fn pseudo_uuid(seed: u32) -> String {
    let h = (seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        (h >> 20) & 0xfff,
        h & 0xffff_ffff_ffff
    )
}

pub(super) async fn qemu_delete(ctx: &mut Ctx) -> R {
    let (node, id) = vm_exists(ctx)?;
    {
        let st = ctx.shared.st();
        let vm = st.vms.get(&id).ok_or_else(|| no_conf(&node, id))?;
        if vm.power == Power::Running {
            return Err(ApiError::die(format!(
                "VM {id} is running - destroy failed"
            )));
        }
        if let Some(l) = vm.config.get("lock") {
            if !ctx.flag("skiplock").unwrap_or(false) {
                return Err(ApiError::die(format!("VM is locked ({l})")));
            }
        }
        if vm
            .config
            .get("protection")
            .map(|p| p == "1")
            .unwrap_or(false)
        {
            return Err(ApiError::die("can't remove VM - protection mode enabled"));
        }
    }
    let purge = ctx.flag("purge").unwrap_or(false);
    let unref = ctx.flag("destroy-unreferenced-disks").unwrap_or(false);
    let shared = ctx.shared.clone();
    let t = shared.cfg.timings.task;
    let node2 = node.clone();
    let upid = start_task(ctx, &node, "qmdestroy", &id.to_string(), move |log| {
        Box::pin(async move {
            let lock = shared.vm_lock(id);
            let _g = tokio::time::timeout(shared.cfg.timings.lock_timeout, lock.lock_owned())
                .await
                .map_err(|_| {
                    format!("can't lock file '/var/lock/qemu-server/lock-{id}.conf' - got timeout")
                })?;
            tokio::time::sleep(t).await;
            let mut st = shared.st();
            let Some(vm) = st.vms.remove(&id) else {
                return Err(format!(
                    "Configuration file 'nodes/{node2}/qemu-server/{id}.conf' does not exist"
                ));
            };
            let referenced: BTreeSet<String> = vm
                .config
                .iter()
                .filter(|(k, _)| is_disk_key(k))
                .map(|(_, v)| v.split(',').next().unwrap_or("").to_string())
                .collect();
            let owned: Vec<(String, String)> = st
                .volumes
                .iter()
                .filter(|(_, v)| {
                    v.vmid == Some(id)
                        && v.content == "images"
                        && (unref || referenced.contains(&v.volid))
                })
                .map(|(k, _)| k.clone())
                .collect();
            let mut lines = Vec::new();
            for k in owned {
                lines.push(format!(
                    "  Logical volume \"{}\" successfully removed.",
                    k.1.split(':').nth(1).unwrap_or("")
                ));
                st.volumes.remove(&k);
            }
            if purge {
                st.fw_vms.remove(&id);
                lines.push(format!("purging VM {id} from related configurations.."));
            }
            drop(st);
            for l in lines {
                log.log(l);
            }
            Ok(())
        })
    });
    Ok(json!(upid))
}
