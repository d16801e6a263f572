//! Plan-time checks of `waddle_sni_proxy` (no API call): the routing with
//! `waddle_haproxy::validate` (errors at their configuration paths, route indices mapped back
//! to the configuration's), the NIC addressing, the shared VM attributes (declarative
//! validators and the cloud-init inputs) and `timeouts`. Unknown values are skipped.

use waddle_framework::prelude::*;
use waddle_haproxy::{AttrPath as HaPath, PathStep as HaStep, ProxySpec};

use super::model::{spec_of, Listen, ProxyTimeouts, Route};
use super::SniProxy;
use crate::resources::vm;

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

/// A whole number in `0..=max` (out of range: `None`, reported by the schema's validator,
/// and the routing is incomplete).
fn whole(f: Field<&Value>, max: i64, complete: &mut bool) -> Option<u32> {
    let n = f.tracked(complete)?.as_number().and_then(|n| n.to_i64());
    let n = n.filter(|n| (0..=max).contains(n)).map(|n| n as u32);
    *complete &= n.is_some();
    n
}

/// The routing of a configuration (or plan), as far as it is known: routes with unknowns are
/// left out (their indices remembered), unknown settings take their defaults.
pub(super) fn routing_from(v: &Value, diags: &mut Diagnostics) -> Routing {
    let c = ConfigView::new(v);
    let mut complete = true;
    let (mut routes, mut route_index) = (Vec::new(), Vec::new());
    let elems = c
        .elements("routes")
        .tracked(&mut complete)
        .unwrap_or_default();
    for (i, e) in elems.iter().enumerate() {
        match e.is_wholly_known().then(|| e.to_typed::<Route>().ok()) {
            Some(Some(r)) => {
                routes.push(r);
                route_index.push(i);
            }
            _ => complete = false,
        }
    }
    let http_backend = c
        .str("http_backend")
        .tracked(&mut complete)
        .map(String::from);
    let listen = c.object("listen").tracked(&mut complete).map(|l| Listen {
        https: whole(l.field("https"), 65535, &mut complete),
        http: whole(l.field("http"), 65535, &mut complete),
    });
    let maxconn = whole(c.field("maxconn"), i64::from(u32::MAX), &mut complete);
    let timeouts = c.object("proxy_timeouts").tracked(&mut complete);
    let timeouts = timeouts.and_then(|t| {
        // An unknown timeout is parsed as its default and leaves the routing incomplete.
        complete &= t.is_wholly_known();
        let t: ProxyTimeouts = t.value().unknown_as_null().to_typed().unwrap_or_default();
        t.parse()
            .map_err(|errs| {
                complete = false;
                for e in errs.errors() {
                    diags.error_at(to_fw_path(&e.path), "Invalid timeout", e.kind.to_string());
                }
            })
            .ok()
    });
    let spec = spec_of(&routes, http_backend, listen.as_ref(), maxconn, timeouts);
    complete &= spec.is_ok();
    Routing {
        spec: spec.unwrap_or_default(),
        route_index,
        complete,
    }
}

/// Reports waddle-haproxy errors at their configuration paths (route indices renumbered to
/// the configuration's), each detail naming its element.
fn report(routing: &Routing, errs: &waddle_haproxy::ValidationErrors, diags: &mut Diagnostics) {
    for e in errs.renumber_routes(&routing.route_index).errors() {
        let path = to_fw_path(&e.path);
        super::super::error_named(diags, path, "Invalid SNI proxy configuration", &e.kind);
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

/// The routing's checks (the shared VM checks follow them, see [`validate`]).
pub(super) fn payload(config: &Value, diags: &mut Diagnostics) {
    let routing = routing_from(config, diags);
    validate_routing(config, &routing, diags);
}

/// All plan-time checks (no API call), at most [`super::super::MAX_DIAGNOSTICS`] reported.
pub fn validate(config: &Value, diags: &mut Diagnostics) {
    vm::validate::all(&SniProxy, config, diags);
}
