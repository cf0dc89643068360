/* synth: planted-interest ad logs, streamed user by user.
 *
 * Two passes over users, both regenerating each user's draws from the user's
 * own random stream (st_rng_for(seed, user)): the first sums the activity
 * weights, the second writes the events. So nothing per user is stored, the
 * total is exact, and any user's events can be reproduced alone.
 */
#include "synth.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "rng.h"
#include "util.h"

static const char *topic_names[] = {
    "sports",  "travel",   "finance",   "autos",     "tech",     "food",     "fashion",  "gaming",
    "music",   "health",   "parenting", "home",      "pets",     "beauty",   "education", "realestate",
    "movies",  "books",    "fitness",   "outdoors",  "news",     "politics", "science",  "business",
    "careers", "dating",   "wedding",   "gardening", "diy",      "crypto",   "insurance", "telecom",
    "retail",  "luxury",   "coffee",    "wine",      "cooking",  "anime",    "esports",  "photography",
};
#define NTOPIC_NAMES (sizeof topic_names / sizeof topic_names[0])

/* Family by position within a topic: interest 50%, keyword 25%, lookalike 15%, advertiser 10%. */
static const char *family_of(uint64_t sub)
{
    static const char *f[20] = {"interest", "keyword",  "interest", "lookalike", "interest",
                                "keyword",  "interest", "advertiser", "interest", "lookalike",
                                "interest", "keyword",  "interest", "lookalike", "interest",
                                "keyword",  "interest", "advertiser", "interest", "keyword"};
    return f[sub % 20];
}

static uint64_t topic_count(uint64_t n)
{
    uint64_t t = n / 25;
    return t < 1 ? 1 : t;
}

void st_synth_params_default(st_synth_params *p)
{
    p->users = 10000;
    p->segments = 1000;
    p->events = 200000;
    p->seed = 42;
    p->window_days = 30;
    p->end = 1767225600; /* 2026-01-01T00:00:00Z */
    p->truth_path = NULL;
    p->pairs = 0;
}

const char *st_synth_check(const st_synth_params *p)
{
    if (p->users < 1 || p->users > ST_SYNTH_MAX_USERS) return "--users must be between 1 and 4294967294";
    if (p->segments < 4 || p->segments > 100000000) return "--segments must be between 4 and 100000000";
    if (p->events < 1) return "--events must be at least 1";
    if (!(p->window_days > 0) || !isfinite(p->window_days)) return "--window-days must be > 0";
    return NULL;
}

void st_synth_segment_name(uint64_t j, uint64_t n, char *out, size_t outlen)
{
    uint64_t t = topic_count(n);
    uint64_t topic = j * t / n;
    uint64_t first = (topic * n + t - 1) / t; /* first segment of this topic */
    uint64_t sub = j - first;
    if (topic < NTOPIC_NAMES)
        snprintf(out, outlen, "%s:%s:%02llu", family_of(sub), topic_names[topic], (unsigned long long)sub);
    else
        snprintf(out, outlen, "%s:%s%llu:%02llu", family_of(sub), topic_names[topic % NTOPIC_NAMES],
                 (unsigned long long)(topic / NTOPIC_NAMES + 1), (unsigned long long)sub);
}

/* ---- output: a buffer flushed to stdio or gzip ---------------------------- */

typedef struct {
    FILE *f;
    gzFile gz;
    char *buf;
    size_t len, cap;
    int failed;
} out_t;

static void out_flush(out_t *o)
{
    if (o->len == 0 || o->failed) {
        o->len = 0;
        return;
    }
    if (o->gz) {
        if (gzwrite(o->gz, o->buf, (unsigned)o->len) != (int)o->len) o->failed = 1;
    } else if (fwrite(o->buf, 1, o->len, o->f) != o->len) {
        o->failed = 1;
    }
    o->len = 0;
}

