terraform {
  required_providers {
    waddle = {
      source = "waddle-social/waddle"
    }
  }
}

# Offline features (waddle_talos_image, talos_schematic_id) need no settings.
provider "waddle" {}

# Managing Proxmox VE: settings may also come from PROXMOX_VE_* environment variables.
# provider "waddle" {
#   endpoint  = "https://pve.example.com:8006"
#   api_token = var.proxmox_api_token # terraform@pve!waddle=<uuid>
#   ca_cert   = file("pve-root-ca.pem")
#   node      = "pve"
# }
