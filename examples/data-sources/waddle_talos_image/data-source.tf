data "waddle_talos_image" "this" {
  talos_version = "v1.12.4"
  extensions = [
    "siderolabs/iscsi-tools",
    "siderolabs/qemu-guest-agent",
    "siderolabs/util-linux-tools",
  ]
  extra_kernel_args = ["net.ifnames=0"]
}

output "installer_image" {
  value = data.waddle_talos_image.this.installer_image
}

output "disk_image_url" {
  value = data.waddle_talos_image.this.disk_image_url
}
