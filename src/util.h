/* util: the small pieces every module shares.
 *
 * Owns: error-message buffers, the allocation wrappers (with a fault-injection
 * hook for tests), monotonic time, peak RSS, and the atomic-file helpers.
 * Never: prints, exits or aborts. Library code reports failures through an
 * `char *err` buffer of ST_ERRLEN bytes and a non-zero return; only the
 * command-line layer (main.c, cli_*.c) turns them into messages and exit codes.
 */
#ifndef STARLING_UTIL_H
#define STARLING_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define ST_ERRLEN 512

/* Formats a message into err (which may be NULL). Returns -1 so callers can
 * write `return st_seterr(err, "...")`. */
int st_seterr(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Allocation wrappers. They return NULL on failure, like malloc; they never
 * abort. st_alloc_fail_at(n) makes the n-th allocation from now fail (n = 0
 * disables), so tests can walk every allocation of a code path. */
void *st_malloc(size_t n);
void *st_calloc(size_t count, size_t size);
void *st_realloc(void *p, size_t n);
void *st_aligned_alloc(size_t align, size_t n); /* free with st_free */
char *st_strdup(const char *s);
void st_free(void *p);
void st_alloc_fail_at(long n);
long st_alloc_count(void); /* allocations attempted since start */

/* Overflow-checked size arithmetic: returns 0 and sets *out, or -1 on overflow. */
int st_mul_size(size_t a, size_t b, size_t *out);

/* Seconds from a monotonic clock. */
double st_now(void);

/* Peak resident set size of this process in bytes (0 when unknown). */
size_t st_peak_rss(void);

/* Current resident set size of this process in bytes (0 when unknown). */
size_t st_current_rss(void);

/* Gives the allocator's free pages back to the system (glibc's malloc_trim),
 * when and only when glibc's allocator is the one serving malloc: never under
 * AddressSanitizer or another tool that replaces malloc at link time, nor under
 * a preloaded allocator (jemalloc, tcmalloc), whose arenas malloc_trim does not
 * know (it would walk glibc's never-initialised arenas, and two threads doing
 * so at once crash). Safe from any thread: trims are serialised. Returns 1
 * when it trimmed, 0 when it did nothing. May block for a few milliseconds. */
/* glibc: allocations of 128 KiB and more always come from mmap and go back
 * to the system when freed (by default glibc raises that threshold after
 * the first such free, so a server's large request buffers, once freed,
 * stay resident in its arenas). A no-op with another allocator. */
void st_alloc_fixed_mmap_threshold(void);

int st_trim_free_memory(void);

/* "libc" when glibc's allocator serves malloc (and st_trim_free_memory
 * trims), "other" otherwise. */
const char *st_allocator_name(void);

/* Trims done by st_trim_free_memory since the process started. */
uint64_t st_trim_count(void);

/* Write-failure injection for tests, as a full disk behaves: after `bytes`
 * more bytes every write fails with ENOSPC; -1 turns it off. It covers every
 * file st_write_atomic writes (counted per file, from when it is opened) and
 * every write through st_io_write_all, the journal's (counted across all of
 * them: a write that crosses the limit stops short, the next one fails). */
void st_io_fail_after(long long bytes);

/* Fsync-failure injection: while on, st_io_fsync fails with EIO. */
void st_io_fail_fsync(int on);

/* Slow-disk injection: each st_io_fsync first sleeps ms milliseconds (0 = off). */
void st_io_delay_fsync(long long ms);

/* Writes all n bytes to fd (retrying short writes and EINTR), subject to
 * st_io_fail_after. 0, or -1 with errno set; some bytes may have been written
 * before a failure. */
int st_io_write_all(int fd, const void *buf, size_t n);

/* fdatasync(fd), subject to st_io_fail_fsync. 0, or -1 with errno set. */
int st_io_fsync(int fd);

/* Writes a file atomically: fn writes the content to the temporary FILE*, then
 * this flushes, fsyncs, renames over path and fsyncs the directory. On any
 * failure the temporary file is removed and path is untouched. */
typedef int (*st_write_fn)(FILE *f, void *ctx, char *err);
int st_write_atomic(const char *path, st_write_fn fn, void *ctx, char *err);

/* Parses a non-negative integer / a finite double, the whole string. 0 on success. */
int st_parse_u64(const char *s, uint64_t *out);
int st_parse_double(const char *s, double *out);

/* Number of CPUs available to this process (at least 1). */
int st_cpu_count(void);

/* Runs fn(ctx, task, thread) for task = 0..ntasks-1 on `threads` threads
 * (the caller's thread is thread 0). Tasks are handed out in order from a
 * shared counter. If threads cannot be started the caller's thread does all
 * the work. Blocks until every task is done. */
typedef void (*st_task_fn)(void *ctx, uint64_t task, int thread);
void st_parallel_run(int threads, uint64_t ntasks, st_task_fn fn, void *ctx);

/* qsort/bsearch order of uint32_t values, ascending. */
int st_cmp_u32(const void *a, const void *b);

/* Round n up to a multiple of a (a a power of two). */
static inline uint64_t st_align_up(uint64_t n, uint64_t a) { return (n + a - 1) & ~(a - 1); }

#endif
