output "talosconfig" {
  description = "talosctl client configuration (admin client certificate, endpoints = the control planes)."
  value       = waddle_talos_cluster.this.talosconfig
  sensitive   = true
}

output "kubeconfig" {
  description = "Admin kubeconfig for the cluster, through the VIP."
  value       = waddle_talos_cluster.this.kubeconfig
  sensitive   = true
}

output "endpoint" {
  description = "Kubernetes API endpoint (the VIP)."
  value       = local.endpoint
}

output "node_addresses" {
  description = "Static address of every node, by node name."
  value       = waddle_talos_cluster.this.node_addresses
}

output "schematic_id" {
  description = "Image Factory schematic ID of the Talos image the nodes run."
  value       = data.waddle_talos_image.this.schematic_id
}

output "etcd_snapshots" {
  description = "The etcd snapshots the provider wrote and keeps (path, sha256, size, reason, node, taken_at), oldest first."
  value       = waddle_talos_cluster.this.etcd_snapshots
}
