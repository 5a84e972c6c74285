"""The platform's own package: `core` (settings, lake access, clients: the ground everything
stands on), the `lakehouse` CLI and the embedded dev stack (`devstack`) on top."""
