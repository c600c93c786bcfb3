// A malloc interposer that makes a write into freed memory fault where it happens, for blocks of GUARD_LO..GUARD_HI
// bytes (default 89..104: glibc's 0x70 chunks, which hold torch's 96-byte StorageImpl). Each such block gets a page
// of its own; a freed page is made inaccessible and kept in a FIFO quarantine of GUARD_QUARANTINE pages (default
// 100000) before it is reused, and where it was freed (16 return addresses) is kept per page in guard_frees.
// Other sizes go to glibc. How to build and use it: docs/development.md, "A crash in the test session".
//
//   gcc -O1 -g -shared -fPIC -o /tmp/heap_guard.so tests/debug/heap_guard.c -lpthread
//   LD_PRELOAD=/tmp/heap_guard.so .venv/bin/python -X faulthandler -m pytest ...
//
// Many guarded blocks mean many memory mappings: raise vm.max_map_count (as root, e.g. to 262144) first, or a
// failed mprotect is reported once and the rest go unguarded. malloc_usable_size of a guarded block is its size.
//   (link with -ldl on glibc < 2.34)
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <dlfcn.h>
#include <execinfo.h>

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);

#define PAGE 4096UL
#define NPAGES (1UL << 24)  /* 64 GiB of address space */
static char *region;
static uint8_t *sizes;
static size_t bump;
void **guard_frees; /* 16 frames per page: where it was freed */
static size_t *freelist; static size_t nfree;
static size_t *ring; static size_t qhead, qlen, QCAP;
static size_t LO = 89, HI = 104;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int inited, failed_protect;

static void init(void) {
    if (inited) return;
    inited = 1;
    const char *q = getenv("GUARD_QUARANTINE");
    QCAP = q ? strtoul(q, 0, 10) : 100000;
    if (getenv("GUARD_LO")) LO = strtoul(getenv("GUARD_LO"), 0, 10);
    if (getenv("GUARD_HI")) HI = strtoul(getenv("GUARD_HI"), 0, 10);
    region = mmap(0, NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    sizes = mmap(0, NPAGES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    freelist = mmap(0, NPAGES * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    guard_frees = mmap(0, NPAGES * 16 * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    ring = mmap(0, (QCAP + 1) * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (region == MAP_FAILED || sizes == MAP_FAILED || freelist == MAP_FAILED || ring == MAP_FAILED) region = 0;
}

static int ours(void *p) { return region && (char *)p >= region && (char *)p < region + NPAGES * PAGE; }

static void *galloc(size_t n) {
    pthread_mutex_lock(&mu);
    init();
    size_t pg;
    if (!region) { pthread_mutex_unlock(&mu); return 0; }
    if (nfree) pg = freelist[--nfree];
    else if (bump < NPAGES) pg = bump++;
    else { pthread_mutex_unlock(&mu); return 0; }
    sizes[pg] = (uint8_t)n;
    pthread_mutex_unlock(&mu);
    return region + pg * PAGE;
}

static void gfree(void *p) {
    size_t pg = ((char *)p - region) / PAGE;
    void *bt[16] = {0};
    backtrace(bt, 16);
    memcpy(guard_frees + pg * 16, bt, sizeof bt);
    pthread_mutex_lock(&mu);
    char *page = region + pg * PAGE;
    madvise(page, PAGE, MADV_DONTNEED);
    if (mprotect(page, PAGE, PROT_NONE) != 0 && !failed_protect++) {
        static const char m[] = "guard: mprotect failed (max_map_count?)\n";
        write(2, m, sizeof m - 1);
    }
    ring[(qhead + qlen) % QCAP] = pg;
    if (qlen < QCAP) qlen++;
    else {
        size_t old = ring[qhead];
        qhead = (qhead + 1) % QCAP;
        ring[(qhead + qlen - 1) % QCAP] = pg;
        mprotect(region + old * PAGE, PAGE, PROT_READ | PROT_WRITE);
        freelist[nfree++] = old;
    }
    pthread_mutex_unlock(&mu);
}

void *malloc(size_t n) {
    if (n >= LO && n <= HI) { void *p = galloc(n); if (p) return p; }
    return __libc_malloc(n);
}
void free(void *p) {
    if (!p) return;
    if (ours(p)) { gfree(p); return; }
    __libc_free(p);
}
void *calloc(size_t a, size_t b) {
    size_t n = a * b;
    if (n >= LO && n <= HI) { void *p = galloc(n); if (p) { memset(p, 0, n); return p; } }
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
    if (p && ours(p)) {
        size_t old = sizes[((char *)p - region) / PAGE];
        void *q = malloc(n);
        if (!q) return 0;
        memcpy(q, p, old < n ? old : n);
        free(p);
        return q;
    }
    if (!p) return malloc(n);
    return __libc_realloc(p, n);
}
size_t malloc_usable_size(void *p) {
    static size_t (*next)(void *);
    if (p && ours(p)) return sizes[((char *)p - region) / PAGE];
    if (!next) next = (size_t (*)(void *))dlsym(RTLD_NEXT, "malloc_usable_size");
    return next(p);
}
