terraform {
  required_version = ">= 1.0.3"

  required_providers {
    waddle = {
      source  = "waddle-social/waddle"
      version = ">= 0.1.0, < 1.0.0"
    }
  }
}
