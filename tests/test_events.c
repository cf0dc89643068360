/* Tests of the event-log reader: every accepted form and every rejection. */
#include <zlib.h>

#include "events.h"
#include "interactions.h"
#include "tap.h"
#include "util.h"

typedef struct {
    int n;
    char users[16][64], segs[16][64], kinds[16][64];
    double w[16], ts[16];
    int has_ts[16];
} collect_t;

static int collect(const st_event *ev, void *ctx, char *err)
{
    (void)err;
    collect_t *c = ctx;
    if (c->n < 16) {
        snprintf(c->users[c->n], 64, "%s", ev->user);
        snprintf(c->segs[c->n], 64, "%s", ev->segment);
        snprintf(c->kinds[c->n], 64, "%s", ev->kind ? ev->kind : "");
        c->w[c->n] = ev->weight;
        c->ts[c->n] = ev->ts;
        c->has_ts[c->n] = ev->has_ts;
    }
    c->n++;
    return 0;
}

static const char *write_file(const char *name, const char *content)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tap_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    fputs(content, f);
    fclose(f);
    return path;
}

/* Reads content as a file; returns the read's status, err holds the message. */
static int read_str(const char *content, collect_t *c, int skip, st_read_stats *st, char *err)
{
    const char *path = write_file("in.txt", content);
    st_read_opts o;
    st_read_opts_default(&o);
    o.skip_errors = skip;
    memset(c, 0, sizeof *c);
    memset(st, 0, sizeof *st);
    err[0] = '\0';
    return st_events_read(path, &o, collect, c, st, err);
}

static void expect_error(const char *content, const char *fragment, const char *what)
{
    collect_t c;
    st_read_stats st;
    char err[ST_ERRLEN] = "";
    int rc = read_str(content, &c, 0, &st, err);
    ok(rc != 0 && strstr(err, fragment) != NULL, "%s: error mentions '%s' (got: %s)", what, fragment, err);
}

/* CSV with a header and all five columns. */
static void test_csv(void)
{
    collect_t c = {0};
    st_read_stats st = {0};
    char err[ST_ERRLEN] = "";
    ok(read_str("user,segment,weight,kind,timestamp\nu1,s1,2.5,click,1700000000\nu2,s2,1,,\n", &c, 0, &st, err) == 0,
       "csv with header reads");
    is_int(c.n, 2, "two events");
    is_str(c.users[0], "u1", "first user");
    is_str(c.segs[0], "s1", "first segment");
    is_near(c.w[0], 2.5, 0, "weight parsed");
    is_str(c.kinds[0], "click", "kind parsed");
    ok(c.has_ts[0] && c.ts[0] == 1700000000.0, "unix timestamp parsed");
    is_str(c.kinds[1], "", "empty kind is absent");
    ok(!c.has_ts[1], "empty timestamp is absent");
    is_int(st.lines, 3, "three lines counted");
}

/* TSV without header, two columns, weight defaults to 1. */
static void test_tsv(void)
{
    collect_t c = {0};
    st_read_stats st = {0};
    char err[ST_ERRLEN] = "";
    ok(read_str("a\tb\nc\td\n", &c, 0, &st, err) == 0, "tsv without header");
    is_int(c.n, 2, "both lines are events");
    is_near(c.w[1], 1.0, 0, "missing weight is 1");
}

/* Space-separated (SNAP edge lists), runs of spaces. */
static void test_space_separated(void)
{
    collect_t c = {0};
    st_read_stats st = {0};
    char err[ST_ERRLEN] = "";
    ok(read_str("10  20 3\n30 40   1\n", &c, 0, &st, err) == 0, "space separated");
    is_int(c.n, 2, "two edges");
    is_str(c.segs[0], "20", "segment of the first edge");
    is_near(c.w[0], 3, 0, "weight of the first edge");
}

/* Last.fm's header with a non-numeric weight column name. */
static void test_lastfm_header(void)
{
    collect_t c = {0};
    st_read_stats st = {0};
    char err[ST_ERRLEN] = "";
    ok(read_str("userID\tartistID\tweight\n2\t51\t13883\n", &c, 0, &st, err) == 0, "lastfm header skipped");
    is_int(c.n, 1, "one event after the header");
    is_near(c.w[0], 13883, 0, "lastfm weight");
}

/* CRLF, blank lines, quoted CSV ids with commas and quotes, spaces around fields. */
static void test_quoting(void)
{
    collect_t c = {0};
    st_read_stats st = {0};
    char err[ST_ERRLEN] = "";
    ok(read_str("\"user, one\",\"seg \"\"x\"\"\",2\r\n\r\n u2 , s2 , 3 \r\n", &c, 0, &st, err) == 0,
       "quoted csv and CRLF");
    is_int(c.n, 2, "blank line ignored");
    is_str(c.users[0], "user, one", "quoted id keeps its comma");
    is_str(c.segs[0], "seg \"x\"", "doubled quotes unescaped");
    is_str(c.users[1], "u2", "spaces around csv fields trimmed");
    is_near(c.w[1], 3, 0, "weight with spaces");
}

