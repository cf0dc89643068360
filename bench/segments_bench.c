/* segments_bench: the pruned top-k SEGMENTS answers from (src/segindex.c),
 * alone, over a model's own users: how many segments a question visits and
 * scores exactly, and the thread CPU time per question, asked one at a
 * time and in runs of 16 (as a pipelined connection's are), for one user
 * every time and for a different user every time. Best of REPEAT runs.
 *
 *   segments_bench MODEL [USERS (20000)] [REPEAT (9)]
 *
 * Prints a markdown table. bench/serve.sh builds and runs it on its model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "model.h"
#include "score.h"
#include "segindex.h"

enum { RUN = 16, WANT = 10 };

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* CPU microseconds per question over users [0, nu): runs of `run`
 * questions; one = 1 asks row 0's user every time. */
static double time_questions(const st_segment_index *ix, const st_model *m, uint32_t nu, uint32_t run, int one)
{
    static uint32_t idx[RUN][WANT];
    static float top[RUN][WANT];
    double t0 = cpu_now();
    for (uint32_t u = 0; u + run <= nu; u += run) {
        st_segment_query q[RUN];
        for (uint32_t i = 0; i < run; i++)
            q[i] = (st_segment_query){.x = m->U + (size_t)(one ? 0 : u + i) * m->k, .want = WANT, .min = -INFINITY,
                                      .out_idx = idx[i], .out_score = top[i]};
        st_score_topk_segments_many(ix, q, run);
    }
    return (cpu_now() - t0) / (nu - nu % run) * 1e6;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: segments_bench MODEL [USERS] [REPEAT]\n");
        return 2;
    }
    st_model m;
    char err[512];
    if (st_model_load(argv[1], &m, err) != 0 || !m.U) {
        fprintf(stderr, "segments_bench: %s: %s\n", argv[1], m.U ? err : "needs float32 user factors");
        return 1;
    }
    uint32_t nu = argc > 2 ? (uint32_t)atoi(argv[2]) : 20000, repeat = argc > 3 ? (uint32_t)atoi(argv[3]) : 9;
    if (nu > m.users) nu = m.users;
    if (nu < RUN) {
        fprintf(stderr, "segments_bench: the model needs at least %d users\n", RUN);
        return 1;
    }
    float *q = malloc(m.segments * sizeof *q);
    st_score_prior(&m, q);
    st_segment_index ix;
    double t0 = cpu_now();
    if (!q || st_segment_index_build(&m, q, &ix) != 0) return 1;
    double build = cpu_now() - t0;
    uint64_t visited = 0, scored = 0;
    uint32_t idx[WANT];
    float top[WANT];
    for (uint32_t u = 0; u < nu; u++) {
        st_segment_query one = {.x = m.U + (size_t)u * m.k, .want = WANT, .min = -INFINITY, .out_idx = idx,
                                .out_score = top};
        st_score_topk_segments_many(&ix, &one, 1);
        visited += one.visited;
        scored += one.scored;
    }
    double best[4] = {INFINITY, INFINITY, INFINITY, INFINITY};
    for (uint32_t r = 0; r < repeat; r++)
        for (int c = 0; c < 4; c++) {
            double t = time_questions(&ix, &m, nu, c / 2 ? RUN : 1, c % 2 == 0);
            best[c] = t < best[c] ? t : best[c];
        }
    printf("%u segments at rank %u, %u users, COUNT %d; index built in %.3f s; best of %u runs, thread CPU time.\n\n",
           m.segments, m.k, nu, WANT, build, repeat);
    printf("| questions | us a question, one user | us a question, every user |\n|---|---:|---:|\n");
    printf("| one at a time | %.2f | %.2f |\n| in runs of %d | %.2f | %.2f |\n\n", best[0], best[1], RUN, best[2],
           best[3]);
    printf("Per question over the %u users: %.0f segments visited (%.1f%%), %.0f scored exactly (%.2f%%).\n", nu,
           (double)visited / nu, 100.0 * (double)visited / nu / m.segments, (double)scored / nu,
           100.0 * (double)scored / nu / m.segments);
    st_segment_index_free(&ix);
    free(q);
    st_model_free(&m);
    return 0;
}
