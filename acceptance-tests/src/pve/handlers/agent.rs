//! `/nodes/{node}/qemu/{vmid}/agent/*`: the QEMU guest agent commands, answered by the VM's
//! guest appliance.

use std::sync::Arc;

use serde_json::{json, Value};

use super::power::{agent_enabled, guest_context};
use super::{no_conf, vm_exists, R};
use crate::pve::guest::{GuestAppliance, GuestContext};
use crate::pve::server::{ApiError, Ctx};
use crate::pve::state::{ExecRecord, Power};
use crate::spec::ParamValue;

pub(super) fn agent_ready(ctx: &Ctx) -> Result<(GuestContext, Arc<dyn GuestAppliance>), ApiError> {
    let (node, id) = vm_exists(ctx)?;
    let st = ctx.shared.st();
    let vm = st.vms.get(&id).ok_or_else(|| no_conf(&node, id))?;
    if vm.power != Power::Running {
        return Err(ApiError::die(format!("VM {id} is not running")));
    }
    if !agent_enabled(vm) {
        return Err(ApiError::die("No QEMU guest agent configured"));
    }
    match (&vm.appliance, vm.booted) {
        (Some(a), true) if a.agent_running() => {
            Ok((guest_context(&ctx.shared, &st, vm), a.clone()))
        }
        _ => Err(ApiError::die("QEMU guest agent is not running")),
    }
}

pub(super) fn agent_ifaces(ctx: &Ctx) -> R {
    let (gctx, app) = agent_ready(ctx)?;
    let list: Vec<Value> = app
        .interfaces(&gctx)
        .into_iter()
        .map(|i| {
            let mut addrs: Vec<Value> = i.ipv4.iter().map(|(ip, p)| json!({"ip-address-type": "ipv4", "ip-address": ip.to_string(), "prefix": p})).collect();
            addrs.extend(i.ipv6.iter().map(|(ip, p)| json!({"ip-address-type": "ipv6", "ip-address": ip, "prefix": p})));
            json!({"name": i.name, "hardware-address": i.mac, "ip-addresses": addrs,
                "statistics": {"rx-bytes": 0, "rx-dropped": 0, "rx-errs": 0, "rx-packets": 0, "tx-bytes": 0, "tx-dropped": 0, "tx-errs": 0, "tx-packets": 0}})
        })
        .collect();
    Ok(json!({"result": list}))
}

pub(super) async fn agent_exec(ctx: &mut Ctx) -> R {
    let (gctx, app) = agent_ready(ctx)?;
    let argv: Vec<String> = ctx
        .params
        .get("command")
        .map(ParamValue::all)
        .unwrap_or_default();
    if argv.is_empty() {
        return Err(ApiError::param(
            "command",
            "property is missing and it is not optional",
        ));
    }
    let input = ctx.p("input-data").map(|s| s.as_bytes().to_vec());
    let out = app.exec(&gctx, &argv, input.as_deref()).await;
    let mut st = ctx.shared.st();
    let vm = st
        .vms
        .get_mut(&gctx.vmid)
        .ok_or_else(|| ApiError::die("VM vanished"))?;
    vm.next_pid += 1;
    let pid = vm.next_pid;
    vm.exec.insert(
        pid,
        ExecRecord {
            exited: true,
            exitcode: out.exitcode,
            out: out.stdout,
            err: out.stderr,
        },
    );
    Ok(json!({"pid": pid}))
}

pub(super) fn agent_exec_status(ctx: &Ctx) -> R {
    let (gctx, _) = agent_ready(ctx)?;
    let pid: i64 = ctx.req("pid")?.parse().unwrap_or(-1);
    let st = ctx.shared.st();
    let vm = st
        .vms
        .get(&gctx.vmid)
        .ok_or_else(|| ApiError::die("VM vanished"))?;
    let rec = vm
        .exec
        .get(&pid)
        .ok_or_else(|| ApiError::die("Agent error: Invalid parameter 'pid'"))?;
    let mut o = json!({"exited": rec.exited, "exitcode": rec.exitcode});
    if !rec.out.is_empty() {
        o["out-data"] = json!(rec.out);
    }
    if !rec.err.is_empty() {
        o["err-data"] = json!(rec.err);
    }
    Ok(o)
}

pub(super) async fn agent_file_write(ctx: &mut Ctx) -> R {
    let (gctx, app) = agent_ready(ctx)?;
    let file = ctx.req("file")?.to_string();
    let content = ctx.req("content")?.to_string();
    let encode = ctx.flag("encode").unwrap_or(true);
    let data = if encode {
        content.into_bytes()
    } else {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(content.as_bytes())
            .map_err(|e| ApiError::die(format!("Agent error: Invalid base64 data: {e}")))?
    };
    app.file_write(&gctx, &file, &data)
        .await
        .map_err(|e| ApiError::die(format!("Agent error: {e}")))?;
    Ok(Value::Null)
}

pub(super) async fn agent_file_read(ctx: &mut Ctx) -> R {
    let (gctx, app) = agent_ready(ctx)?;
    let file = ctx.req("file")?.to_string();
    let data = app
        .file_read(&gctx, &file)
        .await
        .map_err(|e| ApiError::die(format!("Agent error: {e}")))?;
    let truncated = data.len() > 16 * 1024 * 1024;
    let mut o =
        json!({"content": String::from_utf8_lossy(&data[..data.len().min(16 * 1024 * 1024)])});
    if truncated {
        o["truncated"] = json!(true);
    }
    Ok(o)
}
