//! The firewall API (`/cluster/firewall/…`, `/nodes/{node}/firewall/…`,
//! `/nodes/{node}/qemu/{vmid}/firewall/…`) as `pve-firewall` implements it, and the host's
//! input filter the server applies to every new connection ([`filter`]).
//!
//! Rules behave as in PVE's `Rules.pm`: `POST` inserts at the top and stores `enable=0`
//! unless `enable` is sent; every rule of a list read carries the list's `digest`, and
//! `PUT`/`DELETE` by position refuse a digest that no longer matches; `moveto` moves as PVE
//! moves; `''`/`-` values and `delete` remove properties. Rules are checked as `verify_rule`
//! checks them ([`verify`]).

mod filter;
mod macros;
mod verify;

use serde_json::{json, Map, Value};

pub(crate) use filter::Packet;
pub use filter::Verdict;

use super::server::{ApiError, Ctx};
use super::state::{digest_of, Firewall, State};
use verify::{verify_rule, Env, Refs};

type R = Result<Value, ApiError>;

/// The verdict of the API node's host firewall on a new connection from `src` to `dst:port`.
pub(crate) fn admit(
    shared: &super::state::Shared,
    src: std::net::IpAddr,
    dst: std::net::SocketAddr,
) -> Verdict {
    let (std::net::IpAddr::V4(src), std::net::IpAddr::V4(dst_ip)) = (src, dst.ip()) else {
        return Verdict::Accept;
    };
    let node = shared.cfg.nodes[0].clone();
    let bridge = shared.cfg.bridges.first().cloned();
    let p = Packet {
        src,
        dst: dst_ip,
        dport: dst.port(),
        iface: bridge.clone().unwrap_or_else(|| "vmbr0".into()),
    };
    let st = shared.st();
    filter::verdict(&st, &node, bridge.as_deref(), &p)
}

const RULE_KEYS: &[&str] = &[
    "type",
    "action",
    "macro",
    "source",
    "dest",
    "proto",
    "dport",
    "sport",
    "comment",
    "enable",
    "iface",
    "log",
    "icmp-type",
];

fn not_found_die(msg: String) -> ApiError {
    ApiError::die(msg)
}

fn node_check(ctx: &Ctx) -> Result<(), ApiError> {
    let node = ctx.req("node")?;
    if !ctx.shared.cfg.nodes.iter().any(|n| n == node) {
        return Err(ApiError::die(format!(
            "hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"
        )));
    }
    Ok(())
}

fn refs(st: &State) -> Refs {
    Refs {
        ipsets: st.fw_cluster.ipsets.keys().cloned().collect(),
        aliases: st
            .fw_cluster
            .aliases
            .keys()
            .map(|a| a.to_ascii_lowercase())
            .collect(),
    }
}

/// PVE's `copy_list_with_digest`: one digest over every rule, in order.
fn list_digest(rules: &[Map<String, Value>]) -> String {
    digest_of(rules.iter().enumerate().flat_map(|(i, r)| {
        r.iter()
            .map(move |(k, v)| (format!("{i}.{k}"), v.to_string()))
            .collect::<Vec<_>>()
    }))
}

fn rule_json(r: &Map<String, Value>, pos: usize, digest: &str) -> Value {
    let mut o = Value::Object(r.clone());
    o["pos"] = json!(pos);
    o["digest"] = json!(digest);
    o
}

fn check_digest(ctx: &Ctx, rules: &[Map<String, Value>]) -> Result<(), ApiError> {
    if let Some(d) = ctx.p("digest") {
        if d != list_digest(rules) {
            return Err(ApiError::die(
                "detected modified configuration - file changed by other user? Try again.",
            ));
        }
    }
    Ok(())
}

/// PVE's `copy_rule_data`: set each given property, `''`/`-` deletes it.
fn copy_rule_data(ctx: &Ctx, r: &mut Map<String, Value>) {
    for k in RULE_KEYS {
        let Some(v) = ctx.p(k) else { continue };
        if v.is_empty() || v == "-" {
            r.remove(*k);
        } else if *k == "enable" {
            let n = v.parse::<i64>().unwrap_or(0);
            r.insert("enable".into(), json!(i64::from(n != 0)));
        } else if *k == "comment" {
            r.insert("comment".into(), json!(v.trim()));
        } else {
            r.insert((*k).to_string(), json!(v));
        }
    }
}

