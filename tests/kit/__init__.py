"""hetnic's test kit: one stream source and sink, one simulation runner, one layout codec.

Every block test in ``tests/`` drives its streams and runs its simulation through these, as
Glasgow's stream helpers and LUNA's ``LunaGatewareTestCase`` serve their block tests:

* :class:`StreamSource` / :class:`StreamSink` (:mod:`kit.stream`): seeded random source gaps
  and sink stalls as parameters, the stream rules checked on every cycle (:class:`HoldRule`
  for channels that are not a ``stream`` interface);
* :func:`run_simulation` (:mod:`kit.simulation`): async testbenches under a cycle limit that
  fails the test with a clear message instead of hanging;
* :func:`pack` / :func:`unpack` from :mod:`hetnic.protocol`, and the little-endian host-memory
  images :func:`pack_image` / :func:`unpack_image` (:mod:`kit.layouts`);
* :class:`kit.register_path.RegisterPath`: the RX pipeline's register path, for the tests
  of the buses in front of it (imported from its module, so that the rest of the kit does
  not depend on the gateware).
"""

from .layouts import pack, pack_image, unpack, unpack_image
from .simulation import SimulationTimeout, run_simulation
from .stream import HoldRule, StreamAgent, StreamSink, StreamSource, seeded_rng, step

__all__ = ["StreamSource", "StreamSink", "StreamAgent", "HoldRule", "seeded_rng", "step",
           "run_simulation", "SimulationTimeout", "pack", "unpack", "pack_image", "unpack_image"]