static void out_str(out_t *o, const char *s, size_t n)
{
    if (o->len + n > o->cap) out_flush(o);
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void out_u64(out_t *o, uint64_t v)
{
    char tmp[24];
    int i = 24;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    out_str(o, tmp + i, (size_t)(24 - i));
}

static int out_open(out_t *o, const char *path, char *err)
{
    memset(o, 0, sizeof *o);
    o->cap = 1u << 20;
    o->buf = st_malloc(o->cap + 256);
    if (!o->buf) return st_seterr(err, "out of memory");
    size_t pl = strlen(path);
    if (strcmp(path, "-") == 0) {
        o->f = stdout;
    } else if (pl > 3 && strcmp(path + pl - 3, ".gz") == 0) {
        o->gz = gzopen(path, "wb6");
        if (!o->gz) {
            st_free(o->buf);
            return st_seterr(err, "%s: cannot create: %s", path, strerror(errno));
        }
    } else {
        o->f = fopen(path, "wb");
        if (!o->f) {
            st_free(o->buf);
            return st_seterr(err, "%s: cannot create: %s", path, strerror(errno));
        }
    }
    return 0;
}

static int out_close(out_t *o, const char *path, char *err)
{
    out_flush(o);
    int failed = o->failed;
    if (o->gz) {
        if (gzclose(o->gz) != Z_OK) failed = 1;
    } else if (o->f == stdout) {
        if (fflush(stdout) != 0) failed = 1;
    } else if (o->f) {
        if (fclose(o->f) != 0) failed = 1;
    }
    st_free(o->buf);
    if (failed) return st_seterr(err, "%s: write failed: %s", path, strerror(errno ? errno : EIO));
    return 0;
}

/* ---- the world ------------------------------------------------------------ */

typedef struct {
    uint64_t n, topics;
    double *topic_cdf;  /* topics */
    double *global_cdf; /* n: segment popularity for broad reach */
    uint64_t *topic_first; /* topics+1 */
    char **names;
} world_t;

static uint64_t draw_cdf(const double *cdf, uint64_t n, double u)
{
    double x = u * cdf[n - 1];
    uint64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        uint64_t mid = (lo + hi) / 2;
        if (cdf[mid] > x) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

static void world_free(world_t *w)
{
    if (w->names)
        for (uint64_t j = 0; j < w->n; j++) st_free(w->names[j]);
    st_free(w->names);
    st_free(w->topic_cdf);
    st_free(w->global_cdf);
    st_free(w->topic_first);
}

static int world_make(world_t *w, uint64_t n, char *err)
{
    memset(w, 0, sizeof *w);
    w->n = n;
    w->topics = topic_count(n);
    w->topic_cdf = st_malloc(w->topics * sizeof(double));
    w->global_cdf = st_malloc(n * sizeof(double));
    w->topic_first = st_malloc((w->topics + 1) * sizeof(uint64_t));
    w->names = st_calloc(n, sizeof(char *));
    if (!w->topic_cdf || !w->global_cdf || !w->topic_first || !w->names) goto oom;
    double acc = 0;
    for (uint64_t t = 0; t < w->topics; t++) {
        acc += pow((double)(t + 1), -0.8);
        w->topic_cdf[t] = acc;
        w->topic_first[t] = (t * n + w->topics - 1) / w->topics;
    }
    w->topic_first[w->topics] = n;
    acc = 0;
    for (uint64_t t = 0; t < w->topics; t++) {
        double tw = pow((double)(t + 1), -0.8);
        for (uint64_t j = w->topic_first[t]; j < w->topic_first[t + 1]; j++) {
            acc += tw * pow((double)(j - w->topic_first[t] + 1), -1.0);
            w->global_cdf[j] = acc;
        }
    }
    for (uint64_t j = 0; j < n; j++) {
        char name[96];
        st_synth_segment_name(j, n, name, sizeof name);
        w->names[j] = st_strdup(name);
        if (!w->names[j]) goto oom;
    }
    return 0;
oom:
    world_free(w);
    return st_seterr(err, "out of memory for %llu segments", (unsigned long long)n);
}

#define MAX_PLANTED 12

typedef struct {
    uint32_t n;
    uint64_t seg[MAX_PLANTED];
    double aff[MAX_PLANTED];
    double cdf[MAX_PLANTED];
} user_t;

/* Draws user u's activity weight and interests; the stream order is fixed. */
static double user_make(const world_t *w, uint64_t seed, uint64_t u, user_t *usr, st_rng *g)
{
    *g = st_rng_for(seed, u);
    double activity = 1.0 / pow(1.0 - st_rng_uniform(g), 1.0 / 1.5); /* Pareto, shape 1.5, minimum 1 */
    if (!usr) return activity;
    uint32_t ntopics = 1;
    while (ntopics < 3 && st_rng_uniform(g) < 0.5) ntopics++;
    usr->n = 0;
    double total = 0;
    for (uint32_t i = 0; i < ntopics; i++) {
        uint64_t t = draw_cdf(w->topic_cdf, w->topics, st_rng_uniform(g));
        uint64_t first = w->topic_first[t], size = w->topic_first[t + 1] - first;
        uint32_t nsub = 2 + (uint32_t)st_rng_below(g, 3);
        for (uint32_t j = 0; j < nsub && usr->n < MAX_PLANTED; j++) {
            /* Zipf within the topic: rank r with weight 1 / (r + 1). */
            double x = st_rng_uniform(g) * log((double)size + 1.0);
            uint64_t r = (uint64_t)(exp(x) - 1.0);
            if (r >= size) r = size - 1;
            uint64_t s = first + r;
            int dup = 0;
            for (uint32_t q = 0; q < usr->n; q++) dup |= usr->seg[q] == s;
            if (dup) continue;
            usr->seg[usr->n] = s;
            usr->aff[usr->n] = st_rng_exp(g);
            total += usr->aff[usr->n];
            usr->n++;
        }
    }
    double acc = 0;
    for (uint32_t q = 0; q < usr->n; q++) {
        usr->aff[q] /= total;
        acc += usr->aff[q];
        usr->cdf[q] = acc;
    }
    return activity;
}

static void user_name(out_t *o, uint64_t u)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "u%06llu", (unsigned long long)u);
    out_str(o, tmp, (size_t)n);
}

