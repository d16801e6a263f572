//! `/nodes/{node}/qemu/{vmid}/config`, `pending` and `resize`: the privileges each key needs,
//! disk and NIC normalization, and config updates in the order PVE allocates drives.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::tasks::{start_task, with_vm_lock};
use super::{
    is_disk_key, is_net_key, no_conf, parse_size, prop_format, require_content, size_str,
    storage_of, vm_exists, R,
};
use crate::pve::server::{ApiError, Ctx};
use crate::pve::state::{digest_of, now, Power, State, Volume};
use crate::spec::{parse_property_string, print_property_string};

/// Privileges PVE requires to set each config key (`check_vm_modify_config_perm`).
fn key_privilege(key: &str) -> &'static str {
    const CPU: &[&str] = &[
        "cores", "sockets", "cpu", "cpulimit", "cpuunits", "vcpus", "numa", "affinity", "cpuset",
    ];
    const MEM: &[&str] = &[
        "memory",
        "balloon",
        "shares",
        "hugepages",
        "keephugepages",
        "allow-ksm",
    ];
    const HW: &[&str] = &[
        "hotplug",
        "kvm",
        "machine",
        "scsihw",
        "smbios1",
        "tablet",
        "vga",
        "watchdog",
        "audio0",
        "bios",
        "arch",
        "rng0",
        "serial0",
        "serial1",
        "serial2",
        "serial3",
        "amd-sev",
        "intel-tdx",
        "vmgenid",
    ];
    const CI: &[&str] = &[
        "cicustom",
        "cipassword",
        "citype",
        "ciuser",
        "ciupgrade",
        "nameserver",
        "searchdomain",
        "sshkeys",
    ];
    if CPU.contains(&key) {
        "VM.Config.CPU"
    } else if MEM.contains(&key) {
        "VM.Config.Memory"
    } else if HW.contains(&key) {
        "VM.Config.HWType"
    } else if CI.contains(&key) || key.starts_with("ipconfig") {
        "VM.Config.Cloudinit"
    } else if is_net_key(key) {
        "VM.Config.Network"
    } else if is_disk_key(key) {
        "VM.Config.Disk"
    } else if key == "freeze" {
        "VM.PowerMgmt"
    } else {
        "VM.Config.Options"
    }
}

const NON_CONFIG: &[&str] = &[
    "node",
    "vmid",
    "start",
    "pool",
    "storage",
    "unique",
    "archive",
    "force",
    "live-restore",
    "import-working-storage",
    "bwlimit",
    "delete",
    "revert",
    "digest",
    "skiplock",
    "background_delay",
    "ha-managed",
];

