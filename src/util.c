/* util: error buffers, allocation wrappers, clocks, atomic files.
 *
 * The allocation wrappers exist for one reason beyond readability: the
 * fault-injection hook. Tests call st_alloc_fail_at(n) and walk n = 1, 2, ...
 * over a code path, checking each time for a clean error and no leak.
 */
#include "util.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <malloc.h>
#include <pthread.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

int st_seterr(char *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, ST_ERRLEN, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static atomic_long alloc_count;
static atomic_long alloc_fail_at; /* absolute allocation number to fail, 0 = never */

void st_alloc_fail_at(long n)
{
    atomic_store(&alloc_fail_at, n > 0 ? atomic_load(&alloc_count) + n : 0);
}

long st_alloc_count(void) { return atomic_load(&alloc_count); }

/* Returns 1 when this allocation must fail. */
static int alloc_should_fail(void)
{
    long n = atomic_fetch_add(&alloc_count, 1) + 1;
    long at = atomic_load(&alloc_fail_at);
    return at != 0 && n == at;
}

void *st_malloc(size_t n)
{
    if (alloc_should_fail()) return NULL;
    return malloc(n ? n : 1);
}

void *st_calloc(size_t count, size_t size)
{
    if (alloc_should_fail()) return NULL;
    if (count == 0 || size == 0) return calloc(1, 1);
    return calloc(count, size);
}

void *st_realloc(void *p, size_t n)
{
    if (alloc_should_fail()) return NULL;
    return realloc(p, n ? n : 1);
}

void *st_aligned_alloc(size_t align, size_t n)
{
    if (alloc_should_fail()) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, align, n ? n : align) != 0) return NULL;
    return p;
}

char *st_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = st_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void st_free(void *p) { free(p); }

int st_mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a) return -1;
    *out = a * b;
    return 0;
}

double st_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

size_t st_peak_rss(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (size_t)ru.ru_maxrss * 1024; /* Linux reports KiB */
}

size_t st_current_rss(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long long size = 0, resident = 0;
    int n = fscanf(f, "%llu %llu", &size, &resident);
    fclose(f);
    if (n != 2) return 0;
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* Whether glibc's malloc is the one the program calls. Checked at compile time
 * for the sanitizers (they replace malloc in every object), then at run time:
 * the malloc that symbol lookup finds first must be libc.so.6's own, which a
 * sanitizer runtime or an LD_PRELOAD allocator loaded ahead of libc is not.
 * valgrind redirects calls, not symbols, and replaces malloc_trim itself. */
static int glibc_allocator;
static pthread_once_t allocator_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t trim_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_uint_fast64_t trims;

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer) || __has_feature(thread_sanitizer)
#define ST_MALLOC_REPLACED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ST_MALLOC_REPLACED 1
#endif

static void detect_allocator(void)
{
#ifdef ST_MALLOC_REPLACED
    glibc_allocator = 0;
#else
    void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    if (!libc) return;
    void *first = dlsym(RTLD_DEFAULT, "malloc"), *own = dlsym(libc, "malloc");
    glibc_allocator = first && first == own && !dlsym(RTLD_DEFAULT, "__asan_init");
    dlclose(libc);
#endif
}

const char *st_allocator_name(void)
{
    pthread_once(&allocator_once, detect_allocator);
    return glibc_allocator ? "libc" : "other";
}

int st_trim_free_memory(void)
{
    pthread_once(&allocator_once, detect_allocator);
    if (!glibc_allocator) return 0;
    pthread_mutex_lock(&trim_lock);
    malloc_trim(0);
    pthread_mutex_unlock(&trim_lock);
    atomic_fetch_add_explicit(&trims, 1, memory_order_relaxed);
    return 1;
}

void st_alloc_fixed_mmap_threshold(void)
{
    pthread_once(&allocator_once, detect_allocator);
    if (glibc_allocator) mallopt(M_MMAP_THRESHOLD, 128 * 1024);
}

uint64_t st_trim_count(void) { return atomic_load_explicit(&trims, memory_order_relaxed); }

/* Write-failure injection: a stream that accepts `budget` bytes, then fails
 * every write with ENOSPC, as a full disk does. */
static atomic_llong io_budget = -1;

void st_io_fail_after(long long bytes) { atomic_store(&io_budget, bytes); }

static atomic_int fsync_fails;

void st_io_fail_fsync(int on) { atomic_store(&fsync_fails, on); }

static atomic_llong fsync_delay_ms;

void st_io_delay_fsync(long long ms) { atomic_store(&fsync_delay_ms, ms > 0 ? ms : 0); }

/* How many of n bytes the injected full disk still takes (n when off). */
static size_t io_take(size_t n)
{
    for (;;) {
        long long b = atomic_load(&io_budget);
        if (b < 0) return n;
        long long take = (long long)n < b ? (long long)n : b;
        if (atomic_compare_exchange_weak(&io_budget, &b, b - take)) return (size_t)take;
    }
}