/* Pairs mode: n distinct segments for user u, 70% from the user's interests
 * and 30% by popularity (after 8 repeats, uniformly), each with a count from
 * a Pareto tail capped at 50. set has set_slots (a power of two, >= 2n). */
static void write_pairs(out_t *o, const world_t *w, const user_t *usr, st_rng *g, uint64_t u, uint64_t n,
                        uint64_t *set, uint64_t set_slots)
{
    memset(set, 0xff, set_slots * sizeof *set);
    uint64_t mask = set_slots - 1;
    for (uint64_t e = 0; e < n; e++) {
        uint64_t s = 0;
        for (int attempt = 0;; attempt++) {
            if (attempt >= 8) {
                s = st_rng_below(g, w->n);
            } else if (st_rng_uniform(g) < 0.7) {
                double x = st_rng_uniform(g);
                uint32_t q = 0;
                while (q + 1 < usr->n && usr->cdf[q] <= x) q++;
                s = usr->seg[q];
            } else {
                s = draw_cdf(w->global_cdf, w->n, st_rng_uniform(g));
            }
            uint64_t h = (s * 0x9e3779b97f4a7c15ULL) & mask;
            while (set[h] != UINT64_MAX && set[h] != s) h = (h + 1) & mask;
            if (set[h] == s) continue;
            set[h] = s;
            break;
        }
        double c = floor(1.0 / pow(1.0 - st_rng_uniform(g), 1.0 / 1.2));
        if (c > 50) c = 50;
        user_name(o, u);
        out_str(o, ",", 1);
        out_str(o, w->names[s], strlen(w->names[s]));
        out_str(o, ",", 1);
        out_u64(o, (uint64_t)c);
        out_str(o, "\n", 1);
    }
}

