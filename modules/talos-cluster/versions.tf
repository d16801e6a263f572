terraform {
  # Terraform >= 1.0 or OpenTofu >= 1.6. Only language features of Terraform 1.0 are used.
  required_version = ">= 1.0"

  required_providers {
    waddle = {
      source  = "waddle-social/waddle"
      version = ">= 0.1.0, < 1.0.0"
    }
  }
}
