# Compute the Talos Image Factory schematic ID and image references for a Proxmox VE
# (nocloud) cluster, offline: no request is made to the factory, no provider settings needed.
#
#   terraform init && terraform apply
#
# The schematic ID below is the one factory.talos.dev hands out for the same extensions
# (88d1f7a5c4f1d3aba7df787c448c1d3d008ed29cfb34af53fa0df4336a56040b).

terraform {
  required_providers {
    waddle = {
      source = "waddle-social/waddle"
    }
  }
}

provider "waddle" {}

variable "talos_version" {
  type        = string
  description = "Talos Linux release."
  default     = "v1.12.4"
}

data "waddle_talos_image" "this" {
  talos_version = var.talos_version
  extensions = [
    "siderolabs/iscsi-tools",
    "siderolabs/qemu-guest-agent",
    "siderolabs/util-linux-tools",
  ]
}

# The same extensions plus a serial console, with SecureBoot images.
data "waddle_talos_image" "secureboot" {
  talos_version     = var.talos_version
  extensions        = data.waddle_talos_image.this.extensions
  extra_kernel_args = ["console=ttyS0,115200"]
  secureboot        = true
}

output "schematic_id" {
  value = data.waddle_talos_image.this.schematic_id
}

output "schematic_yaml" {
  value = data.waddle_talos_image.this.schematic_yaml
}

output "installer_image" {
  value = data.waddle_talos_image.this.installer_image
}

output "disk_image_url" {
  value = data.waddle_talos_image.this.disk_image_url
}

output "iso_url" {
  value = data.waddle_talos_image.this.iso_url
}

output "secureboot_installer_image" {
  value = data.waddle_talos_image.secureboot.installer_image
}

output "secureboot_iso_url" {
  value = data.waddle_talos_image.secureboot.iso_url
}
