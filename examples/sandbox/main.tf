# The whole waddle.social layout, applied to the local sandbox (`waddle-sandbox`): the private
# NATed network, the public SNI proxy VM and a three-node Talos cluster with an API VIP.
# `./scripts/demo.sh` starts the sandbox, exports its PROXMOX_VE_* variables and applies this.
#
# The sandbox emulates Proxmox VE and the Talos nodes on loopback addresses only, so the Talos
# node addresses and the VIP below are in 127.20.10.0/24: each emulated node serves the Talos
# API on its own static address. On a real Proxmox host, drop those four arguments and the
# module defaults give the original layout (10.10.0.10-12, VIP 10.10.0.20).

terraform {
  required_version = ">= 1.0.3"

  required_providers {
    waddle = {
      source = "waddle-social/waddle"
    }
  }
}

# Endpoint, token, CA and node come from PROXMOX_VE_ENDPOINT, PROXMOX_VE_API_TOKEN,
# PROXMOX_VE_CA_CERT and PROXMOX_VE_NODE.
provider "waddle" {}

variable "domain" {
  type        = string
  description = "Public domain of the platform (teleport.<domain>, *.apps.<domain>, ...)."
  default     = "waddle.example"
}

variable "ssh_public_key" {
  type        = string
  description = "OpenSSH public key of the proxy VM's admin user."
  default     = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHWaddleExampleKeyReplaceMeReplaceMe00 admin"
}

module "network" {
  source = "../../modules/network"
}

module "sni_proxy" {
  source = "../../modules/haproxy"

  domain          = var.domain
  public_cidr     = "203.0.113.10/24"
  public_gateway  = "203.0.113.1"
  private_bridge  = module.network.bridge
  private_cidr    = "10.10.0.3/24"
  ssh_public_keys = [var.ssh_public_key]
}

module "cluster" {
  source = "../../modules/talos-cluster"

  bridge                  = module.network.bridge
  control_plane_addresses = ["127.20.10.10", "127.20.10.11", "127.20.10.12"]
  gateway                 = "127.20.10.1"
  vip                     = "127.20.10.20"

  # etcd snapshots before every Talos/Kubernetes upgrade and before destroy, the last five
  # kept, next to the state.
  etcd_backup = {
    directory = "${path.root}/etcd-snapshots"
    when      = ["before_upgrade", "before_destroy"]
    keep      = 5
  }
}

output "private_bridge" {
  description = "The SDN vnet every VM's private NIC is attached to."
  value       = module.network.bridge
}

output "sni_proxy_vmid" {
  description = "VM id of the public HAProxy VM."
  value       = module.sni_proxy.vmid
}

output "sni_routes" {
  description = "SNI routes the proxy serves."
  value       = module.sni_proxy.routes
}

output "sni_config_hash" {
  description = "Hash of the live HAProxy configuration and maps."
  value       = module.sni_proxy.config_hash
}

output "talos_schematic_id" {
  description = "Image Factory schematic of the Talos nodes."
  value       = module.cluster.schematic_id
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
  description = "Admin kubeconfig (sensitive: `terraform output -raw kubeconfig`)."
  value       = module.cluster.kubeconfig
  sensitive   = true
}
