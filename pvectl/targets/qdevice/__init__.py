"""``pvecm qdevice``'s work on a real cluster: the plan and its guards, pure (``plan``),
carried out over SSH (``setup``), and one node's qdevice daemon as seen by its own tools
(``status``)."""
