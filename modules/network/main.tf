# The platform's first layer: a private, NATed network on the Proxmox VE host(s), built from an
# SDN simple zone, one vnet (the bridge) and one subnet with SNAT.

resource "waddle_network" "this" {
  zone       = var.zone
  vnet       = var.vnet
  alias      = var.alias
  cidr       = var.cidr
  gateway    = var.gateway
  snat       = var.snat
  dhcp_range = var.dhcp_range
  nodes      = var.nodes

  # null when none is set: an imported resource then plans no change.
  timeouts = length(var.timeouts) == 0 ? null : {
    create = lookup(var.timeouts, "create", null)
    update = lookup(var.timeouts, "update", null)
    delete = lookup(var.timeouts, "delete", null)
  }
}