/* Ids of any length and arbitrary bytes. */
static void test_ids(void)
{
    collect_t c = {0};
    st_read_stats st = {0};
    char err[ST_ERRLEN] = "";
    char big[5000];
    memset(big, 'x', 4000);
    strcpy(big + 4000, ",seg\n");
    ok(read_str(big, &c, 0, &st, err) == 0, "a 4000-byte id is accepted");
    ok(read_str("\xc3\x28\xff,s\n", &c, 0, &st, err) == 0, "invalid UTF-8 passes through as bytes");
}

/* ISO 8601 timestamps. */
static void test_timestamps(void)
{
    double t;
    ok(st_parse_timestamp("2026-01-01", 10, &t) == 0 && t == 1767225600.0, "date");
    ok(st_parse_timestamp("2026-01-01T01:02:03Z", 20, &t) == 0 && t == 1767225600.0 + 3723, "date time Z");
    ok(st_parse_timestamp("2026-01-01T01:00:00+01:00", 25, &t) == 0 && t == 1767225600.0, "offset +01:00");
    ok(st_parse_timestamp("2026-01-01 00:00:00.5", 21, &t) == 0 && t == 1767225600.5, "fraction, space");
    ok(st_parse_timestamp("1700000000.25", 13, &t) == 0 && t == 1700000000.25, "decimal seconds");
    ok(st_parse_timestamp("2026-02-30", 10, &t) != 0, "Feb 30 rejected");
    ok(st_parse_timestamp("2026-13-01", 10, &t) != 0, "month 13 rejected");
    ok(st_parse_timestamp("yesterday", 9, &t) != 0, "words rejected");
}

/* Every malformed line, with FILE:LINE. */
static void test_malformed(void)
{
    st_read_stats st = {0};
    char err[ST_ERRLEN] = "";
    expect_error("u1,s1\nu2\n", ":2: missing segment field", "missing field");
    expect_error("u1,s1,1\nu1,s1,abc\n", "bad weight 'abc'", "bad number");
    expect_error("u1,s1,1\nu1,s1,nan\n", "weight is NaN", "NaN weight");
    expect_error("u1,s1,1\nu1,s1,inf\n", "infinite", "infinite weight");
    expect_error("u1,s1,1\nu1,s1,-2\n", "negative weight", "negative weight");
    expect_error("u1,s1,1\nu1,s1,1e999\n", "infinite", "overflowing weight");
    expect_error("u1,s1,1\n,s1,1\n", "empty user id", "empty user");
    expect_error("u1,s1,1\nu1,,1\n", "empty segment id", "empty segment");
    expect_error("u1,s1,1,k,1,extra\n", "too many fields", "extra field");
    expect_error("u1,s1,1,k,notatime\n", "bad timestamp", "bad timestamp");
    expect_error("\"u1,s1,1\n", "unterminated quote", "unterminated quote");
    {
        /* The message names the file and the line. */
        collect_t cc;
        read_str("u1,s1,1\nu2,s2,1\nu3,s3,x\n", &cc, 0, &st, err);
        char want[600];
        snprintf(want, sizeof want, "%s/in.txt:3: bad weight 'x'", tap_tmpdir());
        ok(strncmp(err, want, strlen(want)) == 0, "message is FILE:LINE: reason (%s)", err);
    }
}

/* Over-long line, in stop and skip mode. */
static void test_overlong_line(void)
{
    collect_t c = {0};
    st_read_stats st = {0};
    char err[ST_ERRLEN] = "";
    size_t n = (2u << 20) + 10;
    char *s = malloc(n + 32);
    strcpy(s, "u0,s0,1\n");
    memset(s + 8, 'a', n);
    strcpy(s + 8 + n, ",s,1\nu1,s1,1\n");
    ok(read_str(s, &c, 0, &st, err) != 0 && strstr(err, ":2: line longer than"), "over-long line stops (%s)", err);
    ok(read_str(s, &c, 1, &st, err) == 0, "skip mode goes on past an over-long line");
    is_int(c.n, 2, "the lines around it are kept");
    is_int(st.skipped, 1, "one line skipped");
    ok(strstr(st.reasons[0], ":2: line longer than") != NULL, "reason kept: %s", st.reasons[0]);
    free(s);
}

/* Skip mode counts and keeps going. */
static void test_skip_mode(void)
{
    collect_t c = {0};
    st_read_stats st = {0};
    char err[ST_ERRLEN] = "";
    ok(read_str("u1,s1,1\nu2,s2,-1\nu3\nu4,s4,2\n", &c, 1, &st, err) == 0, "skip mode");
    is_int(c.n, 2, "good lines read");
    is_int(st.skipped, 2, "bad lines counted");
    ok(strstr(st.reasons[1], ":3: missing segment") != NULL, "second reason kept: %s", st.reasons[1]);
}

