//! The `waddle_host_firewall` schema.

use waddle_framework::prelude::*;
use waddle_framework::NestingMode;

use super::super::timeouts;
use super::TIMEOUTS;

fn s(desc: &str) -> Attribute {
    Attribute::string().description(desc)
}

/// The resource schema.
pub fn schema() -> Schema {
    let rule = Attribute::nested(
        NestingMode::Map,
        [
            (
                "type",
                s("`in`, `out`, or `group` (then `action` names a security group). Unset: `in`.")
                    .optional(),
            ),
            (
                "action",
                s(
                    "`ACCEPT`, `DROP`, `REJECT`, or a security group's name for `type = \
                   \"group\"`. Unset: `ACCEPT`.",
                )
                .optional(),
            ),
            (
                "source",
                s(
                    "Source: an address, a network (`10.10.0.0/24`), a range (`a-b`), a comma \
                   list of those, `+<ipset>` or an alias. Unset: any.",
                )
                .optional(),
            ),
            (
                "dest",
                s("Destination, like `source`. Unset: any.").optional(),
            ),
            (
                "proto",
                s(
                    "Protocol (`tcp`, `udp`, `icmp`, ...). Required with `dport`/`sport`. \
                   Unset: any.",
                )
                .optional(),
            ),
            (
                "dport",
                s("Destination port(s): `22`, `80,443`, `8000:8100`. Unset: any.").optional(),
            ),
            (
                "sport",
                s("Source port(s), like `dport`. Unset: any.").optional(),
            ),
            (
                "macro",
                s(
                    "A Proxmox macro (`SSH`, `HTTPS`, ...), spelled as Proxmox lists it. Unset: \
                   none.",
                )
                .optional(),
            ),
            (
                "iface",
                s("Only packets on this host interface (e.g. `vmbr0`). Unset: any.").optional(),
            ),
            (
                "log",
                s("Log level (`nolog`, `info`, ...). Unset: Proxmox's default.").optional(),
            ),
            (
                "enabled",
                Attribute::bool()
                    .optional()
                    .description("The rule is switched on in Proxmox. Unset: `true`."),
            ),
            (
                "description",
                s("Free text after the rule's mark in its comment. Unset: none.").optional(),
            ),
            (
                "expires",
                s(
                    "RFC 3339 date-time (`2026-02-01T18:00:00Z`) after which the rule is removed: \
                   the first plan after it drops the key from `active_rules` and the apply \
                   deletes the rule (time-boxed access, e.g. a temporary SSH rule). It is also \
                   written into the rule's comment, so the Proxmox UI shows it. Unset: never.",
                )
                .optional(),
            ),
        ],
    )
    .optional()
    .description(
        "Node-level firewall rules, keyed by their own name: each rule's comment carries \
         `waddle:<key>` (then `expires=...` and the description), and that mark, never the \
         rule's position, is how waddle finds it again. New rules are inserted at the top (where \
         Proxmox puts them); a rule someone adds above them by hand changes nothing. Every \
         change is made in place on the rule found by its mark and read back; edits made in the \
         Proxmox UI to a marked rule show as drift and are repaired; rules without the mark are \
         never touched. Keys: lower-case letters, digits, `-` and `_`.",
    );
    Schema::new(DESCRIPTION)
        .attribute(
            "id",
            Attribute::string()
                .computed()
                .use_state_for_unknown()
                .description("The node name (also the import ID)."),
        )
        .attribute(
            "node",
            Attribute::string()
                .optional()
                .computed()
                .requires_replace()
                .description(
                    "Proxmox VE node whose host rules are managed. Default: the provider's \
                     `node`. Changing it replaces the resource.",
                ),
        )
        .attribute(
            "enabled",
            Attribute::bool().default(true).description(
                "The cluster firewall (`/cluster/firewall/options` `enable`). Default `true`.",
            ),
        )
        .attribute(
            "policy_in",
            Attribute::string().default("DROP").description(
                "Input policy of the cluster firewall: `DROP` (default), `REJECT` or `ACCEPT`.",
            ),
        )
        .attribute(
            "policy_out",
            Attribute::string().default("ACCEPT").description(
                "Output policy of the cluster firewall: `ACCEPT` (default), `REJECT` or `DROP`.",
            ),
        )
        .attribute("rules", rule)
        .attribute(
            "active_rules",
            Attribute::list_of(Type::String).computed().description(
                "Keys of the rules that are in Proxmox (state) or will be after the apply \
                 (plan), sorted: a rule whose `expires` has passed is left out, so the plan \
                 shows it going; one deleted outside Terraform is missing from the state, so \
                 the plan shows it coming back. (A computed attribute inside `rules` would \
                 crash Terraform 1.0's plan check.)",
            ),
        )
        .attribute(
            "ipset",
            // An object-typed attribute: Terraform 1.0's plan crashes on a null single nested
            // attribute.
            Attribute::new(Type::object([
                ("name", Type::String),
                ("cidrs", Type::List(Box::new(Type::String))),
            ]))
            .optional()
            .description(
                "An IP set for operator addresses, owned by this resource: `{ name = \
                 \"waddle-operators\", cidrs = [\"203.0.113.7/32\"] }`. Refer to it in rules as \
                 `+<name>`. Named `management`, it is Proxmox's management IP set: its members \
                 reach the API (8006) and SSH (22) even with `policy_in = \"DROP\"`, unless a \
                 host rule drops them first. Created before the rules, deleted after them. \
                 Unset (default): none.",
            ),
        )
        .attribute(
            "acknowledge_lockout_risk",
            Attribute::bool().default(false).description(
                "Apply a plan that, by waddle's reckoning, would drop this provider's own \
                 connection to the Proxmox API. Default `false`: such a plan is refused.",
            ),
        )
        .attribute(
            "client_address",
            s(
                "The IPv4 address Proxmox sees this provider's API connections come from, for the \
               lock-out check. Default: the local address this machine routes to the endpoint \
               from. Set it when NAT, a VPN gateway or a proxy sits in between.",
            )
            .optional(),
        )
        .attribute(
            "previous_options",
            Attribute::new(Type::object([
                ("enabled", Type::Bool),
                ("policy_in", Type::String),
                ("policy_out", Type::String),
            ]))
            .computed()
            .use_state_for_unknown()
            .description(
                "The cluster firewall options found at create (null policies: Proxmox's \
                 defaults); destroy restores them. Null after an import: destroy then leaves \
                 the options as they are.",
            ),
        )
        .attribute(
            timeouts::ATTR,
            timeouts::attribute(
                &TIMEOUTS,
                [
                    "Deadline of create.",
                    "Deadline of an update.",
                    "Deadline of destroy.",
                ],
            ),
        )
}

