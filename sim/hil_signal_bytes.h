// hetnic HIL harness: moving bytes in and out of Verilator signals of any width.
//
// Part of hil_harness.cpp (included by it and by hil_memory.h; hetnic.sim.hil compiles and
// keys them together). Byte 0 of a buffer is the least significant byte of the signal,
// the order of an AXI data bus.

#ifndef HETNIC_HIL_SIGNAL_BYTES_H
#define HETNIC_HIL_SIGNAL_BYTES_H

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "verilated.h"

#ifndef HIL_DATA_BYTES
#error "HIL_DATA_BYTES must be defined"
#endif

// Width of every data bus of the core (RX and TX streams, host memory), in bytes.
static constexpr int DATA_BYTES = HIL_DATA_BYTES;
// Byte buffers padded to whole 32-bit words so put/get never run past them.
static constexpr int BEAT_BUF = ((DATA_BYTES + 7) / 8) * 8;

namespace {

// Drive ``sig`` from the bytes at ``p`` (as many as the signal holds, up to 8 for a scalar).
template <typename T>
inline void put_bytes(T& sig, const uint8_t* p) {
    uint64_t v = 0;
    std::memcpy(&v, p, sizeof(T) < 8 ? sizeof(T) : 8);
    sig = static_cast<T>(v);
}
template <std::size_t N>
inline void put_bytes(VlWide<N>& sig, const uint8_t* p) {
    for (std::size_t i = 0; i < N; ++i) {
        uint32_t w;
        std::memcpy(&w, p + 4 * i, 4);
        sig[i] = w;
    }
}

// Copy the bytes of ``sig`` to ``p``.
template <typename T>
inline void get_bytes(const T& sig, uint8_t* p) {
    uint64_t v = sig;
    std::memcpy(p, &v, sizeof(T) < 8 ? sizeof(T) : 8);
}
template <std::size_t N>
inline void get_bytes(const VlWide<N>& sig, uint8_t* p) {
    for (std::size_t i = 0; i < N; ++i) {
        uint32_t w = sig[i];
        std::memcpy(p + 4 * i, &w, 4);
    }
}

}  // namespace

#endif  // HETNIC_HIL_SIGNAL_BYTES_H
