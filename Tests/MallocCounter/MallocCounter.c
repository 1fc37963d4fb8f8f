// See include/MallocCounter.h. glibc only (__libc_malloc and friends are its public aliases of
// the real allocator; the hooks of older glibc were removed in 2.34).
#include "MallocCounter.h"
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>

#if defined(__linux__) && defined(__GLIBC__)
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *pointer, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void __libc_free(void *pointer);

static atomic_int armed;
static atomic_long calls;

static inline void note(void) {
    if (atomic_load_explicit(&armed, memory_order_relaxed)) atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
}

void *malloc(size_t size) { note(); return __libc_malloc(size); }
void *calloc(size_t count, size_t size) { note(); return __libc_calloc(count, size); }
void *realloc(void *pointer, size_t size) { note(); return __libc_realloc(pointer, size); }
void free(void *pointer) { __libc_free(pointer); }
void *memalign(size_t alignment, size_t size) { note(); return __libc_memalign(alignment, size); }
void *aligned_alloc(size_t alignment, size_t size) { note(); return __libc_memalign(alignment, size); }

int posix_memalign(void **out, size_t alignment, size_t size) {
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) return EINVAL;
    note();
    void *p = __libc_memalign(alignment, size);
    if (p == NULL) return ENOMEM;
    *out = p;
    return 0;
}

void MallocCounter_start(void) {
    atomic_store(&calls, 0);
    atomic_store(&armed, 1);
}

long MallocCounter_stop(void) {
    atomic_store(&armed, 0);
    return atomic_load(&calls);
}
#else
// Elsewhere nothing is interposed: the count is -1 ("not measured").
void MallocCounter_start(void) {}
long MallocCounter_stop(void) { return -1; }
#endif
