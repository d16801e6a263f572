# The local sandbox (`waddle-sandbox`, what ./scripts/demo.sh starts): an emulated Proxmox VE on
# loopback. Its token and CA come from PROXMOX_VE_API_TOKEN and PROXMOX_VE_CA_CERT (the demo
# exports them from the sandbox's env file); nothing here leaves 127.0.0.0/8.

proxmox_endpoint  = "https://127.10.0.1:8006"
proxmox_node_name = "pve"

# Public side on loopback: the emulated SNI proxy VM never takes real traffic.
public_ip      = "127.30.0.10"
public_gateway = "127.30.0.1"

# Each emulated Talos node serves the Talos API on its own static loopback address.
talos_node_ips = ["127.20.10.10", "127.20.10.11", "127.20.10.12"]
talos_gateway  = "127.20.10.1"
talos_vip      = "127.20.10.20"

domain         = "waddle.example"
ssh_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHWaddleExampleKeyReplaceMeReplaceMe00 admin"

# The one OAuth app the sandbox's emulated GitHub knows (any other id or secret is refused, as
# GitHub refuses it); not a real credential.
teleport_github_org           = "waddle-social"
teleport_github_client_id     = "Iv1.5a4db0x5andb0x1"
teleport_github_client_secret = "0b5c1e7a2d94f83e6c17b0a9d25e48f16c3a7d90"
