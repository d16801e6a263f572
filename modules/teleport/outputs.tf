output "web_url" {
  description = "Teleport's web address (https://<public_addr>): the web UI, `tsh login --proxy`, and the GitHub OAuth app's homepage."
  value       = waddle_teleport_node.this.web_url
}

output "github_callback_url" {
  description = "Authorization callback URL to register in the GitHub OAuth app."
  value       = "${waddle_teleport_node.this.web_url}/v1/webapi/github/callback"
}

output "id" {
  description = "\"<node>/<vmid>\" (the import ID of the waddle_teleport_node resource)."
  value       = waddle_teleport_node.this.id
}

output "vmid" {
  description = "Proxmox VM id of the Teleport VM."
  value       = waddle_teleport_node.this.vmid
}

output "node" {
  description = "Proxmox node the Teleport VM runs on."
  value       = waddle_teleport_node.this.node
}

output "ip_address" {
  description = "Private IP address of the Teleport VM (without prefix length)."
  value       = waddle_teleport_node.this.ip_address
}

output "proxy_backend" {
  description = "\"<private address>:3080\", the SNI proxy's backend for Teleport (modules/haproxy teleport_backend). Derived from private_cidr alone, so the SNI proxy may use it while this node takes the proxy's routes as sni_routes."
  value       = "${split("/", var.private_cidr)[0]}:3080"
}

output "cluster_name" {
  description = "Teleport cluster name."
  value       = waddle_teleport_node.this.cluster_name
}

output "teleport_yaml" {
  description = "The rendered /etc/teleport.yaml (holds no secret)."
  value       = waddle_teleport_node.this.teleport_yaml
}
