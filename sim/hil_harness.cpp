// hetnic HIL harness: the Verilated NIC core (NicCoreTop) with the world around it.
//
// Compiled together with the Verilator model of the core into a shared library that
// hetnic.sim.hil loads with ctypes. The harness models:
//   - host memory: an AXI4 slave over one byte array (hil_memory.h);
//   - the register bus: AXI4-Lite reads and writes, run to completion while the rest of
//     the harness keeps running;
//   - the MAC ports: a bounded queue of frames into rx_mac (paced like an Ethernet wire,
//     or back to back) and a bounded capture of the frames leaving tx_mac (when it is
//     full, tx_mac sees backpressure: no frame is ever thrown away);
//   - the clock, reset and the interrupt lines (sticky bits and edge counts);
//   - optionally, a doorbell page (see below).
//
// Host memory is the harness's own zeroed allocation, or a file mapped shared (a
// /dev/shm segment that other processes map too; hil_create's ``mem_path``).
//
// The doorbell page (hil_attach_doorbells): a file mapped shared, read like a NIC's doorbell
// BAR. It is an array of little-endian 32-bit slots, slot k at byte offset 4 * k; the
// host side (hetnic.host.doorbells.DoorbellPage, which defines the slot order) passes the
// register address of every slot. Another process rings a doorbell by storing the new
// index in its slot (one aligned 32-bit store, after the ring entries it covers). Every
// HIL_DOORBELL_SCAN cycles of hil_run, hil_run_until_idle and the cycles of register
// accesses the harness compares every slot with the value it last saw; a changed slot
// queues one AXI4-Lite write of the slot's value to its register. Queued writes go out
// one at a time through the register-bus master whenever no host access is in flight; a
// host access waits for a doorbell write already on the bus, and doorbell writes wait
// while a host access is pending. A slot change, a queued or in-flight doorbell write
// counts as activity for hil_run_until_idle.
//
// Cycle discipline: inputs are driven while the clock is low and the model is settled;
// handshakes (valid & ready) are sampled there, then the rising edge is evaluated, then the
// harness applies what fired and drives the next inputs.
//
// Build-time macros: HIL_DATA_BYTES (datapath width in bytes), HIL_IRQS (interrupt lines),
// HIL_TRACE (0: none, 1: VCD, 2: FST).

#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <deque>
#include <memory>
#include <vector>

#include "Vtop.h"
#include "verilated.h"
#if HIL_TRACE == 1
#include "verilated_vcd_c.h"
typedef VerilatedVcdC TraceFile;
#elif HIL_TRACE == 2
#include "verilated_fst_c.h"
typedef VerilatedFstC TraceFile;
#endif

#include "hil_memory.h"
#include "hil_signal_bytes.h"

// Bump when a function's signature or meaning changes; hetnic.sim.hil checks it.
#define HIL_ABI_VERSION 3
// Cycles between two scans of the doorbell page (a power of two).
#define HIL_DOORBELL_SCAN 16

namespace {

struct Frame {
    std::vector<uint8_t> data;
    bool error = false;
};

enum { CSR_IDLE, CSR_WRITE, CSR_READ };

// The harness counters; hetnic.sim.hil.COUNTER_NAMES lists them in this order.
struct Counters {
    uint64_t cycles, rx_frames, rx_beats, tx_frames, tx_beats;
    AxiCounters axi;
    uint64_t rx_stall_cycles, tx_backpressure_cycles;
    uint64_t doorbell_writes, doorbell_errors;
};

// A file mapped shared read-write (host memory or the doorbell page); null on failure.
static void* map_shared(const char* path, uint64_t size) {
    const int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return nullptr;
    struct stat st;
    void* p = MAP_FAILED;
    if (fstat(fd, &st) == 0 && uint64_t(st.st_size) >= size)
        p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    return p == MAP_FAILED ? nullptr : p;
}

// A beat leaving tx_mac, captured before the edge.
struct TxBeat {
    uint8_t data[BEAT_BUF];
    uint64_t keep;
    bool last, user;
};

// What fires on one rising edge outside host memory, sampled while the clock is low.
struct Handshakes {
    bool rx = false, tx = false;                      // MAC streams
    TxBeat tx_beat{};
    bool csr_aw = false, csr_w = false, csr_b = false, csr_ar = false, csr_r = false;
    uint32_t csr_rdata = 0, csr_bresp = 0, csr_rresp = 0;
    uint32_t irq = 0;
};

}  // namespace