fn pos_param(ctx: &Ctx, k: &str) -> Option<usize> {
    ctx.p(k).and_then(|p| p.parse().ok())
}

/// `GET/POST …/rules` and `GET/PUT/DELETE …/rules/{pos}` on one rule list.
fn rules_api(
    ctx: &Ctx,
    rules: &mut Vec<Map<String, Value>>,
    one: bool,
    env: Env,
    refs: &Refs,
) -> R {
    let method = ctx.method.as_str();
    if !one {
        return match method {
            "GET" => {
                let d = list_digest(rules);
                Ok(Value::Array(
                    rules
                        .iter()
                        .enumerate()
                        .map(|(i, r)| rule_json(r, i, &d))
                        .collect(),
                ))
            }
            "POST" => {
                let mut r = Map::new();
                copy_rule_data(ctx, &mut r);
                verify_rule(&mut r, env, refs)?;
                if ctx.p("enable").is_none() {
                    r.insert("enable".into(), json!(0));
                }
                rules.insert(0, r);
                Ok(Value::Null)
            }
            m => Err(ApiError::new(501, format!("Method '{m}' not implemented"))),
        };
    }
    let pos = pos_param(ctx, "pos").ok_or_else(|| ApiError::param("pos", "missing"))?;
    match method {
        "GET" => {
            let d = list_digest(rules);
            rules
                .get(pos)
                .map(|r| rule_json(r, pos, &d))
                .ok_or_else(|| ApiError::die(format!("no rule at position {pos}")))
        }
        "DELETE" => {
            check_digest(ctx, rules)?;
            if pos >= rules.len() {
                return Err(ApiError::die(format!("no rule at position {pos}")));
            }
            rules.remove(pos);
            Ok(Value::Null)
        }
        "PUT" => {
            check_digest(ctx, rules)?;
            if pos >= rules.len() {
                return Err(ApiError::die(format!("no rule at position {pos}")));
            }
            if let Some(to) = pos_param(ctx, "moveto").filter(|to| *to != pos) {
                // PVE's loop: the rule goes before the rule at old index `to`, or last.
                let rule = rules[pos].clone();
                let mut out = Vec::with_capacity(rules.len());
                for (i, r) in rules.iter().enumerate() {
                    if i == pos {
                        continue;
                    }
                    if i == to {
                        out.push(rule.clone());
                    }
                    out.push(r.clone());
                }
                if to >= rules.len() {
                    out.push(rule);
                }
                *rules = out;
                return Ok(Value::Null);
            }
            let mut r = rules[pos].clone();
            copy_rule_data(ctx, &mut r);
            if let Some(d) = ctx.p("delete") {
                for k in d.split([',', ';', ' ']).filter(|s| !s.is_empty()) {
                    if !RULE_KEYS.contains(&k) {
                        return Err(ApiError::param(
                            "delete",
                            format!("no such property ('{k}')"),
                        ));
                    }
                    if k == "type" || k == "action" {
                        return Err(ApiError::param(
                            "delete",
                            format!("unable to delete required property '{k}'"),
                        ));
                    }
                    r.remove(k);
                }
            }
            verify_rule(&mut r, env, refs)?;
            rules[pos] = r;
            Ok(Value::Null)
        }
        m => Err(ApiError::new(501, format!("Method '{m}' not implemented"))),
    }
}