int st_synth_write(const st_synth_params *p, const char *path, char *err)
{
    world_t w;
    if (world_make(&w, p->segments, err) != 0) return -1;
    uint64_t users = p->users < p->events ? p->users : p->events;
    /* Pass 1: total activity. */
    double total = 0;
    for (uint64_t u = 0; u < users; u++) {
        st_rng g;
        total += user_make(&w, p->seed, u, NULL, &g);
    }
    out_t o, t;
    int have_truth = p->truth_path != NULL;
    if (out_open(&o, path, err) != 0) {
        world_free(&w);
        return -1;
    }
    if (have_truth && out_open(&t, p->truth_path, err) != 0) {
        out_close(&o, path, NULL);
        world_free(&w);
        return -1;
    }
    static const char header[] = "user,segment,weight,kind,timestamp\n";
    static const char pair_header[] = "user,segment,weight\n";
    if (p->pairs) out_str(&o, pair_header, sizeof pair_header - 1);
    else out_str(&o, header, sizeof header - 1);
    /* Pairs mode: a per-user set of the segments drawn so far. */
    uint64_t cap = p->segments / 2 > 0 ? p->segments / 2 : 1, set_slots = 16;
    while (set_slots < 2 * cap) set_slots <<= 1;
    uint64_t *set = p->pairs ? st_malloc(set_slots * sizeof *set) : NULL;
    if (p->pairs && !set) {
        out_close(&o, path, NULL);
        if (have_truth) out_close(&t, p->truth_path, NULL);
        world_free(&w);
        return st_seterr(err, "out of memory");
    }
    if (have_truth) {
        static const char th[] = "user,segment,affinity\n";
        out_str(&t, th, sizeof th - 1);
    }
    static const char *kinds[] = {"impression", "click", "follow", "conversion"};
    static const double kind_cdf[] = {0.55, 0.90, 0.97, 1.0};
    static const double on_interest[] = {0.5, 0.85, 0.9, 0.95};
    uint64_t extra = p->events - users, written = 0;
    double cum = 0;
    double window = p->window_days * 86400.0;
    for (uint64_t u = 0; u < users; u++) {
        user_t usr;
        st_rng g;
        cum += user_make(&w, p->seed, u, &usr, &g);
        uint64_t upto = u + 1 == users ? extra : (uint64_t)floor((double)extra * (cum / total));
        if (upto > extra) upto = extra;
        uint64_t n = 1 + (upto > written ? upto - written : 0);
        if (p->pairs) {
            /* Distinct segments: at most half the catalogue per user; what a
             * capped user cannot take passes to the next one. */
            if (n > cap) n = cap;
            written += n - 1;
            write_pairs(&o, &w, &usr, &g, u, n, set, set_slots);
            goto truth;
        }
        written += n - 1;
        for (uint64_t e = 0; e < n; e++) {
            double kx = st_rng_uniform(&g);
            int kind = 0;
            while (kind < 3 && kx >= kind_cdf[kind]) kind++;
            uint64_t s;
            if (st_rng_uniform(&g) < on_interest[kind]) {
                double x = st_rng_uniform(&g);
                uint32_t q = 0;
                while (q + 1 < usr.n && usr.cdf[q] <= x) q++;
                s = usr.seg[q];
            } else {
                s = draw_cdf(w.global_cdf, w.n, st_rng_uniform(&g));
            }
            int64_t ts = p->end - (int64_t)(st_rng_uniform(&g) * window);
            user_name(&o, u);
            out_str(&o, ",", 1);
            out_str(&o, w.names[s], strlen(w.names[s]));
            out_str(&o, ",1,", 3);
            out_str(&o, kinds[kind], strlen(kinds[kind]));
            out_str(&o, ",", 1);
            out_u64(&o, (uint64_t)ts);
            out_str(&o, "\n", 1);
        }
    truth:
        if (have_truth) {
            for (uint32_t q = 0; q < usr.n; q++) {
                char a[32];
                int an = snprintf(a, sizeof a, ",%.6f\n", usr.aff[q]);
                user_name(&t, u);
                out_str(&t, ",", 1);
                out_str(&t, w.names[usr.seg[q]], strlen(w.names[usr.seg[q]]));
                out_str(&t, a, (size_t)an);
            }
        }
    }
    int rc = out_close(&o, path, err);
    if (have_truth && out_close(&t, p->truth_path, rc == 0 ? err : NULL) != 0) rc = -1;
    st_free(set);
    world_free(&w);
    return rc;
}
