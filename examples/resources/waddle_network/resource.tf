# The platform's private network: 10.10.0.0/24 behind NAT, gateway 10.10.0.1 on the
# Proxmox VE host.
resource "waddle_network" "private" {
  zone  = "waddle"
  vnet  = "wdlnet"
  alias = "waddle private network"
  cidr  = "10.10.0.0/24"
  # gateway = "10.10.0.1"  # default: the first host of cidr
  # snat    = true         # default

  # Optional: hand out addresses with dnsmasq (installed on the nodes).
  # dhcp_range = {
  #   start = "10.10.0.100"
  #   end   = "10.10.0.200"
  # }
}

# Attach VM NICs with bridge = waddle_network.private.bridge
output "private_bridge" {
  value = waddle_network.private.bridge
}

# Import an existing simple zone and its vnet:
#   terraform import waddle_network.private waddle/wdlnet
