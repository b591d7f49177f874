"""The W/N runs of ``hetnic bench host`` beside requests/s: a W exiting mid-run, and the
accept spread over the N's of connections from the kernel through the simulated NIC.

:func:`w_exit_run` drives request/response connections from a client stack in this process
over an :class:`~hetnic.bench_wn_wire.RssWire` to N's and echo W's, one W leaving a third of
the way through its share; :func:`accept_spread` opens connections from the Linux kernel (a
TAP in a network namespace) through the shared simulated NIC
(:class:`~hetnic.host.wn_nic.WnNic`) and counts each N's accepts.
"""

from __future__ import annotations

from .bench_wn_wire import (PORT, SERVER_IP, SERVER_MAC, RssWire, client_stack, echo_w, pump,
                            server_config)

__all__ = ["w_exit_run", "accept_spread"]


# ---------------------------------------------------------------------------------------------
# a W exits mid-run

def w_exit_run(*, n_count: int = 2, w_count: int = 3, connections: int = 60,
               rounds: int = 20, timeout: float = 120.0, seed: int = 15) -> dict:
    """Request/response connections over ``n_count`` N's and ``w_count`` echo W's (a client
    stack in this process, frames through an :class:`RssWire`); the last W exits after a
    third of its share of the requests. Each connection sends ``rounds`` requests, one at a
    time. A connection counts as lost unless every request was answered byte-exact, or it
    belongs to the exiting W and was closed cleanly (FIN, no reset) after data that is
    exactly the echo of its first requests, whole (the request in flight when the W left is
    not answered; a half-answered one is lost data)."""
    import random
    import time as _time
    from .host.stack.errors import StackError
    from .host.wn_host import WnHost
    rng = random.Random(seed)
    leaver = w_count - 1
    share = connections * rounds // w_count
    with WnHost(n_count, w_count, wire=(4096, 2048), ring_slots=1024,
                table_slots=1024) as host:
        for n in range(n_count):
            host.start_n(n, server_config(f"n{n}").replace(min_rto=0.2, initial_window=10),
                         dict(mac=SERVER_MAC, ipv4=[(SERVER_IP, 24)]))
        for w in range(w_count):
            host.start_w(w, echo_w, PORT, share // 3 if w == leaver else None)
        host.wait_ready()
        wire = RssWire(host)
        client = client_stack()
        socks = [client.connect(SERVER_IP, PORT) for _ in range(connections)]
        end = _time.monotonic() + timeout
        while not (all(s.connected for s in socks)
                   and sum(r["w"] >= 0 for r in host.dump()) == connections):
            if _time.monotonic() > end:
                raise TimeoutError("the connections were not set up in time")
            pump(client, wire)
            _time.sleep(0.0005)
        table = host.dump()
        owner = {int(r["peer"].split()[1]): r["w"] for r in table}
        sent = [bytearray() for _ in socks]
        got = [bytearray() for _ in socks]
        done_rounds = [0] * connections
        eof = [False] * connections
        error: list[str | None] = [None] * connections
        closed = [False] * connections
        bounds = [{0} for _ in socks]   # where each connection's answered requests end
        for i, s in enumerate(socks):
            req = rng.randbytes(rng.randint(16, 256))
            sent[i] += req
            s.send(req)
        while _time.monotonic() < end:
            pump(client, wire)
            active = False
            for i, s in enumerate(socks):
                if closed[i] or eof[i] or error[i]:
                    continue
                active = True
                try:
                    while s.readable:
                        data = s.recv()
                        if data is None:
                            break
                        if data == b"":
                            eof[i] = True
                            s.close()
                            break
                        got[i] += data
                except StackError as err:
                    error[i] = str(err)
                    continue
                if not eof[i] and len(got[i]) == len(sent[i]):
                    bounds[i].add(len(got[i]))
                    done_rounds[i] += 1
                    if done_rounds[i] == rounds:
                        s.close()
                        closed[i] = True
                    else:
                        req = rng.randbytes(rng.randint(16, 256))
                        sent[i] += req
                        s.send(req)
            if not active:
                break
            _time.sleep(0.0002)
        for _ in range(200):                  # the last FINs and ACKs
            pump(client, wire)
            _time.sleep(0.001)
        answered = clean = lost = 0
        leaver_conns = 0
        for i, s in enumerate(socks):
            mine = owner.get(s.getsockname()[1]) == leaver
            leaver_conns += mine
            if closed[i] and got[i] == sent[i]:
                answered += 1
            elif (mine and eof[i] and error[i] is None
                  and (len(got[i]) in bounds[i] or len(got[i]) == len(sent[i]))
                  and bytes(got[i]) == bytes(sent[i][:len(got[i])])):
                clean += 1          # the exiting W's: closed after a whole answered request
            else:
                lost += 1
        host.w_procs[leaver].join(10)
        leaver_exit = host.w_procs[leaver].exitcode
        others_alive = all(p.is_alive() for w, p in host.w_procs.items() if w != leaver)
    return {"connections": connections, "w_count": w_count, "rounds": rounds,
            "answered": answered, "closed_cleanly_by_exiting_w": clean,
            "exiting_w_connections": leaver_conns, "lost": lost,
            "exiting_w_exit_status": leaver_exit, "other_ws_alive": others_alive,
            "routing_table_head": table[:6]}


# ---------------------------------------------------------------------------------------------
# the accept spread over the N's, through the NIC from the kernel

def accept_spread(connections: int = 10_000, *, n_count: int = 2, w_count: int = 2,
                  parallel: int = 32, timeout: float = 1800.0) -> dict:
    """``connections`` connections from the Linux kernel (a TAP in a network namespace)
    through the shared simulated NIC to ``n_count`` N's (RSS over their queues) served by
    ``w_count`` echo W's; each sends 16 bytes, reads them back and closes. Returns the
    accepts per N and the busiest over the least busy."""
    import socket
    import threading
    import time as _time
    from .host.netns import in_netns, netns, netns_unavailable, tap_in_netns
    from .host.nic import Nic
    from .host.wn_nic import WnNic
    reason = netns_unavailable()
    if reason is not None:
        return {"skipped": reason}
    kernel, server = "198.18.0.1", "198.18.0.2"
    errors: list[str] = []
    echoed = [0]
    lock = threading.Lock()
    with netns() as ns, tap_in_netns(ns, "tap0", f"{kernel}/24", None) as tap, \
            Nic.open("sim", width=64, rx_queues=n_count, tx_queues=n_count,
                     shared=True) as nic:
        wn = WnNic(nic, tap, n_count=n_count, w_count=w_count, addr4=(server, 24),
                   log=lambda text: None)
        try:
            for w in range(w_count):
                wn.start_w(w, echo_w, PORT)
            wn.wait_ready()
            todo = iter(range(connections))

            def client() -> None:
                while True:
                    with lock:
                        i = next(todo, None)
                    if i is None:
                        return
                    payload = b"%015d\n" % i
                    try:
                        with in_netns(ns):
                            s = socket.create_connection((server, PORT), timeout=60)
                        with s:
                            s.sendall(payload)
                            got = b""
                            while len(got) < len(payload):
                                chunk = s.recv(64)
                                if not chunk:
                                    break
                                got += chunk
                        with lock:
                            if got == payload:
                                echoed[0] += 1
                            else:
                                errors.append(f"connection {i}: echo differs")
                    except OSError as err:
                        with lock:
                            errors.append(f"connection {i}: {err}")
            threads = [threading.Thread(target=client, daemon=True) for _ in range(parallel)]
            start = _time.perf_counter()
            for t in threads:
                t.start()
            wn.run(until=lambda: not any(t.is_alive() for t in threads), timeout=timeout)
            elapsed = _time.perf_counter() - start
            wn.run(until=lambda: sum(c["accepts"] for c in wn.counters()) >= connections,
                   timeout=10)
            accepts = [c["accepts"] for c in wn.counters()]
        finally:
            wn.close()
    return {"connections": connections, "echoed": echoed[0], "errors": len(errors),
            "first_error": errors[0] if errors else None, "accepts_per_n": accepts,
            "accept_spread_max_over_min": round(max(accepts) / max(1, min(accepts)), 4),
            "connections_per_s": round(connections / elapsed, 1)}