int st_io_write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        size_t allowed = io_take(n);
        if (allowed == 0) {
            errno = ENOSPC;
            return -1;
        }
        ssize_t w = write(fd, p, allowed);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int st_io_fsync(int fd)
{
    long long ms = atomic_load(&fsync_delay_ms);
    if (ms > 0) {
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    if (atomic_load(&fsync_fails)) {
        errno = EIO;
        return -1;
    }
    while (fdatasync(fd) != 0) {
        if (errno != EINTR) return -1;
    }
    return 0;
}

typedef struct {
    int fd;
    long long left;
} budget_cookie;

static ssize_t budget_write(void *c, const char *buf, size_t n)
{
    budget_cookie *b = c;
    if ((long long)n > b->left) {
        errno = ENOSPC;
        return -1;
    }
    ssize_t w = write(b->fd, buf, n);
    if (w > 0) b->left -= w;
    return w;
}

static int budget_close(void *c)
{
    budget_cookie *b = c;
    int rc = close(b->fd);
    free(b);
    return rc;
}

/* The stream st_write_atomic writes through. */
static FILE *open_stream(int fd)
{
    long long budget = atomic_load(&io_budget);
    if (budget < 0) return fdopen(fd, "wb");
    budget_cookie *b = malloc(sizeof *b);
    if (!b) return NULL;
    b->fd = fd;
    b->left = budget;
    cookie_io_functions_t io = {.read = NULL, .write = budget_write, .seek = NULL, .close = budget_close};
    FILE *f = fopencookie(b, "wb", io);
    if (!f) free(b);
    return f;
}

int st_write_atomic(const char *path, st_write_fn fn, void *ctx, char *err)
{
    size_t plen = strlen(path);
    char *tmp = st_malloc(plen + 32);
    char *dircopy = st_strdup(path);
    if (!tmp || !dircopy) {
        st_free(tmp);
        st_free(dircopy);
        return st_seterr(err, "%s: out of memory", path);
    }
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    int rc = -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    FILE *f = fd >= 0 ? open_stream(fd) : NULL;
    if (!f) {
        st_seterr(err, "%s: cannot create: %s", tmp, strerror(errno));
        if (fd >= 0) close(fd);
        goto out;
    }
    if (fn(f, ctx, err) != 0) {
        fclose(f);
        unlink(tmp);
        goto out;
    }
    if (ferror(f)) {
        st_seterr(err, "%s: write failed: %s", tmp, strerror(errno ? errno : EIO));
        fclose(f);
        unlink(tmp);
        goto out;
    }
    if (fflush(f) != 0 || fsync(fd) != 0) {
        st_seterr(err, "%s: write failed: %s", tmp, strerror(errno));
        fclose(f);
        unlink(tmp);
        goto out;
    }
    if (fclose(f) != 0) {
        st_seterr(err, "%s: close failed: %s", tmp, strerror(errno));
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        st_seterr(err, "%s: cannot rename into place: %s", path, strerror(errno));
        unlink(tmp);
        goto out;
    }
    /* Make the rename itself durable. */
    int dfd = open(dirname(dircopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    rc = 0;
out:
    st_free(tmp);
    st_free(dircopy);
    return rc;
}

int st_parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+') return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

int st_parse_double(const char *s, double *out)
{
    if (!s || !*s) return -1;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno == ERANGE && fabs(v) > 1.0) return -1;
    if (*end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

int st_cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

typedef struct {
    st_task_fn fn;
    void *ctx;
    uint64_t ntasks;
    atomic_uint_fast64_t next;
} par_state;

typedef struct {
    par_state *st;
    int thread;
} par_arg;

static void *par_worker(void *arg)
{
    par_arg *a = arg;
    par_state *st = a->st;
    for (;;) {
        uint64_t t = atomic_fetch_add(&st->next, 1);
        if (t >= st->ntasks) break;
        st->fn(st->ctx, t, a->thread);
    }
    return NULL;
}

void st_parallel_run(int threads, uint64_t ntasks, st_task_fn fn, void *ctx)
{
    if (threads < 1) threads = 1;
    if ((uint64_t)threads > ntasks) threads = ntasks > 0 ? (int)ntasks : 1;
    par_state st = {.fn = fn, .ctx = ctx, .ntasks = ntasks};
    atomic_init(&st.next, 0);
    enum { MAX_THREADS = 256 };
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    pthread_t tids[MAX_THREADS];
    par_arg args[MAX_THREADS];
    int started = 0;
    for (int i = 1; i < threads; i++) {
        args[i].st = &st;
        args[i].thread = i;
        if (pthread_create(&tids[i], NULL, par_worker, &args[i]) != 0) break;
        started = i;
    }
    args[0].st = &st;
    args[0].thread = 0;
    par_worker(&args[0]);
    for (int i = 1; i <= started; i++) pthread_join(tids[i], NULL);
}

int st_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}