fn options_api(ctx: &Ctx, fw: &mut Firewall) -> R {
    let options_digest =
        |fw: &Firewall| digest_of(fw.options.iter().map(|(k, v)| (k.clone(), v.to_string())));
    match ctx.method.as_str() {
        "GET" => {
            let mut o = Value::Object(fw.options.clone());
            let allowed = ctx
                .shared
                .schema
                .endpoint("GET", &ctx.template)
                .and_then(|ep| {
                    ep.returns()
                        .and_then(|r| r.get("properties"))
                        .and_then(Value::as_object)
                        .map(|p| p.contains_key("digest"))
                })
                .unwrap_or(false);
            if allowed {
                o["digest"] = json!(options_digest(fw));
            }
            Ok(o)
        }
        "PUT" => {
            if let Some(d) = ctx.p("digest") {
                if d != options_digest(fw) {
                    return Err(ApiError::die(
                        "detected modified configuration - file changed by other user? Try again.",
                    ));
                }
            }
            if let Some(d) = ctx.p("delete") {
                for k in d.split([',', ';', ' ']).filter(|s| !s.is_empty()) {
                    fw.options.remove(k);
                }
            }
            let ep = ctx.shared.schema.endpoint("GET", &ctx.template);
            for (k, v) in &ctx.params {
                if matches!(k.as_str(), "node" | "vmid" | "delete" | "digest") {
                    continue;
                }
                let ty = ep.as_ref().and_then(|ep| {
                    ep.returns()
                        .and_then(|r| r.get("properties"))
                        .and_then(|p| p.get(k.as_str()))
                        .and_then(|s| s.get("type"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                });
                let s = v.as_str();
                let val = match ty.as_deref() {
                    Some("integer") | Some("boolean") => s
                        .parse::<i64>()
                        .map(Value::from)
                        .unwrap_or_else(|_| json!(i64::from(matches!(s, "true" | "yes" | "on")))),
                    _ => json!(s),
                };
                fw.options.insert(k.clone(), val);
            }
            Ok(Value::Null)
        }
        m => Err(ApiError::new(501, format!("Method '{m}' not implemented"))),
    }
}

fn no_ipset(name: &str) -> ApiError {
    not_found_die(format!("no such IPSet '{name}'"))
}

fn ipset_api(ctx: &Ctx, fw: &mut Firewall, suffix: &str) -> R {
    let m = ctx.method.as_str();
    match (m, suffix) {
        ("GET", "ipset") => Ok(Value::Array(
            fw.ipsets
                .iter()
                .map(|(n, (c, e))| {
                    let mut o = json!({"name": n, "digest": digest_of(e.iter().map(|x| (x.get("cidr").map(|v| v.to_string()).unwrap_or_default(), "")))});
                    if let Some(c) = c {
                        o["comment"] = json!(c);
                    }
                    o
                })
                .collect(),
        )),
        ("POST", "ipset") => {
            let name = ctx.req("name")?.to_string();
            if let Some(old) = ctx.p("rename") {
                if old == name {
                    let set = fw.ipsets.get_mut(&name).ok_or_else(|| ApiError::param("name", format!("IPSet '{old}' does not exist")))?;
                    if let Some(c) = ctx.p("comment") {
                        set.0 = Some(c.to_string());
                    }
                    return Ok(Value::Null);
                }
                let set = fw.ipsets.remove(old).ok_or_else(|| ApiError::param("name", format!("IPSet '{old}' does not exist")))?;
                fw.ipsets.insert(name, set);
                return Ok(Value::Null);
            }
            if fw.ipsets.contains_key(&name) {
                return Err(ApiError::param("name", format!("IPSet '{name}' already exists")));
            }
            fw.ipsets.insert(name, (ctx.p("comment").map(str::to_string), Vec::new()));
            Ok(Value::Null)
        }
        (_, "ipset/{name}") => {
            let name = ctx.req("name")?.to_string();
            match m {
                "GET" => {
                    let (_, entries) = fw.ipsets.get(&name).ok_or_else(|| no_ipset(&name))?;
                    let d = digest_of(entries.iter().map(|x| (x.get("cidr").map(|v| v.to_string()).unwrap_or_default(), "")));
                    Ok(Value::Array(entries.iter().map(|e| { let mut o = Value::Object(e.clone()); o["digest"] = json!(d); o }).collect()))
                }
                "POST" => {
                    let cidr = ctx.req("cidr")?.to_string();
                    let set = fw.ipsets.get_mut(&name).ok_or_else(|| no_ipset(&name))?;
                    if set.1.iter().any(|e| e.get("cidr").and_then(Value::as_str) == Some(&cidr)) {
                        return Err(ApiError::param("cidr", format!("address '{cidr}' already exists")));
                    }
                    if cidr.ends_with("/0") {
                        return Err(ApiError::param("cidr", "a zero prefix is not allowed in ipset entries"));
                    }
                    let mut e = Map::new();
                    e.insert("cidr".into(), json!(cidr));
                    if let Some(c) = ctx.p("comment") {
                        e.insert("comment".into(), json!(c));
                    }
                    if ctx.flag("nomatch").unwrap_or(false) {
                        e.insert("nomatch".into(), json!(1));
                    }
                    set.1.push(e);
                    Ok(Value::Null)
                }
                "DELETE" => {
                    let set = fw.ipsets.get(&name).ok_or_else(|| no_ipset(&name))?;
                    if !set.1.is_empty() && !ctx.flag("force").unwrap_or(false) {
                        return Err(ApiError::die(format!("IPSet '{name}' is not empty")));
                    }
                    fw.ipsets.remove(&name);
                    Ok(Value::Null)
                }
                _ => Err(ApiError::new(501, "not implemented")),
            }
        }
        (_, "ipset/{name}/{cidr}") => {
            let name = ctx.req("name")?.to_string();
            let cidr = ctx.req("cidr")?.to_string();
            let set = fw.ipsets.get_mut(&name).ok_or_else(|| no_ipset(&name))?;
            let idx = set.1.iter().position(|e| e.get("cidr").and_then(Value::as_str) == Some(&cidr)).ok_or_else(|| ApiError::param("cidr", "no such IP/Network"))?;
            match m {
                "GET" => Ok(Value::Object(set.1[idx].clone())),
                "DELETE" => {
                    set.1.remove(idx);
                    Ok(Value::Null)
                }
                "PUT" => {
                    if let Some(c) = ctx.p("comment") {
                        set.1[idx].insert("comment".into(), json!(c));
                    }
                    if let Some(n) = ctx.flag("nomatch") {
                        set.1[idx].insert("nomatch".into(), json!(i64::from(n)));
                    }
                    Ok(Value::Null)
                }
                _ => Err(ApiError::new(501, "not implemented")),
            }
        }
        (m, s) => Err(ApiError::new(501, format!("Method '{m} firewall/{s}' not implemented by the emulator"))),
    }
}

fn groups_api(ctx: &Ctx, st: &mut State, suffix: &str) -> R {
    let refs = refs(st);
    let fw = &mut st.fw_cluster;
    let m = ctx.method.as_str();
    let list_digest_of = |fw: &Firewall| {
        digest_of(
            fw.groups
                .iter()
                .map(|(n, (c, _))| (n.clone(), c.clone().unwrap_or_default())),
        )
    };
    match (m, suffix) {
        ("GET", "groups") => {
            let d = list_digest_of(fw);
            Ok(Value::Array(
                fw.groups
                    .iter()
                    .map(|(n, (c, _))| {
                        let mut o = json!({"group": n, "digest": d});
                        if let Some(c) = c {
                            o["comment"] = json!(c);
                        }
                        o
                    })
                    .collect(),
            ))
        }
        ("POST", "groups") => {
            let name = ctx.req("group")?.to_string();
            let comment = ctx.p("comment").map(str::to_string);
            if let Some(old) = ctx.p("rename") {
                if let Some(d) = ctx.p("digest") {
                    if d != list_digest_of(fw) {
                        return Err(ApiError::die("detected modified configuration - file changed by other user? Try again."));
                    }
                }
                if !fw.groups.contains_key(old) {
                    return Err(ApiError::param(
                        "group",
                        format!("Security group '{old}' does not exist"),
                    ));
                }
                if old != name && fw.groups.contains_key(&name) {
                    return Err(ApiError::param(
                        "group",
                        format!("Security group '{name}' does already exist"),
                    ));
                }
                let mut g = fw.groups.remove(old).unwrap_or_default();
                if comment.is_some() {
                    g.0 = comment;
                }
                fw.groups.insert(name, g);
                return Ok(Value::Null);
            }
            if fw.groups.contains_key(&name) {
                return Err(ApiError::param(
                    "group",
                    format!("Security group '{name}' already exists"),
                ));
            }
            fw.groups.insert(name, (comment, Vec::new()));
            Ok(Value::Null)
        }
        (_, "groups/{group}") | (_, "groups/{group}/{pos}") => {
            let name = ctx.req("group")?.to_string();
            let Some((_, rules)) = fw.groups.get_mut(&name) else {
                return Err(ApiError::die(format!("no such security group '{name}'")));
            };
            if m == "DELETE" && suffix == "groups/{group}" {
                if !rules.is_empty() {
                    return Err(ApiError::die(format!(
                        "Security group '{name}' is not empty"
                    )));
                }
                fw.groups.remove(&name);
                return Ok(Value::Null);
            }
            rules_api(ctx, rules, suffix.ends_with("{pos}"), Env::Group, &refs)
        }
        (m, s) => Err(ApiError::new(
            501,
            format!("Method '{m} firewall/{s}' not implemented by the emulator"),
        )),
    }
}

fn aliases_api(ctx: &Ctx, fw: &mut Firewall, suffix: &str) -> R {
    match (ctx.method.as_str(), suffix) {
        ("GET", "aliases") => {
            let d = digest_of(
                fw.aliases
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::Object(v.clone()).to_string())),
            );
            Ok(Value::Array(
                fw.aliases
                    .values()
                    .map(|a| {
                        let mut o = Value::Object(a.clone());
                        o["digest"] = json!(d);
                        o
                    })
                    .collect(),
            ))
        }
        ("POST", "aliases") => {
            let name = ctx.req("name")?.to_string();
            if fw.aliases.keys().any(|k| k.eq_ignore_ascii_case(&name)) {
                return Err(ApiError::param(
                    "name",
                    format!("alias '{name}' already exists"),
                ));
            }
            let mut a = Map::new();
            a.insert("name".into(), json!(name));
            a.insert("cidr".into(), json!(ctx.req("cidr")?));
            if let Some(c) = ctx.p("comment") {
                a.insert("comment".into(), json!(c));
            }
            fw.aliases.insert(name, a);
            Ok(Value::Null)
        }
        ("GET", "aliases/{name}") => {
            let name = ctx.req("name")?;
            fw.aliases
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, a)| Value::Object(a.clone()))
                .ok_or_else(|| ApiError::die(format!("no such alias '{name}'")))
        }
        ("DELETE", "aliases/{name}") => {
            let name = ctx.req("name")?.to_ascii_lowercase();
            fw.aliases.retain(|k, _| k.to_ascii_lowercase() != name);
            Ok(Value::Null)
        }
        (m, s) => Err(ApiError::new(
            501,
            format!("Method '{m} firewall/{s}' not implemented by the emulator"),
        )),
    }
}

