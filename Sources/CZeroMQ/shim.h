#ifndef CZEROMQ_SHIM_H
#define CZEROMQ_SHIM_H
#include <zmq.h>
#include <errno.h>
#include <stdatomic.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

// Swift cannot import macros that are expressions over other macros (ZMQ_HAUSNUMERO + n),
// and reading `errno` from Swift goes through a thread-local accessor that differs by libc.
// These static inline functions give Swift a stable, named way to reach them.

/// ZeroMQ-specific error number: the context was terminated.
static inline int CZeroMQ_ETERM(void) { return ETERM; }
/// ZeroMQ-specific error number: operation not valid in the socket's current state.
static inline int CZeroMQ_EFSM(void) { return EFSM; }
/// ZeroMQ-specific error number: the peer speaks an incompatible protocol.
static inline int CZeroMQ_ENOCOMPATPROTO(void) { return ENOCOMPATPROTO; }
/// ZeroMQ-specific error number: no I/O thread available.
static inline int CZeroMQ_EMTHREAD(void) { return EMTHREAD; }
/// EHOSTUNREACH as libzmq sees it (ROUTER_MANDATORY on an unknown peer).
static inline int CZeroMQ_EHOSTUNREACH(void) { return EHOSTUNREACH; }

/// Size of the opaque message structure; Swift allocates it in stable storage.
static inline size_t CZeroMQ_msg_size_of(void) { return sizeof(zmq_msg_t); }

/// glibc: keep freed large blocks in the process (libzmq mallocs every large received
/// frame; mmap'ed blocks and heap trimming make each frame pay page faults). Returns 1 on
/// success, 0 if a setting was refused, -1 where there is no glibc. `mallopt` lives in
/// <malloc.h>, which the Swift Glibc module does not export.
static inline int CZeroMQ_tune_malloc_for_large_messages(int mmap_threshold, int trim_threshold) {
#if defined(__GLIBC__)
    return mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1 && mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1;
#else
    (void)mmap_threshold; (void)trim_threshold;
    return -1;
#endif
}

/// Zero-copy sends: libzmq calls this when it no longer needs the bytes of a message made
/// by zmq_msg_init_data; `hint` points to an atomic int "slot" that becomes 1 (complete).
/// Runs on a libzmq I/O thread (or on the receiving thread for inproc).
static inline void CZeroMQ_slot_release(void *data, void *hint) {
    (void)data;
    atomic_store_explicit((_Atomic int *)hint, 1, memory_order_release);
}
/// The release callback as a function pointer Swift can pass to zmq_msg_init_data.
static inline zmq_free_fn *CZeroMQ_slot_release_fn(void) { return &CZeroMQ_slot_release; }
/// Reads a slot (acquire): 1 = complete/idle, 0 = libzmq still holds the bytes.
static inline int CZeroMQ_slot_load(const void *slot) {
    return atomic_load_explicit((_Atomic int const *)slot, memory_order_acquire);
}
/// Writes a slot.
static inline void CZeroMQ_slot_store(void *slot, int value) {
    atomic_store_explicit((_Atomic int *)slot, value, memory_order_release);
}

#endif
