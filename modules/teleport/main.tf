# The platform's door: one Debian 12 VM on the private network running Teleport Community
# (auth, proxy, SSH, Kubernetes and app services), with GitHub SSO. Built on the
# waddle_teleport_node resource: teleport.yaml, the GitHub connector and the roles are written
# through the QEMU guest agent, never into the NoCloud seed, so no secret sits on Proxmox storage.

locals {
  # Empty collections are passed as null: an imported node then plans no change.
  ssh_labels = length(var.ssh_labels) == 0 ? null : var.ssh_labels
  apps       = length(var.apps) == 0 ? null : var.apps
  roles      = length(var.roles) == 0 ? null : var.roles

  teams_to_roles = [
    for m in var.teams_to_roles : {
      organization = var.github_org
      team         = m.team
      roles        = m.roles
    }
  ]
}

resource "waddle_teleport_node" "this" {
  name      = var.name
  node      = var.node
  vmid      = var.vmid
  storage   = var.storage
  cores     = var.cores
  memory    = var.memory
  disk_size = var.disk_size

  image_url     = var.image_url
  image_storage = var.image_storage

  private_nic = {
    bridge  = var.private_bridge
    cidr    = var.private_cidr
    gateway = var.private_gateway
  }
  dns_servers = var.dns_servers

  admin_user          = var.admin_user
  ssh_authorized_keys = var.ssh_public_keys

  teleport_version = var.teleport_version
  domain           = var.domain
  public_addr      = var.public_addr
  cluster_name     = var.cluster_name
  acme_email       = var.acme_email
  local_auth       = var.local_auth

  # One setting, checked against the SNI proxy's routes to this node (when given).
  proxy_protocol = var.proxy_protocol
  sni_routes     = var.sni_routes

  github = {
    client_id      = var.github_client_id
    connector_name = var.github_connector_name
    teams_to_roles = local.teams_to_roles
  }
  github_client_secret = var.github_client_secret

  roles          = local.roles
  ssh_labels     = local.ssh_labels
  kubeconfig     = var.kubeconfig
  apps           = local.apps
  proxmox_ui_uri = var.proxmox_ui_uri

  # null when none is set: an imported resource then plans no change.
  timeouts = length(var.timeouts) == 0 ? null : {
    create = lookup(var.timeouts, "create", null)
    update = lookup(var.timeouts, "update", null)
    delete = lookup(var.timeouts, "delete", null)
  }
}
