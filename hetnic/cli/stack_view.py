"""What ``hetnic stack up`` prints: the port -> instance map, the live table (rich), the
plain status line and the final summary, all from the host's ``port_map()`` and
``summary()`` (:class:`~hetnic.host.stack_procs.StackProcs`, or
:class:`~hetnic.host.stack_host.StackHost` with ``--one-process``); every instance's summary
has its ``pid`` and ``mode`` (and ``exit`` once its process ended)."""

from __future__ import annotations

__all__ = ["port_map_table", "status_table", "status_line", "summary_text", "report_line",
           "tunnel_lines"]

#: Connection states in the order the table lists them (short names).
_STATE_SHORT = {"ESTABLISHED": "est", "SYN-SENT": "syn-sent", "SYN-RECEIVED": "syn-rcvd",
                "FIN-WAIT-1": "fin-wait-1", "FIN-WAIT-2": "fin-wait-2",
                "CLOSE-WAIT": "close-wait", "CLOSING": "closing", "LAST-ACK": "last-ack",
                "TIME-WAIT": "time-wait", "LISTEN": "listen"}


def _queues(queues) -> str:
    """Queue numbers with runs shortened: ``(0, 1, 2, 5)`` -> ``"0-2,5"``."""
    parts, run = [], []
    for q in sorted(queues):
        if run and q != run[-1] + 1:
            parts.append(run)
            run = []
        run.append(q)
    parts.append(run)
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ",".join(map(str, r)) for r in parts)


def port_map_table(rows: list[dict], *, tap: str, addr4: str, addr6: str | None) -> str:
    """The classifier rules as a text table, one line per rule and the default."""
    lines = [f"hetnic stack up on {tap}: {addr4}" + (f", {addr6}" if addr6 else "")
             + " (one MAC and address set shared by every instance)",
             "port -> instance map (NIC classifier rules, first match wins):",
             f"  {'rule':>4}  {'match':<22} {'instance':<12} {'RX queues':<10} "
             f"{'RETA slice':<11} app"]
    for row in rows:
        rule = "dflt" if row["rule"] is None else str(row["rule"])
        queues = _queues(row["rx_queues"])
        lo, size = row["reta"]
        lines.append(f"  {rule:>4}  {row['match']:<22} {row['instance']:<12} {queues:<10} "
                     f"{f'{lo}-{lo + size - 1}':<11} {row['app'] or '-'}".rstrip())
    lines.append("  ARP, NDP and ICMP errors are handed to every instance (each keeps its own "
                 "neighbour cache).")
    return "\n".join(lines)


def _states(states: dict) -> str:
    busy = [(name, n) for name, n in states.items() if n]
    return " ".join(f"{_STATE_SHORT.get(name, name.lower())}:{n}" for name, n in busy) or "-"


def _served(apps: list[dict]) -> int:
    return sum(app.get("bytes_out", app.get("bytes", 0)) for app in apps)


def _row(inst: dict) -> dict:
    c = inst["counters"]
    if c is None:                       # an instance process that exited before reporting
        return {"seg_in": "-", "seg_out": "-", "retx": "-", "drops": "-", "states": "-",
                "served": "-"}
    return {"seg_in": c["tcp_in"] + c["udp_in"], "seg_out": c["tcp_out"] + c["udp_out"],
            "retx": c["tcp_retransmits"], "drops": sum(c["drops"].values()),
            "states": _states(inst["states"]), "served": _served(inst["apps"])}


def _process(inst: dict) -> str:
    """``"pid 1234"``, with how the process ended if it did."""
    text = f"pid {inst.get('pid', '?')}"
    code = inst.get("exit")
    if code is not None:
        text += f" (killed by signal {-code})" if code < 0 else f" (exited {code})"
    return text


def status_table(summary: dict):
    """A :class:`rich.table.Table` with one row per instance: its process, its RX queues /
    TX queue, segments and datagrams in and out, retransmissions, drops, connections by
    state and the bytes its applications sent."""
    from rich.table import Table
    table = Table(title="hetnic stack (Ctrl-C to stop)")
    for name in ("instance", "process", "rx/tx", "in", "out", "retx", "drops", "connections",
                 "served"):
        table.add_column(name, justify="left" if name in ("instance", "process", "rx/tx",
                                                          "connections") else "right")
    for name, inst in summary["instances"].items():
        row = _row(inst)
        table.add_row(name, _process(inst), f"{_queues(inst['rx_queues'])}/{inst['tx_queue']}",
                      str(row["seg_in"]), str(row["seg_out"]), str(row["retx"]),
                      str(row["drops"]), row["states"], str(row["served"]))
    for inst in summary["instances"].values():
        for name, t in ((inst.get("tunnels") or {}).get("tunnels") or {}).items():
            table.add_row(f"  {name}", f"{t['addr']} vni {t['vni']}", f"mtu {t['mtu']}",
                          f"{t['packets_in']} ({t['bytes_in']} B)",
                          f"{t['packets_out']} ({t['bytes_out']} B)", "",
                          str(sum(t["drops"].values())), f"tcp {t['connections']}", "")
    bridge = summary.get("bridge") or {}
    if bridge:
        table.caption = (f"TAP bridge: {bridge['frames_to_nic']} frames in, "
                         f"{bridge['frames_to_tap']} out")
    return table


