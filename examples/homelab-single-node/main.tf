# A single-node Talos cluster on one Proxmox VE host: one VM with a fixed MAC (so the DHCP
# reservation / firewall rules of a home network keep working), SecureBoot and TPM-sealed
# disk encryption, the node also running workloads.
#
#   export PROXMOX_VE_ENDPOINT=https://pve.lan:8006
#   export PROXMOX_VE_API_TOKEN='root@pam!waddle=...'
#   export PROXMOX_VE_NODE=pve
#   terraform init && terraform apply
#   terraform output -raw kubeconfig > kubeconfig
#
# The VIP gives the Kubernetes API an address that survives adding control planes later.

terraform {
  required_version = ">= 1.0"
  required_providers {
    waddle = {
      source = "waddle-social/waddle"
    }
  }
}

# Connection settings from PROXMOX_VE_* environment variables. Set proxy_url when the node
# network is only reachable through a SOCKS5 or HTTP CONNECT proxy.
provider "waddle" {}

variable "cluster_name" {
  type        = string
  description = "Cluster name."
  default     = "homelab"
}

variable "address" {
  type        = string
  description = "Static address of the node, with prefix length."
  default     = "192.168.1.50/24"
}

variable "gateway" {
  type        = string
  description = "Default gateway of the node."
  default     = "192.168.1.1"
}

variable "vip" {
  type        = string
  description = "Virtual IP of the Kubernetes API (same subnet as the node)."
  default     = "192.168.1.60"
}

variable "mac" {
  type        = string
  description = "Fixed MAC address of the VM's NIC."
  default     = "BC:24:11:4C:AB:01"
}

variable "vmid" {
  type        = number
  description = "Proxmox VM id."
  default     = 150
}

variable "bridge" {
  type        = string
  description = "Proxmox bridge of the VM's NIC."
  default     = "vmbr0"
}

variable "storage" {
  type        = string
  description = "Proxmox storage for the VM's disks (system disk, EFI vars, TPM state)."
  default     = "local-lvm"
}

variable "talos_version" {
  type        = string
  description = "Talos Linux release."
  default     = "v1.12.11"
}

data "waddle_talos_image" "this" {
  talos_version = var.talos_version
  extensions    = ["siderolabs/qemu-guest-agent", "siderolabs/iscsi-tools"]
  secureboot    = true
}

resource "waddle_talos_cluster" "homelab" {
  cluster_name  = var.cluster_name
  endpoint      = "https://${var.vip}:6443"
  vip           = var.vip
  talos_version = var.talos_version

  image = {
    installer      = data.waddle_talos_image.this.installer_image
    disk_image_url = data.waddle_talos_image.this.disk_image_url
  }

  secureboot      = true
  disk_encryption = true

  nodes = {
    talos1 = {
      role    = "controlplane"
      address = var.address
      gateway = var.gateway
      mac     = var.mac
      proxmox = {
        vmid      = var.vmid
        bridge    = var.bridge
        storage   = var.storage
        cores     = 4
        memory    = 8192
        disk_size = 32
      }
    }
  }
}

output "kubeconfig" {
  description = "Admin kubeconfig."
  value       = waddle_talos_cluster.homelab.kubeconfig
  sensitive   = true
}

output "talosconfig" {
  description = "talosctl configuration."
  value       = waddle_talos_cluster.homelab.talosconfig
  sensitive   = true
}

output "node_addresses" {
  description = "Node addresses by name."
  value       = waddle_talos_cluster.homelab.node_addresses
}
