//! waddle-proxmox (work in progress).
