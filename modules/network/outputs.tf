output "id" {
  description = "\"<zone>/<vnet>\" (the import ID of the waddle_network resource)."
  value       = waddle_network.this.id
}

output "bridge" {
  description = "Bridge name for VM NICs on the private network (the vnet id)."
  value       = waddle_network.this.bridge
}

output "cidr" {
  description = "IPv4 subnet of the private network."
  value       = waddle_network.this.cidr
}

output "prefix_length" {
  description = "Prefix length of cidr (e.g. 24), for static guest addresses."
  value       = tonumber(split("/", waddle_network.this.cidr)[1])
}

output "gateway" {
  description = "Gateway (NAT router) address of the private network."
  value       = waddle_network.this.gateway
}

output "snat" {
  description = "Whether traffic leaving the private network is source-NATed."
  value       = waddle_network.this.snat
}

output "firewall_active_rules" {
  description = "Keys of the host firewall rules in Proxmox ([] when firewall_enabled is false)."
  value       = var.firewall_enabled ? waddle_host_firewall.this[0].active_rules : []
}
