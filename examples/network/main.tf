# The platform's private network on a Proxmox VE host: 10.10.0.0/24 behind NAT, gateway
# 10.10.0.1, bridge vmbr1 (an SDN vnet). Provider settings come from the environment
# (PROXMOX_VE_ENDPOINT, PROXMOX_VE_API_TOKEN, PROXMOX_VE_CA_CERT, PROXMOX_VE_NODE), e.g. from
# `waddle-sandbox --env-file .sandbox.env`.

terraform {
  required_version = ">= 1.0.3"

  required_providers {
    waddle = {
      source = "waddle-social/waddle"
    }
  }
}

provider "waddle" {}

module "network" {
  source = "../../modules/network"
}

output "bridge" {
  description = "Attach VM NICs here."
  value       = module.network.bridge
}

output "cidr" {
  value = module.network.cidr
}

output "gateway" {
  value = module.network.gateway
}
