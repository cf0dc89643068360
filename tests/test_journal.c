/* The journal file: records read back as written; a torn tail cut at every
 * byte is found, reported and dropped, and damage in the middle is refused;
 * a full disk at every byte of a record leaves nothing of it behind; a
 * failed fsync puts the journal out of service; compaction drops what
 * FORGETs erased and keeps everything else, including what is appended while
 * it runs, and a full disk during compaction leaves the old file in use;
 * every allocation of opening and replaying may fail cleanly. */
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal.h"
#include "tap.h"
#include "util.h"

typedef struct {
    int n;
    uint64_t seq[4096];
    int type[4096];
    char user[4096][24];
    char seg[4096][24];
    char kind[4096][16];
    double weight[4096], ts[4096];
} got_t;

static got_t got;

static int collect(const st_jrecord *r, void *ctx, char *err)
{
    (void)ctx;
    (void)err;
    int i = got.n++;
    if (i >= 4096) return st_seterr(err, "too many");
    got.seq[i] = r->seq;
    got.type[i] = r->type;
    snprintf(got.user[i], sizeof got.user[i], "%.*s", (int)r->user_len, r->user);
    snprintf(got.seg[i], sizeof got.seg[i], "%.*s", r->segment ? (int)r->segment_len : 0, r->segment ? r->segment : "");
    snprintf(got.kind[i], sizeof got.kind[i], "%.*s", r->kind ? (int)r->kind_len : 0, r->kind ? r->kind : "");
    got.weight[i] = r->weight;
    got.ts[i] = r->ts;
    return 0;
}

/* The journal every test below reads, written by test_write_read: its path,
 * size and record boundaries (ends[0] is the header's end); cut is where
 * damaged copies go. */
static const char *dir;
static char path[512], cut[512];
static long long full, ends[32];
static int nends;

static st_jrecord ev(const char *user, const char *seg, const char *kind, double w, double ts)
{
    st_jrecord r = {.type = ST_JREC_EVENT, .user = user, .user_len = (uint32_t)strlen(user), .segment = seg,
                    .segment_len = (uint32_t)strlen(seg), .kind = kind, .kind_len = kind ? (uint32_t)strlen(kind) : 0,
                    .weight = w, .ts = ts};
    return r;
}

static st_jrecord fg(const char *user)
{
    st_jrecord r = {.type = ST_JREC_FORGET, .user = user, .user_len = (uint32_t)strlen(user)};
    return r;
}

static long long file_size(const char *file)
{
    struct stat sb;
    return stat(file, &sb) == 0 ? (long long)sb.st_size : -1;
}

static int copy_prefix(const char *from, const char *to, long long n)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    if (!a || !b) {
        if (a) fclose(a);
        if (b) fclose(b);
        return -1;
    }
    char buf[4096];
    while (n > 0) {
        size_t c = n < (long long)sizeof buf ? (size_t)n : sizeof buf;
        if (fread(buf, 1, c, a) != c || fwrite(buf, 1, c, b) != c) break;
        n -= (long long)c;
    }
    fclose(a);
    fclose(b);
    return n == 0 ? 0 : -1;
}

static void flip_byte(const char *file, long long off)
{
    int fd = open(file, O_RDWR);
    unsigned char c;
    if (pread(fd, &c, 1, off) == 1) {
        c ^= 0x5a;
        if (pwrite(fd, &c, 1, off) != 1) perror("pwrite");
    }
    close(fd);
}

static void append_bytes(const char *file, const void *p, size_t n)
{
    int fd = open(file, O_WRONLY | O_APPEND);
    if (write(fd, p, n) != (ssize_t)n) perror("write");
    close(fd);
}

typedef struct {
    st_journal *j;
    int n, failed;
} appender;

static void *append_many(void *arg)
{
    appender *a = arg;
    char err[ST_ERRLEN], user[32];
    for (int i = 0; i < a->n; i++) {
        snprintf(user, sizeof user, "late%d", i);
        st_jrecord r = ev(user, "s1", NULL, 1, 1e9);
        if (st_journal_append(a->j, &r, err) != 0) a->failed++;
    }
    return NULL;
}

