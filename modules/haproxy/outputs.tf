output "vmid" {
  description = "Proxmox VM id of the SNI proxy."
  value       = waddle_sni_proxy.this.vmid
}

output "public_address" {
  description = "Public IP address (without prefix length)."
  value       = waddle_sni_proxy.this.public_address
}

output "private_address" {
  description = "Private IP address (without prefix length)."
  value       = waddle_sni_proxy.this.private_address
}

output "routes" {
  description = "The effective route list. Pass it to modules/teleport's sni_routes: the Teleport node then refuses at plan a PROXY protocol setting that differs from the routes to it."
  value       = local.routes
}

output "haproxy_cfg" {
  description = "Rendered /etc/haproxy/haproxy.cfg."
  value       = waddle_sni_proxy.this.haproxy_cfg
}

output "exact_map" {
  description = "Rendered exact-name map (/etc/haproxy/maps/exact.map)."
  value       = waddle_sni_proxy.this.exact_map
}

output "wildcard_map" {
  description = "Rendered wildcard map (/etc/haproxy/maps/wildcard.map)."
  value       = waddle_sni_proxy.this.wildcard_map
}

output "config_hash" {
  description = "SHA-256 over the config and both maps; the live value is read back through the guest agent."
  value       = waddle_sni_proxy.this.config_hash
}