struct Hil {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<Vtop> top;
#if HIL_TRACE
    std::unique_ptr<TraceFile> trace;
#endif
    uint64_t time_ps = 0;
    HostMemory memory;
    Counters n{};
    uint64_t last_activity = 0;

    // rx_mac
    std::deque<Frame> rx_q;
    size_t rx_q_bytes = 0;
    size_t rx_q_limit_bytes = 16u << 20;
    size_t rx_pos = 0;               // bytes of rx_q.front() already sent
    uint32_t ifg_bytes = 24;         // FCS + preamble/SFD + inter-frame gap, in byte times
    uint64_t rx_gap = 0;             // idle cycles left before the next frame
    // tx_mac
    std::deque<Frame> tx_out;
    Frame tx_cur;
    size_t tx_out_limit = 65536;
    // register bus
    int csr_state = CSR_IDLE;
    bool csr_addr_done = false, csr_data_done = false, csr_done = false;
    uint32_t csr_addr = 0, csr_wdata = 0, csr_rdata = 0, csr_resp = 0;
    bool csr_doorbell = false;       // the access on the bus is a doorbell write
    bool csr_host_waiting = false;   // a host access waits: start no doorbell write
    // interrupts
    uint32_t irq_sticky = 0, irq_prev = 0;
    uint64_t irq_edges[32] = {};
    // memory mapped from a file (munmap, not free, at destroy)
    bool mem_mapped = false;
    // doorbell page
    const volatile uint32_t* db_page = nullptr;
    uint64_t db_page_bytes = 0;
    std::vector<uint32_t> db_regs, db_seen;
    std::deque<std::pair<uint32_t, uint32_t>> db_q;   // register writes to make: addr, value

    void eval() {
        top->eval();
#if HIL_TRACE
        if (trace) trace->dump(time_ps);
#endif
        time_ps += 4000;    // two evals per 8 ns cycle
    }
    void drive();
    void cycle();
    void scan_doorbells();
    bool doorbells_busy() const { return !db_q.empty() || csr_doorbell; }

private:
    void drive_rx_mac(Vtop* t);
    void drive_register_bus(Vtop* t);
    Handshakes sample_handshakes(const Vtop* t);
    void feed_rx_mac(bool fired);
    void drain_tx_mac(bool fired, const TxBeat& beat);
    void finish_register_access(const Handshakes& fired);
    void count_interrupts(uint32_t irq);
};

// Drive every input from the harness state (clock low).
void Hil::drive() {
    Vtop* t = top.get();
    drive_rx_mac(t);
    // tx_mac: backpressure only when the capture is full
    t->m_axis_tready = tx_out.size() < tx_out_limit;
    memory.drive(t, n.cycles);
    drive_register_bus(t);
}

// The next beat of the frame at the head of the wire queue, unless the wire is idle.
void Hil::drive_rx_mac(Vtop* t) {
    if (rx_gap == 0 && !rx_q.empty()) {
        const Frame& f = rx_q.front();
        uint8_t beat[BEAT_BUF] = {};
        size_t n = f.data.size() - rx_pos;
        if (n > DATA_BYTES) n = DATA_BYTES;
        std::memcpy(beat, f.data.data() + rx_pos, n);
        put_bytes(t->s_axis_tdata, beat);
        t->s_axis_tkeep = (n >= 64) ? ~0ull : ((1ull << n) - 1);
        t->s_axis_tlast = (rx_pos + n == f.data.size());
        t->s_axis_tuser = f.error && t->s_axis_tlast;
        t->s_axis_tvalid = 1;
    } else {
        t->s_axis_tvalid = 0;
        t->s_axis_tlast = 0;
    }
}