pub(super) fn check_key_perms(ctx: &Ctx, vmid: u32, keys: &[String]) -> Result<(), ApiError> {
    let path = format!("/vms/{vmid}");
    for k in keys {
        if NON_CONFIG.contains(&k.as_str()) {
            continue;
        }
        let mut privilege = key_privilege(k);
        if k.starts_with("ide") || k.starts_with("sata") {
            if let Some(v) = ctx.p(k) {
                if v.contains("media=cdrom") || v == "none" || v == "cdrom" {
                    privilege = "VM.Config.CDROM";
                }
            }
        }
        ctx.require(&path, privilege)?;
        if is_net_key(k) {
            if let Some(fmt) = prop_format(ctx, k) {
                if let Ok(net) = parse_property_string(&fmt, ctx.p(k).unwrap_or("")) {
                    if let Some(br) = net.get("bridge") {
                        // PVE 8+: bridges need SDN.Use on the local network zone.
                        let zone_path = {
                            let st = ctx.shared.st();
                            match st
                                .sdn
                                .vnets
                                .get(br)
                                .and_then(|v| v.get("zone"))
                                .and_then(Value::as_str)
                            {
                                Some(z) => format!("/sdn/zones/{z}/{br}"),
                                None => format!("/sdn/zones/localnetwork/{br}"),
                            }
                        };
                        ctx.require(&zone_path, "SDN.Use")?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn gen_mac(vmid: u32, idx: u32) -> String {
    let h = (vmid as u64)
        .wrapping_mul(0x9E37_79B9)
        .wrapping_add(idx as u64 * 7919);
    format!(
        "BC:24:11:{:02X}:{:02X}:{:02X}",
        (h >> 16) & 0xff,
        (h >> 8) & 0xff,
        h & 0xff
    )
}

/// Result of preparing a disk: the new config string and volumes to create.
pub(super) struct DiskPlan {
    pub(super) value: String,
    pub(super) new_volumes: Vec<Volume>,
    pub(super) imported_from: Option<String>,
}

pub(super) fn plan_disk(
    ctx: &Ctx,
    st: &State,
    node: &str,
    vmid: u32,
    key: &str,
    raw: &str,
    disk_counter: &mut u32,
) -> Result<DiskPlan, ApiError> {
    let fmt = prop_format(ctx, key).ok_or_else(|| ApiError::param(key, "unknown disk key"))?;
    let mut d = parse_property_string(&fmt, raw).map_err(|e| ApiError::param(key, e))?;
    let file = d.get("file").cloned().unwrap_or_default();
    let mut new_volumes = Vec::new();
    let mut imported_from = None;
    if file == "none" || file == "cdrom" || file.starts_with('/') {
        return Ok(DiskPlan {
            value: raw.to_string(),
            new_volumes,
            imported_from,
        });
    }
    let (sid, rest) = file
        .split_once(':')
        .ok_or_else(|| ApiError::param(key, format!("unable to parse volume ID '{file}'")))?;
    let storage = storage_of(ctx, sid, node)?;
    let is_cdrom = d.get("media").map(|m| m == "cdrom").unwrap_or(false);
    let alloc_size: Option<f64> = rest.parse::<f64>().ok();
    if let Some(src) = d.get("import-from").cloned() {
        if alloc_size != Some(0.0) {
            return Err(ApiError::param(
                key,
                "'import-from' requires special syntax - use <storage ID>:0,import-from=<source>",
            ));
        }
        let (ssid, _) = src.split_once(':').unwrap_or(("", ""));
        let source = st
            .volumes
            .get(&(node.to_string(), src.clone()))
            .or_else(|| {
                st.volumes.values().find(|v| {
                    v.volid == src
                        && storage_of(ctx, ssid, node)
                            .map(|s| s.shared)
                            .unwrap_or(false)
                })
            })
            .ok_or_else(|| ApiError::die(format!("volume '{src}' does not exist")))?;
        if !matches!(source.content.as_str(), "import" | "images" | "iso") {
            return Err(ApiError::die(format!(
                "{key}: '{src}' has wrong type '{}' - needs to be 'images' or 'import'",
                source.content
            )));
        }
        ctx.require_any(
            &format!("/storage/{ssid}"),
            &["Datastore.Audit", "Datastore.AllocateSpace"],
        )?;
        imported_from = Some(src.clone());
        d.remove("import-from");
        require_content(&storage, "images")?;
        ctx.require(&format!("/storage/{sid}"), "Datastore.AllocateSpace")?;
        let size = source.size;
        let volid = next_disk_volid(st, sid, node, vmid, disk_counter);
        new_volumes.push(Volume {
            volid: volid.clone(),
            storage: sid.into(),
            node: node.into(),
            content: "images".into(),
            format: "raw".into(),
            size,
            ctime: now(),
            vmid: Some(vmid),
            data: None,
            source_url: None,
        });
        d.insert("file".into(), volid);
        d.insert("size".into(), size_str(size));
    } else if rest == "cloudinit" {
        require_content(&storage, "images")?;
        // PVE's check_storage_access: a cloud-init drive allocates a volume.
        ctx.require(&format!("/storage/{sid}"), "Datastore.AllocateSpace")?;
        let volid = format!("{sid}:vm-{vmid}-cloudinit");
        new_volumes.push(Volume {
            volid: volid.clone(),
            storage: sid.into(),
            node: node.into(),
            content: "images".into(),
            format: "raw".into(),
            size: 4 << 20,
            ctime: now(),
            vmid: Some(vmid),
            data: None,
            source_url: None,
        });
        d.insert("file".into(), volid);
        d.insert("media".into(), "cdrom".into());
    } else if let Some(gb) = alloc_size {
        require_content(&storage, "images")?;
        ctx.require(&format!("/storage/{sid}"), "Datastore.AllocateSpace")?;
        let size = match key {
            "efidisk0" => 4 << 20,
            "tpmstate0" => 4 << 20,
            _ => (gb * 1024.0 * 1024.0 * 1024.0) as u64,
        };
        if size == 0 {
            return Err(ApiError::param(key, "disk size must be greater than zero"));
        }
        let volid = next_disk_volid(st, sid, node, vmid, disk_counter);
        new_volumes.push(Volume {
            volid: volid.clone(),
            storage: sid.into(),
            node: node.into(),
            content: "images".into(),
            format: "raw".into(),
            size,
            ctime: now(),
            vmid: Some(vmid),
            data: None,
            source_url: None,
        });
        d.insert("file".into(), volid);
        d.insert("size".into(), size_str(size));
    } else {
        // existing volume (ISO for a cdrom, or an existing disk)
        let vol = st
            .volumes
            .get(&(node.to_string(), file.clone()))
            .ok_or_else(|| ApiError::die(format!("volume '{file}' does not exist")))?;
        if is_cdrom && vol.content != "iso" {
            return Err(ApiError::die(format!(
                "{key}: '{file}' is not an ISO image"
            )));
        }
        ctx.require_any(
            &format!("/storage/{sid}"),
            &["Datastore.Audit", "Datastore.AllocateSpace"],
        )?;
        d.insert("size".into(), size_str(vol.size));
    }
    Ok(DiskPlan {
        value: print_property_string(&fmt, &d, &[]),
        new_volumes,
        imported_from,
    })
}

fn next_disk_volid(st: &State, sid: &str, node: &str, vmid: u32, counter: &mut u32) -> String {
    loop {
        let v = format!("{sid}:vm-{vmid}-disk-{}", *counter);
        *counter += 1;
        if !st.volumes.contains_key(&(node.to_string(), v.clone())) {
            return v;
        }
    }
}

pub(super) fn normalize_net(
    ctx: &Ctx,
    vmid: u32,
    key: &str,
    raw: &str,
) -> Result<String, ApiError> {
    let fmt = prop_format(ctx, key).ok_or_else(|| ApiError::param(key, "unknown key"))?;
    let mut n = parse_property_string(&fmt, raw).map_err(|e| ApiError::param(key, e))?;
    let model = n.remove("model").unwrap_or_else(|| "virtio".into());
    let idx: u32 = key[3..].parse().unwrap_or(0);
    let mac = n.remove("macaddr").unwrap_or_else(|| gen_mac(vmid, idx));
    let mut parts = vec![format!("{model}={}", mac.to_ascii_uppercase())];
    for (k, v) in n {
        parts.push(format!("{k}={v}"));
    }
    Ok(parts.join(","))
}

/// Config updates in the order PVE allocates drives (ide, sata, scsi, virtio, efidisk0,
/// tpmstate0), other keys after.
pub(super) fn config_updates(ctx: &Ctx) -> Vec<(String, String)> {
    let rank = |k: &str| -> (u8, u32) {
        let num = |p: &str| k.strip_prefix(p).and_then(|n| n.parse::<u32>().ok());
        if let Some(n) = num("ide") {
            (0, n)
        } else if let Some(n) = num("sata") {
            (1, n)
        } else if let Some(n) = num("scsi") {
            (2, n)
        } else if let Some(n) = num("virtio") {
            (3, n)
        } else if k == "efidisk0" {
            (4, 0)
        } else if k == "tpmstate0" {
            (5, 0)
        } else {
            (6, 0)
        }
    };
    let mut v: Vec<(String, String)> = ctx
        .params
        .iter()
        .filter(|(k, _)| !NON_CONFIG.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.as_str().to_string()))
        .collect();
    v.sort_by(|a, b| rank(&a.0).cmp(&rank(&b.0)).then_with(|| a.0.cmp(&b.0)));
    v
}

pub(super) fn qemu_config_get(ctx: &Ctx) -> R {
    let (_, id) = vm_exists(ctx)?;
    let current = ctx.flag("current").unwrap_or(false);
    let st = ctx.shared.st();
    let vm = st.vms.get(&id).ok_or_else(|| ApiError::die("vanished"))?;
    let mut cfg = vm.config.clone();
    if !current {
        for (k, v) in &vm.pending {
            cfg.insert(k.clone(), v.clone());
        }
        for k in &vm.pending_delete {
            cfg.remove(k);
        }
    }
    let mut out = Map::new();
    for (k, v) in &cfg {
        out.insert(k.clone(), typed_config_value(ctx, k, v));
    }
    out.insert("digest".into(), json!(digest_of(vm.config.iter())));
    Ok(Value::Object(out))
}

/// Config values come back typed (integers/numbers as JSON numbers).
fn typed_config_value(ctx: &Ctx, k: &str, v: &str) -> Value {
    let ty = ctx
        .shared
        .schema
        .endpoint("GET", "/nodes/{node}/qemu/{vmid}/config")
        .and_then(|ep| {
            ep.returns()
                .and_then(|r| r.get("properties"))
                .and_then(Value::as_object)
                .and_then(|p| crate::spec::lookup_prop_pub(p, k))
                .and_then(|s| s.get("type"))
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    match ty.as_deref() {
        Some("integer") | Some("boolean") => {
            v.parse::<i64>().map(Value::from).unwrap_or_else(|_| {
                json!(if matches!(v, "true" | "yes" | "on") {
                    1
                } else {
                    0
                })
            })
        }
        Some("number") => v.parse::<f64>().map(|f| json!(f)).unwrap_or(json!(v)),
        _ => json!(v),
    }
}

fn hotpluggable(k: &str) -> bool {
    is_net_key(k)
        || is_disk_key(k)
        || matches!(
            k,
            "name"
                | "description"
                | "onboot"
                | "protection"
                | "tags"
                | "startup"
                | "hookscript"
                | "lock"
                | "agent"
                | "ciuser"
                | "cipassword"
                | "sshkeys"
                | "nameserver"
                | "searchdomain"
                | "cicustom"
        )
        || k.starts_with("ipconfig")
}

pub(super) async fn qemu_config_set(ctx: &mut Ctx, async_task: bool) -> R {
    let (node, id) = vm_exists(ctx)?;
    let updates = config_updates(ctx);
    let deletes: Vec<String> = ctx
        .p("delete")
        .map(|d| {
            d.split([',', ';', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let mut keys: Vec<String> = updates.iter().map(|(k, _)| k.clone()).collect();
    keys.extend(deletes.iter().cloned());
    check_key_perms(ctx, id, &keys)?;
    for k in &deletes {
        if updates.iter().any(|(u, _)| u == k) {
            return Err(ApiError::param(k, "can't set and delete the same option"));
        }
    }
    let mut nets = BTreeMap::new();
    for (k, v) in &updates {
        if is_net_key(k) {
            nets.insert(k.clone(), normalize_net(ctx, id, k, v)?);
        }
    }
    let digest = ctx.p("digest").map(str::to_string);
    let shared = ctx.shared.clone();
    let skiplock = ctx.flag("skiplock").unwrap_or(false);
    let ctx_ref = &*ctx;
    with_vm_lock(&shared, id, || {
        let mut st = shared.st();
        let vm = st.vms.get(&id).ok_or_else(|| no_conf(&node, id))?;
        if let Some(l) = vm.config.get("lock") {
            if !skiplock {
                return Err(ApiError::die(format!("VM is locked ({l})")));
            }
        }
        if let Some(d) = &digest {
            if *d != digest_of(vm.config.iter()) {
                return Err(ApiError::die(
                    "detected modified configuration - file changed by other user? Try again.",
                ));
            }
        }
        let running = vm.power == Power::Running;
        let mut counter = 0;
        let mut planned = Vec::new();
        let mut new_vols = Vec::new();
        let mut imported = Vec::new();
        for (k, v) in &updates {
            if is_disk_key(k) {
                let plan = plan_disk(ctx_ref, &st, &node, id, k, v, &mut counter)?;
                new_vols.extend(plan.new_volumes);
                if let Some(src) = plan.imported_from {
                    imported.push((k.clone(), src));
                }
                planned.push((k.clone(), plan.value));
            } else if let Some(n) = nets.get(k) {
                planned.push((k.clone(), n.clone()));
            } else {
                planned.push((k.clone(), v.clone()));
            }
        }
        for v in new_vols {
            st.volumes.insert((node.clone(), v.volid.clone()), v);
        }
        let vm = st.vms.get_mut(&id).ok_or_else(|| no_conf(&node, id))?;
        for (k, src) in imported {
            vm.imported_from.insert(k, src);
        }
        for (k, v) in planned {
            if running && !hotpluggable(&k) {
                vm.pending.insert(k.clone(), v);
                vm.pending_delete.remove(&k);
            } else {
                vm.config.insert(k.clone(), v);
                vm.pending.remove(&k);
            }
        }
        let mut unused = Vec::new();
        for k in &deletes {
            if running && !hotpluggable(k) {
                vm.pending_delete.insert(k.clone());
            } else {
                if let Some(old) = vm.config.remove(k) {
                    if is_disk_key(k) && !k.starts_with("unused") && !old.contains("media=cdrom") {
                        unused.push(old.split(',').next().unwrap_or("").to_string());
                    }
                }
                vm.pending.remove(k);
            }
        }
        // Detached disks become unusedN like in PVE.
        for vol in unused {
            let mut i = 0;
            while vm.config.contains_key(&format!("unused{i}")) {
                i += 1;
            }
            vm.config.insert(format!("unused{i}"), vol);
        }
        Ok(())
    })
    .await?;
    if async_task {
        let upid = start_task(ctx, &node, "qmconfig", &id.to_string(), |_log| {
            Box::pin(async { Ok(()) })
        });
        Ok(json!(upid))
    } else {
        Ok(Value::Null)
    }
}

pub(super) fn qemu_pending(ctx: &Ctx) -> R {
    let (_, id) = vm_exists(ctx)?;
    let st = ctx.shared.st();
    let vm = st.vms.get(&id).ok_or_else(|| ApiError::die("vanished"))?;
    let mut keys: BTreeSet<&String> = vm.config.keys().collect();
    keys.extend(vm.pending.keys());
    keys.extend(vm.pending_delete.iter());
    let mut out = Vec::new();
    for k in keys {
        let mut o = json!({"key": k});
        if let Some(v) = vm.config.get(k) {
            o["value"] = json!(v);
        }
        if let Some(v) = vm.pending.get(k) {
            o["pending"] = json!(v);
        }
        if vm.pending_delete.contains(k) {
            o["delete"] = json!(1);
        }
        out.push(o);
    }
    Ok(Value::Array(out))
}

pub(super) async fn qemu_resize(ctx: &mut Ctx) -> R {
    let (node, id) = vm_exists(ctx)?;
    ctx.require(&format!("/vms/{id}"), "VM.Config.Disk")?;
    let disk = ctx.req("disk")?.to_string();
    let size = ctx.req("size")?.to_string();
    let shared = ctx.shared.clone();
    let ctx_ref = &*ctx;
    with_vm_lock(&shared, id, || {
        let mut st = shared.st();
        let vm = st.vms.get(&id).ok_or_else(|| no_conf(&node, id))?;
        let cur = vm
            .config
            .get(&disk)
            .cloned()
            .ok_or_else(|| ApiError::die(format!("disk '{disk}' does not exist")))?;
        let fmt = prop_format(ctx_ref, &disk).ok_or_else(|| ApiError::die("bad disk"))?;
        let mut d = parse_property_string(&fmt, &cur).map_err(ApiError::die)?;
        let old = d.get("size").and_then(|s| parse_size(s)).unwrap_or(0);
        let new = if let Some(inc) = size.strip_prefix('+') {
            old + parse_size(inc).ok_or_else(|| ApiError::param("size", "invalid size"))?
        } else {
            parse_size(&size).ok_or_else(|| ApiError::param("size", "invalid size"))?
        };
        if new < old {
            return Err(ApiError::die("shrinking disks is not supported"));
        }
        d.insert("size".into(), size_str(new));
        let volid = d.get("file").cloned().unwrap_or_default();
        let value = print_property_string(&fmt, &d, &[]);
        if let Some(v) = st.volumes.get_mut(&(node.clone(), volid)) {
            v.size = new;
        }
        if let Some(vm) = st.vms.get_mut(&id) {
            vm.config.insert(disk.clone(), value);
        }
        Ok(())
    })
    .await?;
    let upid = start_task(ctx, &node, "resize", &id.to_string(), |_| {
        Box::pin(async { Ok(()) })
    });
    Ok(json!(upid))
}
