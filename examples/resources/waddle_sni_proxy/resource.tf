resource "waddle_sni_proxy" "edge" {
  name          = "sni-proxy"
  node          = "pve"
  storage       = "local-lvm"
  image_storage = "local"

  public_nic = {
    bridge  = "vmbr0"
    cidr    = "203.0.113.10/24"
    gateway = "203.0.113.1"
  }
  private_nic = {
    bridge = "vmbr1"
    cidr   = "10.10.0.3/24"
  }
  ssh_authorized_keys = [file("~/.ssh/id_ed25519.pub")]

  routes = [
    {
      hostnames = ["teleport.example.org", ".teleport.example.org"]
      backend   = "10.10.0.2:3080"
    },
    {
      hostnames = ["*.apps.example.org"]
      backend   = "10.10.0.30:443"
    },
  ]
  http_backend = "10.10.0.30:80"
}