// The AXI4-Lite master: the pending write or read, each channel until it is taken.
void Hil::drive_register_bus(Vtop* t) {
    t->s_axil_awvalid = csr_state == CSR_WRITE && !csr_addr_done;
    t->s_axil_wvalid = csr_state == CSR_WRITE && !csr_data_done;
    t->s_axil_awaddr = csr_addr;
    t->s_axil_wdata = csr_wdata;
    t->s_axil_wstrb = 0xF;
    t->s_axil_bready = csr_state == CSR_WRITE;
    t->s_axil_arvalid = csr_state == CSR_READ && !csr_addr_done;
    t->s_axil_araddr = csr_addr;
    t->s_axil_rready = csr_state == CSR_READ;
}

// One clock cycle: sample handshakes, rising edge, apply them, drive, settle.
void Hil::cycle() {
    Vtop* t = top.get();
    const Handshakes fired = sample_handshakes(t);
    const AxiTransfers dma = memory.sample(t, n.cycles, n.axi);

    t->clk = 1;
    eval();
    n.cycles++;

    feed_rx_mac(fired.rx);
    drain_tx_mac(fired.tx, fired.tx_beat);
    memory.apply(dma, n.axi, n.cycles - 1);
    finish_register_access(fired);
    count_interrupts(fired.irq);
    if (fired.rx || fired.tx || dma.any()) last_activity = n.cycles;
    if (db_page) {
        if ((n.cycles & (HIL_DOORBELL_SCAN - 1)) == 0) scan_doorbells();
        if (!db_q.empty() && csr_state == CSR_IDLE && !csr_host_waiting) {
            csr_state = CSR_WRITE;
            csr_doorbell = true;
            csr_addr = db_q.front().first;
            csr_wdata = db_q.front().second;
            csr_addr_done = csr_data_done = false;
            db_q.pop_front();
        }
        if (doorbells_busy()) last_activity = n.cycles;
    }

    drive();
    t->clk = 0;
    eval();
}

// The MAC, register-bus and interrupt signals that the coming edge acts on, read before it
// changes them; counts the cycles a MAC stream waits.
Handshakes Hil::sample_handshakes(const Vtop* t) {
    Handshakes h;
    h.rx = t->s_axis_tvalid && t->s_axis_tready;
    h.tx = t->m_axis_tvalid && t->m_axis_tready;
    if (t->s_axis_tvalid && !t->s_axis_tready) n.rx_stall_cycles++;
    if (t->m_axis_tvalid && !t->m_axis_tready) n.tx_backpressure_cycles++;
    if (h.tx) {
        get_bytes(t->m_axis_tdata, h.tx_beat.data);
        h.tx_beat.keep = t->m_axis_tkeep;
        h.tx_beat.last = t->m_axis_tlast;
        h.tx_beat.user = t->m_axis_tuser;
    }
    h.csr_aw = t->s_axil_awvalid && t->s_axil_awready;
    h.csr_w = t->s_axil_wvalid && t->s_axil_wready;
    h.csr_b = t->s_axil_bvalid && t->s_axil_bready;
    h.csr_ar = t->s_axil_arvalid && t->s_axil_arready;
    h.csr_r = t->s_axil_rvalid && t->s_axil_rready;
    h.csr_rdata = t->s_axil_rdata;
    h.csr_bresp = t->s_axil_bresp;
    h.csr_rresp = t->s_axil_rresp;
    h.irq = t->irq;
    return h;
}

