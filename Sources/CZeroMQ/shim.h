#ifndef CZEROMQ_SHIM_H
#define CZEROMQ_SHIM_H
#include <zmq.h>
#include <errno.h>
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

#endif
