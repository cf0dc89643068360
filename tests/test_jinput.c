/* Tests of the journal's rules for the offline tools (jinput.h): a journal
 * written with st_journal_append and an event file; the interactions built
 * from both drop every input event of a forgotten user, keep journal events
 * after their user's last FORGET and erase those before it; the forgotten
 * set is what the batch commands filter on. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "jinput.h"
#include "journal.h"
#include "tap.h"
#include "util.h"

static char dir[64];

static void write_journal(const char *path)
{
    char err[ST_ERRLEN] = "";
    st_journal_info info;
    st_journal *j = st_journal_open(path, ST_APPENDFSYNC_NO, NULL, NULL, &info, err);
    ok(j != NULL, "journal opened: %s", j ? "ok" : err);
    if (!j) return;
    /* alice: an event, then forgotten, then a new event (kept: after the FORGET) */
    st_jrecord r[] = {
        {.type = ST_JREC_EVENT, .user = "alice", .user_len = 5, .segment = "sports", .segment_len = 6, .weight = 1, .ts = 1},
        {.type = ST_JREC_EVENT, .user = "bob", .user_len = 3, .segment = "travel", .segment_len = 6, .weight = 2, .ts = 2},
        {.type = ST_JREC_FORGET, .user = "alice", .user_len = 5},
        {.type = ST_JREC_EVENT, .user = "alice", .user_len = 5, .segment = "food", .segment_len = 4, .weight = 3, .ts = 3},
        {.type = ST_JREC_FORGET, .user = "carol", .user_len = 5},
    };
    int good = 1;
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) good &= st_journal_append(j, &r[i], err) == 0;
    ok(good, "five records appended");
    ok(st_journal_close(j, err) == 0, "journal closed");
}

static float value(const st_interactions *x, const char *user, const char *seg)
{
    uint32_t u = st_idmap_find(&x->users, user, strlen(user)), s = st_idmap_find(&x->segments, seg, strlen(seg));
    if (u == ST_NOT_FOUND || s == ST_NOT_FOUND) return -1;
    for (uint64_t q = x->by_user.indptr[u]; q < x->by_user.indptr[u + 1]; q++)
        if (x->by_user.indices[q] == s) return x->by_user.data[q];
    return 0;
}

static void test_interactions(const char *jpath, const char *events)
{
    char err[ST_ERRLEN] = "";
    st_weighting w;
    st_weighting_default(&w);
    st_read_opts ro;
    st_read_opts_default(&ro);
    st_interactions x;
    st_read_stats stats = {0};
    st_jinput_use use;
    char *files[1] = {(char *)events};
    int rc = st_jinput_interactions(jpath, files, 1, &ro, &w, &x, &stats, &use, err);
    ok(rc == 0, "interactions of the events and the journal: %s", rc == 0 ? "ok" : err);
    if (rc != 0) return;
    is_int(use.forgotten, 2, "two users forgotten (alice, carol)");
    is_int(use.dropped, 2, "every input event of alice and carol dropped");
    is_int(use.erased, 1, "alice's journal event before her FORGET erased");
    is_int(use.added, 2, "bob's and alice's later journal events added");
    ok(value(&x, "alice", "sports") == -1 || value(&x, "alice", "sports") == 0, "alice: nothing from before");
    is_near(value(&x, "alice", "food"), 3, 1e-6, "alice: the event after her FORGET");
    ok(st_idmap_find(&x.users, "carol", 5) == ST_NOT_FOUND, "carol: gone");
    is_near(value(&x, "bob", "travel"), 2 + 1, 1e-6, "bob: the input event and the journal's, summed");
    is_near(value(&x, "dave", "sports"), 1, 1e-6, "dave: untouched");
    st_interactions_free(&x);
}

static void test_forgotten(const char *jpath)
{
    char err[ST_ERRLEN] = "";
    st_forgotten f;
    st_jinput_use use;
    ok(st_jinput_forgotten(jpath, &f, &use, err) == 0, "the forgotten set of the journal");
    ok(st_jinput_is_forgotten(&f, "alice", 5) && st_jinput_is_forgotten(&f, "carol", 5) &&
           !st_jinput_is_forgotten(&f, "bob", 3),
       "alice and carol are forgotten, bob is not");
    is_int(use.forgets, 2, "two FORGET records read");
    st_jinput_forgotten_free(&f);
    ok(st_jinput_forgotten("/nonexistent/journal", &f, NULL, err) != 0 && strstr(err, "/nonexistent/journal"),
       "a missing journal is an error that names it: %s", err);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/test_jinput.XXXXXX");
    if (!mkdtemp(dir)) return 1;
    char jpath[128], events[128];
    snprintf(jpath, sizeof jpath, "%s/j.journal", dir);
    snprintf(events, sizeof events, "%s/ev.csv", dir);
    write_journal(jpath);
    FILE *f = fopen(events, "w");
    fprintf(f, "user,segment,weight\nalice,sports,1\ncarol,food,1\nbob,travel,1\ndave,sports,1\n");
    fclose(f);
    test_interactions(jpath, events);
    test_forgotten(jpath);
    unlink(jpath);
    unlink(events);
    rmdir(dir);
    return tap_done();
}
