#ifndef CZEROMQ_SHIM_H
#define CZEROMQ_SHIM_H
#include <zmq.h>
#include <errno.h>

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

#endif
