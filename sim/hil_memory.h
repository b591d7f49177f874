// hetnic HIL harness: host memory, the AXI4 slave the core's DMA engine reads and writes.
//
// Part of hil_harness.cpp (hetnic.sim.hil compiles and keys them together). One byte array
// at bus address 0, which Python maps as a numpy array without copying. The slave takes
// INCR bursts of whole DATA_BYTES beats that stay inside a 4 KiB page, up to
// ``max_outstanding`` reads and as many writes at once, with byte strobes on writes. Read
// data may move ``read_latency`` cycles after its address was accepted; bursts are served in
// order, one beat per cycle. A write response is offered ``b_latency`` cycles after its
// burst's last beat was stored, in order; with ``b_stall`` (a chance in 65536 per cycle, a
// function of ``b_seed`` and the cycle, so a run replays exactly) a response not yet offered
// waits another cycle; once BVALID is up it stays up until BREADY. A malformed burst
// (another size or burst type, unaligned, crossing 4 KiB) or one outside the memory touches
// nothing and answers DECERR (3) on every beat or its write response; both are counted.
//
// Cycle discipline (that of the harness): drive() sets the slave's outputs while the clock
// is low; sample() takes what fires on the coming rising edge, before it; apply() acts on it
// after the edge.

#ifndef HETNIC_HIL_MEMORY_H
#define HETNIC_HIL_MEMORY_H

#include <cstdint>
#include <cstring>
#include <deque>
#include <utility>

#include "Vtop.h"
#include "hil_signal_bytes.h"

namespace {

// The host-memory counters, in hetnic.sim.hil.COUNTER_NAMES order (axi_reads ...).
struct AxiCounters {
    uint64_t reads, writes, read_beats, write_beats;
    uint64_t errors, protocol_errors;
};

struct Burst {
    uint64_t addr;
    uint32_t beats;         // remaining
    uint32_t id;
    uint64_t ready_at;      // first cycle its data may move (read latency)
    bool bad;               // outside memory or malformed: DECERR, no access
};

struct WBeat {
    uint8_t data[BEAT_BUF];
    uint64_t strb;
    bool last;
};

// What fired on the memory's five channels on one clock edge, with the accepted address
// bursts and write beat (captured before the edge changes them).
struct AxiTransfers {
    bool ar = false, aw = false, w = false, r = false, b = false;
    Burst read{}, write{};
    WBeat wbeat{};

    bool b_valid = false;   // BVALID was up (taken or not)

    bool any() const { return ar || aw || w || r || b; }
};

struct HostMemory {
    uint8_t* bytes = nullptr;
    uint64_t size = 0;
    uint32_t read_latency = 0;
    uint32_t max_outstanding = 16;
    uint32_t b_latency = 0;         // cycles from a burst's last stored beat to its BVALID
    uint32_t b_stall = 0;           // chance in 65536 that BVALID waits a cycle more
    uint64_t b_seed = 0;
    std::deque<Burst> reads, writes;                  // accepted, not finished
    std::deque<WBeat> wdata;                          // write beats not yet stored
    struct Response { uint32_t id, resp; uint64_t ready_at; };
    std::deque<Response> responses;                   // write responses, in order
    bool b_offered = false;                           // BVALID up and not taken yet

    // Whether a write response due in cycle ``cycle`` waits (seeded, from the cycle alone).
    bool b_stalls(uint64_t cycle) const {
        if (!b_stall) return false;
        uint64_t z = b_seed + cycle * 0x9E3779B97F4A7C15ull;          // splitmix64
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return ((z ^ (z >> 31)) & 0xFFFF) < b_stall;
    }

    // The slave's outputs for cycle ``cycle`` (clock low).
    void drive(Vtop* t, uint64_t cycle) const {
        t->m_axi_arready = reads.size() < max_outstanding;
        t->m_axi_awready = writes.size() < max_outstanding;
        t->m_axi_wready = wdata.size() < 4u * 256u;
        if (!reads.empty() && reads.front().ready_at <= cycle) {
            const Burst& b = reads.front();
            uint8_t beat[BEAT_BUF] = {};
            if (!b.bad) std::memcpy(beat, bytes + b.addr, DATA_BYTES);
            put_bytes(t->m_axi_rdata, beat);
            t->m_axi_rid = b.id;
            t->m_axi_rresp = b.bad ? 3 : 0;
            t->m_axi_rlast = b.beats == 1;
            t->m_axi_rvalid = 1;
        } else {
            t->m_axi_rvalid = 0;
            t->m_axi_rlast = 0;
        }
        if (!responses.empty() && responses.front().ready_at <= cycle &&
            (b_offered || !b_stalls(cycle))) {
            t->m_axi_bid = responses.front().id;
            t->m_axi_bresp = responses.front().resp;
            t->m_axi_bvalid = 1;
        } else {
            t->m_axi_bvalid = 0;
        }
    }