/* gzip input detected from the bytes, whatever the name. */
static void test_gzip(void)
{
    collect_t c = {0};
    st_read_stats st = {0};
    char err[ST_ERRLEN] = "";
    char path[512];
    snprintf(path, sizeof path, "%s/log.dat", tap_tmpdir());
    gzFile gz = gzopen(path, "wb");
    gzputs(gz, "u1,s1,1\nu2,s2,4\n");
    gzclose(gz);
    st_read_opts o;
    st_read_opts_default(&o);
    memset(&c, 0, sizeof c);
    memset(&st, 0, sizeof st);
    ok(st_events_read(path, &o, collect, &c, &st, err) == 0 && c.n == 2 && c.w[1] == 4, "gzip read");
    /* A truncated gzip file is an error, not silently short. */
    FILE *f = fopen(path, "rb");
    char buf[256];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    f = fopen(path, "wb");
    fwrite(buf, 1, len - 6, f);
    fclose(f);
    memset(&st, 0, sizeof st);
    ok(st_events_read(path, &o, collect, &c, &st, err) != 0, "truncated gzip is an error (%s)", err);
}

/* Missing file. */
static void test_missing_file(void)
{
    collect_t c = {0};
    st_read_stats st = {0};
    char err[ST_ERRLEN] = "";
    st_read_opts o;
    st_read_opts_default(&o);
    ok(st_events_read("/nonexistent/file.csv", &o, collect, &c, &st, err) != 0 &&
           strstr(err, "/nonexistent/file.csv: cannot open"),
       "missing file named (%s)", err);
}

/* Empty input is an error at build time, not a crash. */
static void test_empty_input(void)
{
    st_read_stats st = {0};
    char err[ST_ERRLEN] = "";
    const char *path = write_file("empty.csv", "");
    char *paths[] = {(char *)path};
    st_read_opts o;
    st_read_opts_default(&o);
    st_weighting w;
    st_weighting_default(&w);
    st_interactions x;
    memset(&st, 0, sizeof st);
    ok(st_interactions_read(paths, 1, &o, &w, &x, &st, err) != 0 && strstr(err, "no events"),
       "empty file: %s", err);
    path = write_file("header.csv", "user,segment,weight\n");
    paths[0] = (char *)path;
    ok(st_interactions_read(paths, 1, &o, &w, &x, &st, err) != 0 && strstr(err, "no events"),
       "header only: %s", err);
}

/* Byte ranges and strides: every way of cutting a file into parts reads
 * each line exactly once. */
static void test_ranges(void)
{
    collect_t c = {0};
    st_read_stats st = {0};
    char err[ST_ERRLEN] = "";
    char text[4096];
    size_t tl = 0;
    tl += (size_t)snprintf(text + tl, sizeof text - tl, "user,segment,weight\n");
    for (int i = 0; i < 60; i++)
        tl += (size_t)snprintf(text + tl, sizeof text - tl, "user%d,seg%d,%d\n", i, i % 7, i + 1);
    const char *path = write_file("parts.csv", text);
    st_read_opts o;
    st_read_opts_default(&o);
    int all_once = 1;
    for (size_t cut1 = 1; cut1 < tl; cut1 += 37) {
        for (size_t cut2 = cut1; cut2 <= tl; cut2 += 101) {
            int n = 0;
            uint64_t cuts[4] = {0, cut1, cut2, 0};
            for (int part = 0; part < 3; part++) {
                collect_t cc;
                memset(&cc, 0, sizeof cc);
                memset(&st, 0, sizeof st);
                o.begin = cuts[part];
                o.end = cuts[part + 1];
                if (st_events_read(path, &o, collect, &cc, &st, err) != 0) all_once = 0;
                n += cc.n;
            }
            if (n != 60) all_once = 0;
        }
    }
    ok(all_once, "three byte ranges at any cut points read all 60 lines exactly once");
    o.begin = 0;
    o.end = 0;
    int total = 0;
    for (uint32_t ph = 0; ph < 4; ph++) {
        collect_t cc;
        memset(&cc, 0, sizeof cc);
        memset(&st, 0, sizeof st);
        o.stride = 4;
        o.phase = ph;
        st_events_read(path, &o, collect, &cc, &st, err);
        total += cc.n;
    }
    ok(total == 60, "four strides read all 60 lines once (%d)", total);
    /* An error in a later range names the true line number. */
    char bad[256];
    snprintf(bad, sizeof bad, "u,s,1\nu,s,2\nu,s,3\nu,s,x\n");
    path = write_file("badparts.csv", bad);
    st_read_opts_default(&o);
    o.begin = 13; /* inside the third line */
    memset(&st, 0, sizeof st);
    ok(st_events_read(path, &o, collect, &c, &st, err) != 0 && strstr(err, "badparts.csv:4: bad weight"),
       "mid-file range reports the absolute line: %s", err);
}

int main(void)
{
    test_csv();
    test_tsv();
    test_space_separated();
    test_lastfm_header();
    test_quoting();
    test_ids();
    test_timestamps();
    test_malformed();
    test_overlong_line();
    test_skip_mode();
    test_gzip();
    test_missing_file();
    test_empty_input();
    test_ranges();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tap_tmpdir());
    if (system(cmd) != 0) return 1;
    return tap_done();
}
