"""hetnic's user-mode TCP/IP stack, sans-I/O: frames and the time go in; frames, timer
deadlines and socket events come out. Nothing in this package owns a thread, an OS socket, a
clock or a sleep, so the same code runs on a :class:`~hetnic.host.nic.Nic`'s queues, on a TAP
device or wired straight to another stack (the links and runners in :mod:`hetnic.host`).
"""
