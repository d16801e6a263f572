# provider::waddle::talos_schematic_id: the Image Factory schematic ID of any schematic,
# computed locally. Provider-defined functions need OpenTofu >= 1.7 or Terraform >= 1.8.
#
#   tofu init && tofu apply

terraform {
  required_providers {
    waddle = {
      source = "waddle-social/waddle"
    }
  }
}

provider "waddle" {}

locals {
  schematic = yamlencode({
    customization = {
      extraKernelArgs = ["net.ifnames=0"]
      systemExtensions = {
        officialExtensions = ["siderolabs/qemu-guest-agent"]
      }
    }
  })
}

data "waddle_talos_image" "this" {
  talos_version     = "v1.12.4"
  extensions        = ["siderolabs/qemu-guest-agent"]
  extra_kernel_args = ["net.ifnames=0"]
}

output "default_schematic_id" {
  # 376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba
  value = provider::waddle::talos_schematic_id("{}")
}

output "schematic_id" {
  value = provider::waddle::talos_schematic_id(local.schematic)
}

output "matches_data_source" {
  # true: the function and the data source agree
  value = provider::waddle::talos_schematic_id(local.schematic) == data.waddle_talos_image.this.schematic_id
}