/* Write, close, read back. */
static int test_write_read(void)
{
    char err[ST_ERRLEN] = "";
    st_journal_info info;
    st_journal *j = st_journal_open(path, ST_APPENDFSYNC_ALWAYS, NULL, NULL, &info, err);
    ok(j != NULL && info.records == 0 && info.last_seq == 0, "a new journal is created empty");
    if (!j) {
        printf("#   %s\n", err);
        return -1;
    }
    uint64_t id = st_journal_id(j);
    ok(id != 0, "it has an id");
    st_journal_info again;
    ok(st_journal_open(path, ST_APPENDFSYNC_NO, NULL, NULL, &again, err) == NULL && strstr(err, "in use"),
       "a second writer is refused (%s)", err);
    int nrec = 0;
    for (int i = 0; i < 30; i++) {
        char u[16], s[16];
        snprintf(u, sizeof u, "u%d", i % 7);
        snprintf(s, sizeof s, "seg%d", i % 5);
        st_jrecord r = i % 9 == 8 ? fg(u) : ev(u, s, i % 3 ? "click" : NULL, 0.5 * i, 1.7e9 + i);
        ok(st_journal_append(j, &r, err) == 0 && r.seq == (uint64_t)i + 1, "append %d gets seq %d", i, i + 1);
        nrec++;
    }
    ok(st_journal_sync(j, 30, err) == 0 && st_journal_durable_seq(j) == 30, "synced through 30");
    ok(st_journal_close(j, err) == 0, "closed");
    full = file_size(path);
    got.n = 0;
    ok(st_journal_read(path, 0, 0, collect, NULL, &info, err) == 0 && got.n == 30 && info.records == 30 &&
           info.id == id && info.last_seq == 30 && info.torn_bytes == 0 && info.end == (uint64_t)full,
       "read back: 30 records, the same id, no torn tail");
    int same = 1;
    for (int i = 0; i < 30; i++) {
        char u[16], s[16];
        snprintf(u, sizeof u, "u%d", i % 7);
        snprintf(s, sizeof s, "seg%d", i % 5);
        if (got.seq[i] != (uint64_t)i + 1 || strcmp(got.user[i], u) != 0) same = 0;
        if (i % 9 == 8) {
            if (got.type[i] != ST_JREC_FORGET) same = 0;
        } else if (got.type[i] != ST_JREC_EVENT || strcmp(got.seg[i], s) != 0 || got.weight[i] != 0.5 * i ||
                   got.ts[i] != 1.7e9 + i || strcmp(got.kind[i], i % 3 ? "click" : "") != 0) {
            same = 0;
        }
    }
    ok(same, "every field of every record as written");
    return 0;
}

/* A torn tail, cut at every byte of the file. */
static void test_torn_tail(void)
{
    char err[ST_ERRLEN] = "";
    st_journal_info info;
    nends = 0;
    {
        got.n = 0;
        uint64_t pos = 0;
        /* record ends, from reading prefixes */
        for (long long c = ST_JOURNAL_HEADER; c <= full; c++) {
            copy_prefix(path, cut, c);
            st_journal_read(cut, 0, 0, NULL, NULL, &info, err);
            if (info.torn_bytes == 0 && info.end == (uint64_t)c && c > (long long)pos) {
                ends[nends++] = c;
                pos = (uint64_t)c;
            }
        }
    }
    ok(nends == 31, "31 record boundaries (the header's end and 30 records)");
    int torn_ok = 1, open_ok = 1;
    for (long long c = ST_JOURNAL_HEADER; c < full; c++) {
        copy_prefix(path, cut, c);
        int whole = 0;
        while (whole + 1 < nends && ends[whole + 1] <= c) whole++;
        got.n = 0;
        if (st_journal_read(cut, 0, 0, collect, NULL, &info, err) != 0 || got.n != whole ||
            info.end != (uint64_t)ends[whole] || info.torn_bytes != (uint64_t)(c - ends[whole]) ||
            (info.torn_bytes && info.torn_at != (uint64_t)ends[whole])) {
            torn_ok = 0;
            printf("#   cut at %lld: %d records, torn %llu (%s)\n", c, got.n, (unsigned long long)info.torn_bytes, err);
        }
        if (c % 7 == 0) {
            st_journal *k = st_journal_open(cut, ST_APPENDFSYNC_NO, NULL, NULL, &info, err);
            st_jrecord r = ev("new", "s", NULL, 1, 2e9);
            if (!k || file_size(cut) != ends[whole] || st_journal_append(k, &r, err) != 0 ||
                r.seq != (uint64_t)whole + 1)
                open_ok = 0;
            if (k) st_journal_close(k, err);
            got.n = 0;
            if (st_journal_read(cut, 0, 0, collect, NULL, &info, err) != 0 || got.n != whole + 1) open_ok = 0;
        }
    }
    ok(torn_ok, "a cut at any byte: the whole records before it are read, the rest is reported torn");
    ok(open_ok, "opening a cut journal drops the torn bytes from the file, and appends continue after it");
}

