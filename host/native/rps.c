/* The host's native helper: receive packet steering over SPSC rings in shared memory.
 *
 * Built at first use by hetnic.host.native_lib (cc -O2 -shared -fPIC) and loaded with
 * ctypes. Every layout offset comes in as a -D flag generated from the Python definitions
 * (hetnic.host.spsc for the ring, hetnic.host.rps_layout for the driver and worker
 * blocks); none is written here.
 *
 * What it holds:
 *  - acquire/release atomics on the ring indices, a sequentially consistent fence on the
 *    two store-then-load pairs of the sleep protocol (no lost wake-up);
 *  - pause (a no-op off x86), futex wait with a timeout and wake on the ring's `sleeping`
 *    word, eventfd read/write (the baseline), UMONITOR/UMWAIT when the CPU has WAITPKG;
 *  - a per-process count of every system call this file makes (hn_syscalls);
 *  - the driver's steering loop (hn_drive), the worker's forwarding loop (hn_worker_run),
 *    the heartbeat watch (hn_watch) and the IPv4 forwarding step (hn_forward_ipv4).
 *
 * A ring slot holds either a copy of the frame or (length word with SPSC_SLOT_REF) a
 * descriptor: the frame's offset in a pool segment both processes map, which the worker
 * forwards in place (zero-copy, as a NIC driver hands over its receive buffers).
 *
 * The driver is the single producer of every worker ring, each worker the single consumer
 * of its own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define HN_X86 1
#else
#define HN_X86 0
#endif

#ifndef SPSC_OFF_PROD
#error "build through hetnic.host.native_lib: the layout comes as -D flags"
#endif

#define U64(base, off) ((uint64_t *)((uint8_t *)(base) + (off)))
#define U32(base, off) ((uint32_t *)((uint8_t *)(base) + (off)))
#define LOAD_ACQ(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define LOAD_RLX(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE_REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define STORE_RLX(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define FENCE() __atomic_thread_fence(__ATOMIC_SEQ_CST)
/* A counter word of a block: one writer, read by the other process at any time. */
#define BUMP(p, n) STORE_RLX((p), LOAD_RLX(p) + (n))

/* ---- system calls, each counted ------------------------------------------------------ */

static uint64_t hn_syscall_count;

uint64_t hn_syscalls(void) { return hn_syscall_count; }

static inline void pause_cpu(void) {
#if HN_X86
    __builtin_ia32_pause();
#endif
}

/* CLOCK_MONOTONIC through the vDSO: not a system call, not counted. */
uint64_t hn_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Wait while *word == expect, at most timeout_ns: 0 woken (or the word had changed),
 * 1 timed out, -errno otherwise. */
int hn_futex_wait(uint32_t *word, uint32_t expect, int64_t timeout_ns) {
    struct timespec ts = {timeout_ns / 1000000000, timeout_ns % 1000000000};
    hn_syscall_count++;
    long r = syscall(SYS_futex, word, FUTEX_WAIT, expect, &ts, NULL, 0);
    if (r == 0) return 0;
    if (errno == ETIMEDOUT) return 1;
    if (errno == EAGAIN || errno == EINTR) return 0;
    return -errno;
}

int hn_futex_wake(uint32_t *word, int n) {
    hn_syscall_count++;
    long r = syscall(SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);
    return r < 0 ? -errno : (int)r;
}

