"""The runtime worker: its sessions (the action pipeline), sandbox backends and warm pools."""