const DESCRIPTION: &str = "The Proxmox VE host firewall: the cluster firewall switch and \
policies, a node's rules (accept the private network, the API and SSH from listed sources), \
and an optional IP set for operator addresses.\n\n\
**Lock-out guard.** Before anything is changed, the plan works out whether the resulting \
firewall would drop this provider's own connection to the API: host rules in order (the \
node's, then the cluster's; security groups followed), then Proxmox's `management` IP set \
(with the node's local network, which Proxmox adds to it) for port 8006, then `policy_in`. \
The source is `client_address`, else the local address this machine routes to the endpoint \
from. When the connection would be dropped — or waddle cannot tell, e.g. a rule on an \
interface or an alias it cannot resolve precedes the accepting one — the plan is refused with \
the reason, unless `acknowledge_lockout_risk = true`. Existing connections survive (Proxmox \
keeps established connections), so a lock-out shows only on the next run.\n\n\
**Emergency access.** Locked out anyway? From the node's console (IPMI/iKVM, the hosting \
provider's rescue console, or a physical screen), as root: `pve-firewall stop` (until the next \
restart of the service), or `pvesh set /cluster/firewall/options --enable 0` (persistent); \
then fix the configuration and apply again.\n\n\
**Time-boxed access.** A rule with `expires` is removed by the first plan after that time: \
its key leaves `active_rules` and the apply deletes the rule — no more \
\"remember to delete the temporary SSH rule\".\n\n\
**Destroy** deletes every rule carrying the `waddle:` mark on the node and the IP set, and \
restores `previous_options` (first, when that turns the firewall off). Rules without the mark \
stay.\n\n\
Import with `terraform import waddle_host_firewall.<name> <node>` (or `<node>/<ipset name>` \
to adopt the IP set too): every rule carrying the mark is adopted.";
