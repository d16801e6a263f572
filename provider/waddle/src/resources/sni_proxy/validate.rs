//! Plan-time checks of `waddle_sni_proxy` (no API call): the routing with
//! `waddle_haproxy::validate` (errors at their configuration paths, route indices mapped back
//! to the configuration's), the NIC addressing, the shared VM attributes (declarative
//! validators and the cloud-init inputs) and `timeouts`. Unknown values are skipped.

use waddle_framework::prelude::*;
use waddle_haproxy::{AttrPath as HaPath, PathStep as HaStep, ProxySpec};

use super::model::{spec_of, Listen, ProxyTimeouts, Route};
use super::{schema, DEFAULTS, NICS};
use crate::resources::{timeouts, vm};

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

/// A whole number in `0..=max` (out of range: `None`, reported by the schema's validator).
fn whole(f: Field<&Value>, max: i64, complete: &mut bool) -> Option<u32> {
    match f {
        Field::Unknown => {
            *complete = false;
            None
        }
        Field::Null => None,
        Field::Known(x) => {
            let n = x.as_number().and_then(|n| n.to_i64());
            let n = n.filter(|n| (0..=max).contains(n)).map(|n| n as u32);
            *complete &= n.is_some();
            n
        }
    }
}

/// The routing of a configuration (or plan), as far as it is known: routes with unknowns are
/// left out (their indices remembered), unknown settings take their defaults.
pub(super) fn routing_from(v: &Value, diags: &mut Diagnostics) -> Routing {
    let c = ConfigView::new(v);
    let mut complete = true;
    let (mut routes, mut route_index) = (Vec::new(), Vec::new());
    match c.elements("routes") {
        Field::Unknown => complete = false,
        Field::Null => {}
        Field::Known(elems) => {
            for (i, e) in elems.iter().enumerate() {
                if !e.is_wholly_known() {
                    complete = false;
                    continue;
                }
                let r = ConfigView::new(e);
                let hostnames = r.strings("hostnames").known().unwrap_or_default();
                routes.push(Route {
                    hostnames: hostnames.into_iter().map(String::from).collect(),
                    backend: r.str("backend").known().unwrap_or_default().into(),
                    proxy_protocol: r.bool("proxy_protocol").known(),
                    check: r.bool("check").known(),
                });
                route_index.push(i);
            }
        }
    }
    let http_backend = c.str("http_backend");
    complete &= !http_backend.is_unknown();
    let listen = match c.object("listen") {
        Field::Unknown => {
            complete = false;
            None
        }
        Field::Null => None,
        Field::Known(l) => Some(Listen {
            https: whole(l.field("https"), 65535, &mut complete),
            http: whole(l.field("http"), 65535, &mut complete),
        }),
    };
    let maxconn = whole(c.field("maxconn"), i64::from(u32::MAX), &mut complete);
    let timeouts = match c.object("proxy_timeouts") {
        Field::Unknown => {
            complete = false;
            None
        }
        Field::Null => None,
        Field::Known(t) => {
            let mut get = |name: &str| match t.str(name) {
                Field::Unknown => {
                    complete = false;
                    None
                }
                f => f.known().map(String::from),
            };
            let t = ProxyTimeouts {
                connect: get("connect"),
                client: get("client"),
                server: get("server"),
                tunnel: get("tunnel"),
                inspect: get("inspect"),
            };
            match t.parse() {
                Ok(t) => Some(t),
                Err(errs) => {
                    complete = false;
                    for e in errs.errors() {
                        diags.error_at(to_fw_path(&e.path), "Invalid timeout", e.kind.to_string());
                    }
                    None
                }
            }
        }
    };
    let http_backend = http_backend.known().map(String::from);
    let spec = spec_of(&routes, http_backend, listen.as_ref(), maxconn, timeouts);
    complete &= spec.is_ok();
    Routing {
        spec: spec.unwrap_or_default(),
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
        let nic = ConfigView::new(config).object(nic).known()?;
        nic.str(field).known().map(str::to_string)
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
