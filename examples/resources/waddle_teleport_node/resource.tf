variable "github_client_secret" {
  type      = string
  sensitive = true
}

resource "waddle_teleport_node" "access" {
  node = "pve"

  private_nic = {
    bridge = "vmbr1" # cidr 10.10.0.2/24 and gateway 10.10.0.1 by default
  }
  ssh_authorized_keys = [file("~/.ssh/id_ed25519.pub")]

  domain     = "example.org" # the proxy is teleport.example.org
  acme_email = "ops@example.org"

  github = {
    client_id = "Iv1.0123456789abcdef"
    teams_to_roles = [
      { organization = "example-org", team = "platform", roles = ["platform-admin", "access"] },
    ]
  }
  github_client_secret = var.github_client_secret

  roles = {
    platform-admin = {
      logins            = ["root"]
      kubernetes_groups = ["system:masters"]
      node_labels       = { "*" = "*" }
      app_labels        = { "*" = "*" }
      kubernetes_labels = { "*" = "*" }
    }
  }

  # The Proxmox UI is published as proxmox.example.org by default; more apps:
  apps = [
    { name = "talos", uri = "tcp://10.10.0.10:50000" },
  ]

  # kubeconfig = waddle_talos_cluster.main.kubeconfig

  # The SNI proxy in front: checked at plan against proxy_protocol.
  sni_routes = waddle_sni_proxy.edge.routes
}