// rx_mac took a beat (``fired``): advance through the frame; after its last beat, keep the
// wire idle for the rest of its wire time (``ifg_bytes``). Else count the idle time down.
void Hil::feed_rx_mac(bool fired) {
    if (fired) {
        const Frame& f = rx_q.front();
        size_t step = f.data.size() - rx_pos;
        if (step > DATA_BYTES) step = DATA_BYTES;
        rx_pos += step;
        n.rx_beats++;
        if (rx_pos == f.data.size()) {
            n.rx_frames++;
            size_t len = f.data.size() < 60 ? 60 : f.data.size();
            if (ifg_bytes) {
                // Whole wire time of the frame, minus the beats it took.
                uint64_t wire = (len + ifg_bytes + DATA_BYTES - 1) / DATA_BYTES;
                uint64_t beats = (f.data.size() + DATA_BYTES - 1) / DATA_BYTES;
                rx_gap = wire > beats ? wire - beats : 0;
            }
            rx_q_bytes -= f.data.size();
            rx_q.pop_front();
            rx_pos = 0;
        }
    } else if (rx_gap) {
        rx_gap--;
    }
}

// tx_mac gave a beat (``fired``): its kept bytes join the frame being captured, which goes
// to the capture queue with its last beat (tuser on it: the frame's error flag).
void Hil::drain_tx_mac(bool fired, const TxBeat& beat) {
    if (!fired) return;
    for (int i = 0; i < DATA_BYTES; ++i)
        if (beat.keep >> i & 1) tx_cur.data.push_back(beat.data[i]);
    n.tx_beats++;
    if (beat.last) {
        tx_cur.error = beat.user;
        tx_out.push_back(std::move(tx_cur));
        tx_cur = Frame();
        n.tx_frames++;
    }
}

// Queue a register write for every doorbell slot that changed since the last scan. A
// slot's value is read once (one aligned 32-bit load): what the other process stored last.
void Hil::scan_doorbells() {
    const size_t slots = db_regs.size();
    for (size_t k = 0; k < slots; ++k) {
        const uint32_t v = __atomic_load_n(db_page + k, __ATOMIC_ACQUIRE);
        if (v != db_seen[k]) {
            db_seen[k] = v;
            db_q.emplace_back(db_regs[k], v);
        }
    }
}

// The register access in flight: note the channels taken; the response ends it. A
// doorbell write's response is counted (an error response too) and is not the host's.
void Hil::finish_register_access(const Handshakes& fired) {
    if (csr_state == CSR_WRITE) {
        if (fired.csr_aw) csr_addr_done = true;
        if (fired.csr_w) csr_data_done = true;
        if (fired.csr_b && csr_doorbell) {
            n.doorbell_writes++;
            if (fired.csr_bresp) n.doorbell_errors++;
            csr_doorbell = false;
            csr_state = CSR_IDLE;
        } else if (fired.csr_b) {
            csr_resp = fired.csr_bresp;
            csr_done = true;
            csr_state = CSR_IDLE;
        }
    } else if (csr_state == CSR_READ) {
        if (fired.csr_ar) csr_addr_done = true;
        if (fired.csr_r) {
            csr_rdata = fired.csr_rdata;
            csr_resp = fired.csr_rresp;
            csr_done = true;
            csr_state = CSR_IDLE;
        }
    }
}

// Sticky bits and rising-edge counts of the interrupt lines as they were before the edge.
void Hil::count_interrupts(uint32_t irq) {
    irq_sticky |= irq;
    const uint32_t rising = irq & ~irq_prev;
    for (int i = 0; i < HIL_IRQS; ++i)
        if (rising >> i & 1) irq_edges[i]++;
    irq_prev = irq;
}

