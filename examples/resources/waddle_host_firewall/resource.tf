# The host firewall of node "pve": cluster firewall on, input policy DROP, everything from
# the private network accepted, the API and SSH only from the operators' IP set, and a
# temporary SSH rule that removes itself after its expiry.
resource "waddle_host_firewall" "pve" {
  node       = "pve"
  enabled    = true
  policy_in  = "DROP"
  policy_out = "ACCEPT"

  ipset = {
    name  = "waddle-operators"
    cidrs = ["203.0.113.7/32"]
  }

  rules = {
    private = {
      source      = "10.10.0.0/24"
      description = "the private network"
    }
    api = {
      source = "+waddle-operators"
      proto  = "tcp"
      dport  = "8006"
    }
    ssh = {
      source = "+waddle-operators"
      proto  = "tcp"
      dport  = "22"
    }
    # Time-boxed: the first plan after this time removes the rule.
    ssh-laptop = {
      source  = "198.51.100.23"
      proto   = "tcp"
      dport   = "22"
      expires = "2026-02-01T18:00:00Z"
    }
  }
}

# Locked out anyway? From the node's console, as root:
#   pve-firewall stop
#   pvesh set /cluster/firewall/options --enable 0
#
# Import (every rule whose comment starts with "waddle:" is adopted):
#   terraform import waddle_host_firewall.pve pve/waddle-operators
