"""The pure node core: what a node decides, with no clock, socket, thread or file inside.

Events and ``now`` (float seconds) go in, commands come out. ``pvectl.node.runtime`` binds
it to UDP, asyncio and the disk; ``pvectl.sim`` drives the very same code in virtual time.
"""
