//! Plan-time checks of `waddle_sni_proxy` (no API call): the routing with
//! `waddle_haproxy::validate` (errors at their configuration paths, route indices mapped back
//! to the configuration's), the NIC addressing, the shared VM attributes (declarative
//! validators and the cloud-init inputs) and `timeouts`. Unknown values are skipped.

use waddle_framework::prelude::*;
use waddle_haproxy::{
    AttrPath as HaPath, ListenSpec, PathStep as HaStep, ProxySpec, RouteSpec, Timeouts,
};

use super::{schema, DEFAULTS, NICS};
use crate::resources::{timeouts, vm};

/// A known, non-null attribute of an object value.
fn set<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.get_attr(name).filter(|x| x.is_set())
}

fn is_unknown(v: &Value, name: &str) -> bool {
    v.get_attr(name).is_some_and(Value::is_unknown)
}

fn to_fw_path(p: &HaPath) -> AttributePath {
    let mut out = AttributePath::root();
    for s in p.steps() {
        out = match s {
            HaStep::Attr(a) => out.then_attr(a.clone()),
            HaStep::Index(i) => out.then_index(*i as i64),
        };
    }
    out
}

/// The routing part of a configuration, as far as it is known.
pub(super) struct Routing {
    pub(super) spec: ProxySpec,
    /// spec.routes[i] came from routes[route_index[i]].
    route_index: Vec<usize>,
    /// Everything needed to render is known.
    pub(super) complete: bool,
}

fn number_in(
    v: &Value,
    path: AttributePath,
    range: std::ops::RangeInclusive<i64>,
    diags: &mut Diagnostics,
) -> Option<i64> {
    let n = v.as_number()?;
    match n.to_i64().filter(|x| range.contains(x)) {
        Some(x) => Some(x),
        None => {
            diags.error_at(
                path,
                "Value out of range",
                format!(
                    "{} must be a whole number between {} and {}",
                    n.to_plain_string(),
                    range.start(),
                    range.end()
                ),
            );
            None
        }
    }
}

pub(super) fn routing_from(v: &Value, diags: &mut Diagnostics) -> Routing {
    let mut spec = ProxySpec::default();
    let mut complete = true;
    let mut route_index = Vec::new();
    match v.get_attr("routes") {
        Some(r) if r.is_unknown() => complete = false,
        Some(r) => {
            for (i, e) in r.as_elements().unwrap_or_default().iter().enumerate() {
                let hosts = e.get_attr("hostnames");
                let backend = e.get_attr("backend");
                let usable = e.is_known()
                    && hosts.is_some_and(Value::is_wholly_known)
                    && backend.is_some_and(Value::is_known)
                    && !is_unknown(e, "proxy_protocol")
                    && !is_unknown(e, "check");
                if !usable {
                    complete = false;
                    continue;
                }
                let hostnames: Vec<String> = hosts
                    .and_then(Value::as_elements)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|h| h.as_str().map(str::to_string))
                    .collect();
                let route = RouteSpec {
                    hostnames,
                    backend: backend
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    proxy_protocol: set(e, "proxy_protocol")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    check: set(e, "check").and_then(Value::as_bool).unwrap_or(true),
                };
                spec.routes.push(route);
                route_index.push(i);
            }
        }
        None => {}
    }
    match v.get_attr("http_backend") {
        Some(x) if x.is_unknown() => complete = false,
        Some(x) => spec.http_backend = x.as_str().map(str::to_string),
        None => {}
    }
    let listen = AttributePath::attr("listen");
    match v.get_attr("listen") {
        Some(l) if l.is_unknown() => complete = false,
        Some(l) if l.is_null() => {}
        Some(l) => {
            let mut ls = ListenSpec::default();
            for (name, slot) in [("https", &mut ls.https_port), ("http", &mut ls.http_port)] {
                match l.get_attr(name) {
                    Some(x) if x.is_unknown() => complete = false,
                    Some(x) if x.is_null() => {}
                    Some(x) => match number_in(x, listen.clone().then_attr(name), 0..=65535, diags)
                    {
                        Some(n) => *slot = n as u16,
                        None => complete = false,
                    },
                    None => {}
                }
            }
            spec.listen = ls;
        }
        None => {}
    }
    match v.get_attr("maxconn") {
        Some(x) if x.is_unknown() => complete = false,
        Some(x) if x.is_null() => {}
        Some(x) => match number_in(
            x,
            AttributePath::attr("maxconn"),
            0..=i64::from(u32::MAX),
            diags,
        ) {
            Some(n) => spec.maxconn = n as u32,
            None => complete = false,
        },
        None => {}
    }
    match v.get_attr("proxy_timeouts") {
        Some(t) if t.is_unknown() => complete = false,
        Some(t) if t.is_null() => {}
        Some(t) => {
            let d = Timeouts::default();
            let fd = waddle_haproxy::format_duration;
            let mut strs = Vec::new();
            for (name, def) in [
                ("connect", d.connect),
                ("client", d.client),
                ("server", d.server),
                ("tunnel", d.tunnel),
                ("inspect", d.inspect),
            ] {
                match t.get_attr(name) {
                    Some(x) if x.is_unknown() => {
                        complete = false;
                        strs.push(fd(def));
                    }
                    Some(x) => strs.push(x.as_str().map(str::to_string).unwrap_or_else(|| fd(def))),
                    None => strs.push(fd(def)),
                }
            }
            match Timeouts::parse(&strs[0], &strs[1], &strs[2], &strs[3], &strs[4]) {
                Ok(t) => spec.timeouts = t,
                Err(errs) => {
                    complete = false;
                    for e in errs.errors() {
                        diags.error_at(to_fw_path(&e.path), "Invalid timeout", e.kind.to_string());
                    }
                }
            }
        }
        None => {}
    }
    Routing {
        spec,
        route_index,
        complete,
    }
}

