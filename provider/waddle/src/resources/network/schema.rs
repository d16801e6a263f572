//! The schema of `waddle_network`.

use waddle_framework::prelude::*;

use super::{timeouts, TIMEOUTS};

/// The resource schema.
pub fn schema() -> Schema {
    Schema::new(
        "A private, NATed IPv4 network on Proxmox VE, built from SDN objects: a `simple` zone, one \
         vnet in it (a Linux bridge on every node of the zone, named after the vnet) and one \
         subnet whose gateway address lives on that bridge, with source NAT to the outside by \
         default. Every change is activated with `PUT /cluster/sdn`. Attach VMs with \
         `bridge = waddle_network.<name>.bridge`.\n\n\
         Import with `terraform import waddle_network.<name> <zone>/<vnet>` (the vnet's only \
         subnet is adopted).\n\n\
         SDN objects have no field for an ownership mark, so a create adopts an existing zone, \
         vnet or subnet with its id only when it is still pending (created, never applied) and \
         exactly as configured: what a create interrupted before `PUT /cluster/sdn` left \
         behind. An applied object with the id is refused (import it instead).",
    )
    .version(0)
    .attribute(
        "id",
        Attribute::string()
            .computed()
            .use_state_for_unknown()
            .description("`<zone>/<vnet>` (also the import ID)."),
    )
    .attribute(
        "zone",
        Attribute::string()
            .required()
            .requires_replace()
            .description(
                "SDN zone id (type `simple`, created by this resource): 2-8 characters, a letter \
                 first, then letters or digits (PVE's `pve-sdn-zone-id`). Changing it replaces \
                 the network.",
            ),
    )
    .attribute(
        "vnet",
        Attribute::string()
            .required()
            .requires_replace()
            .description(
                "SDN vnet id, also the name of the bridge on the nodes: 2-8 characters, a letter \
                 first, then letters or digits (PVE's `pve-sdn-vnet-id`); must not be the name of \
                 an existing bridge. No VLAN tag (simple zone). Changing it replaces the network.",
            ),
    )
    .attribute(
        "alias",
        Attribute::string().optional().description(
            "Free-text vnet alias shown in the Proxmox UI (at most 256 characters). Unset \
             (default): none. Updated in place.",
        ),
    )
    .attribute(
        "cidr",
        Attribute::string()
            .required()
            .requires_replace()
            .description(
                "IPv4 subnet in CIDR notation with the host bits zero, prefix length 1-30 (e.g. \
                 `10.10.0.0/24`). Changing it replaces the network.",
            ),
    )
    .attribute(
        "gateway",
        Attribute::string().optional().computed().description(
            "Gateway address of the subnet, configured on the vnet bridge of every node: inside \
             `cidr`, not its network or broadcast address. Default: the first host of `cidr` \
             (`10.10.0.1` for `10.10.0.0/24`). Updated in place.",
        ),
    )
    .attribute(
        "snat",
        Attribute::bool().default(true).description(
            "Source NAT (masquerade) of traffic leaving the subnet through the node's default \
             route. Default `true`. Updated in place.",
        ),
    )
    .attribute(
        "dhcp_range",
        // An object-typed attribute, not a nested attribute: Terraform 1.0's plan crashes on a
        // null single nested attribute.
        Attribute::new(Type::object([("start", Type::String), ("end", Type::String)]))
            .optional()
            .description(
                "DHCP range `{ start = \"10.10.0.100\", end = \"10.10.0.200\" }` (both inside \
                 `cidr`, `end` not before `start`) served by dnsmasq on the vnet (the zone then \
                 gets `dhcp = dnsmasq`, with PVE IPAM; the `dnsmasq` package must be installed on \
                 the nodes). Must not contain the gateway. Unset (default): no DHCP. Updated in \
                 place.",
            ),
    )
    .attribute(
        "nodes",
        Attribute::list_of(Type::String).optional().description(
            "Proxmox VE nodes the zone (and so the bridge) is deployed on. Unset (default): \
             every node of the cluster. Updated in place.",
        ),
    )
    .attribute(
        "bridge",
        Attribute::string()
            .computed()
            .description("Bridge name for VM NICs on this network (the vnet id)."),
    )
    .attribute(
        timeouts::ATTR,
        timeouts::attribute(
            &TIMEOUTS,
            [
                "Deadline of the wait for the SDN reload task of create.",
                "Deadline of the wait for the SDN reload task of an update.",
                "Deadline of the wait for the SDN reload task of destroy.",
            ],
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// Validation (pure)
// ---------------------------------------------------------------------------------------------