extern "C" {

int hil_abi_version() { return HIL_ABI_VERSION; }
int hil_data_bytes() { return DATA_BYTES; }
int hil_trace_kind() { return HIL_TRACE; }

// A new harness with ``mem_size`` bytes of host memory at bus address 0: zeroed memory of
// its own, or (``mem_path`` not empty) the first ``mem_size`` bytes of that file mapped
// shared, as they are. Reset is held for ``reset_cycles``. Returns null when the memory
// cannot be allocated or mapped.
Hil* hil_create(uint64_t mem_size, uint32_t reset_cycles, const char* trace_path,
                const char* mem_path) {
    auto* h = new Hil();
    if (mem_path && *mem_path) {
        h->memory.bytes = static_cast<uint8_t*>(map_shared(mem_path, mem_size));
        h->mem_mapped = true;
    } else {
        h->memory.bytes = static_cast<uint8_t*>(std::calloc(mem_size ? mem_size : 1, 1));
    }
    if (!h->memory.bytes) {
        delete h;
        return nullptr;
    }
    h->memory.size = mem_size;
    h->ctx.reset(new VerilatedContext());
    h->ctx->commandArgs(0, static_cast<const char**>(nullptr));
#if HIL_TRACE
    if (trace_path && *trace_path) h->ctx->traceEverOn(true);
#endif
    h->top.reset(new Vtop(h->ctx.get(), "top"));
#if HIL_TRACE
    if (trace_path && *trace_path) {
        h->trace.reset(new TraceFile());
        h->top->trace(h->trace.get(), 99);
        h->trace->open(trace_path);
    }
#else
    (void)trace_path;
#endif
    Vtop* t = h->top.get();
    t->clk = 0;
    t->rst = 1;
    h->drive();
    h->eval();
    for (uint32_t i = 0; i < reset_cycles; ++i) {
        t->clk = 1;
        h->eval();
        t->clk = 0;
        h->eval();
    }
    // rst reaches the core through one flip-flop (hetnic.sim.hil.register_reset): clock
    // once more so that the core is out of reset before the first cycle counted.
    t->rst = 0;
    h->eval();
    t->clk = 1;
    h->eval();
    t->clk = 0;
    h->eval();
    return h;
}

void hil_destroy(Hil* h) {
    if (!h) return;
#if HIL_TRACE
    if (h->trace) h->trace->close();
#endif
    h->top->final();
    if (h->mem_mapped)
        munmap(h->memory.bytes, h->memory.size);
    else
        std::free(h->memory.bytes);
    if (h->db_page) munmap(const_cast<uint32_t*>(h->db_page), h->db_page_bytes);
    delete h;
}

// Map the doorbell page ``path`` (at least 4 * ``n_slots`` bytes) and service it from now
// on: slot k rings register ``reg_addrs[k]``. The slots' current values count as seen (a
// slot rings when it changes after this call). Returns 0, or -1 when the file cannot be
// mapped or a page is attached already.
int hil_attach_doorbells(Hil* h, const char* path, uint64_t page_bytes, uint32_t n_slots,
                         const uint32_t* reg_addrs) {
    if (h->db_page || page_bytes < 4ull * n_slots) return -1;
    void* p = map_shared(path, page_bytes);
    if (!p) return -1;
    h->db_page = static_cast<const volatile uint32_t*>(p);
    h->db_page_bytes = page_bytes;
    h->db_regs.assign(reg_addrs, reg_addrs + n_slots);
    h->db_seen.resize(n_slots);
    for (uint32_t k = 0; k < n_slots; ++k)
        h->db_seen[k] = __atomic_load_n(h->db_page + k, __ATOMIC_ACQUIRE);
    return 0;
}

uint8_t* hil_mem(Hil* h) { return h->memory.bytes; }
uint64_t hil_mem_size(Hil* h) { return h->memory.size; }

void hil_configure(Hil* h, uint32_t ifg_bytes, uint32_t read_latency, uint32_t max_outstanding,
                   uint64_t rx_queue_limit_bytes, uint64_t tx_capture_limit) {
    h->ifg_bytes = ifg_bytes;
    h->memory.read_latency = read_latency;
    h->memory.max_outstanding = max_outstanding ? max_outstanding : 1;
    h->rx_q_limit_bytes = rx_queue_limit_bytes;
    h->tx_out_limit = tx_capture_limit ? tx_capture_limit : 1;
}

// Host memory's write responses: ``b_latency`` cycles after the burst, and a chance of
// ``b_stall`` in 65536 per cycle that one not yet offered waits (seeded by ``seed``).
void hil_configure_writes(Hil* h, uint32_t b_latency, uint32_t b_stall, uint64_t seed) {
    h->memory.b_latency = b_latency;
    h->memory.b_stall = b_stall > 65535 ? 65535 : b_stall;
    h->memory.b_seed = seed;
}

// Run ``cycles`` clock cycles with the whole harness active.
void hil_run(Hil* h, uint64_t cycles) {
    for (uint64_t i = 0; i < cycles; ++i) h->cycle();
}

// Run until the wire has nothing left to send and no bus or stream has moved for ``quiet``
// cycles of this call (so a doorbell written just before gets its chance; a doorbell-page
// slot that changes or a doorbell write queued is activity too), or ``max_cycles`` have
// passed. Returns the cycles run.
uint64_t hil_run_until_idle(Hil* h, uint64_t quiet, uint64_t max_cycles) {
    uint64_t ran = 0, idle = 0;
    while (ran < max_cycles) {
        h->cycle();
        ++ran;
        idle = h->last_activity == h->n.cycles ? 0 : idle + 1;
        if (idle >= quiet && h->rx_q.empty() && h->rx_gap == 0 && !h->doorbells_busy())
            break;
    }
    return ran;
}

// The bare model clocked in a loop, inputs held idle: the baseline of ``hetnic bench hil``.
void hil_run_raw(Hil* h, uint64_t cycles) {
    Vtop* t = h->top.get();
    for (uint64_t i = 0; i < cycles; ++i) {
        t->clk = 1;
        t->eval();
        t->clk = 0;
        t->eval();
    }
    h->n.cycles += cycles;
}

// Register access. Returns 0 (OKAY), the AXI response code, or -1 when the bus did not
// answer within ``timeout`` cycles (the transaction is abandoned). A doorbell write on the
// bus finishes first (within the same timeout); no new one starts until this access ends.
// A doorbell write that gets no response within the timeout is abandoned like a host
// access (counted in doorbell_errors) and queued again in front of the others (a producer
// index written twice is the same doorbell), so that a bus that stopped answering a
// doorbell does not refuse every later host access.
static bool csr_claim(Hil* h, uint64_t timeout) {
    h->csr_host_waiting = true;
    for (uint64_t i = 0; i < timeout && h->csr_state != CSR_IDLE; ++i) h->cycle();
    if (h->csr_state != CSR_IDLE && h->csr_doorbell) {
        h->n.doorbell_errors++;
        h->db_q.emplace_front(h->csr_addr, h->csr_wdata);
        h->csr_doorbell = false;
        h->csr_state = CSR_IDLE;
        h->drive();
        h->eval();
    }
    if (h->csr_state != CSR_IDLE) {
        h->csr_host_waiting = false;
        return false;
    }
    return true;
}

static int csr_wait(Hil* h, uint64_t timeout) {
    h->csr_done = false;
    h->csr_addr_done = h->csr_data_done = false;
    h->drive();
    h->eval();
    for (uint64_t i = 0; i < timeout && !h->csr_done; ++i) h->cycle();
    h->csr_host_waiting = false;
    if (!h->csr_done) {
        h->csr_state = CSR_IDLE;
        h->drive();
        h->eval();
        return -1;
    }
    return static_cast<int>(h->csr_resp);
}

int hil_reg_write(Hil* h, uint32_t addr, uint32_t value, uint64_t timeout) {
    if (!csr_claim(h, timeout)) return -1;
    h->csr_state = CSR_WRITE;
    h->csr_addr = addr;
    h->csr_wdata = value;
    return csr_wait(h, timeout);
}

// Several writes in order; stops at the first that fails and returns its index, else -1.
int64_t hil_reg_write_many(Hil* h, const uint32_t* addrs, const uint32_t* values, uint64_t n,
                           uint64_t timeout, int* status) {
    for (uint64_t i = 0; i < n; ++i) {
        int rc = hil_reg_write(h, addrs[i], values[i], timeout);
        if (rc) {
            *status = rc;
            return static_cast<int64_t>(i);
        }
    }
    *status = 0;
    return -1;
}

int hil_reg_read(Hil* h, uint32_t addr, uint32_t* value, uint64_t timeout) {
    if (!csr_claim(h, timeout)) return -1;
    h->csr_state = CSR_READ;
    h->csr_addr = addr;
    int rc = csr_wait(h, timeout);
    *value = h->csr_rdata;
    return rc;
}

// Reads into ``values``; returns the index of the first failing read (status in *status),
// else -1.
int64_t hil_reg_read_many(Hil* h, const uint32_t* addrs, uint32_t* values, uint64_t n,
                          uint64_t timeout, int* status) {
    for (uint64_t i = 0; i < n; ++i) {
        int rc = hil_reg_read(h, addrs[i], &values[i], timeout);
        if (rc) {
            *status = rc;
            return static_cast<int64_t>(i);
        }
    }
    *status = 0;
    return -1;
}

// Queue frames for rx_mac: ``count`` frames laid end to end in ``data`` with their
// ``lengths`` and MAC error flags (``errors``, may be null). Takes frames while the queue
// holds less than its byte limit; returns how many it took.
uint64_t hil_wire_send(Hil* h, const uint8_t* data, const uint32_t* lengths,
                       const uint8_t* errors, uint64_t count) {
    uint64_t taken = 0;
    size_t off = 0;
    for (; taken < count; ++taken) {
        const uint32_t len = lengths[taken];
        if (h->rx_q_bytes >= h->rx_q_limit_bytes) break;
        Frame f;
        f.data.assign(data + off, data + off + len);
        f.error = errors ? errors[taken] != 0 : false;
        off += len;
        if (len == 0) continue;          // nothing to put on the wire
        h->rx_q_bytes += len;
        h->rx_q.push_back(std::move(f));
    }
    if (h->csr_state == CSR_IDLE) {
        h->drive();
        h->eval();
    }
    return taken;
}

uint64_t hil_wire_pending(Hil* h) { return h->rx_q.size(); }

// Frames captured at tx_mac, oldest first. Copies whole frames while they fit in ``cap``
// bytes and ``max_frames``; returns how many were copied (and removed from the capture).
uint64_t hil_wire_received(Hil* h, uint8_t* out, uint64_t cap, uint32_t* lengths,
                           uint8_t* errors, uint64_t max_frames) {
    uint64_t k = 0, off = 0;
    while (k < max_frames && !h->tx_out.empty()) {
        const Frame& f = h->tx_out.front();
        if (off + f.data.size() > cap) break;
        std::memcpy(out + off, f.data.data(), f.data.size());
        lengths[k] = static_cast<uint32_t>(f.data.size());
        errors[k] = f.error;
        off += f.data.size();
        h->tx_out.pop_front();
        ++k;
    }
    return k;
}

uint64_t hil_wire_received_pending(Hil* h, uint64_t* bytes) {
    uint64_t total = 0;
    for (const Frame& f : h->tx_out) total += f.data.size();
    *bytes = total;
    return h->tx_out.size();
}

// Interrupt lines seen high since the last call with ``clear`` set.
uint32_t hil_irq(Hil* h, int clear) {
    uint32_t v = h->irq_sticky;
    if (clear) h->irq_sticky = 0;
    return v;
}
uint64_t hil_irq_edges(Hil* h, int line) {
    return line >= 0 && line < 32 ? h->irq_edges[line] : 0;
}

// The harness counters, in the order of struct Counters (see hetnic.sim.hil).
uint64_t hil_counters(Hil* h, uint64_t* out, uint64_t n) {
    const uint64_t total = sizeof(Counters) / sizeof(uint64_t);
    std::memcpy(out, &h->n, sizeof(uint64_t) * (n < total ? n : total));
    return total;
}

void hil_trace_flush(Hil* h) {
#if HIL_TRACE
    if (h->trace) h->trace->flush();
#else
    (void)h;
#endif
}

}  // extern "C"