    // What fires on the rising edge that ends cycle ``cycle`` (call before it); counts the
    // bursts it refuses.
    AxiTransfers sample(const Vtop* t, uint64_t cycle, AxiCounters& n) const {
        AxiTransfers x;
        x.ar = t->m_axi_arvalid && t->m_axi_arready;
        x.aw = t->m_axi_awvalid && t->m_axi_awready;
        x.w = t->m_axi_wvalid && t->m_axi_wready;
        x.r = t->m_axi_rvalid && t->m_axi_rready;
        x.b = t->m_axi_bvalid && t->m_axi_bready;
        x.b_valid = t->m_axi_bvalid;
        if (x.ar)
            x.read = accept(t->m_axi_araddr, t->m_axi_arlen, t->m_axi_arsize,
                            t->m_axi_arburst, t->m_axi_arid, cycle, n);
        if (x.aw)
            x.write = accept(t->m_axi_awaddr, t->m_axi_awlen, t->m_axi_awsize,
                             t->m_axi_awburst, t->m_axi_awid, cycle, n);
        if (x.w) {
            get_bytes(t->m_axi_wdata, x.wbeat.data);
            x.wbeat.strb = t->m_axi_wstrb;
            x.wbeat.last = t->m_axi_wlast;
        }
        return x;
    }

    // Act on ``x`` after the edge that ended cycle ``cycle``: queue accepted bursts, move
    // read beats, store every write beat that has its burst, answer finished write bursts.
    void apply(const AxiTransfers& x, AxiCounters& n, uint64_t cycle) {
        if (x.ar) {
            reads.push_back(x.read);
            n.reads++;
        }
        if (x.r) {
            Burst& b = reads.front();
            b.addr += DATA_BYTES;
            n.read_beats++;
            if (--b.beats == 0) reads.pop_front();
        }
        if (x.aw) {
            writes.push_back(x.write);
            n.writes++;
        }
        if (x.w) wdata.push_back(x.wbeat);
        while (!writes.empty() && !wdata.empty()) store_write_beat(n, cycle);
        if (x.b) responses.pop_front();
        b_offered = x.b_valid && !x.b;
    }

private:
    // An accepted AR or AW (AXI AxLEN, AxSIZE, AxBURST), checked.
    Burst accept(uint64_t addr, uint32_t len, uint32_t size_log2, uint32_t burst_type,
                 uint32_t id, uint64_t cycle, AxiCounters& n) const {
        Burst b{addr, len + 1, id, cycle + read_latency, false};
        const uint64_t length = uint64_t(len + 1) * DATA_BYTES;
        if ((1u << size_log2) != DATA_BYTES || burst_type != 1 || addr % DATA_BYTES ||
            (addr & 0xFFF) + length > 0x1000) {
            n.protocol_errors++;
            b.bad = true;
        }
        if (addr >= size || length > size - addr) {
            n.errors++;
            b.bad = true;
        }
        return b;
    }

    // The oldest write beat into the oldest write burst; a burst that ends queues its
    // response (a WLAST on another beat than the burst's last is a protocol error).
    //
    // Ordering, by construction: a beat's highest strobed byte is stored last, with a
    // release store, so every byte stored before it (this beat's others, the burst's earlier
    // beats) is visible to another process no later than it. A completion or event entry's
    // phase bit is its last byte (hetnic.host.ring.PhaseRing checks that), written in the
    // entry's last beat, so a host that sees the new phase and then reads the entry again
    // (PhaseRing.peek) reads the whole body.
    void store_write_beat(AxiCounters& n, uint64_t cycle) {
        Burst& b = writes.front();
        const WBeat& w = wdata.front();
        if (!b.bad) {
            uint8_t* dst = bytes + b.addr;
            int top = DATA_BYTES - 1;
            while (top >= 0 && !(w.strb >> top & 1)) --top;
            for (int i = 0; i < top; ++i)
                if (w.strb >> i & 1) dst[i] = w.data[i];
            if (top >= 0) __atomic_store_n(dst + top, w.data[top], __ATOMIC_RELEASE);
        }
        b.addr += DATA_BYTES;
        n.write_beats++;
        const bool last = --b.beats == 0;
        if (last != w.last) n.protocol_errors++;
        wdata.pop_front();
        if (last) {
            responses.push_back({b.id, b.bad ? 3u : 0u, cycle + 1 + b_latency});
            writes.pop_front();
        }
    }
};

}  // namespace

#endif  // HETNIC_HIL_MEMORY_H
