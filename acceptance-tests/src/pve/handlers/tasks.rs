//! Worker tasks (UPIDs, logs, status) and `/nodes/{node}/tasks`.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{node_check, BoxFut, R};
use crate::pve::server::{ApiError, Ctx};
use crate::pve::state::{now, Shared, Task};

/// A handle a worker uses to log.
#[derive(Clone)]
pub(crate) struct TaskLog {
    shared: Arc<Shared>,
    upid: String,
}

impl TaskLog {
    pub(super) fn log(&self, line: impl Into<String>) {
        let line = line.into();
        let mut st = self.shared.st();
        if let Some(t) = st.tasks.iter_mut().find(|t| t.upid == self.upid) {
            t.log.push(line);
        }
    }
}

pub(super) fn finish_task(shared: &Shared, upid: &str, r: Result<(), String>) {
    let mut st = shared.st();
    if let Some(t) = st.tasks.iter_mut().find(|t| t.upid == upid) {
        if t.exitstatus.is_some() {
            return;
        }
        match r {
            Ok(()) => {
                t.log.push("TASK OK".into());
                t.exitstatus = Some("OK".into());
            }
            Err(e) => {
                t.log.push(format!("TASK ERROR: {e}"));
                t.exitstatus = Some(e);
            }
        }
        t.endtime = Some(now());
    }
}

/// Start a worker task; returns the UPID.
pub(super) fn start_task(
    ctx: &Ctx,
    node: &str,
    ttype: &str,
    id: &str,
    work: impl FnOnce(TaskLog) -> BoxFut,
) -> String {
    let shared = ctx.shared.clone();
    let user = if ctx.caller.id.is_empty() {
        "root@pam".to_string()
    } else {
        ctx.caller.id.clone()
    };
    let start = now();
    let upid = {
        let mut st = shared.st();
        st.next_task_pid += 1;
        let pid = st.next_task_pid;
        let pstart = start.wrapping_mul(100) & 0xffff_ffff;
        let upid = format!("UPID:{node}:{pid:08X}:{pstart:08X}:{start:08X}:{ttype}:{id}:{user}:");
        st.tasks.push(Task {
            upid: upid.clone(),
            node: node.to_string(),
            ttype: ttype.to_string(),
            id: id.to_string(),
            user,
            pid,
            pstart,
            starttime: start,
            endtime: None,
            exitstatus: None,
            log: Vec::new(),
        });
        upid
    };
    let log = TaskLog {
        shared: shared.clone(),
        upid: upid.clone(),
    };
    let fail = ctx.fail_task.clone();
    let fut = work(log.clone());
    let upid2 = upid.clone();
    tokio::spawn(async move {
        let r = fut.await;
        let r = match (r, fail) {
            (Ok(()), Some(f)) => Err(f),
            (r, _) => r,
        };
        finish_task(&shared, &upid2, r);
    });
    upid
}

pub(super) async fn with_vm_lock<T>(
    shared: &Shared,
    vmid: u32,
    f: impl FnOnce() -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let lock = shared.vm_lock(vmid);
    let guard = tokio::time::timeout(shared.cfg.timings.lock_timeout, lock.lock_owned())
        .await
        .map_err(|_| {
            ApiError::die(format!(
                "can't lock file '/var/lock/qemu-server/lock-{vmid}.conf' - got timeout"
            ))
        })?;
    tokio::time::sleep(shared.cfg.timings.config_write).await;
    let r = f();
    drop(guard);
    r
}

pub(super) fn task_get(ctx: &Ctx) -> Result<Task, ApiError> {
    let node = node_check(ctx)?;
    let upid = ctx.req("upid")?;
    let st = ctx.shared.st();
    let t = st
        .tasks
        .iter()
        .find(|t| t.upid == upid && t.node == node)
        .cloned()
        .ok_or_else(|| ApiError::die("no such task"))?;
    if t.user != ctx.caller.id && !ctx.caller.has(&format!("/nodes/{node}"), "Sys.Audit") {
        return Err(ApiError::forbidden(&format!("/nodes/{node}"), "Sys.Audit"));
    }
    Ok(t)
}

fn task_json(t: &Task) -> Value {
    let mut o = json!({"upid": t.upid, "node": t.node, "pid": t.pid, "pstart": t.pstart, "starttime": t.starttime,
        "type": t.ttype, "id": t.id, "user": t.user,
        "status": if t.exitstatus.is_some() {"stopped"} else {"running"}});
    if let Some(e) = &t.exitstatus {
        o["exitstatus"] = json!(e);
    }
    o
}

pub(super) fn task_status(ctx: &Ctx) -> R {
    let t = task_get(ctx)?;
    Ok(task_json(&t))
}

pub(super) fn task_log(ctx: &Ctx) -> R {
    let t = task_get(ctx)?;
    let start: usize = ctx.p("start").and_then(|s| s.parse().ok()).unwrap_or(0);
    let limit: usize = ctx.p("limit").and_then(|s| s.parse().ok()).unwrap_or(50);
    let lines: Vec<Value> = t
        .log
        .iter()
        .enumerate()
        .skip(start)
        .take(if limit == 0 { usize::MAX } else { limit })
        .map(|(i, l)| json!({"n": i + 1, "t": l}))
        .collect();
    Ok(Value::Array(lines))
}

pub(super) fn tasks_list(ctx: &Ctx) -> R {
    let node = node_check(ctx)?;
    let st = ctx.shared.st();
    let vmid = ctx.p("vmid").map(str::to_string);
    let typefilter = ctx.p("typefilter").map(str::to_string);
    // `source`: archive (default, finished tasks), active (running ones), all.
    let source = ctx.p("source").unwrap_or("archive").to_string();
    let list: Vec<Value> = st
        .tasks
        .iter()
        .rev()
        .filter(|t| t.node == node)
        .filter(|t| vmid.as_ref().map(|v| &t.id == v).unwrap_or(true))
        .filter(|t| typefilter.as_ref().map(|f| &t.ttype == f).unwrap_or(true))
        .filter(|t| match source.as_str() {
            "active" => t.endtime.is_none(),
            "all" => true,
            _ => t.endtime.is_some(),
        })
        .filter(|t| {
            t.user == ctx.caller.id || ctx.caller.has(&format!("/nodes/{node}"), "Sys.Audit")
        })
        .map(|t| {
            let mut o = task_json(t);
            if let Some(m) = o.as_object_mut() {
                m.remove("exitstatus");
                if let Some(e) = &t.exitstatus {
                    m.insert("status".into(), json!(e));
                } else {
                    m.remove("status");
                }
            }
            if let Some(e) = t.endtime {
                o["endtime"] = json!(e);
            }
            o
        })
        .collect();
    Ok(Value::Array(list))
}