/* Zeros after the last record: torn. */
static void test_zero_tail(void)
{
    char err[ST_ERRLEN] = "";
    st_journal_info info;
    copy_prefix(path, cut, full);
    char zeros[100] = {0};
    append_bytes(cut, zeros, sizeof zeros);
    ok(st_journal_read(cut, 0, 0, NULL, NULL, &info, err) == 0 && info.records == 30 && info.torn_bytes == 100,
       "a zero-filled tail is a torn write");
}

/* Damage in the middle is refused; in the last record it is a torn tail. */
static void test_damage(void)
{
    char err[ST_ERRLEN] = "";
    st_journal_info info;
    copy_prefix(path, cut, full);
    flip_byte(cut, ends[10] + 20);
    ok(st_journal_read(cut, 0, 0, NULL, NULL, &info, err) == -1 && strstr(err, "damaged") &&
           strstr(err, "truncate -s"),
       "a damaged record with records after it stops the reader (%.80s...)", err);
    ok(st_journal_open(cut, ST_APPENDFSYNC_NO, NULL, NULL, &info, err) == NULL, "and the server would not start");
    copy_prefix(path, cut, full);
    flip_byte(cut, ends[10] + 5); /* the length field */
    ok(st_journal_read(cut, 0, 0, NULL, NULL, &info, err) == -1 && strstr(err, "damaged"),
       "a damaged length in the middle is not taken for a torn tail");
    copy_prefix(path, cut, full);
    flip_byte(cut, ends[29] + 20);
    ok(st_journal_read(cut, 0, 0, NULL, NULL, &info, err) == 0 && info.records == 29 &&
           info.torn_bytes == (uint64_t)(full - ends[29]),
       "a damaged last record is a torn write");
    copy_prefix(path, cut, full);
    flip_byte(cut, 3);
    ok(st_journal_read(cut, 0, 0, NULL, NULL, &info, err) == -1 && strstr(err, "magic"), "a bad magic is refused");
    copy_prefix(path, cut, full);
    flip_byte(cut, 20);
    ok(st_journal_read(cut, 0, 0, NULL, NULL, &info, err) == -1 && strstr(err, "header is damaged"),
       "a damaged header is refused");
}

/* Reading from an offset: what was appended since. */
static void test_read_offset(void)
{
    char err[ST_ERRLEN] = "";
    st_journal_info info;
    got.n = 0;
    ok(st_journal_read(path, (uint64_t)ends[20], 0, collect, NULL, &info, err) == 0 && got.n == 10 &&
           got.seq[0] == 21,
       "reading from a record boundary gives the records after it");
}

/* A full disk at every byte of a record. */
static void test_full_disk(void)
{
    char err[ST_ERRLEN] = "";
    st_journal_info info;
    st_journal *j;
    j = st_journal_open(path, ST_APPENDFSYNC_EVERYSEC, NULL, NULL, &info, err);
    ok(j != NULL && info.records == 30, "reopened (everysec)");
    int disk_ok = 1;
    for (long long b = 0; b < 200; b++) {
        long long before = file_size(path);
        st_io_fail_after(b);
        st_jrecord r = ev("diskfull", "segment-x", "conversion", 3, 1.8e9);
        int rc = st_journal_append(j, &r, err);
        st_io_fail_after(-1);
        if (rc == 0) break; /* the budget covers the record */
        if (file_size(path) != before || !strstr(err, "No space left")) {
            disk_ok = 0;
            printf("#   budget %lld: size %lld, was %lld: %s\n", b, file_size(path), before, err);
        }
    }
    ok(disk_ok, "a full disk at every byte of a record: an error, and nothing of it left in the file");
    st_jrecord r = fg("after-full");
    ok(st_journal_append(j, &r, err) == 0, "appends continue once there is room");
    st_journal_status js;
    st_journal_get_status(j, &js);
    ok(js.append_failures > 0 && strstr(js.last_error, "No space left"), "the failures are counted and the error kept");
    ok(st_journal_close(j, err) == 0, "closed");
    got.n = 0;
    ok(st_journal_read(path, 0, 0, collect, NULL, &info, err) == 0 && got.n == 32 && got.seq[31] == 32 &&
           strcmp(got.user[30], "diskfull") == 0 && info.torn_bytes == 0,
       "the file holds exactly the records acknowledged, in order");
    if (got.n != 32) printf("#   %d records: %s\n", got.n, err);
}

