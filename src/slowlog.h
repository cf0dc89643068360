/* slowlog: the commands that took longer than a threshold, newest first,
 * for SLOWLOG GET/LEN/RESET, and the latest and worst of them for LATENCY
 * LATEST.
 *
 * A leaf, like stats: the command path records into it (from any event
 * loop, under its lock), the SLOWLOG and LATENCY handlers read it. An entry
 * keeps what Redis's does: an id that only grows, the unix time the command
 * ended, its microseconds, its first 32 arguments (each cut to 128 bytes,
 * with Redis's "... (N more arguments)" and "... (N more bytes)" markers),
 * and the client's address and name. Owns: the entries (allocated per
 * recorded command: slow commands are rare by definition). Never: decides
 * the threshold (the caller passes the configuration's).
 */
#ifndef STARLING_SLOWLOG_H
#define STARLING_SLOWLOG_H

#include <pthread.h>
#include <stdint.h>

#include "resp.h"

#define ST_SLOWLOG_ARGS 32
#define ST_SLOWLOG_ARG_BYTES 128
#define ST_SLOWLOG_CAP 1024 /* entries kept at most, whatever slowlog-max-len says */

typedef struct {
    uint64_t id;
    int64_t ts;    /* unix seconds */
    uint64_t usec;
    int argc;      /* arguments kept */
    char **argv;   /* argc strings, one allocation with the entry */
    size_t *lens;
    char addr[64], name[129];
} st_slowlog_entry;

typedef struct {
    pthread_mutex_t lock;
    st_slowlog_entry *ring[ST_SLOWLOG_CAP]; /* ring[(head - 1 - i) % CAP] is the i-th newest */
    uint32_t head, len;
    uint64_t next_id;
    /* LATENCY LATEST's one event, "command": the latest and worst slow command. */
    int64_t latest_ts;
    uint64_t latest_usec, max_usec;
} st_slowlog;

void st_slowlog_init(st_slowlog *s);
void st_slowlog_free(st_slowlog *s);

/* Records a command of usec microseconds when threshold >= 0 and usec >=
 * threshold, keeping at most max_len entries (and ST_SLOWLOG_CAP). addr and
 * name are the client's (empty strings for none). Allocates the entry; when
 * that fails the command is not recorded. */
void st_slowlog_record(st_slowlog *s, double threshold, uint64_t max_len, uint64_t usec, int argc,
                       const resp_arg *argv, const char *addr, const char *name);

/* SLOWLOG GET's reply for the n newest entries (n < 0: all), written to out
 * under the lock. */
void st_slowlog_reply(st_slowlog *s, int64_t n, resp_out *out);

/* LATENCY LATEST's event: 0 when no command was slow since the last reset;
 * else 1 with the latest one's unix time and microseconds and the worst. */
int st_slowlog_latest(st_slowlog *s, int64_t *ts, uint64_t *latest_usec, uint64_t *max_usec);

/* Entries kept; empties the log (and LATENCY's event). */
uint64_t st_slowlog_len(st_slowlog *s);
void st_slowlog_reset(st_slowlog *s);

#endif
