# The platform's public entry point: a Debian 12 VM running HAProxy that passes TLS by SNI to
# the private backends (Teleport, the Kubernetes gateway VIP), built with modules/haproxy.
# Provider settings come from the environment (PROXMOX_VE_ENDPOINT, PROXMOX_VE_API_TOKEN,
# PROXMOX_VE_CA_CERT, PROXMOX_VE_NODE), e.g. from `waddle-sandbox --env-file .sandbox.env`.
#
# Route changes (extra_routes, routes, http_backend, ports, timeouts) are applied in place
# through the QEMU guest agent; everything about the VM itself replaces it.

terraform {
  required_version = ">= 1.0.3"

  required_providers {
    waddle = {
      source = "waddle-social/waddle"
    }
  }
}

provider "waddle" {}

variable "domain" {
  type        = string
  description = "Platform domain."
  default     = "example.org"
}

variable "ssh_public_key" {
  type        = string
  description = "OpenSSH public key of the admin user."
  default     = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHWaddleExampleKeyReplaceMeReplaceMe00 admin"
}

module "sni_proxy" {
  source = "../../modules/haproxy"

  domain          = var.domain
  public_cidr     = "203.0.113.10/24"
  public_gateway  = "203.0.113.1"
  private_bridge  = "vmbr1"
  ssh_public_keys = [var.ssh_public_key]

  extra_routes = [
    {
      hostnames      = ["git.${var.domain}"]
      backend        = "10.10.0.40:443"
      proxy_protocol = true
      check          = true
    },
  ]
}

output "vmid" {
  value = module.sni_proxy.vmid
}

output "public_address" {
  value = module.sni_proxy.public_address
}

output "config_hash" {
  value = module.sni_proxy.config_hash
}
