output "teleport_web_url" {
  description = "Teleport: the web UI and `tsh login --proxy=<host>:443 --auth=github`."
  value       = module.teleport.web_url
}

output "teleport_github_callback_url" {
  description = "Callback URL of the GitHub OAuth app."
  value       = module.teleport.github_callback_url
}

output "proxmox_url" {
  description = "The Proxmox UI, published through Teleport."
  value       = "https://proxmox.${var.domain}"
}

output "public_ip" {
  description = "The SNI proxy's public address: point the DNS records here."
  value       = module.sni_proxy.public_address
}

output "sni_routes" {
  description = "SNI routes the proxy serves."
  value       = module.sni_proxy.routes
}

output "vmids" {
  description = "VM ids by role."
  value = {
    sni_proxy = module.sni_proxy.vmid
    teleport  = module.teleport.vmid
  }
}

output "kubernetes_endpoint" {
  description = "Kubernetes API endpoint (the VIP)."
  value       = module.cluster.endpoint
}

output "talos_nodes" {
  description = "Static address of each Talos node."
  value       = module.cluster.node_addresses
}

output "kubeconfig" {
  description = "Admin kubeconfig (sensitive: `tofu output -raw kubeconfig`); day to day, use Teleport (`tsh kube login`)."
  value       = module.cluster.kubeconfig
  sensitive   = true
}

output "talosconfig" {
  description = "talosctl configuration (sensitive: `tofu output -raw talosconfig`)."
  value       = module.cluster.talosconfig
  sensitive   = true
}

output "etcd_snapshots" {
  description = "The etcd snapshots the provider wrote and keeps (path, sha256, size, reason, node, taken_at)."
  value       = module.cluster.etcd_snapshots
}
