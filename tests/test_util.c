/* Tests of util: the memory trim that must be a no-op where glibc's allocator
 * is not in use (AddressSanitizer, valgrind, a preloaded allocator), the RSS
 * readings, the overflow-checked sizes and the number parsers. */
#include "tap.h"
#include "util.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

#define TRIM_THREADS 4
#define TRIM_PROCESSES 40

static pthread_barrier_t trim_start;

static void *trim_at_once(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&trim_start);
    st_trim_free_memory();
    return NULL;
}

/* The crash this guards against is a race on glibc's first arena set-up, so it
 * needs a fresh process each time: TRIM_PROCESSES children each start
 * TRIM_THREADS threads that trim at the same instant, as the server's event
 * loops do once a second. Under AddressSanitizer a bare malloc_trim(0) here
 * crashes about half the children (24 of 50 measured with two threads, 27 of
 * 50 with four), so a run of forty would essentially never pass. */
static void test_trim_from_threads_in_fresh_processes(void)
{
    int crashed = 0, exited = 0;
    for (int i = 0; i < TRIM_PROCESSES; i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            pthread_t t[TRIM_THREADS];
            pthread_barrier_init(&trim_start, NULL, TRIM_THREADS);
            for (int j = 0; j < TRIM_THREADS; j++) pthread_create(&t[j], NULL, trim_at_once, NULL);
            for (int j = 0; j < TRIM_THREADS; j++) pthread_join(t[j], NULL);
            _exit(0);
        }
        if (pid < 0) continue;
        int status;
        if (waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0) exited++;
        else crashed++;
    }
    is_int(crashed, 0, "%d fresh processes trimming from %d threads at once: none crashes", TRIM_PROCESSES,
           TRIM_THREADS);
    is_int(exited, TRIM_PROCESSES, "every child exited cleanly");
}

static void test_trim_only_under_glibc_malloc(void)
{
    if (SANITIZED) {
        is_str(st_allocator_name(), "other", "sanitized build: the allocator is not glibc's");
        uint64_t before = st_trim_count();
        ok(st_trim_free_memory() == 0, "sanitized build: trimming does nothing");
        is_int(st_trim_count(), before, "and counts no trim");
    } else {
        /* valgrind redirects calls, not symbols: the lookup still sees libc's
         * malloc, and valgrind's own malloc_trim is a no-op. */
        is_str(st_allocator_name(), "libc", "plain build: glibc's allocator");
        uint64_t before = st_trim_count();
        ok(st_trim_free_memory() == 1, "plain build: trimming runs");
        is_int(st_trim_count(), before + 1, "and is counted");
    }
}

static void test_rss(void)
{
    size_t now = st_current_rss(), peak = st_peak_rss();
    ok(now > 0, "current RSS is read (%zu bytes)", now);
    ok(peak > 0, "peak RSS is read (%zu bytes)", peak);
    /* No order between the two is asserted: the kernel's per-thread RSS
     * counters are folded in lazily, so either reading may lag the other. */
    void *big = st_malloc(64u << 20);
    if (big) memset(big, 1, 64u << 20);
    size_t after = st_current_rss();
    ok(after >= now + (48u << 20), "64 MiB touched shows in the current RSS (%zu -> %zu bytes)", now, after);
    st_free(big);
}

static void test_sizes_and_parsers(void)
{
    size_t out = 0;
    ok(st_mul_size(3, 5, &out) == 0 && out == 15, "3 x 5");
    ok(st_mul_size(SIZE_MAX / 2 + 1, 2, &out) == -1, "overflow refused");
    ok(st_mul_size(0, SIZE_MAX, &out) == 0 && out == 0, "0 x anything");
    uint64_t u = 0;
    ok(st_parse_u64("18446744073709551615", &u) == 0 && u == UINT64_MAX, "largest u64");
    ok(st_parse_u64("18446744073709551616", &u) != 0, "one past the largest u64 refused");
    ok(st_parse_u64("-1", &u) != 0, "negative refused");
    ok(st_parse_u64("12x", &u) != 0, "trailing garbage refused");
    ok(st_parse_u64("", &u) != 0, "empty refused");
    double d = 0;
    ok(st_parse_double("0.25", &d) == 0 && d == 0.25, "0.25");
    ok(st_parse_double("nan", &d) != 0, "nan refused");
    ok(st_parse_double("inf", &d) != 0, "inf refused");
    ok(st_parse_double("1e", &d) != 0, "incomplete exponent refused");
}

int main(void)
{
    test_trim_from_threads_in_fresh_processes();
    test_trim_only_under_glibc_malloc();
    test_rss();
    test_sizes_and_parsers();
    return tap_done();
}