/// Every firewall endpoint.
pub(crate) fn dispatch(ctx: &Ctx) -> R {
    let t = ctx.template.clone();
    if t.starts_with("/nodes/") {
        node_check(ctx)?;
    }
    let suffix = t.split("/firewall/").nth(1).unwrap_or("").to_string();
    let mut guard = ctx.shared.st();
    let st: &mut State = &mut guard;
    let refs = refs(st);
    if t.starts_with("/cluster/firewall/") {
        let fw = &mut st.fw_cluster;
        return match suffix.as_str() {
            "options" => options_api(ctx, fw),
            "rules" | "rules/{pos}" => rules_api(
                ctx,
                &mut fw.rules,
                suffix.ends_with("{pos}"),
                Env::Cluster,
                &refs,
            ),
            s if s.starts_with("ipset") => ipset_api(ctx, fw, s),
            s if s.starts_with("aliases") => aliases_api(ctx, fw, s),
            s if s.starts_with("groups") => groups_api(ctx, st, s),
            s => Err(ApiError::new(
                501,
                format!(
                    "Method '{} firewall/{s}' not implemented by the emulator",
                    ctx.method
                ),
            )),
        };
    }
    let (fw, env) = if t.starts_with("/nodes/{node}/qemu/{vmid}/firewall/") {
        let node = ctx.req("node")?.to_string();
        let id: u32 = ctx
            .req("vmid")?
            .parse()
            .map_err(|_| ApiError::param("vmid", "type check ('integer') failed"))?;
        if st.vms.get(&id).is_none_or(|vm| vm.node != node) {
            return Err(ApiError::die(format!(
                "Configuration file 'nodes/{node}/qemu-server/{id}.conf' does not exist"
            )));
        }
        (st.fw_vms.entry(id).or_default(), Env::Vm)
    } else {
        let node = ctx.req("node")?.to_string();
        (st.fw_nodes.entry(node).or_default(), Env::Host)
    };
    match suffix.as_str() {
        "options" => options_api(ctx, fw),
        "rules" | "rules/{pos}" => {
            rules_api(ctx, &mut fw.rules, suffix.ends_with("{pos}"), env, &refs)
        }
        s if s.starts_with("ipset") && env == Env::Vm => ipset_api(ctx, fw, s),
        s => Err(ApiError::new(
            501,
            format!(
                "Method '{} firewall/{s}' not implemented by the emulator",
                ctx.method
            ),
        )),
    }
}
