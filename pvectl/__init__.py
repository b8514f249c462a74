"""pvectl: a Proxmox VE / corosync cluster toolkit with an embedded Totem engine."""

__version__ = "0.1.0"
