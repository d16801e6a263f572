//! The schema of `waddle_sni_proxy`: the shared VM attributes (`vm::schema`), the two NICs
//! and the routing, which is updated in place.

use waddle_framework::prelude::*;
use waddle_haproxy::{Timeouts, DEFAULT_MAXCONN};

use super::{DEFAULTS, NICS, TIMEOUTS};
use crate::resources::timeouts;
use crate::resources::vm;

/// The `proxy_timeouts` defaults (`waddle_haproxy::Timeouts`), as formatted strings.
fn defaults() -> [(&'static str, &'static str, String); 5] {
    let t = Timeouts::default();
    let d = |name| t.get(name).map(waddle_haproxy::format_duration);
    Timeouts::FIELDS.map(|(name, what)| (name, what, d(name).unwrap_or_default()))
}

pub(super) fn default_timeouts() -> Value {
    Value::object(defaults().map(|(name, _, d)| (name, Value::from(d))))
}

/// The resource schema.
pub fn schema() -> Schema {
    let timeout_attr = |what: &str, d: &str| {
        Attribute::string()
            .optional()
            .computed()
            .description(format!(
                "{what} A number with unit `ms`, `s`, `m`, `h` or `d` (a bare number is \
             milliseconds). Default `{d}`."
            ))
    };
    let timeout_defaults: Vec<String> = (defaults().iter())
        .map(|(name, _, d)| format!("{name} = \"{d}\""))
        .collect();
    let mut s = Schema::new(
        "A public SNI proxy: a small Debian 12 VM on Proxmox VE running HAProxy in TCP mode. It \
         reads the SNI of each TLS ClientHello and passes the connection, still encrypted, to the \
         backend of the matching route; anything else (unknown names, no SNI, non-TLS) is \
         dropped. Route changes are applied in place through the QEMU guest agent (checked with \
         `haproxy -c` on the VM first, then a seamless reload); changes to the VM itself \
         (placement, NICs, cloud-init inputs) replace it. Cloud-init is delivered as a NoCloud \
         seed ISO uploaded through the API, so no SSH access to the Proxmox host is needed.",
    )
    .version(0)
    .attribute(
        "public_nic",
        vm::schema::nic_attribute(
            &NICS[0],
            ("vmbr0", "203.0.113.10/24"),
            "Public NIC (`net0`, virtio). Changing it replaces the VM (cloud-init applies the \
             network configuration once).",
        ),
    )
    .attribute(
        "private_nic",
        vm::schema::nic_attribute(
            &NICS[1],
            ("vmbr1", "10.10.0.3/24"),
            "Private NIC (`net1`, virtio) on the platform network, where the backends are. \
             Changing it replaces the VM.",
        ),
    );
    for (name, a) in vm::schema::attributes(&DEFAULTS, &NICS) {
        s = s.attribute(name, a);
    }
    s = s
    .attribute(
        "routes",
        Attribute::nested(
            NestingMode::List,
            [
                (
                    "hostnames",
                    Attribute::list_of(Type::String).required().description(
                        "Exact names (`teleport.example.org`) and subdomain wildcards \
                         (`*.apps.example.org` or `.apps.example.org`: any subdomain at any depth, \
                         never the suffix itself). Case-insensitive; Unicode names are converted \
                         to A-labels. At least one.",
                    ),
                ),
                (
                    "backend",
                    Attribute::string().required().description(
                        "`<ip>:<port>` or `[<ipv6>]:<port>` (IP literals only).",
                    ),
                ),
                (
                    "proxy_protocol",
                    Attribute::bool()
                        .optional()
                        .description("Send a PROXY protocol v2 header to the backend. Default `false`."),
                ),
                (
                    "check",
                    Attribute::bool()
                        .optional()
                        .description("Layer-4 (TCP connect) health check of the backend. Default `true`."),
                ),
            ],
        )
        .required()
        .description(
            "SNI routes, in order. Exact names win over wildcards, the longest wildcard suffix \
             wins; everything else is dropped. Duplicate or overlapping names, catch-alls and \
             invalid names or backends are refused at plan time. Updated in place.",
        ),
    )
    .attribute(
        "http_backend",
        Attribute::string().optional().description(
            "Plain TCP forward of the `listen.http` port to `<ip>:<port>` (HTTP redirects, ACME \
             HTTP-01). Unset (default): no port-80 listener. Updated in place.",
        ),
    )
    .attribute(
        "listen",
        Attribute::nested(
            NestingMode::Single,
            [
                (
                    "https",
                    Attribute::number()
                        .optional()
                        .description("TLS (SNI) port. Default `443`.")
                        .validate(Validator::int_range(0, 65535)),
                ),
                (
                    "http",
                    Attribute::number()
                        .optional()
                        .description("Port forwarded to `http_backend`. Default `80`.")
                        .validate(Validator::int_range(0, 65535)),
                ),
            ],
        )
        .default(Value::object([
            ("https", Value::from(443i64)),
            ("http", Value::from(80i64)),
        ]))
        .description("Listening ports. Default `{ https = 443, http = 80 }`. Updated in place."),
    )
    .attribute(
        "maxconn",
        Attribute::number().default(Value::from(i64::from(DEFAULT_MAXCONN))).description(format!(
            "HAProxy process and frontend connection limit. Default `{DEFAULT_MAXCONN}`. Updated in place."
        )).validate(Validator::int_range(0, i64::from(u32::MAX))),
    )
    .attribute(
        "proxy_timeouts",
        Attribute::nested(
            NestingMode::Single,
            defaults().map(|(name, what, d)| (name, timeout_attr(what, &d))),
        )
        .default(default_timeouts())
        .description(format!(
            "HAProxy timeouts. Default `{{ {} }}`. Updated in place.",
            timeout_defaults.join(", ")
        )),
    )
    .attribute(
        timeouts::ATTR,
        timeouts::attribute(
            &TIMEOUTS,
            [
                "Deadline of create, including the wait for the VM to report HAProxy running with \
                 the expected configuration.",
                "Deadline of an update, including the wait for the guest agent of a stopped VM.",
                "Deadline of destroy (the ACPI shutdown waits at most 60s of it, then the VM is stopped).",
            ],
        ),
    )
    ;
    let computed = [
        (
            "haproxy_cfg",
            "Rendered `/etc/haproxy/haproxy.cfg` (after a refresh: the live file if it drifted).",
        ),
        (
            "exact_map",
            "Rendered exact-name map (`<name> <backend>` lines).",
        ),
        (
            "wildcard_map",
            "Rendered wildcard map (`.<suffix> <backend>` lines, longest suffix first).",
        ),
        (
            "config_hash",
            "SHA-256 over the config and both maps. Refresh reads the live files through the \
             guest agent; a different value here means drift, repaired by the next apply.",
        ),
    ];
    for (name, description) in computed {
        s = s.attribute(
            name,
            Attribute::string().computed().description(description),
        );
    }
    s
}
