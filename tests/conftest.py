"""Suite-wide pytest set-up: the order in which test files start.

``make test`` runs the default tier on pytest-xdist workers, a whole file per worker at a
time (``--dist loadfile``), handed out in collection order. A file that builds or drives a
Verilator model, or simulates a core for minutes, started last would leave one worker
running alone at the end. So the longest files start first (longest-processing-time-first
scheduling); every other file keeps its place, and the tests inside a file keep theirs.
The costs are those of a serial run on this project's 2-core machines; rerun
``pytest --durations=0`` after a large change and update the list.
"""

#: The files that take the longest, longest first (seconds of a serial run, builds apart).
LONGEST_FIRST = (
    "tests/boards/test_ice40_core.py",          # ~150 s: the iCE40 core over its UART
    "tests/system/test_nic_core.py",            # ~90 s + the NIC core's cocotb build
    "tests/rtl/test_rtl_fresh.py",              # ~90 s: generates rtl/
    "tests/system/test_bench.py",
    "tests/system/test_driver_backends.py",
    "tests/system/test_flow_order.py",
    "tests/system/test_stack_kernel.py",        # ~25 s: the kernel as the stack's peer
    "tests/rtl/test_rx_pipeline_rtl.py",
    "tests/boards/test_board_top_rtl.py",
    "tests/gateware/test_parser.py",
    "tests/gateware/test_dma.py",
    "tests/gateware/test_tx_engine.py",
)


def pytest_collection_modifyitems(session, config, items):
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))