int hn_eventfd_new(void) {
    hn_syscall_count++;
    int fd = eventfd(0, EFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int hn_eventfd_write(int fd, uint64_t value) {
    hn_syscall_count++;
    return write(fd, &value, 8) == 8 ? 0 : -errno;
}

/* Block until the eventfd's count is nonzero; returns the count (and zeroes it). */
int64_t hn_eventfd_read(int fd) {
    uint64_t value = 0;
    hn_syscall_count++;
    return read(fd, &value, 8) == 8 ? (int64_t)value : -errno;
}

void hn_yield(void) {
    hn_syscall_count++;
    sched_yield();
}

int hn_close(int fd) {
    hn_syscall_count++;
    return close(fd) == 0 ? 0 : -errno;
}

/* ---- announce, then look again (for Python callers) -------------------------------------
 *
 * A store followed by a load of another word may be reordered on x86 (TSO's store buffer)
 * and anywhere else: "I sleep" / "is there work?" on one side and "there is work" / "does
 * it sleep?" on the other both miss each other without a full fence between the store and
 * the load. Python has no fence, so a Python side of such a protocol does its
 * announce-then-recheck here: store `value` into the 32-bit `word`, sequentially
 * consistent fence, then return the 32-bit word at `check`. No system call. */
uint32_t hn_store_fence_load32(uint32_t *word, uint32_t value, const uint32_t *check) {
    __atomic_store_n(word, value, __ATOMIC_SEQ_CST);
    FENCE();
    return __atomic_load_n(check, __ATOMIC_SEQ_CST);
}

/* Atomically replace the 32-bit `word` by `value`; the old value (a full barrier: for
 * "clear the flag and wake only if it was set", one wake per sleep). */
uint32_t hn_exchange32(uint32_t *word, uint32_t value) {
    return __atomic_exchange_n(word, value, __ATOMIC_SEQ_CST);
}

/* A sequentially consistent fence alone (between a Python store and a Python load). */
void hn_fence(void) { FENCE(); }

/* ---- WAITPKG: UMONITOR/UMWAIT ---------------------------------------------------------- */

int hn_waitpkg(void) {
#if HN_X86
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (c >> 5) & 1;
#else
    return 0;
#endif
}

#if HN_X86
/* Wait for a store to the line of `addr` or about `ticks` TSC ticks (C0.2 state); only
 * called when hn_waitpkg() said yes. No system call. */
__attribute__((target("waitpkg"))) static void umwait_line(const void *addr, uint64_t ticks) {
    _umonitor((void *)addr);
    _umwait(0, __rdtsc() + ticks);
}
#endif

/* ---- IPv4 forwarding ------------------------------------------------------------------- */

static uint16_t csum_fold(uint32_t sum) {
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)sum;
}

/* The Internet checksum of an IPv4 header (host order result, 0 when valid). */
static uint16_t ipv4_header_sum(const uint8_t *ip, unsigned len) {
    uint32_t sum = 0;
    for (unsigned i = 0; i < len; i += 2) sum += (uint32_t)ip[i] << 8 | ip[i + 1];
    return (uint16_t)~csum_fold(sum);
}

/* Forward one frame: Ethernet II + IPv4, decrement the TTL and update the header checksum
 * incrementally (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')). Returns 0 when forwarded,
 * 1 not IPv4 or too short, 2 TTL expired, 3 the header checksum was wrong (verify only). */
int hn_forward_ipv4(uint8_t *frame, uint32_t len, int verify) {
    if (len < 34 || frame[12] != 0x08 || frame[13] != 0x00) return 1;
    uint8_t *ip = frame + 14;
    unsigned ihl = (ip[0] & 0x0f) * 4u;
    if ((ip[0] >> 4) != 4 || ihl < 20 || len < 14 + ihl) return 1;
    if (verify && ipv4_header_sum(ip, ihl) != 0) return 3;
    if (ip[8] <= 1) return 2;
    uint16_t old_word = (uint16_t)(ip[8] << 8 | ip[9]);
    ip[8]--;
    uint16_t new_word = (uint16_t)(ip[8] << 8 | ip[9]);
    uint16_t hc = (uint16_t)(ip[10] << 8 | ip[11]);
    uint32_t sum = (uint16_t)~hc + (uint32_t)(uint16_t)~old_word + new_word;
    hc = (uint16_t)~csum_fold(sum);
    ip[10] = hc >> 8;
    ip[11] = hc & 0xff;
    return 0;
}

/* ---- the worker ------------------------------------------------------------------------ */

#define RING_PROD(r) U64(r, SPSC_OFF_PROD)
#define RING_CONS(r) U64(r, SPSC_OFF_CONS)
#define RING_SLEEPING(r) U32(r, SPSC_OFF_SLEEPING)
#define RING_HEARTBEAT(r) U64(r, SPSC_OFF_HEARTBEAT)
#define RING_STAMP(r) U64(r, SPSC_OFF_WAKE_STAMP)
#define RING_PWAIT(r) U32(r, SPSC_OFF_PRODUCER_WAITING)
#define RING_NSLOTS(r) (*U32(r, SPSC_OFF_NSLOTS))
#define RING_SLOT_SIZE(r) (*U32(r, SPSC_OFF_SLOT_SIZE))
#define SLOT(r, i, mask, size) ((uint8_t *)(r) + SPSC_HEADER_SIZE + ((i) & (mask)) * (size))
#define WK(b, f) U64(b, RPS_WK_##f)
#define DRV(b, f) U64(b, RPS_DRV_##f)
#define MAX_FLOWS 65536u
#define WORKER_BATCH 64u
#define DRAIN_MAX 4096u
#define SPIN_MIN_NS 2000u
#define PREFETCH_AHEAD 8u

/* Set up a worker process (which asked for SIGKILL at its parent's death before, through
 * hetnic.host.nic_client.die_with_parent): check the parent is still the driver, record
 * the pid. Returns 0, or -1 when the parent is already gone. */
int hn_worker_init(uint8_t *wblock) {
    hn_syscall_count++;
    if ((uint64_t)getppid() != *WK(wblock, PARENT_PID)) return -1;
    hn_syscall_count++;
    STORE_RLX(WK(wblock, PID), (uint64_t)getpid());
    return 0;
}

static void record_wake(uint8_t *wblock, uint8_t *ring) {
    uint64_t stamp = __atomic_exchange_n(RING_STAMP(ring), 0, __ATOMIC_ACQ_REL);
    if (!stamp) return;
    uint64_t now = hn_now_ns();
    uint64_t n = LOAD_RLX(WK(wblock, LAT_COUNT));
    STORE_RLX(U64(wblock, RPS_WK_LAT + 8 * (n % RPS_LAT_N)), now > stamp ? now - stamp : 0);
    STORE_RLX(WK(wblock, LAT_COUNT), n + 1);
}

/* Forward what is in the ring, in batches of WORKER_BATCH, at most DRAIN_MAX frames (so
 * that the caller bumps the heartbeat and sees `stop` under sustained load too); returns
 * the number of frames. */
static uint64_t drain(uint8_t *wblock, uint8_t *ring, uint32_t *last_seq, int verify,
                      uint8_t *pool, uint64_t pool_size) {
    uint64_t cons = LOAD_RLX(RING_CONS(ring));
    uint64_t prod = LOAD_ACQ(RING_PROD(ring));
    uint32_t mask = RING_NSLOTS(ring) - 1, size = RING_SLOT_SIZE(ring);
    uint64_t total = 0;
    int clamped = prod - cons > DRAIN_MAX;
    if (clamped) prod = cons + DRAIN_MAX;
    while (cons != prod) {
        uint64_t end = prod - cons > WORKER_BATCH ? cons + WORKER_BATCH : prod;
        uint64_t fwd = 0, bad = 0, unseq = 0, order = 0, nf = 0;
        for (uint64_t i = cons; i != end; i++) {
            uint8_t *slot = SLOT(ring, i, mask, size);
            uint32_t len = *(uint32_t *)slot;
            uint8_t *frame = slot + SPSC_SLOT_HEADER;
            if (len & SPSC_SLOT_REF) {
                /* a descriptor: the frame is in the pool, at the offset the slot holds */
                uint64_t off = *(uint64_t *)frame;
                len &= ~(uint32_t)SPSC_SLOT_REF;
                if (!pool || off > pool_size || len > pool_size - off) len = 0;   /* corrupted */
                else frame = pool + off;
                if (i + PREFETCH_AHEAD < prod) {
                    /* the frame PREFETCH_AHEAD descriptors on: its line is in memory (no
                     * one has touched it since the NIC, here the frame set, wrote it) */
                    uint64_t ahead = *(uint64_t *)(SLOT(ring, i + PREFETCH_AHEAD, mask, size)
                                                   + SPSC_SLOT_HEADER);
                    if (ahead < pool_size) __builtin_prefetch(pool + ahead, 1);
                }
            } else if (len > size - SPSC_SLOT_HEADER) {
                len = 0;        /* a corrupted slot: not forwarded */
            }
            int r = hn_forward_ipv4(frame, len, verify);
            if (r == 0) fwd++;
            else if (r == 3) bad++;
            else nf++;
            uint32_t seqw[3];
            if (len >= RPS_SEQ_OFFSET + 12) {
                memcpy(seqw, frame + RPS_SEQ_OFFSET, 12);
                if (seqw[0] == RPS_SEQ_MAGIC) {
                    uint32_t flow = seqw[1] % MAX_FLOWS;
                    if (seqw[2] <= last_seq[flow]) order++;
                    last_seq[flow] = seqw[2];
                } else unseq++;
            } else unseq++;
        }
        /* the counters first, then the index: a frame counted forwarded may still be in the
         * ring if the worker is killed between the two stores, never the other way round */
        BUMP(WK(wblock, FORWARDED), fwd);
        if (bad) BUMP(WK(wblock, CSUM_ERRORS), bad);
        if (nf) BUMP(WK(wblock, NOT_FORWARDED), nf);
        if (unseq) BUMP(WK(wblock, UNSEQUENCED), unseq);
        if (order) BUMP(WK(wblock, ORDER_ERRORS), order);
        STORE_REL(RING_CONS(ring), end);
        if (!clamped && prod - end <= mask / 2 + 1) {
            /* at most half full: wake a producer waiting for room (the closed loop of the
             * benchmark); the fence orders our index store before the flag load */
            FENCE();
            if (LOAD_RLX(RING_PWAIT(ring))
                    && __atomic_exchange_n(RING_PWAIT(ring), 0, __ATOMIC_ACQ_REL))
                hn_futex_wake(RING_PWAIT(ring), 1);
        }
        total += end - cons;
        cons = end;
        if (cons == prod && total < DRAIN_MAX) {
            prod = LOAD_ACQ(RING_PROD(ring));
            clamped = prod - cons > DRAIN_MAX - total;
            if (clamped) prod = cons + (DRAIN_MAX - total);
        }
    }
    return total;
}

static inline int ring_empty(uint8_t *ring) {
    return LOAD_ACQ(RING_PROD(ring)) == LOAD_RLX(RING_CONS(ring));
}

/* The worker's loop, until the driver sets `stop`. Futex mode: spin (pause, or UMWAIT
 * with WAITPKG) while the ring is empty for up to spin_ns, then announce sleep, re-check,
 * and futex-wait with a timeout of sleep_ns so that the heartbeat keeps moving. Eventfd
 * mode (the baseline): block in read() on the eventfd the driver writes once per batch.
 * pool (pool_size bytes; NULL for none) is where descriptors point in this process; a
 * descriptor outside it is counted not forwarded. Returns 0, or -ENOMEM. */
int hn_worker_run(uint8_t *wblock, uint8_t *ring, int mode, int efd, int64_t sleep_ns,
                  uint8_t *pool, uint64_t pool_size) {
    uint32_t *last_seq = calloc(MAX_FLOWS, sizeof *last_seq);
    if (!last_seq) return -ENOMEM;
    int use_umwait = hn_waitpkg();
    int verify = (int)LOAD_RLX(WK(wblock, VERIFY));
    uint64_t spin_ns = LOAD_RLX(WK(wblock, SPIN_NS)), spin_cur = spin_ns;
    uint32_t *sleeping = RING_SLEEPING(ring);
    uint64_t *heartbeat = RING_HEARTBEAT(ring);
    uint64_t last_beat = hn_now_ns();
    int spin = 1;   /* spin before sleeping only after work, not after an idle timeout */
    STORE_RLX(WK(wblock, STARTED), 1);
    while (!LOAD_ACQ(WK(wblock, STOP))) {
        if (drain(wblock, ring, last_seq, verify, pool, pool_size)) {
            spin = 1;
            uint64_t now = hn_now_ns();
            if (now - last_beat > 1000000) {       /* heartbeat about every millisecond */
                STORE_RLX(heartbeat, LOAD_RLX(heartbeat) + 1);
                last_beat = now;
            }
            continue;
        }
        if (mode == RPS_MODE_EVENTFD) {
            STORE_RLX(heartbeat, LOAD_RLX(heartbeat) + 1);
            if (!ring_empty(ring)) continue;
            STORE_RLX(sleeping, 1);
            BUMP(WK(wblock, SLEEPS), 1);
            hn_eventfd_read(efd);
            STORE_RLX(sleeping, 0);
            record_wake(wblock, ring);
            STORE_RLX(WK(wblock, SYSCALLS), hn_syscall_count);
            continue;
        }
        /* spin while empty, up to the idle budget: adaptive, halved after a spin that
         * ended in a sleep, doubled (up to spin_ns) after one that found frames, so that
         * a worker sharing a CPU with the driver stops burning it */
        uint64_t start = hn_now_ns(), now = start;
        int got = 0;
        while (spin && now - start < spin_cur) {
            for (int k = 0; k < 64; k++) {
                if (!ring_empty(ring) || LOAD_RLX(WK(wblock, STOP))) { got = 1; break; }
#if HN_X86
                if (use_umwait) umwait_line(RING_PROD(ring), 2000); else
#endif
                pause_cpu();
            }
            if (got) break;
            now = hn_now_ns();
        }
        STORE_RLX(heartbeat, LOAD_RLX(heartbeat) + 1);
        last_beat = now;
        if (spin) {
            if (got) spin_cur = spin_cur * 2 < spin_ns ? spin_cur * 2 : spin_ns;
            else spin_cur = spin_cur / 2 > SPIN_MIN_NS ? spin_cur / 2 : SPIN_MIN_NS;
        }
        if (got) continue;
        /* announce the sleep, then look again: the driver stores its index, fences, and
         * reads `sleeping`; we store `sleeping`, fence, and read the index: one of the two
         * sees the other's store, so a frame published now is never slept through */
        STORE_RLX(sleeping, 1);
        FENCE();
        if (!ring_empty(ring) || LOAD_RLX(WK(wblock, STOP))) {
            STORE_RLX(sleeping, 0);
            record_wake(wblock, ring);
            continue;
        }
        BUMP(WK(wblock, SLEEPS), 1);
        spin = 1;
        if (hn_futex_wait(sleeping, 1, sleep_ns) == 1) {
            BUMP(WK(wblock, TIMEOUTS), 1);
            spin = 0;
        }
        STORE_RLX(sleeping, 0);
        record_wake(wblock, ring);
        STORE_RLX(WK(wblock, SYSCALLS), hn_syscall_count);
    }
    STORE_RLX(WK(wblock, SYSCALLS), hn_syscall_count);
    free(last_seq);
    return 0;
}

/* ---- the driver ------------------------------------------------------------------------ */

/* Wake worker w if it sleeps (futex mode, after the fence) or always (eventfd mode). */
static void wake_worker(uint8_t *dblock, uint8_t *ring, int w, int mode) {
    if (mode == RPS_MODE_EVENTFD) {
        uint64_t zero = 0;
        if (LOAD_RLX(RING_SLEEPING(ring)))    /* a blocked reader: stamp the first wake */
            __atomic_compare_exchange_n(RING_STAMP(ring), &zero, hn_now_ns(), 0,
                                        __ATOMIC_RELEASE, __ATOMIC_RELAXED);
        hn_eventfd_write((int)*U64(dblock, RPS_DRV_EFD + 8 * w), 1);
        BUMP(DRV(dblock, WAKES), 1);
        return;
    }
    if (!LOAD_RLX(RING_SLEEPING(ring))) return;
    /* the stamp goes first: the worker may wake (its timeout) as soon as `sleeping` drops */
    uint64_t stamp = hn_now_ns();
    STORE_RLX(RING_STAMP(ring), stamp);
    if (__atomic_exchange_n(RING_SLEEPING(ring), 0, __ATOMIC_ACQ_REL) != 1) {
        /* it was awake already: take the stamp back unless it has taken it */
        __atomic_compare_exchange_n(RING_STAMP(ring), &stamp, 0, 0, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED);
        return;
    }
    hn_futex_wake(RING_SLEEPING(ring), 1);
    BUMP(DRV(dblock, WAKES), 1);
}

/* Re-point every steering entry of worker `dead` to the live workers, round robin.
 * Returns the number of live workers. */
static int repoint(uint8_t *seg, uint8_t *dblock, int dead) {
    int n = (int)*DRV(dblock, NWORKERS), live[RPS_MAX_WORKERS], nlive = 0;
    for (int w = 0; w < n; w++)
        if (!LOAD_RLX(U64(dblock, RPS_DRV_DEAD + 8 * w))) live[nlive++] = w;
    uint32_t *table = U32(seg, *DRV(dblock, TABLE_OFF));
    uint64_t size = *DRV(dblock, TABLE_SIZE), k = 0;
    for (uint64_t i = 0; i < size; i++)
        if ((int)table[i] == dead)
            STORE_RLX(&table[i], nlive ? (uint32_t)live[k++ % nlive] : (uint32_t)RPS_MAX_WORKERS);
    return nlive;
}

/* Kill a worker process (SIGKILL) and wait until it has stopped running (exited: a zombie
 * or reaped), without reaping it (WNOWAIT: its parent's multiprocessing does that).
 * pid 0 (the worker never ran hn_worker_init) is no process: nothing to do. */
static void reap_worker(pid_t pid) {
    if (pid <= 0) return;
    hn_syscall_count++;
    if (kill(pid, SIGKILL) != 0) return;    /* ESRCH: gone (and reaped) already */
    siginfo_t info;
    for (;;) {
        hn_syscall_count++;
        if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT) == 0 || errno != EINTR)
            return;     /* exited, or ECHILD: reaped already */
    }
}