/// Reports waddle-haproxy errors at their configuration paths (route indices mapped back
/// to the configuration's), each detail naming its element.
fn report(routing: &Routing, errs: &waddle_haproxy::ValidationErrors, diags: &mut Diagnostics) {
    let original = |p: &HaPath| {
        let mut steps = p.steps().to_vec();
        if let (Some(HaStep::Attr(a)), Some(HaStep::Index(i))) = (steps.first(), steps.get(1)) {
            if a == "routes" {
                steps[1] = HaStep::Index(routing.route_index.get(*i).copied().unwrap_or(*i));
            }
        }
        HaPath(steps)
    };
    for e in errs.errors() {
        let msg = match &e.kind {
            waddle_haproxy::ErrorKind::DuplicateHostname {
                hostname,
                key,
                first,
            } => format!(
                "`{hostname}` is already routed by {} (same normalized name `{key}`)",
                original(first)
            ),
            k => k.to_string(),
        };
        super::super::error_named(
            diags,
            to_fw_path(&original(&e.path)),
            "Invalid SNI proxy configuration",
            msg,
        );
    }
}

/// Validate the routing with waddle-haproxy, mapping paths back to the configuration.
fn validate_routing(config: &Value, routing: &Routing, diags: &mut Diagnostics) {
    let no_routes = config
        .get_attr("routes")
        .filter(|r| r.is_known())
        .and_then(Value::as_elements)
        .is_some_and(|r| r.is_empty());
    if no_routes {
        diags.error_at(
            AttributePath::attr("routes"),
            "Invalid SNI proxy configuration",
            waddle_haproxy::ErrorKind::NoRoutes.to_string(),
        );
    }
    if let Err(errs) = waddle_haproxy::validate(&routing.spec) {
        report(routing, &errs, diags);
    }
    if let Err(errs) = waddle_haproxy::validate_addressing(&addressing_of(config), &routing.spec) {
        report(routing, &errs, diags);
    }
}

/// The NIC addresses of a configuration, as far as they are known.
fn addressing_of(config: &Value) -> waddle_haproxy::Addressing {
    let known = |nic: &str, field: &str| {
        set(config, nic)
            .and_then(|n| set(n, field))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    waddle_haproxy::Addressing {
        public_cidr: known("public_nic", "cidr"),
        public_gateway: known("public_nic", "gateway").and_then(|g| g.parse().ok()),
        private_cidr: known("private_nic", "cidr"),
    }
}

/// All plan-time checks (no API call), at most [`super::super::MAX_DIAGNOSTICS`] reported.
pub fn validate(config: &Value, diags: &mut Diagnostics) {
    let mut found = Diagnostics::new();
    let routing = routing_from(config, &mut found);
    validate_routing(config, &routing, &mut found);
    schema().validate_values(config, &mut found);
    vm::validate::cloud_init_inputs(config, &DEFAULTS, &NICS, &mut found);
    timeouts::validate(config, &mut found);
    super::super::capped(found, diags);
}