/* A failed fsync puts the journal out of service. */
static void test_failed_fsync(void)
{
    char err[ST_ERRLEN] = "";
    st_journal_info info;
    st_journal *j;
    st_jrecord r;
    j = st_journal_open(path, ST_APPENDFSYNC_ALWAYS, NULL, NULL, &info, err);
    r = ev("x", "y", NULL, 1, 1);
    st_journal_append(j, &r, err);
    st_io_fail_fsync(1);
    ok(st_journal_commit(j, r.seq, err) == -1 && strstr(err, "fsync failed"), "a failed fsync is an error");
    st_io_fail_fsync(0);
    r = ev("x", "y", NULL, 1, 1);
    ok(st_journal_append(j, &r, err) == -1 && strstr(err, "out of service"), "then appends are refused");
    st_journal_close(j, err);
}

/* Compaction. */
static void test_compaction(void)
{
    char err[ST_ERRLEN] = "";
    st_journal_info info;
    st_journal *j;
    st_jrecord r;
    char cpath[512];
    snprintf(cpath, sizeof cpath, "%s/compact.journal", dir);
    j = st_journal_open(cpath, ST_APPENDFSYNC_EVERYSEC, NULL, NULL, &info, err);
    uint64_t cid = st_journal_id(j);
    const char *script[][3] = {
        {"e", "a", "s1"}, {"e", "b", "s1"}, {"e", "a", "s2"}, {"f", "a", ""},  {"e", "a", "s3"},
        {"f", "b", ""},   {"f", "b", ""},   {"e", "c", "s1"}, {"f", "zz", ""}, {"e", "b", "s4"},
    };
    for (size_t i = 0; i < sizeof script / sizeof script[0]; i++) {
        st_jrecord q = script[i][0][0] == 'e' ? ev(script[i][1], script[i][2], NULL, 1, 1e9) : fg(script[i][1]);
        st_journal_append(j, &q, err);
    }
    st_journal_compaction cc;
    ok(st_journal_compact(j, &cc, err) == 0, "compaction while open");
    ok(cc.records_before == 10 && cc.records_after == 6 && cc.events_erased == 3 && cc.forgets_merged == 1 &&
           cc.through_seq == 10,
       "3 erased events and 1 older FORGET dropped (%llu -> %llu records)", (unsigned long long)cc.records_before,
       (unsigned long long)cc.records_after);
    r = ev("d", "s9", NULL, 1, 1e9);
    ok(st_journal_append(j, &r, err) == 0 && r.seq == 11, "appends continue after it, the sequence unbroken");
    st_journal_close(j, err);
    got.n = 0;
    st_journal_read(cpath, 0, 0, collect, NULL, &info, err);
    int erased_gone = 1;
    for (int i = 0; i < got.n; i++)
        if ((strcmp(got.user[i], "a") == 0 && got.type[i] == ST_JREC_EVENT && got.seq[i] < 4) ||
            (strcmp(got.user[i], "b") == 0 && got.type[i] == ST_JREC_EVENT && got.seq[i] < 7))
            erased_gone = 0;
    ok(got.n == 7 && erased_gone && info.id == cid, "what a FORGET erased is gone from the file; the id is kept");
    ok(got.n == 7 && strcmp(got.user[1], "a") == 0 && got.seq[1] == 5 && got.type[2] == ST_JREC_FORGET &&
           got.seq[2] == 7,
       "events after a user's FORGET stay; the last FORGET stays");
}

/* Everything erased: the sequence still never goes back; then appends during
 * a compaction all survive it. */
