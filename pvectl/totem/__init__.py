"""Sans-IO Totem: wire codec, packing, the SRP state machine and CPG (see srp.py)."""
