"""QDevice, sans-IO: the qnetd protocol's wire format (``wire``), the qnetd server's state
machine (``server``), the node's qdevice client (``client``) and the vote algorithms
(``algorithms``: ffsplit, lms, 2nodelms, test)."""
