# The whole waddle.social platform in one apply: the private NATed network, the public SNI proxy
# (the only thing with a public address), Teleport behind it (GitHub SSO to SSH, Kubernetes and
# the Proxmox UI) and the Talos Kubernetes cluster, whose kubeconfig flows into Teleport in the
# same apply.
#
#   real host:   cp terraform.tfvars.example terraform.tfvars  (fill it in), then
#                export TF_VAR_proxmox_api_token=... TF_VAR_teleport_github_client_secret=...
#                tofu init && tofu apply
#   sandbox:     ./scripts/demo.sh   (applies this with -var-file=sandbox.tfvars)
#
# Outside of this apply: the DNS records (teleport.<domain>, *.teleport.<domain>,
# proxmox.<domain>, *.apps.<domain> -> public_ip) and the GitHub OAuth app (callback: the output
# teleport_github_callback_url).

terraform {
  required_version = ">= 1.0.3"

  required_providers {
    waddle = {
      source = "waddle-social/waddle"
    }
  }
}

# Settings left null are read from PROXMOX_VE_ENDPOINT, PROXMOX_VE_API_TOKEN, PROXMOX_VE_CA_CERT
# and PROXMOX_VE_NODE.
provider "waddle" {
  endpoint  = var.proxmox_endpoint
  api_token = var.proxmox_api_token
  ca_cert   = var.proxmox_ca_cert
  node      = var.proxmox_node_name
}

locals {
  prefix_length = tonumber(split("/", var.internal_network)[1])
  # One place for the PROXY protocol between the SNI proxy and Teleport: the route's header and
  # Teleport's proxy_protocol come from the same value, and the Teleport node checks the routes.
  teleport_proxy_protocol = var.teleport_proxy_protocol
}

module "network" {
  source = "../../modules/network"

  cidr    = var.internal_network
  gateway = var.internal_gateway

  firewall_enabled        = var.firewall_enabled
  operator_api_sources    = var.operator_api_sources
  operator_ssh_sources    = var.operator_ip == null ? [] : [var.operator_ip]
  operator_access_expires = var.operator_access_expires
}

module "sni_proxy" {
  source = "../../modules/haproxy"

  domain          = var.domain
  public_cidr     = "${var.public_ip}/${var.public_prefix_length}"
  public_gateway  = var.public_gateway
  private_bridge  = module.network.bridge
  private_cidr    = "${var.haproxy_internal_ip}/${local.prefix_length}"
  ssh_public_keys = [var.ssh_public_key]
  storage         = var.datastore_id

  teleport_backend        = "${var.teleport_internal_ip}:3080"
  teleport_proxy_protocol = local.teleport_proxy_protocol
  gateway_backend         = "${var.cilium_gateway_vip}:443"
  http_backend            = "${var.cilium_gateway_vip}:80"
  extra_routes            = var.extra_sni_routes
}

module "cluster" {
  source = "../../modules/talos-cluster"

  bridge                  = module.network.bridge
  storage                 = var.datastore_id
  control_plane_addresses = var.talos_node_ips
  prefix_length           = local.prefix_length
  gateway                 = coalesce(var.talos_gateway, var.internal_gateway)
  vip                     = var.talos_vip
  config_patches          = var.talos_config_patches

  etcd_backup = var.etcd_snapshot_directory == null ? null : {
    directory = var.etcd_snapshot_directory
    when      = ["before_upgrade", "before_destroy"]
    keep      = var.etcd_snapshots_kept
  }
}

module "teleport" {
  source = "../../modules/teleport"

  domain          = var.domain
  acme_email      = coalesce(var.acme_email, "admin@${var.domain}")
  private_bridge  = module.network.bridge
  private_cidr    = "${var.teleport_internal_ip}/${local.prefix_length}"
  private_gateway = var.internal_gateway
  ssh_public_keys = [var.ssh_public_key]
  storage         = var.datastore_id

  github_org           = var.teleport_github_org
  github_client_id     = var.teleport_github_client_id
  github_client_secret = var.teleport_github_client_secret
  teams_to_roles       = var.teleport_teams_to_roles

  proxmox_ui_uri = "https://${var.internal_gateway}:8006"
  kubeconfig     = module.cluster.kubeconfig
  apps           = var.teleport_apps

  proxy_protocol = local.teleport_proxy_protocol
  sni_routes     = module.sni_proxy.routes
}
