/* synth: a deterministic, streaming generator of realistic ad-engagement logs.
 *
 * The world it plants:
 * - a segment taxonomy: topics (sports, travel, ...) each with sub-segments
 *   of four families (interest, keyword, lookalike, advertiser), named
 *   "family:topic:NN"; topic popularity is Zipf (exponent 0.8), sub-segment
 *   popularity within a topic Zipf (exponent 1);
 * - users with sparse mixtures of interests: 1 to 3 topics (popular topics
 *   more likely), 2 to 4 sub-segments in each, affinities Dirichlet(1) over
 *   the chosen segments: the planted truth (--truth writes it);
 * - power-law activity: a user's share of the events is Pareto (shape 1.5),
 *   every user has at least one event, and the total is exactly --events;
 * - event kinds at ad-funnel ratios: impression 55%, click 35%, follow 7%,
 *   conversion 3%; an impression follows the user's interests half the time
 *   (the rest is broad reach, drawn by popularity), a click 85%, a follow 90%,
 *   a conversion 95%;
 * - timestamps uniform over a window (default 30 days) ending at --end.
 *
 * Output is CSV with a header: user,segment,weight,kind,timestamp (unix
 * seconds, weight 1), gzip-compressed when the path ends in .gz, stdout for
 * "-". Users are written one after another; memory is O(segments), whatever
 * the number of events. The same seed gives the same bytes.
 *
 * Pairs mode (pairs = 1) writes aggregated data instead, shaped like the
 * common benchmark sets: every line a distinct (user, segment) pair, 70% from
 * the user's interests and 30% by popularity, with a count from 1 to 50
 * (Pareto tail), as user,segment,weight; --events then counts pairs.
 */
#ifndef STARLING_SYNTH_H
#define STARLING_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#define ST_SYNTH_MAX_USERS 4294967294ULL

typedef struct {
    uint64_t users;
    uint64_t segments;
    uint64_t events;
    uint64_t seed;
    double window_days;
    int64_t end; /* unix seconds */
    const char *truth_path; /* NULL: none */
    int pairs; /* write distinct (user, segment, count) pairs instead of events */
} st_synth_params;

void st_synth_params_default(st_synth_params *p);

/* NULL when usable, else a sentence. */
const char *st_synth_check(const st_synth_params *p);

/* Writes the log to path ("-" for stdout). Returns -1 with a reason. */
int st_synth_write(const st_synth_params *p, const char *path, char *err);

/* The name of segment j of n (for tests): writes into out (>= 64 bytes). */
void st_synth_segment_name(uint64_t j, uint64_t n, char *out, size_t outlen);

#endif
