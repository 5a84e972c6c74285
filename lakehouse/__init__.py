"""The platform's own package: `core` (settings, lake access, clients: the ground everything
stands on), the `lakehouse` CLI and the embedded dev stack (`devstack`) on top."""

import os

# gRPC (Spark Connect's and Dagster's client) registers fork handlers that can deadlock a fork
# taken while its threads run: the service manager forks to start a service (it resets signals
# in the child) and hung inside fork() with a Spark session open. Off before grpc is imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
