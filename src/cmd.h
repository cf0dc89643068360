/* cmd: what the command families share (commands.c and the cmd_*.c files).
 *
 * commands.c holds the one command table, the call path, and the commands
 * about the table (COMMAND, INFO's statistics); cmd_util.c the helpers every
 * handler uses (arguments, looking users and segments up, replies,
 * authentication); each family of handlers has a file of its own, along the
 * seams Redis uses: cmd_target.c (SEGMENTS, SCORE, FOLDIN, EXPLAIN, SIMILAR,
 * HISTORY), cmd_scan.c (AUDIENCE, LOOKALIKE, REACH: scans over every user,
 * with the privacy floors), cmd_views.c (the u:<user> and s:<segment>
 * sorted-set views), cmd_write.c (EVENT, FORGET, ZINCRBY, DEL, SEGMENT, JOURNAL,
 * DEBUG) and cmd_admin.c (CONFIG, INFO, MODEL, AUTH, PING), cmd_client.c (CLIENT,
 * HELLO), cmd_compat.c (TIME, DBSIZE, SCAN, SLOWLOG, LATENCY), cmd_config.c (CONFIG).
 * Internal to the command layer: nothing outside these files includes it.
 *
 * Checklist: a new command needs a row in commands.c's table, its handler
 * declared here and defined in its family's file, and a section in
 * docs/PROTOCOL.md.
 */
#ifndef STARLING_CMD_H
#define STARLING_CMD_H

#include <stddef.h>
#include <stdint.h>

#include "commands.h"
#include "resp.h"
#include "service.h"

/* The user behind an id: the vector and history answers use. `known` is 0
 * for a user the model has no vector for, or who was forgotten; answers
 * then use the prior. `online` says the vector and history come from the
 * overlay (copied into the thread's scratch: valid until the next
 * find_user on this thread). This is the one place users are looked up. */
typedef struct {
    int known;
    int online;
    const float *x;
    const uint32_t *hist_seg;
    const float *hist_r;
    uint32_t hist_n;
    uint32_t model_u; /* the model's row, or ST_NOT_FOUND */
    uint32_t slot;    /* the overlay's slot when online */
} user_view;

/* ---- helpers (cmd_util.c, cmd_scan.c) ------------------------------------------- */

int st_cmd_is_word(const resp_arg *a, const char *w);
int st_cmd_arg_i64(st_ctx *c, const resp_arg *a, int64_t *out);
int st_cmd_arg_count(st_ctx *c, const resp_arg *a, uint64_t limit, uint32_t *out);
int st_cmd_arg_float(st_ctx *c, const resp_arg *a, const char *what, double *out);
user_view st_cmd_find_user(st_ctx *c, const char *id, size_t len);
const char *st_cmd_user_source(const user_view *u);
uint32_t st_cmd_find_segment(const st_served *sv, const resp_arg *a);
void st_cmd_bulk_segment(st_ctx *c, uint32_t s);
const char *st_cmd_scan_user_name(const void *vctx, uint32_t i, size_t *len);
void st_cmd_bulk_user(st_ctx *c, uint32_t u);
void st_cmd_sort_idx(uint32_t *a, float *vals, uint32_t n);
void st_cmd_reply_segment_pairs(st_ctx *c, const uint32_t *idx, const float *top, uint32_t n);
int st_cmd_need_segment(st_ctx *c, const resp_arg *a, uint32_t *s);
void st_cmd_kv_str(resp_out *o, const char *k, const char *v);
void st_cmd_kv_int(resp_out *o, const char *k, int64_t v);
void st_cmd_kv_num(resp_out *o, const char *k, double v);
int st_cmd_check_auth(st_ctx *c, const resp_arg *user, const resp_arg *pass);
int64_t st_cmd_scan_segment_users(st_ctx *c, uint32_t s);
uint64_t st_cmd_select_min(float *scores, uint64_t n, double min);
int st_cmd_below_floor(st_ctx *c, uint64_t users);

/* ---- segments added online (cmd_segment.c): numbered n + j after the model's ---- */

/* The model's segment or an added one (n + j); ST_NOT_FOUND when neither. */
uint32_t st_cmd_find_any_segment(const st_served *sv, const resp_arg *a);
/* The same, replying "unknown segment" and returning -1 when neither. */
int st_cmd_need_any_segment(st_ctx *c, const resp_arg *a, uint32_t *s);
/* Segment s's factors (a model row, or added segment's vector copied into
 * buf, k floats) and its blend prior_weight q[s] into *add. */
const float *st_cmd_segment_vector(st_ctx *c, uint32_t s, float *buf, float *add);
/* The popularity prior q of segment s. */
float st_cmd_segment_prior(st_ctx *c, uint32_t s);
/* The blended score of user vector x for segment s (st_score_one), or its
 * prior q when x is NULL (a user answered from the prior). Uses
 * scratch->work for an added segment. */
