"""QDevice with I/O: the qnetd server process (``qnetd``), a node's qdevice client task
(``client_task``) and the certificate authority both use (``certs``)."""