/* The heartbeat watch: a worker whose heartbeat has not moved for dead_after_ns (in
 * eventfd mode: while its ring holds frames) is killed (SIGKILL, waited for: a stalled
 * worker must not come back), then declared dead, its steering entries re-pointed and the
 * frames it never took counted lost. Returns the workers declared dead
 * by this call. */
int hn_watch(uint8_t *seg, uint8_t *dblock) {
    int n = (int)*DRV(dblock, NWORKERS), declared = 0;
    uint64_t now = hn_now_ns(), limit = *DRV(dblock, DEAD_AFTER_NS);
    int mode = (int)*DRV(dblock, MODE);
    /* silence is only counted while the watch looks: after a gap (the driver was doing
     * something else) every worker starts a new observation */
    uint64_t last = *DRV(dblock, LAST_WATCH_NS);
    int gap = last == 0 || now - last > limit / 4;
    *DRV(dblock, LAST_WATCH_NS) = now;
    for (int w = 0; w < n; w++) {
        uint64_t *dead = U64(dblock, RPS_DRV_DEAD + 8 * w);
        if (*dead) continue;
        uint8_t *ring = seg + *U64(dblock, RPS_DRV_RING_OFF + 8 * w);
        uint64_t *seen = U64(dblock, RPS_DRV_HB_SEEN + 8 * w);
        uint64_t *since = U64(dblock, RPS_DRV_HB_CHANGE_NS + 8 * w);
        uint64_t beat = LOAD_RLX(RING_HEARTBEAT(ring));
        int idle_blocked = mode == RPS_MODE_EVENTFD && ring_empty(ring);
        if (beat != *seen || idle_blocked || gap) {
            *seen = beat;
            *since = now;
            continue;
        }
        if (now - *since < limit) continue;
        /* silent is not gone: a worker only stalled (SIGSTOP, the scheduler) would go on
         * later and forward frames counted lost here while its flows' newer frames go to
         * another worker. So the silent worker is killed first and waited for; only then
         * are its counters final, its frames counted and its entries moved. */
        uint8_t *wblock = seg + *U64(dblock, RPS_DRV_WBLOCK_OFF + 8 * w);
        reap_worker((pid_t)LOAD_RLX(WK(wblock, PID)));
        STORE_RLX(dead, 1);
        /* every frame the worker took is counted in exactly one of forwarded, csum_errors
         * and not_forwarded (its ring was only ever consumed by it, from index 0), and it
         * bumps those before it moves its index: the frames not among them are the lost
         * ones, exactly, wherever between its stores it was killed */
        uint64_t taken = LOAD_RLX(WK(wblock, FORWARDED)) + LOAD_RLX(WK(wblock, CSUM_ERRORS))
                         + LOAD_RLX(WK(wblock, NOT_FORWARDED));
        uint64_t prod_now = LOAD_RLX(RING_PROD(ring));
        uint64_t left = prod_now > taken ? prod_now - taken : 0;
        STORE_RLX(U64(dblock, RPS_DRV_STOLEN + 8 * w), left);
        BUMP(DRV(dblock, LOST), left);
        BUMP(DRV(dblock, DEATHS), 1);
        repoint(seg, dblock, w);
        declared++;
    }
    return declared;
}

