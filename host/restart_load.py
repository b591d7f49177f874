"""The kernel's load for a restart test or bench: long-lived echo streams and new connections.

Run inside the peer's network namespace (``ip netns exec NS python -m hetnic.host.restart_load
ADDR --streams 50 --rate 200``); it stops when its standard input closes (or after
``--seconds``) and prints one JSON object:

* ``streams`` connections are kept open at once against TCP echo (port 7). Each carries
  random chunks (64 to 2,048 bytes, one every 10 to 50 ms), reads each echo back and
  compares it byte for byte, for a bounded random lifetime (``--life`` 1 to 5 s by default),
  then closes and is replaced at once: long-lived, yet each ends, so that a restart's drain
  can finish (an endless stream would always be cut at the drain timeout);
* ``rate`` new connections a second (opened at that pace whatever the answers take), each
  sends 64 random bytes, checks the echo and closes.

Counted: ``failed_connects`` (refused, reset or timed out before the handshake),
``resets`` (a reset on an open connection), ``lost_bytes`` (echo bytes that did not come
back within ``--timeout`` seconds), ``corrupted`` (echo chunks that differ), and what was
carried: ``connects`` (short connections done), ``streams_done``, ``bytes`` echoed,
``slow_connects`` (handshakes over 0.9 s: a SYN retransmitted), ``seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time

__all__ = ["run_load", "main"]


class _Load:
    def __init__(self, addr: str, port: int, streams: int, rate: float, life: tuple,
                 timeout: float, seed: int):
        self.addr, self.port = addr, port
        self.streams, self.rate, self.life, self.timeout = streams, rate, life, timeout
        self.rng = random.Random(seed)
        self.stop = asyncio.Event()
        self.c = {"failed_connects": 0, "resets": 0, "lost_bytes": 0, "corrupted": 0,
                  "connects": 0, "connects_tried": 0, "streams_done": 0, "streams_opened": 0,
                  "bytes": 0, "slow_connects": 0, "errors": []}

    def _error(self, what: str, exc: BaseException) -> None:
        if len(self.c["errors"]) < 20:
            self.c["errors"].append(f"{what}: {type(exc).__name__}: {exc}")

    async def _open(self):
        start = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.addr, self.port), self.timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            self.c["failed_connects"] += 1
            self._error("connect", exc)
            return None
        if time.monotonic() - start > 0.9:
            self.c["slow_connects"] += 1
        return reader, writer

    async def _exchange(self, reader, writer, data: bytes) -> bool:
        """Send ``data`` and read its echo; False when the connection is unusable."""
        try:
            writer.write(data)
            await writer.drain()
            got = await asyncio.wait_for(reader.readexactly(len(data)), self.timeout)
        except ConnectionResetError as exc:
            self.c["resets"] += 1
            self.c["lost_bytes"] += len(data)
            self._error("stream", exc)
            return False
        except asyncio.IncompleteReadError as exc:
            self.c["lost_bytes"] += len(data) - len(exc.partial)
            self._error("stream", exc)
            return False
        except (OSError, asyncio.TimeoutError) as exc:
            self.c["lost_bytes"] += len(data)
            self._error("stream", exc)
            return False
        if got != data:
            self.c["corrupted"] += 1
        self.c["bytes"] += len(data)
        return True

    async def _close(self, writer) -> None:
        try:
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), self.timeout)
        except ConnectionResetError as exc:
            self.c["resets"] += 1
            self._error("close", exc)
        except (OSError, asyncio.TimeoutError):
            pass

    async def stream(self) -> None:
        rng = self.rng
        while not self.stop.is_set():
            self.c["streams_opened"] += 1
            conn = await self._open()
            if conn is None:
                await asyncio.sleep(0.1)
                continue
            reader, writer = conn
            end = time.monotonic() + rng.uniform(*self.life)
            ok = True
            while ok and time.monotonic() < end and not self.stop.is_set():
                ok = await self._exchange(reader, writer, rng.randbytes(rng.randint(64, 2048)))
                await asyncio.sleep(rng.uniform(0.01, 0.05))
            await self._close(writer)
            self.c["streams_done"] += ok

    async def short(self) -> None:
        self.c["connects_tried"] += 1
        conn = await self._open()
        if conn is None:
            return
        reader, writer = conn
        if await self._exchange(reader, writer, self.rng.randbytes(64)):
            self.c["connects"] += 1
        await self._close(writer)

    async def run(self, seconds: float | None) -> dict:
        start = time.monotonic()
        loop = asyncio.get_running_loop()
        if seconds is None:
            loop.add_reader(sys.stdin.fileno(), self._stdin)
        streams = [asyncio.create_task(self.stream()) for _ in range(self.streams)]
        shorts: set = set()
        n = 0
        while not self.stop.is_set():
            if seconds is not None and time.monotonic() - start >= seconds:
                break
            if self.rate > 0:
                due = start + n / self.rate
                if time.monotonic() >= due:
                    task = asyncio.create_task(self.short())
                    shorts.add(task)
                    task.add_done_callback(shorts.discard)
                    n += 1
                    continue
                await asyncio.sleep(max(0.0, min(due - time.monotonic(), 0.05)))
            else:
                await asyncio.sleep(0.05)
        self.stop.set()
        await asyncio.gather(*streams, *list(shorts))
        self.c["seconds"] = round(time.monotonic() - start, 3)
        self.c["connects_per_second"] = round(self.c["connects"] / max(self.c["seconds"],
                                                                       0.001), 1)
        return self.c

    def _stdin(self) -> None:
        if not os.read(sys.stdin.fileno(), 4096):
            asyncio.get_running_loop().remove_reader(sys.stdin.fileno())
            self.stop.set()


def run_load(addr: str, *, port: int = 7, streams: int = 50, rate: float = 200.0,
             life: tuple[float, float] = (1.0, 5.0), timeout: float = 10.0, seed: int = 1,
             seconds: float | None = None) -> dict:
    """Run the load (see the module) until standard input closes or ``seconds`` pass; the
    counters."""
    return asyncio.run(_Load(addr, port, streams, rate, life, timeout, seed).run(seconds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hetnic.host.restart_load",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("addr")
    parser.add_argument("--port", type=int, default=7)
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--life", type=float, nargs=2, default=(1.0, 5.0))
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float)
    args = parser.parse_args(argv)
    print(json.dumps(run_load(args.addr, port=args.port, streams=args.streams,
                              rate=args.rate, life=tuple(args.life), timeout=args.timeout,
                              seed=args.seed, seconds=args.seconds), sort_keys=True),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
