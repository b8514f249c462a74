"""A lab's QDevice: its qnetd (pvectl's or corosync-qnetd) and CA for both engines
(``qnetd``), the embedded engine's clients (``embedded``) and the corosync engine's
corosync-qdevice daemons (``corosync``)."""