static void test_sequence_floor(void)
{
    char err[ST_ERRLEN] = "";
    st_journal_info info;
    st_journal *j;
    st_jrecord r;
    st_journal_compaction cc;
    char cpath[512];
    snprintf(cpath, sizeof cpath, "%s/floor.journal", dir);
    j = st_journal_open(cpath, ST_APPENDFSYNC_NO, NULL, NULL, &info, err);
    for (int i = 0; i < 5; i++) {
        st_jrecord q = ev("gone", "s", NULL, 1, 1);
        st_journal_append(j, &q, err);
    }
    r = fg("gone");
    st_journal_append(j, &r, err);
    r = fg("gone");
    st_journal_append(j, &r, err);
    st_journal_compact(j, &cc, err);
    st_journal_close(j, err);
    j = st_journal_open(cpath, ST_APPENDFSYNC_NO, NULL, NULL, &info, err);
    ok(info.records == 1 && info.last_seq == 7, "after compaction the sequence floor is kept (last seq %llu)",
       (unsigned long long)info.last_seq);
    r = ev("new", "s", NULL, 1, 1);
    ok(st_journal_append(j, &r, err) == 0 && r.seq == 8, "and the next record continues it");
    st_journal_raise_seq(j, 100);
    r = ev("new", "s", NULL, 1, 1);
    ok(st_journal_append(j, &r, err) == 0 && r.seq == 101, "raise_seq moves the counter forward");

    /* Appends during a compaction. */
    for (int i = 0; i < 2000; i++) {
        char u[16];
        snprintf(u, sizeof u, "bulk%d", i % 50);
        st_jrecord q = i % 100 == 99 ? fg(u) : ev(u, "s", "click", 1, 1e9 + i);
        st_journal_append(j, &q, err);
    }
    appender ap = {.j = j, .n = 500};
    pthread_t t;
    pthread_create(&t, NULL, append_many, &ap);
    int compacted = 0;
    for (int i = 0; i < 5; i++) compacted += st_journal_compact(j, &cc, err) == 0;
    pthread_join(t, NULL);
    uint64_t last = st_journal_last_seq(j);
    st_journal_close(j, err);
    int late = 0;
    got.n = 0;
    st_journal_read(cpath, 0, 0, collect, NULL, &info, err);
    for (int i = 0; i < got.n; i++) late += strncmp(got.user[i], "late", 4) == 0;
    ok(compacted == 5 && ap.failed == 0 && late == 500 && info.last_seq == last,
       "5 compactions while 500 records were appended: every one of them is in the file");
}

/* A full disk during compaction leaves the old file in use. */
static void test_compaction_full_disk(void)
{
    char err[ST_ERRLEN] = "";
    st_journal_info info;
    st_journal *j;
    st_journal_compaction cc;
    char cpath[512];
    snprintf(cpath, sizeof cpath, "%s/floor.journal", dir); /* the journal test_sequence_floor left */
    long long before = file_size(cpath);
    j = st_journal_open(cpath, ST_APPENDFSYNC_NO, NULL, NULL, &info, err);
    uint64_t records = info.records;
    int kept_ok = 1;
    for (long long b = 0; b < before; b += before / 23 + 1) {
        st_io_fail_after(b);
        int rc = st_journal_compact(j, &cc, err);
        st_io_fail_after(-1);
        if (rc == 0) break;
        st_jrecord q = ev("still", "s", NULL, 1, 1);
        if (!strstr(err, "unchanged") || st_journal_append(j, &q, err) != 0) kept_ok = 0;
        records++;
    }
    st_journal_close(j, err);
    ok(st_journal_read(cpath, 0, 0, NULL, NULL, &info, err) == 0 && info.records == records && kept_ok,
       "a full disk at any point of a compaction: an error, and the old journal keeps working");
    int leftovers = 0;
    {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "ls '%s' | grep -q -e '[.]compact[.]' -e '[.]new[.]'", dir);
        leftovers = system(cmd) == 0;
    }
    ok(!leftovers, "no temporary file left behind");
}

/* Every allocation of open and replay may fail. */
static void test_open_oom(void)
{
    char err[ST_ERRLEN] = "";
    st_journal_info info;
    int clean = 1, n;
    for (n = 1; n < 1000; n++) {
        got.n = 0;
        st_alloc_fail_at(n);
        st_journal *k = st_journal_open(path, ST_APPENDFSYNC_EVERYSEC, collect, NULL, &info, err);
        st_alloc_fail_at(0);
        if (k) {
            st_journal_close(k, err);
            break;
        }
        if (!strstr(err, "out of memory")) clean = 0;
    }
    ok(clean && n > 1, "every allocation of opening and replaying failed in turn (%d): a clean error each time", n - 1);
}

int main(void)
{
    dir = tap_tmpdir();
    snprintf(path, sizeof path, "%s/events.journal", dir);
    snprintf(cut, sizeof cut, "%s/cut.journal", dir);
    if (test_write_read() != 0) return tap_done();
    test_torn_tail();
    test_zero_tail();
    test_damage();
    test_read_offset();
    test_full_disk();
    test_failed_fsync();
    test_compaction();
    test_sequence_floor();
    test_compaction_full_disk();
    test_open_oom();
    st_io_fail_after(-1);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("# could not remove %s\n", dir);
    return tap_done();
}
