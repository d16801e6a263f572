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

# The host firewall (opt-in): cluster firewall on with input policy DROP, everything from the
# private network accepted, the Proxmox API from the operators' IP set and SSH from listed
# sources, optionally time-boxed. The provider refuses a plan that would cut itself off the
# API (see the waddle_host_firewall docs); emergency access from the node's console:
# `pve-firewall stop` or `pvesh set /cluster/firewall/options --enable 0`.

locals {
  firewall_rules = merge(
    {
      private = {
        source      = var.cidr
        proto       = null
        dport       = null
        expires     = null
        description = "the private network"
      }
    },
    {
      for k, v in {
        api = {
          source      = "+${var.operator_ipset_name}"
          proto       = "tcp"
          dport       = "8006"
          expires     = null
          description = "Proxmox API from the operators"
        }
      } : k => v if length(var.operator_api_sources) > 0
    },
    {
      for k, v in {
        ssh = {
          source      = join(",", var.operator_ssh_sources)
          proto       = "tcp"
          dport       = "22"
          expires     = var.operator_access_expires
          description = "SSH from the operators"
        }
      } : k => v if length(var.operator_ssh_sources) > 0
    },
  )
}

resource "waddle_host_firewall" "this" {
  count = var.firewall_enabled ? 1 : 0

  node      = var.firewall_node
  policy_in = var.firewall_policy_in
  ipset = length(var.operator_api_sources) == 0 ? null : {
    name  = var.operator_ipset_name
    cidrs = var.operator_api_sources
  }
  rules                    = local.firewall_rules
  acknowledge_lockout_risk = var.acknowledge_lockout_risk
}
