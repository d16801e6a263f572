# Three Talos control planes behind a layer-2 VIP on a private Proxmox bridge (the waddle
# layout), plus optional workers. Add a worker by adding it to `workers`; remove it by
# deleting it again (it leaves the cluster, is reset and its VM deleted).
#
#   export PROXMOX_VE_ENDPOINT=https://pve.example.org:8006
#   export PROXMOX_VE_API_TOKEN='root@pam!waddle=...'
#   export PROXMOX_VE_NODE=pve
#   terraform init && terraform apply

terraform {
  required_version = ">= 1.0"
  required_providers {
    waddle = {
      source = "waddle-social/waddle"
    }
  }
}

provider "waddle" {}

variable "cluster_name" {
  type        = string
  description = "Cluster name."
  default     = "waddle"
}

variable "control_planes" {
  type        = map(object({ address = string, vmid = number }))
  description = "Control planes by name: static address (with prefix) and VM id."
  default = {
    cp1 = { address = "10.10.0.10/24", vmid = 110 }
    cp2 = { address = "10.10.0.11/24", vmid = 111 }
    cp3 = { address = "10.10.0.12/24", vmid = 112 }
  }
}

variable "workers" {
  type        = map(object({ address = string, vmid = number }))
  description = "Workers by name."
  default     = {}
}

variable "gateway" {
  type        = string
  description = "Default gateway of the nodes."
  default     = "10.10.0.1"
}

variable "vip" {
  type        = string
  description = "Virtual IP of the Kubernetes API."
  default     = "10.10.0.20"
}

variable "bridge" {
  type        = string
  description = "Proxmox bridge of the private network."
  default     = "vmbr1"
}

variable "talos_version" {
  type        = string
  description = "Talos version. Changing it upgrades every node in place, control planes one at a time."
  default     = "v1.12.11"
}

variable "kubernetes_version" {
  type        = string
  description = "Kubernetes version. Changing it upgrades the control-plane components, then the kubelets node by node."
  default     = "1.35.0"
}

variable "config_contract" {
  type        = string
  description = "Talos configuration contract (\"v1.12\", \"v1.13\"). Null: the minor of talos_version at create, then kept; set it after an upgrade to re-render the configurations for the new release."
  default     = null
}

data "waddle_talos_image" "this" {
  talos_version = var.talos_version
  extensions    = ["siderolabs/qemu-guest-agent", "siderolabs/iscsi-tools"]
}

locals {
  control_planes = {
    for name, n in var.control_planes : name => {
      role    = "controlplane"
      address = n.address
      gateway = var.gateway
      proxmox = { vmid = n.vmid, bridge = var.bridge, cores = 3, memory = 8192, disk_size = 10 }
    }
  }
  workers = {
    for name, n in var.workers : name => {
      role    = "worker"
      address = n.address
      gateway = var.gateway
      proxmox = { vmid = n.vmid, bridge = var.bridge, cores = 3, memory = 8192, disk_size = 10 }
    }
  }
}

resource "waddle_talos_cluster" "this" {
  cluster_name = var.cluster_name
  endpoint     = "https://${var.vip}:6443"
  vip          = var.vip

  talos_version      = var.talos_version
  kubernetes_version = var.kubernetes_version
  config_contract    = var.config_contract

  image = {
    installer      = data.waddle_talos_image.this.installer_image
    disk_image_url = data.waddle_talos_image.this.disk_image_url
  }

  nodes = merge(local.control_planes, local.workers)
}

output "kubeconfig" {
  description = "Admin kubeconfig, through the VIP."
  value       = waddle_talos_cluster.this.kubeconfig
  sensitive   = true
}

output "talosconfig" {
  description = "talosctl configuration."
  value       = waddle_talos_cluster.this.talosconfig
  sensitive   = true
}

output "node_addresses" {
  description = "Node addresses by name."
  value       = waddle_talos_cluster.this.node_addresses
}
