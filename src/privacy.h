/* privacy: the floors every disclosure of an audience passes, in one place
 * for the server (AUDIENCE, REACH, LOOKALIKE, the s:<segment> views) and the
 * batch tools (`starling audience`).
 *
 * An audience, a reach count or a look-alike list of fewer than min_audience
 * users is not disclosed, and the refusal does not say how many matched:
 * repeated queries with nearby thresholds could otherwise single users out.
 * A look-alike expansion needs at least min_seeds known seed users (and
 * always at least one). 0 turns a floor off. Owns nothing; never prints.
 */
#ifndef STARLING_PRIVACY_H
#define STARLING_PRIVACY_H

#include <stddef.h>
#include <stdint.h>

#define ST_PRIVACY_MIN_AUDIENCE 100 /* the default floors of serve and audience */
#define ST_PRIVACY_MIN_SEEDS 100

/* 0 when `users` may be disclosed; else -1 and msg (len bytes) the sentence
 * to reply. */
int st_privacy_audience(uint64_t users, uint64_t min_audience, char *msg, size_t len);

/* 0 when `known` of the `given` seeds may be expanded; else -1 and msg. */
int st_privacy_seeds(uint64_t known, uint64_t given, uint64_t min_seeds, char *msg, size_t len);

#endif
