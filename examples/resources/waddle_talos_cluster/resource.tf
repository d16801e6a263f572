data "waddle_talos_image" "this" {
  talos_version = "v1.12.11"
  extensions    = ["siderolabs/qemu-guest-agent", "siderolabs/iscsi-tools"]
}

resource "waddle_talos_cluster" "this" {
  cluster_name = "waddle"
  endpoint     = "https://10.10.0.20:6443"
  vip          = "10.10.0.20"

  image = {
    installer      = data.waddle_talos_image.this.installer_image
    disk_image_url = data.waddle_talos_image.this.disk_image_url
  }

  nodes = {
    cp1 = {
      role    = "controlplane"
      address = "10.10.0.10/24"
      gateway = "10.10.0.1"
      proxmox = { node = "pve", vmid = 110, bridge = "vmbr1", cores = 3, memory = 8192, disk_size = 10 }
    }
  }
}

output "kubeconfig" {
  value     = waddle_talos_cluster.this.kubeconfig
  sensitive = true
}
