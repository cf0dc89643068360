/* score_text_check: resp_format_score (src/resp.c) against the search it
 * replaced (tests/score_text_ref.h), byte for byte, over every float, and the
 * time each takes per score.
 *
 * Build and run (all 2^32 bit patterns: 32 CPU minutes, 24 minutes on both
 * cores of the busy machine; the second argument splits the sweep over that
 * many threads):
 *   make build/libstarling.a
 *   gcc -std=c11 -O2 -march=native -D_GNU_SOURCE -Isrc -Itests -o /tmp/stc \
 *       bench/score_text_check.c build/libstarling.a -lm -lpthread
 *   /tmp/stc all 2      every one of the 2^32 bit patterns
 *   /tmp/stc time       ns per score, scores of [-2, 2) and of every scale
 * It prints the first mismatch and exits 1, or "0 mismatches". */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "resp.h"
#include "score_text_ref.h"

typedef struct {
    uint64_t from, to, bad;
} sweep;

static void *run_sweep(void *arg)
{
    sweep *s = arg;
    char a[48], b[48];
    for (uint64_t i = s->from; i < s->to; i++) {
        uint32_t bits = (uint32_t)i;
        float v;
        memcpy(&v, &bits, sizeof v);
        int na = resp_format_score(a, v), nb = ref_format_score(b, v);
        if (na != nb || memcmp(a, b, (size_t)na) != 0) {
            if (s->bad++ == 0) fprintf(stderr, "mismatch: bits %08x new '%s' old '%s'\n", bits, a, b);
        }
    }
    return NULL;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ns per call of each formatter over n values, best of 5. */
static void time_both(const float *vals, size_t n, const char *what)
{
    char b[48];
    double best_new = 1e9, best_old = 1e9;
    volatile int sink = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now();
        for (size_t i = 0; i < n; i++) sink += resp_format_score(b, vals[i]);
        double t1 = now();
        for (size_t i = 0; i < n; i++) sink += ref_format_score(b, vals[i]);
        double t2 = now();
        if (t1 - t0 < best_new) best_new = t1 - t0;
        if (t2 - t1 < best_old) best_old = t2 - t1;
    }
    printf("%-28s old %6.1f ns  new %6.1f ns per score (%.2fx)\n", what, 1e9 * best_old / (double)n,
           1e9 * best_new / (double)n, best_old / best_new);
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "time") == 0) {
        size_t n = 1000000;
        float *vals = malloc(n * sizeof *vals);
        if (!vals) return 1;
        uint64_t x = 88172645463325252ull;
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            vals[i] = (float)((double)(x >> 11) / 9007199254740992.0 * 4 - 2);
        }
        time_both(vals, n, "scores in [-2, 2)");
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            uint32_t bits = (uint32_t)x & 0x7f7fffffu;
            memcpy(&vals[i], &bits, sizeof bits);
        }
        time_both(vals, n, "floats of every scale");
        free(vals);
        return 0;
    }
    int threads = argc >= 3 ? atoi(argv[2]) : 1;
    if (threads < 1 || threads > 64) threads = 1;
    uint64_t total = argc >= 2 && strcmp(argv[1], "all") == 0 ? (1ull << 32) : (1ull << 31);
    sweep s[64];
    pthread_t th[64];
    for (int t = 0; t < threads; t++) {
        s[t] = (sweep){total * (uint64_t)t / (uint64_t)threads, total * (uint64_t)(t + 1) / (uint64_t)threads, 0};
        pthread_create(&th[t], NULL, run_sweep, &s[t]);
    }
    uint64_t bad = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        bad += s[t].bad;
    }
    printf("%llu floats, %llu mismatches\n", (unsigned long long)total, (unsigned long long)bad);
    return bad != 0;
}
