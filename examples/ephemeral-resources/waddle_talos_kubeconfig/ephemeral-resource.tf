# A one-hour admin kubeconfig for the kubernetes provider, signed from the cluster's CA on the
# machine running tofu, never stored in the plan or the state (Terraform >= 1.10,
# OpenTofu >= 1.11).
ephemeral "waddle_talos_kubeconfig" "admin" {
  machine_secrets = waddle_talos_cluster.this.machine_secrets
  cluster_name    = waddle_talos_cluster.this.cluster_name
  endpoint        = waddle_talos_cluster.this.endpoint
  ttl             = "1h"
}

locals {
  kube = yamldecode(ephemeral.waddle_talos_kubeconfig.admin.kubeconfig)
}

provider "kubernetes" {
  host                   = local.kube.clusters[0].cluster.server
  cluster_ca_certificate = base64decode(local.kube.clusters[0].cluster["certificate-authority-data"])
  client_certificate     = base64decode(local.kube.users[0].user["client-certificate-data"])
  client_key             = base64decode(local.kube.users[0].user["client-key-data"])
}