/* Steer n frames: frame i is `lens[i]` bytes at data + i * stride, with flow hash
 * hashes[i]; worker = table[hash % table_size]. Frames go in batches of `batch`: each
 * worker's producer index is published once per batch, then the worker is woken if it
 * sleeps (futex) or its eventfd written (baseline). A full ring is a counted drop, never a
 * wait. pace_ns > 0 spaces the batches (clock_nanosleep to absolute times), for the paced
 * phase of the benchmark. wait_full (benchmarks only: a closed loop that measures the
 * loss-free rate) makes a full ring a wait for room instead of a drop; a worker declared
 * dead meanwhile ends the wait. The heartbeat watch runs about every watch_ns. ref >= 0:
 * data is at offset ref of the pool the workers map, and the slots get descriptors
 * (SPSC_SLOT_REF | len, hash, u64 offset) instead of copies. Returns the number of frames
 * steered (pushed into a ring). */
uint64_t hn_drive(uint8_t *seg, uint8_t *dblock, const uint8_t *data, uint64_t stride,
                  const uint16_t *lens, const uint32_t *hashes, uint64_t n, uint32_t batch,
                  uint64_t pace_ns, uint64_t watch_ns, int wait_full, int64_t ref) {
    int nw = (int)*DRV(dblock, NWORKERS), mode = (int)*DRV(dblock, MODE);
    uint8_t *rings[RPS_MAX_WORKERS];
    uint64_t prod[RPS_MAX_WORKERS], cons_cache[RPS_MAX_WORKERS];
    uint32_t mask[RPS_MAX_WORKERS], size[RPS_MAX_WORKERS], nslots[RPS_MAX_WORKERS];
    for (int w = 0; w < nw; w++) {
        rings[w] = seg + *U64(dblock, RPS_DRV_RING_OFF + 8 * w);
        prod[w] = LOAD_RLX(RING_PROD(rings[w]));
        cons_cache[w] = LOAD_ACQ(RING_CONS(rings[w]));
        nslots[w] = RING_NSLOTS(rings[w]);
        mask[w] = nslots[w] - 1;
        size[w] = RING_SLOT_SIZE(rings[w]);
    }
    const uint32_t *table = U32(seg, *DRV(dblock, TABLE_OFF));
    uint64_t tsize = *DRV(dblock, TABLE_SIZE);
    uint64_t tmask = (tsize & (tsize - 1)) == 0 ? tsize - 1 : 0;   /* hash % size, cheaply */
    uint64_t steered = 0, full = 0, nodead = 0;
    uint64_t began = hn_now_ns();
    uint64_t next_watch = began, next_pace = began;     /* watch at once, then often */
    if (batch == 0) batch = 1;
    for (uint64_t first = 0; first < n; first += batch) {
        uint64_t last = first + batch < n ? first + batch : n;
        uint64_t touched = 0;   /* bit w: worker w got frames in this batch */
        for (uint64_t i = first; i < last; i++) {
            uint32_t w = LOAD_RLX(&table[tmask ? hashes[i] & tmask : hashes[i] % tsize]);
            if (w >= (uint32_t)nw || LOAD_RLX(U64(dblock, RPS_DRV_DEAD + 8 * w))) {
                nodead++;
                continue;
            }
            uint32_t len = lens[i];
            if (prod[w] - cons_cache[w] >= nslots[w]) {
                cons_cache[w] = LOAD_ACQ(RING_CONS(rings[w]));
                if (prod[w] - cons_cache[w] >= nslots[w] && wait_full) {
                    /* closed loop (benchmarks): publish, wake, wait for room or death */
                    STORE_REL(RING_PROD(rings[w]), prod[w]);
                    FENCE();
                    wake_worker(dblock, rings[w], (int)w, mode);
                    /* sleep until the worker has taken half the ring (it wakes us), or
                     * 1 ms passes (the watch runs): no spinning, so a worker that needs
                     * this CPU gets it */
                    while (prod[w] - (cons_cache[w] = LOAD_ACQ(RING_CONS(rings[w])))
                           >= nslots[w]) {
                        STORE_RLX(RING_PWAIT(rings[w]), 1);
                        FENCE();
                        if (prod[w] - LOAD_ACQ(RING_CONS(rings[w])) >= nslots[w]) {
                            BUMP(DRV(dblock, FULL_WAITS), 1);
                            if (hn_futex_wait(RING_PWAIT(rings[w]), 1, 1000000) == 1)
                                BUMP(DRV(dblock, FULL_TIMEOUTS), 1);
                        }
                        STORE_RLX(RING_PWAIT(rings[w]), 0);
                        if (hn_now_ns() >= next_watch) {
                            next_watch = hn_now_ns() + watch_ns;
                            hn_watch(seg, dblock);
                            if (LOAD_RLX(U64(dblock, RPS_DRV_DEAD + 8 * w))) break;
                        }
                    }
                    if (LOAD_RLX(U64(dblock, RPS_DRV_DEAD + 8 * w))) {
                        nodead++;
                        continue;
                    }
                }
                if (prod[w] - cons_cache[w] >= nslots[w]
                        || (ref < 0 && len > size[w] - SPSC_SLOT_HEADER)) {
                    full++;
                    continue;
                }
            } else if (ref < 0 && len > size[w] - SPSC_SLOT_HEADER) {
                full++;     /* cannot fit a slot: counted with the ring-full drops */
                continue;
            }
            uint8_t *slot = SLOT(rings[w], prod[w], mask[w], size[w]);
            ((uint32_t *)slot)[1] = hashes[i];
            if (ref >= 0) {     /* zero-copy: the frame's offset in the pool */
                ((uint32_t *)slot)[0] = len | SPSC_SLOT_REF;
                *(uint64_t *)(slot + SPSC_SLOT_HEADER) = (uint64_t)ref + i * stride;
            } else {
                ((uint32_t *)slot)[0] = len;
                memcpy(slot + SPSC_SLOT_HEADER, data + i * stride, len);
            }
            prod[w]++;
            touched |= 1ull << w;
            steered++;
        }
        if (touched) {
            for (int w = 0; w < nw; w++)
                if (touched >> w & 1) STORE_REL(RING_PROD(rings[w]), prod[w]);
            FENCE();    /* the index stores before the `sleeping` loads (see the worker) */
            for (int w = 0; w < nw; w++)
                if (touched >> w & 1) wake_worker(dblock, rings[w], w, mode);
        }
        BUMP(DRV(dblock, PACKETS_IN), last - first);
        if (pace_ns) {
            next_pace += pace_ns;
            struct timespec ts = {next_pace / 1000000000, next_pace % 1000000000};
            hn_syscall_count++;
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        }
        if (((first / batch) & 15) == 0 || pace_ns) {
            uint64_t now = hn_now_ns();
            if (now >= next_watch) {
                next_watch = now + watch_ns;
                hn_watch(seg, dblock);
            }
        }
    }
    BUMP(DRV(dblock, STEERED), steered);
    BUMP(DRV(dblock, DROP_FULL), full);
    BUMP(DRV(dblock, DROP_DEAD), nodead);
    BUMP(DRV(dblock, DRIVE_NS), hn_now_ns() - began);
    STORE_RLX(DRV(dblock, SYSCALLS), hn_syscall_count);
    return steered;
}

/* Wake worker w unconditionally (to make it see `stop`). */
void hn_kick(uint8_t *seg, uint8_t *dblock, int w) {
    uint8_t *ring = seg + *U64(dblock, RPS_DRV_RING_OFF + 8 * w);
    if ((int)*DRV(dblock, MODE) == RPS_MODE_EVENTFD)
        hn_eventfd_write((int)*U64(dblock, RPS_DRV_EFD + 8 * w), 1);
    else
        hn_futex_wake(RING_SLEEPING(ring), 1);
    STORE_RLX(DRV(dblock, SYSCALLS), hn_syscall_count);
}