def _tunnel_drops(drops: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(drops.items())) or "-"


def tunnel_lines(inst: dict) -> list[str]:
    """The tunnel adapter's lines of the summary (none for another instance): per tunnel
    its kind, VNI, remote, inner address, MTU, packets and bytes each way, forwarded
    packets and drops by reason; the adapter's own drops; the routes."""
    info = inst.get("tunnels")
    if not info:
        return []
    lines = []
    for name, t in info["tunnels"].items():
        lines.append(f"    tunnel {name} addr {t['addr']} domain {t['domain']} mtu {t['mtu']}: "
                     f"in {t['packets_in']} packets {t['bytes_in']} bytes, out "
                     f"{t['packets_out']} packets {t['bytes_out']} bytes, forwarded "
                     f"{t['forwarded']}, drops: {_tunnel_drops(t['drops'])}")
    lines.append(f"    tunnel adapter drops (no tunnel named): {_tunnel_drops(info['drops'])}")
    lines.append("    routes: " + "; ".join(f"[{r['domain']}] {r['prefix']} -> {r['tunnel']}"
                                           for r in info["routes"]))
    return lines


def report_line(report: dict) -> str:
    """A discard connection's report as one line."""
    host, port = report["peer"] or ("?", 0)
    end = "closed" if report["error"] is None else f"ended: {report['error']}"
    return f"discard: {host} port {port} sent {report['bytes']} bytes ({end})"


def status_line(summary: dict, elapsed: float) -> str:
    """One plain line: per instance ``name (pid) in/out/retransmits/drops states served``."""
    parts = []
    for name, inst in summary["instances"].items():
        row = _row(inst)
        parts.append(f"{name} ({_process(inst)}) in {row['seg_in']} out {row['seg_out']} "
                     f"retx {row['retx']} "
                     f"drops {row['drops']} [{row['states']}] served {row['served']}")
        for tname, t in ((inst.get("tunnels") or {}).get("tunnels") or {}).items():
            parts.append(f"{tname} in {t['packets_in']} out {t['packets_out']} drops "
                         f"{sum(t['drops'].values())}")
    return f"[{elapsed:7.1f} s] " + " | ".join(parts)


def summary_text(summary: dict, elapsed: float) -> str:
    """The summary printed when the stack stops: per instance its process and mode, its
    counters, drops by reason, connections by state; every application's statistics; the
    bridge's counters."""
    lines = [f"summary after {elapsed:.1f} s:"]
    for name, inst in summary["instances"].items():
        c = inst["counters"]
        mode = inst.get("mode", "one-process")
        if c is None:
            lines.append(f"  instance {name} ({_process(inst)}, {mode}): no counters (it "
                         f"exited before reporting)")
            continue
        lines.append(f"  instance {name} ({_process(inst)}, {mode}): frames in "
                     f"{c['frames_in']} out {c['frames_out']}, tcp in {c['tcp_in']} out {c['tcp_out']}, udp in {c['udp_in']} out "
                     f"{c['udp_out']}, icmp in {c['icmp_in']} out {c['icmp_out']}, "
                     f"retransmits {c['tcp_retransmits']} (fast {c['tcp_fast_retransmits']}, "
                     f"rto {c['tcp_rto']})")
        drops = c["drops"]
        lines.append("    drops: " + (", ".join(f"{k} {v}" for k, v in sorted(drops.items()))
                                      or "none"))
        lines.append(f"    connections: {_states(inst['states'])}")
        for app in inst["apps"]:
            stats = ", ".join(f"{k} {v}" for k, v in app.items() if k not in ("app", "port"))
            lines.append(f"    app {app['app']} port {app['port']}: {stats}")
        lines += tunnel_lines(inst)
    bridge = summary.get("bridge") or {}
    if bridge:
        lines.append("  TAP bridge: " + ", ".join(f"{k} {v}" for k, v in bridge.items()))
    return "\n".join(lines)