float st_cmd_segment_score(st_ctx *c, const float *x, uint32_t s);
const char *st_cmd_segment_name(const st_served *sv, uint32_t s, size_t *len);
/* out[u] = every model user's blended score for added segment s (m floats). */
void st_cmd_added_segment_users(st_ctx *c, uint32_t s, float *out);
/* Merges the added segments scoring at least fmin for x (NULL: the prior),
 * and listed in argv[only_from..only_to) when only_from, not listed in
 * argv[ex_from..ex_to), into the best-first list scratch idx/top of got
 * entries, kept to count; returns its new length. */
uint32_t st_cmd_merge_added(st_ctx *c, const float *x, uint32_t count, float fmin, int only_from, int only_to,
                            int ex_from, int ex_to, uint32_t got);

/* A growing text (INFO's sections, CLIENT LIST's lines); buf is st_malloc'd
 * (NULL while empty), the caller frees it. st_text_printf appends; out of
 * memory drops the text appended. */
typedef struct {
    char *buf;
    size_t len, cap;
} st_text;
void st_text_printf(st_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* INFO's Approx section for the served model sv (NULL: none loaded yet):
 * the --approx mode, the index's lists, memory, build time and measured
 * recall, and how many scans it answered (cmd_scan.c). */
void st_cmd_info_approx(st_text *t, const st_served *sv);

/* CLIENT SETNAME's checks, then the name set (under the client lock);
 * replies the error and returns -1 when refused. */
int st_cmd_set_name(st_ctx *c, const resp_arg *a);

/* ---- handlers: every row of the table ------------------------------------------- */

void cmd_audience(st_ctx *c);
void cmd_auth(st_ctx *c);
void cmd_client_getname(st_ctx *c);
void cmd_client_id(st_ctx *c);
void cmd_client_setname(st_ctx *c);
void cmd_client_info(st_ctx *c);
void cmd_client_list(st_ctx *c);
void cmd_client_kill(st_ctx *c);
void cmd_client_setinfo(st_ctx *c);
void cmd_client_onoff(st_ctx *c);
void cmd_client_reply(st_ctx *c);
void cmd_command(st_ctx *c);
void cmd_command_count(st_ctx *c);
void cmd_command_docs(st_ctx *c);
void cmd_command_info(st_ctx *c);
void cmd_config_get(st_ctx *c);
void cmd_config_resetstat(st_ctx *c);
void cmd_config_rewrite(st_ctx *c);
void cmd_config_set(st_ctx *c);
void cmd_debug_fsync_fail(st_ctx *c);
void cmd_debug_fsync_delay(st_ctx *c);
void cmd_debug_io_fail_after(st_ctx *c);
void cmd_dbsize(st_ctx *c);
void cmd_del(st_ctx *c);
void cmd_echo(st_ctx *c);
void cmd_event(st_ctx *c);
void cmd_exists(st_ctx *c);
void cmd_explain(st_ctx *c);
void cmd_foldin(st_ctx *c);
void cmd_forget(st_ctx *c);
void cmd_hello(st_ctx *c);
void cmd_help(st_ctx *c);
void cmd_history(st_ctx *c);
void cmd_info(st_ctx *c);
void cmd_journal_compact(st_ctx *c);
void cmd_latency_histogram(st_ctx *c);
void cmd_latency_latest(st_ctx *c);
void cmd_latency_reset(st_ctx *c);
void cmd_lookalike(st_ctx *c);
void cmd_model_info(st_ctx *c);
void cmd_model_reload(st_ctx *c);
void cmd_ping(st_ctx *c);
void cmd_quit(st_ctx *c);
void cmd_reach(st_ctx *c);
void cmd_score(st_ctx *c);
void cmd_segments(st_ctx *c);
void cmd_segment_add(st_ctx *c);
void cmd_segment_partial(st_ctx *c);
void cmd_segment_set(st_ctx *c);
void cmd_scan(st_ctx *c);
void cmd_select(st_ctx *c);
void cmd_similar(st_ctx *c);
void cmd_slowlog_get(st_ctx *c);
void cmd_slowlog_len(st_ctx *c);
void cmd_slowlog_reset(st_ctx *c);
void cmd_time(st_ctx *c);
void cmd_type(st_ctx *c);
void cmd_zcard(st_ctx *c);
void cmd_zcount(st_ctx *c);
void cmd_zincrby(st_ctx *c);
void cmd_zmscore(st_ctx *c);
void cmd_zrange(st_ctx *c);
void cmd_zrangebyscore(st_ctx *c);
void cmd_zrevrange(st_ctx *c);
void cmd_zrevrangebyscore(st_ctx *c);
void cmd_zscore(st_ctx *c);

#endif
