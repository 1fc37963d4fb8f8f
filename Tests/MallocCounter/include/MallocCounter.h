// A test-only count of heap allocation calls in this process (issue 18 item 4).
// The test executable defines malloc, calloc, realloc, memalign, aligned_alloc and
// posix_memalign itself (MallocCounter.c); the dynamic linker binds every library's calls to
// those definitions, which count while armed and forward to glibc's __libc_* entry points.
#ifndef MALLOC_COUNTER_H
#define MALLOC_COUNTER_H

/// Starts counting from zero (all threads).
void MallocCounter_start(void);
/// Stops counting and returns the allocation calls (malloc, calloc, realloc, memalign,
/// aligned_alloc, posix_memalign) made since `MallocCounter_start` on any thread.
long MallocCounter_stop(void);

#endif
