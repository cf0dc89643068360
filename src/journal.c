/* journal: records in, records out, and the file between them.
 *
 * What it is: an append-only file written with plain write(2) on an O_APPEND
 * descriptor, one whole record per call, made durable with fdatasync; a
 * bounded reader that finds where a crash cut the file; and a compaction that
 * rewrites the file beside itself and renames it into place. What it is not:
 * a database; it never reads a record back except to replay or compact.
 *
 * Locks, always taken in this order: compact_lock (one compaction at a
 * time), append_lock (the end of the file, the sequence counter, the encode
 * buffer), sync_lock (fdatasync, and the swap of the descriptor after a
 * compaction), stat_lock (figures and the last error). written_seq and
 * synced_seq are atomics so that st_journal_sync can skip the lock when
 * there is nothing to do.
 *
 * Layout (little-endian; docs/FORMAT.md):
 *   header  0 magic[8] 8 u32 version 12 u32 header bytes (64) 16 u64 id
 *          24 i64 created 32 u64 seq floor 40 zero[20] 60 u32 crc32(0..60)
 *   record  0 u32 crc32(bytes 4..) 4 u32 len (bytes after offset 8)
 *           8 u64 seq 16 u8 type 17 payload
 *   EVENT   u32 + user, u32 + segment, u32 + kind, f64 weight, f64 ts
 *   FORGET  u32 + user
 *   SEGMENT u32 + segment, f64 ts, u32 count, count x (u32 + user)
 *   SEGVEC  u32 + segment, u32 k, k x f32
 */
#include "journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "idmap.h"
#include "util.h"

#define READ_CHUNK (1u << 20)
#define EVENT_FIXED (8 + 1 + 4 + 4 + 4 + 8 + 8) /* an EVENT's len with empty strings */
#define FORGET_FIXED (8 + 1 + 4)
#define SEGMENT_FIXED (8 + 1 + 4 + 4) /* a SEGMENT's or SEGVEC's len before members or values */

const char *st_appendfsync_name(st_appendfsync p)
{
    return p == ST_APPENDFSYNC_ALWAYS ? "always" : p == ST_APPENDFSYNC_EVERYSEC ? "everysec" : "no";
}

/* ---- encoding ------------------------------------------------------------ */

static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t get64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static uint32_t crc(const unsigned char *p, size_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return (uint32_t)c;
}

/* Bytes of r encoded (crc and len included); 0 when it is too long. */
static size_t record_size(const st_jrecord *r)
{
    uint64_t n = r->type == ST_JREC_EVENT     ? (uint64_t)EVENT_FIXED + r->user_len + r->segment_len + r->kind_len
                 : r->type == ST_JREC_SEGMENT ? (uint64_t)SEGMENT_FIXED + 8 + r->segment_len + r->members_len
                 : r->type == ST_JREC_SEGVEC  ? (uint64_t)SEGMENT_FIXED + r->segment_len + 4ull * r->k
                                              : (uint64_t)FORGET_FIXED + r->user_len;
    return n + 8 > ST_JOURNAL_MAX_RECORD ? 0 : (size_t)(n + 8);
}

static unsigned char *put_str(unsigned char *p, const char *s, uint32_t n)
{
    put32(p, n);
    if (n) memcpy(p + 4, s, n);
    return p + 4 + n;
}

static void encode(const st_jrecord *r, uint64_t seq, unsigned char *out, size_t size)
{
    put32(out + 4, (uint32_t)(size - 8));
    put64(out + 8, seq);
    out[16] = (unsigned char)r->type;
    int seg = r->type == ST_JREC_SEGMENT || r->type == ST_JREC_SEGVEC;
    unsigned char *p = seg ? put_str(out + 17, r->segment, r->segment_len) : put_str(out + 17, r->user, r->user_len);
    if (r->type == ST_JREC_SEGMENT) {
        memcpy(p, &r->ts, 8);
        put32(p + 8, r->nmembers);
        if (r->members_len) memcpy(p + 12, r->members, r->members_len);
    } else if (r->type == ST_JREC_SEGVEC) {
        put32(p, r->k);
        memcpy(p + 4, r->vector, 4ull * r->k);
    } else if (r->type == ST_JREC_EVENT) {
        p = put_str(p, r->segment, r->segment_len);
        p = put_str(p, r->kind, r->kind ? r->kind_len : 0);
        memcpy(p, &r->weight, 8);
        memcpy(p + 8, &r->ts, 8);
    }
    put32(out, crc(out + 4, size - 4));
}

static int get_str(const unsigned char **p, size_t *left, const char **s, uint32_t *n)
{
    if (*left < 4) return -1;
    uint32_t len = get32(*p);
    if (len > *left - 4) return -1;
    *s = (const char *)*p + 4;
    *n = len;
    *p += 4 + len;
    *left -= 4 + len;
    return 0;
}

int st_jrecord_member(const st_jrecord *r, uint32_t *off, const char **s, uint32_t *len)
{
    if (*off + 4 > r->members_len) return 0;
    uint32_t n = get32((const unsigned char *)r->members + *off);
    if (n > r->members_len - *off - 4) return 0;
    *s = r->members + *off + 4;
    *len = n;
    *off += 4 + n;
    return 1;
}

uint64_t st_jrecord_pack_size(uint64_t n, uint64_t bytes) { return 4 * n + bytes; }

char *st_jrecord_pack(char *out, const char *s, uint32_t len)
{
    return (char *)put_str((unsigned char *)out, s, len);
}

/* A SEGMENT's or SEGVEC's body after the type byte: the segment, then its
 * members (each a non-empty string, exactly count of them filling the rest)
 * or its k finite values. */
static const char *decode_segment(const unsigned char *p, size_t left, st_jrecord *r)
{
    if (get_str(&p, &left, &r->segment, &r->segment_len) != 0 || r->segment_len == 0) return "bad segment id";
    if (r->type == ST_JREC_SEGMENT) {
        if (left < 8) return "bad SEGMENT length";
        memcpy(&r->ts, p, 8);
        if (!isfinite(r->ts)) return "timestamp is not finite";
        p += 8;
        left -= 8;
    }
    if (left < 4) return "bad SEGMENT length";
    uint32_t n = get32(p);
    p += 4;
    left -= 4;
    if (r->type == ST_JREC_SEGVEC) {
        if (n == 0 || left != 4ull * n) return "bad SEGVEC length";
        for (uint32_t i = 0; i < n; i++) {
            float v;
            memcpy(&v, p + 4ull * i, 4);
            if (!isfinite(v)) return "a SEGVEC value is not finite";
        }
        r->vector = p;
        r->k = n;
        return NULL;
    }
    r->members = (const char *)p;
    r->members_len = (uint32_t)left;
    uint32_t off = 0, got = 0, len;
    const char *s;
    while (st_jrecord_member(r, &off, &s, &len)) {
        if (len == 0) return "an empty member id";
        got++;
    }
    if (off != left || got != n) return "bad SEGMENT member list";
    r->nmembers = n;
    return NULL;
}

/* Decodes the record whose bytes after crc and len are body[0..len). Returns
 * a reason when the content is malformed (the CRC matched, so a bug or a
 * crafted file wrote it), NULL when it is fine. */
static const char *decode(const unsigned char *body, uint32_t len, st_jrecord *r)
{
    memset(r, 0, sizeof *r);
    r->seq = get64(body);
    r->type = (st_jrec_type)body[8];
    const unsigned char *p = body + 9;
    size_t left = len - 9;
    if (r->type == ST_JREC_SEGMENT || r->type == ST_JREC_SEGVEC) return decode_segment(p, left, r);
    if (get_str(&p, &left, &r->user, &r->user_len) != 0 || r->user_len == 0) return "bad user id";
    if (r->type == ST_JREC_FORGET) return left == 0 ? NULL : "trailing bytes in a FORGET";
    if (r->type != ST_JREC_EVENT) return "unknown record type (written by a newer starling?)";
    if (get_str(&p, &left, &r->segment, &r->segment_len) != 0 || r->segment_len == 0) return "bad segment id";
    if (get_str(&p, &left, &r->kind, &r->kind_len) != 0) return "bad kind";
    if (r->kind_len == 0) r->kind = NULL;
    if (left != 16) return "bad EVENT length";
    memcpy(&r->weight, p, 8);
    memcpy(&r->ts, p + 8, 8);
    if (!isfinite(r->weight) || r->weight < 0) return "weight is not a finite number >= 0";
    if (!isfinite(r->ts)) return "timestamp is not finite";
    return NULL;
}

static void header_encode(unsigned char *h, uint64_t id, int64_t created, uint64_t floor)
{
    memset(h, 0, ST_JOURNAL_HEADER);
    memcpy(h, ST_JOURNAL_MAGIC, 8);
    put32(h + 8, ST_JOURNAL_VERSION);
    put32(h + 12, ST_JOURNAL_HEADER);
    put64(h + 16, id);
    put64(h + 24, (uint64_t)created);
    put64(h + 32, floor);
    put32(h + 60, crc(h, 60));
}

/* ---- reading ------------------------------------------------------------- */

/* pread until n bytes or the end of the file; bytes read, or -1. */
static ssize_t pread_full(int fd, void *buf, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

typedef struct {
    int fd;
    unsigned char *buf;
    size_t cap, len;
    uint64_t base; /* file offset of buf[0] */
    uint64_t to;   /* read limit */
} window;

/* Makes bytes [off, off + n) available in w (n <= to - off); NULL on error. */
static const unsigned char *window_get(window *w, uint64_t off, size_t n)
{
    if (off >= w->base && off + n <= w->base + w->len) return w->buf + (off - w->base);
    if (n > w->cap) {
        unsigned char *b = st_realloc(w->buf, n);
        if (!b) {
            errno = ENOMEM;
            return NULL;
        }
        w->buf = b;
        w->cap = n;
    }
    uint64_t want = w->cap;
    if (want > w->to - off) want = w->to - off;
    ssize_t r = pread_full(w->fd, w->buf, (size_t)want, off);
    if (r < 0) return NULL;
    w->base = off;
    w->len = (size_t)r;
    if (w->len < n) {
        errno = EIO; /* the file shrank under us */
        return NULL;
    }
    return w->buf;
}

/* 1 when a whole, valid record starts anywhere in (off, to): then the damage
 * at off is in the middle of the file, not a torn last write (which leaves
 * the prefix of one record and nothing after it). Searches the first MiB of
 * positions; a torn tail is one record, far shorter. */
static int valid_record_after(window *w, uint64_t off)
{
    uint64_t last = w->to - 8 - FORGET_FIXED, stop = off + (1u << 20);
    for (uint64_t q = off + 1; q <= last && q < stop; q++) {
        const unsigned char *p = window_get(w, q, 8);
        if (!p) return 0;
        uint32_t c = get32(p), len = get32(p + 4);
        if (len < FORGET_FIXED || len > ST_JOURNAL_MAX_RECORD - 8 || 8 + (uint64_t)len > w->to - q) continue;
        p = window_get(w, q, 8 + (size_t)len);
        if (p && crc(p + 4, 4 + (size_t)len) == c) return 1;
    }
    return 0;
}

/* 1 when every byte of [off, to) is zero. */
static int zeros_to_end(window *w, uint64_t off)
{
    while (off < w->to) {
        size_t n = w->to - off < 65536 ? (size_t)(w->to - off) : 65536;
        const unsigned char *p = window_get(w, off, n);
        if (!p) return 0;
        for (size_t i = 0; i < n; i++)
            if (p[i]) return 0;
        off += n;
    }
    return 1;
}

typedef int (*raw_fn)(const st_jrecord *r, const unsigned char *raw, size_t rawlen, void *ctx, char *err);

typedef struct {
    uint64_t floor;
    int64_t created;
} header_info;

static int read_header(int fd, const char *path, uint64_t size, st_journal_info *info, header_info *hi, char *err)
{
    unsigned char h[ST_JOURNAL_HEADER];
    if (size < ST_JOURNAL_HEADER || pread_full(fd, h, sizeof h, 0) != (ssize_t)sizeof h)
        return st_seterr(err, "%s: not a starling journal (shorter than its %u-byte header)", path, ST_JOURNAL_HEADER);
    if (memcmp(h, ST_JOURNAL_MAGIC, 8) != 0)
        return st_seterr(err, "%s: not a starling journal (bad magic number); give --journal a journal file or a "
                              "path that does not exist yet",
                         path);
    if (get32(h + 60) != crc(h, 60))
        return st_seterr(err, "%s: the journal header is damaged (checksum mismatch); keep a copy of the file and "
                              "restore the journal from a backup",
                         path);
    if (get32(h + 8) != ST_JOURNAL_VERSION || get32(h + 12) != ST_JOURNAL_HEADER)
        return st_seterr(err, "%s: journal version %u, but this starling reads version %u; use the starling that "
                              "wrote it",
                         path, get32(h + 8), ST_JOURNAL_VERSION);
    info->id = get64(h + 16);
    hi->created = (int64_t)get64(h + 24);
    hi->floor = get64(h + 32);
    return 0;
}

/* The reader shared by replay, st_journal_read and compaction. */
static int scan_fd(int fd, const char *path, uint64_t from, uint64_t to, raw_fn fn, void *ctx,
                   st_journal_info *info, header_info *hi, char *err)
{
    memset(info, 0, sizeof *info);
    struct stat sb;
    if (fstat(fd, &sb) != 0) return st_seterr(err, "%s: %s", path, strerror(errno));
    uint64_t size = (uint64_t)sb.st_size;
    info->file_bytes = size;
    header_info hdr;
    if (read_header(fd, path, size, info, &hdr, err) != 0) return -1;
    if (hi) *hi = hdr;
    if (to == 0 || to > size) to = size;
    uint64_t pos = from ? from : ST_JOURNAL_HEADER;
    if (pos < ST_JOURNAL_HEADER || pos > to)
        return st_seterr(err, "%s: cannot read from byte %llu (the file has %llu)", path, (unsigned long long)pos,
                         (unsigned long long)to);
    window w = {.fd = fd, .base = 0, .len = 0, .to = to};
    w.cap = to - pos < READ_CHUNK ? (size_t)(to - pos) + 16 : READ_CHUNK;
    w.buf = st_malloc(w.cap);
    if (!w.buf) return st_seterr(err, "%s: out of memory", path);
    uint64_t last = 0;
    int rc = 0;
    while (pos < to) {
        uint64_t rest = to - pos;
        if (rest < 8) break; /* a torn prefix */
        const unsigned char *p = window_get(&w, pos, 8);
        if (!p) {
            rc = st_seterr(err, "%s: read failed at byte %llu: %s", path, (unsigned long long)pos, strerror(errno));
            break;
        }
        uint32_t c = get32(p), len = get32(p + 4);
        int bad = len < FORGET_FIXED || len > ST_JOURNAL_MAX_RECORD - 8;
        if (!bad && 8 + (uint64_t)len > rest) {
            /* Runs past the end: a torn write, unless a length damaged in
             * the middle of the file only makes it look like one. */
            if (!valid_record_after(&w, pos)) break;
            bad = 1;
        }
        if (!bad) {
            p = window_get(&w, pos, 8 + (size_t)len);
            if (!p) {
                rc = st_seterr(err, "%s: read failed at byte %llu: %s", path, (unsigned long long)pos,
                               strerror(errno));
                break;
            }
            bad = crc(p + 4, 4 + (size_t)len) != c;
        }
        if (bad) {
            /* The last record, or followed only by zeros (a file extended
             * but never written), is a torn write; anything else is damage
             * in the middle, which no reader may skip over. */
            if ((len >= FORGET_FIXED && pos + 8 + (uint64_t)len == to) || zeros_to_end(&w, pos)) break;
            rc = st_seterr(err, "%s: the record at byte %llu (after seq %llu) is damaged and %llu bytes follow it; "
                                "nothing after it can be trusted. Keep a copy of the file, then cut it there "
                                "(truncate -s %llu %s) to keep the %llu records before it",
                           path, (unsigned long long)pos, (unsigned long long)last,
                           (unsigned long long)(to - pos), (unsigned long long)pos, path,
                           (unsigned long long)info->records);
            break;
        }
        st_jrecord r;
        const char *why = decode(p + 8, len, &r);
        if (!why && r.seq <= last) why = "sequence number does not increase";
        if (why) {
            rc = st_seterr(err, "%s: the record at byte %llu is malformed (%s); keep a copy of the file and cut it "
                                "there (truncate -s %llu %s)",
                           path, (unsigned long long)pos, why, (unsigned long long)pos, path);
            break;
        }
        last = r.seq;
        if (fn && fn(&r, p, 8 + (size_t)len, ctx, err) != 0) {
            rc = -1;
            break;
        }
        info->records++;
        if (r.type == ST_JREC_EVENT) info->events++;
        else if (r.type == ST_JREC_FORGET) info->forgets++;
        else info->segments++;
        pos += 8 + (uint64_t)len;
    }
    st_free(w.buf);
    info->end = pos;
    info->last_seq = last > hdr.floor ? last : hdr.floor;
    if (rc == 0 && pos < to) {
        info->torn_at = pos;
        info->torn_bytes = to - pos;
    }
    return rc;
}

typedef struct {
    st_jrecord_fn fn;
    void *ctx;
} plain_ctx;

static int plain_cb(const st_jrecord *r, const unsigned char *raw, size_t rawlen, void *vctx, char *err)
{
    (void)raw;
    (void)rawlen;
    plain_ctx *c = vctx;
    return c->fn ? c->fn(r, c->ctx, err) : 0;
}

int st_journal_read_fd(int fd, const char *name, uint64_t from, uint64_t to, st_jrecord_fn fn, void *ctx,
                       st_journal_info *info, char *err)
{
    plain_ctx pc = {fn, ctx};
    return scan_fd(fd, name, from, to, plain_cb, &pc, info, NULL, err);
}

int st_journal_read(const char *path, uint64_t from, uint64_t to, st_jrecord_fn fn, void *ctx, st_journal_info *info,
                    char *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        memset(info, 0, sizeof *info);
        return st_seterr(err, "%s: cannot open the journal: %s", path, strerror(errno));
    }
    plain_ctx pc = {fn, ctx};
    int rc = scan_fd(fd, path, from, to, plain_cb, &pc, info, NULL, err);
    close(fd);
    return rc;
}

/* ---- the open journal ---------------------------------------------------- */

struct st_journal {
    char *path;
    atomic_int policy; /* an st_appendfsync; CONFIG SET changes it while serving */
    uint64_t id;
    int64_t created;
    int fd;
    pthread_mutex_t compact_lock, append_lock, sync_lock, stat_lock;
    atomic_uint_fast64_t written_seq, synced_seq;
    atomic_int broken;
    uint64_t end, records; /* under append_lock */
    uint64_t synced_end, synced_records; /* what the last fdatasync covered; under sync_lock */
    uint64_t rolled_back;  /* records cut off by st_journal_rollback (under append_lock) */
    unsigned char *ebuf;
    size_t ecap;
    /* under stat_lock */
    uint64_t appends, append_failures, fsyncs, fsync_failures, compactions, compaction_failures, last_forget_seq;
    double last_fsync_seconds;
    double synced_at; /* st_now() of the last fdatasync that succeeded (or of the open) */
    char last_error[256];
    st_journal_compaction last_compaction;
    /* the everysec thread */
    pthread_t thread;
    int thread_started, stop;
    pthread_mutex_t thread_lock;
    pthread_cond_t thread_cond;
};

/* Makes a rename or a new file in dir(path) durable. */
static int fsync_dir(const char *path)
{
    char *copy = st_strdup(path);
    if (!copy) return -1;
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    st_free(copy);
    if (dfd < 0) return -1;
    int rc = fsync(dfd);
    close(dfd);
    return rc;
}

static uint64_t random_id(void)
{
    uint64_t id = 0;
    if (getrandom(&id, sizeof id, 0) != (ssize_t)sizeof id) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        id = ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    }
    return id ? id : 1;
}

/* Creates an empty journal at path atomically (temp file, fsync, rename). */
static int create_file(const char *path, char *err)
{
    size_t n = strlen(path) + 32;
    char *tmp = st_malloc(n);
    if (!tmp) return st_seterr(err, "%s: out of memory", path);
    snprintf(tmp, n, "%s.new.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        st_seterr(err, "%s: cannot create the journal: %s", path, strerror(errno));
        st_free(tmp);
        return -1;
    }
    unsigned char h[ST_JOURNAL_HEADER];
    header_encode(h, random_id(), (int64_t)time(NULL), 0);
    int rc = -1;
    if (st_io_write_all(fd, h, sizeof h) != 0 || st_io_fsync(fd) != 0)
        st_seterr(err, "%s: cannot write the journal header: %s", path, strerror(errno));
    else if (rename(tmp, path) != 0)
        st_seterr(err, "%s: cannot create the journal: %s", path, strerror(errno));
    else
        rc = 0;
    close(fd);
    if (rc != 0) unlink(tmp);
    else fsync_dir(path);
    st_free(tmp);
    return rc;
}

static void *everysec_main(void *arg)
{
    st_journal *j = arg;
    pthread_mutex_lock(&j->thread_lock);
    while (!j->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&j->thread_cond, &j->thread_lock, &ts);
        if (j->stop) break;
        pthread_mutex_unlock(&j->thread_lock);
        char err[ST_ERRLEN];
        uint64_t w = atomic_load(&j->written_seq);
        if (atomic_load(&j->policy) == ST_APPENDFSYNC_EVERYSEC && w > atomic_load(&j->synced_seq) &&
            !atomic_load(&j->broken))
            st_journal_sync(j, w, err);
        pthread_mutex_lock(&j->thread_lock);
    }
    pthread_mutex_unlock(&j->thread_lock);
    return NULL;
}

static void journal_free(st_journal *j)
{
    if (j->fd >= 0) close(j->fd);
    pthread_mutex_destroy(&j->compact_lock);
    pthread_mutex_destroy(&j->append_lock);
    pthread_mutex_destroy(&j->sync_lock);
    pthread_mutex_destroy(&j->stat_lock);
    pthread_mutex_destroy(&j->thread_lock);
    pthread_cond_destroy(&j->thread_cond);
    st_free(j->ebuf);
    st_free(j->path);
    st_free(j);
}

/* Removes the temporary files a compaction or a creation cut short by a
 * crash left beside path (path.compact.PID, path.new.PID). Called holding
 * the journal's lock, so no live process is writing them. */
static void remove_stale(const char *path)
{
    char *d = st_strdup(path), *b = st_strdup(path);
    DIR *dir = d && b ? opendir(dirname(d)) : NULL;
    if (dir) {
        const char *base = basename(b);
        size_t bl = strlen(base);
        struct dirent *e;
        while ((e = readdir(dir))) {
            if (strncmp(e->d_name, base, bl) != 0) continue;
            const char *rest = e->d_name + bl;
            if (strncmp(rest, ".compact.", 9) == 0 || strncmp(rest, ".new.", 5) == 0)
                unlinkat(dirfd(dir), e->d_name, 0);
        }
        closedir(dir);
    }
    st_free(d);
    st_free(b);
}

/* Takes the file for this process alone: two servers appending to one
 * journal would interleave their sequence numbers. */
static int lock_file(int fd, const char *path, char *err)
{
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) return 0;
    if (errno == EWOULDBLOCK)
        return st_seterr(err, "%s: the journal is in use by another process (another starling serve?)", path);
    return st_seterr(err, "%s: cannot lock the journal: %s", path, strerror(errno));
}

st_journal *st_journal_open(const char *path, st_appendfsync policy, st_jrecord_fn replay, void *ctx,
                            st_journal_info *info, char *err)
{
    memset(info, 0, sizeof *info);
    st_journal *j = st_calloc(1, sizeof *j);
    char *p = st_strdup(path);
    if (!j || !p) {
        st_free(j);
        st_free(p);
        st_seterr(err, "%s: out of memory", path);
        return NULL;
    }
    j->path = p;
    atomic_init(&j->policy, (int)policy);
    j->fd = -1;
    pthread_mutex_init(&j->compact_lock, NULL);
    pthread_mutex_init(&j->append_lock, NULL);
    pthread_mutex_init(&j->sync_lock, NULL);
    pthread_mutex_init(&j->stat_lock, NULL);
    pthread_mutex_init(&j->thread_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->thread_cond, &ca);
    pthread_condattr_destroy(&ca);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno != ENOENT) {
            st_seterr(err, "%s: %s", path, strerror(errno));
            goto fail;
        }
        if (create_file(path, err) != 0) goto fail;
    }
    j->fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
    if (j->fd < 0) {
        st_seterr(err, "%s: cannot open the journal: %s", path, strerror(errno));
        goto fail;
    }
    if (lock_file(j->fd, path, err) != 0) goto fail;
    remove_stale(path);
    plain_ctx pc = {replay, ctx};
    header_info hi;
    if (scan_fd(j->fd, path, 0, 0, plain_cb, &pc, info, &hi, err) != 0) goto fail;
    if (info->torn_bytes && ftruncate(j->fd, (off_t)info->end) != 0) {
        st_seterr(err, "%s: cannot cut the torn last record off: %s", path, strerror(errno));
        goto fail;
    }
    if (st_io_fsync(j->fd) != 0) {
        st_seterr(err, "%s: fsync failed: %s", path, strerror(errno));
        goto fail;
    }
    j->id = info->id;
    j->created = hi.created;
    j->end = info->end;
    j->records = info->records;
    atomic_init(&j->written_seq, info->last_seq);
    atomic_init(&j->synced_seq, info->last_seq);
    j->synced_end = j->end;
    j->synced_records = j->records;
    j->synced_at = st_now();
    atomic_init(&j->broken, 0);
    /* Started under every policy: CONFIG SET may switch to everysec later. */
    if (pthread_create(&j->thread, NULL, everysec_main, j) != 0) {
        st_seterr(err, "cannot start the journal's fsync thread");
        goto fail;
    }
    j->thread_started = 1;
    return j;
fail:
    journal_free(j);
    return NULL;
}

int st_journal_close(st_journal *j, char *err)
{
    if (!j) return 0;
    if (j->thread_started) {
        pthread_mutex_lock(&j->thread_lock);
        j->stop = 1;
        pthread_cond_signal(&j->thread_cond);
        pthread_mutex_unlock(&j->thread_lock);
        pthread_join(j->thread, NULL);
    }
    int rc = 0;
    if (!atomic_load(&j->broken) && st_io_fsync(j->fd) != 0)
        rc = st_seterr(err, "%s: fsync failed: %s", j->path, strerror(errno));
    journal_free(j);
    return rc;
}

int st_journal_append(st_journal *j, st_jrecord *r, char *err)
{
    size_t size = record_size(r);
    if (size == 0) return st_seterr(err, "the record is longer than a journal takes (%u bytes)", ST_JOURNAL_MAX_RECORD);
    pthread_mutex_lock(&j->append_lock);
    if (atomic_load(&j->broken)) {
        pthread_mutex_unlock(&j->append_lock);
        return st_seterr(err, "the journal is out of service after a failed fsync (restart the server)");
    }
    if (size > j->ecap) {
        unsigned char *b = st_realloc(j->ebuf, size);
        if (!b) {
            pthread_mutex_unlock(&j->append_lock);
            return st_seterr(err, "out of memory");
        }
        j->ebuf = b;
        j->ecap = size;
    }
    uint64_t seq = atomic_load(&j->written_seq) + 1;
    encode(r, seq, j->ebuf, size);
    if (st_io_write_all(j->fd, j->ebuf, size) != 0) {
        int e = errno;
        /* Cut what reached the file back off: a later record must never
         * follow half of this one. */
        int cut = ftruncate(j->fd, (off_t)j->end);
        if (cut != 0) atomic_store(&j->broken, 1);
        pthread_mutex_unlock(&j->append_lock);
        char msg[256];
        snprintf(msg, sizeof msg, "write failed: %s%s", strerror(e),
                 cut != 0 ? " (and the partial record could not be cut off: journal out of service)" : "");
        pthread_mutex_lock(&j->stat_lock);
        j->append_failures++;
        snprintf(j->last_error, sizeof j->last_error, "%.250s", msg);
        pthread_mutex_unlock(&j->stat_lock);
        return st_seterr(err, "%s", msg);
    }
    j->end += size;
    j->records++;
    atomic_store(&j->written_seq, seq);
    pthread_mutex_unlock(&j->append_lock);
    pthread_mutex_lock(&j->stat_lock);
    j->appends++;
    if (r->type == ST_JREC_FORGET) j->last_forget_seq = seq;
    pthread_mutex_unlock(&j->stat_lock);
    r->seq = seq;
    return 0;
}

int st_journal_sync(st_journal *j, uint64_t seq, char *err)
{
    if (atomic_load(&j->synced_seq) >= seq) return 0;
    /* What the fdatasync will cover, read before sync_lock (compaction takes
     * append_lock, then sync_lock); a compaction in between makes every
     * record durable, which the check below sees. */
    pthread_mutex_lock(&j->append_lock);
    uint64_t target = atomic_load(&j->written_seq), tend = j->end, trecords = j->records;
    pthread_mutex_unlock(&j->append_lock);
    pthread_mutex_lock(&j->sync_lock);
    if (atomic_load(&j->synced_seq) >= seq) {
        pthread_mutex_unlock(&j->sync_lock);
        return 0;
    }
    if (atomic_load(&j->broken)) {
        pthread_mutex_unlock(&j->sync_lock);
        return st_seterr(err, "the journal is out of service after a failed fsync (restart the server)");
    }
    /* Every record up to target is wholly in the file: written_seq moves
     * only after a write completes. */
    double t0 = st_now();
    int rc = st_io_fsync(j->fd);
    int e = errno;
    double dt = st_now() - t0;
    if (rc == 0 && target > atomic_load(&j->synced_seq)) {
        j->synced_end = tend;
        j->synced_records = trecords;
        atomic_store(&j->synced_seq, target);
    } else if (rc != 0) {
        atomic_store(&j->broken, 1);
    }
    pthread_mutex_unlock(&j->sync_lock);
    pthread_mutex_lock(&j->stat_lock);
    j->last_fsync_seconds = dt;
    if (rc == 0) {
        j->fsyncs++;
        j->synced_at = t0;
    } else {
        j->fsync_failures++;
        snprintf(j->last_error, sizeof j->last_error, "fsync failed: %s", strerror(e));
    }
    pthread_mutex_unlock(&j->stat_lock);
    if (rc != 0) return st_seterr(err, "fsync failed: %s", strerror(e));
    return 0;
}

int st_journal_commit(st_journal *j, uint64_t seq, char *err)
{
    return atomic_load(&j->policy) == ST_APPENDFSYNC_ALWAYS ? st_journal_sync(j, seq, err) : 0;
}

int st_journal_rollback(st_journal *j, uint64_t *dropped, char *err)
{
    pthread_mutex_lock(&j->append_lock);
    pthread_mutex_lock(&j->sync_lock);
    int rc = 0;
    uint64_t w = atomic_load(&j->written_seq), s = atomic_load(&j->synced_seq);
    *dropped = w > s ? w - s : 0;
    if (j->end > j->synced_end && ftruncate(j->fd, (off_t)j->synced_end) != 0)
        rc = st_seterr(err, "%s: cannot cut the records a failed fsync left off: %s", j->path, strerror(errno));
    if (rc == 0) {
        j->end = j->synced_end;
        j->records = j->synced_records;
        atomic_store(&j->written_seq, s);
        j->rolled_back += *dropped;
    }
    atomic_store(&j->broken, 1);
    pthread_mutex_unlock(&j->sync_lock);
    pthread_mutex_unlock(&j->append_lock);
    return rc;
}

uint64_t st_journal_durable_seq(st_journal *j) { return atomic_load(&j->synced_seq); }
uint64_t st_journal_last_seq(st_journal *j) { return atomic_load(&j->written_seq); }
st_appendfsync st_journal_policy(const st_journal *j) { return (st_appendfsync)atomic_load(&j->policy); }

void st_journal_set_policy(st_journal *j, st_appendfsync p) { atomic_store(&j->policy, (int)p); }
uint64_t st_journal_id(const st_journal *j) { return j->id; }
const char *st_journal_path(const st_journal *j) { return j->path; }

void st_journal_raise_seq(st_journal *j, uint64_t seq)
{
    pthread_mutex_lock(&j->append_lock);
    if (atomic_load(&j->written_seq) < seq) atomic_store(&j->written_seq, seq);
    pthread_mutex_unlock(&j->append_lock);
    pthread_mutex_lock(&j->sync_lock);
    if (atomic_load(&j->synced_seq) < seq) atomic_store(&j->synced_seq, seq);
    pthread_mutex_unlock(&j->sync_lock);
}

uint64_t st_journal_end(st_journal *j)
{
    pthread_mutex_lock(&j->append_lock);
    uint64_t e = j->end;
    pthread_mutex_unlock(&j->append_lock);
    return e;
}

void st_journal_get_status(st_journal *j, st_journal_status *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_lock(&j->append_lock);
    s->bytes = j->end;
    s->records = j->records;
    s->rolled_back = j->rolled_back;
    pthread_mutex_unlock(&j->append_lock);
    s->last_seq = atomic_load(&j->written_seq);
    s->durable_seq = atomic_load(&j->synced_seq);
    s->broken = atomic_load(&j->broken);
    pthread_mutex_lock(&j->stat_lock);
    s->appends = j->appends;
    s->append_failures = j->append_failures;
    s->fsyncs = j->fsyncs;
    s->fsync_failures = j->fsync_failures;
    s->compactions = j->compactions;
    s->compaction_failures = j->compaction_failures;
    s->last_forget_seq = j->last_forget_seq;
    s->last_fsync_seconds = j->last_fsync_seconds;
    s->synced_at = j->synced_at;
    snprintf(s->last_error, sizeof s->last_error, "%s", j->last_error);
    s->last_compaction = j->last_compaction;
    pthread_mutex_unlock(&j->stat_lock);
}

/* ---- compaction ---------------------------------------------------------- */

/* Each forgotten user's last FORGET. */
typedef struct {
    st_idmap users;
    uint64_t *seq;
    uint32_t cap;
} forget_map;

static int collect_forgets(const st_jrecord *r, const unsigned char *raw, size_t rawlen, void *vctx, char *err)
{
    (void)raw;
    (void)rawlen;
    forget_map *f = vctx;
    if (r->type != ST_JREC_FORGET) return 0; /* SEGMENT and SEGVEC records are kept as they are */
    uint32_t u;
    if (st_idmap_intern(&f->users, r->user, r->user_len, &u, NULL, err) != 0) return -1;
    if (u >= f->cap) {
        uint32_t cap = f->cap ? f->cap * 2 : 64;
        uint64_t *s = st_realloc(f->seq, (size_t)cap * sizeof *s);
        if (!s) return st_seterr(err, "out of memory");
        f->seq = s;
        f->cap = cap;
    }
    f->seq[u] = r->seq; /* records come in seq order: the last wins */
    return 0;
}

/* Buffered writes of the kept records into the new file. */
typedef struct {
    int fd;
    unsigned char *buf;
    size_t len, cap;
    const forget_map *forgets;
    uint64_t kept, erased, merged;
} rewrite;

static int rw_flush(rewrite *w)
{
    if (w->len && st_io_write_all(w->fd, w->buf, w->len) != 0) return -1;
    w->len = 0;
    return 0;
}

static int rw_put(rewrite *w, const unsigned char *p, size_t n)
{
    if (w->len + n > w->cap && rw_flush(w) != 0) return -1;
    if (n > w->cap) return st_io_write_all(w->fd, p, n);
    memcpy(w->buf + w->len, p, n);
    w->len += n;
    return 0;
}

static int keep_record(const st_jrecord *r, const unsigned char *raw, size_t rawlen, void *vctx, char *err)
{
    rewrite *w = vctx;
    uint32_t u = r->user ? st_idmap_find(&w->forgets->users, r->user, r->user_len) : ST_NOT_FOUND;
    uint64_t fseq = u == ST_NOT_FOUND ? 0 : w->forgets->seq[u];
    if (r->type == ST_JREC_EVENT && r->seq < fseq) {
        w->erased++;
        return 0;
    }
    if (r->type == ST_JREC_FORGET && r->seq != fseq) {
        w->merged++;
        return 0;
    }
    if (rw_put(w, raw, rawlen) != 0) return st_seterr(err, "write failed: %s", strerror(errno));
    w->kept++;
    return 0;
}

/* Copies bytes [from, to) of src to dst. */
static int copy_range(int src, int dst, uint64_t from, uint64_t to, unsigned char *buf, size_t cap)
{
    while (from < to) {
        size_t n = to - from < cap ? (size_t)(to - from) : cap;
        ssize_t r = pread_full(src, buf, n, from);
        if (r != (ssize_t)n) {
            if (r >= 0) errno = EIO;
            return -1;
        }
        if (st_io_write_all(dst, buf, n) != 0) return -1;
        from += n;
    }
    return 0;
}

int st_journal_compact(st_journal *j, st_journal_compaction *out, char *err)
{
    memset(out, 0, sizeof *out);
    double t0 = st_now();
    pthread_mutex_lock(&j->compact_lock);
    char why[ST_ERRLEN] = "";
    size_t plen = strlen(j->path) + 32;
    char *tmp = st_malloc(plen);
    forget_map f = {0};
    st_idmap_init(&f.users);
    rewrite w = {.fd = -1};
    w.cap = READ_CHUNK;
    w.buf = st_malloc(w.cap);
    int rc = -1, renamed = 0;
    if (!tmp || !w.buf) {
        snprintf(why, sizeof why, "out of memory");
        goto done;
    }
    snprintf(tmp, plen, "%s.compact.%ld", j->path, (long)getpid());

    pthread_mutex_lock(&j->append_lock);
    uint64_t e1 = j->end, records1 = j->records, floor = atomic_load(&j->written_seq);
    pthread_mutex_unlock(&j->append_lock);
    out->bytes_before = e1;
    out->records_before = records1;

    /* Pass 1: each user's last FORGET, up to e1. Pass 2: what to keep. The
     * descriptor is stable: only a compaction replaces it. */
    st_journal_info info;
    if (scan_fd(j->fd, j->path, 0, e1, collect_forgets, &f, &info, NULL, why) != 0) goto done;
    w.forgets = &f;
    w.fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (w.fd < 0) {
        snprintf(why, sizeof why, "%s: cannot create: %s", tmp, strerror(errno));
        goto done;
    }
    if (flock(w.fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(why, sizeof why, "%s: cannot lock: %s", tmp, strerror(errno));
        goto done;
    }
    unsigned char h[ST_JOURNAL_HEADER];
    header_encode(h, j->id, j->created, floor);
    if (rw_put(&w, h, sizeof h) != 0) {
        snprintf(why, sizeof why, "%s: write failed: %s", tmp, strerror(errno));
        goto done;
    }
    if (scan_fd(j->fd, j->path, 0, e1, keep_record, &w, &info, NULL, why) != 0) goto done;
    /* The bulk is made durable before appends are held up. */
    if (rw_flush(&w) != 0 || st_io_fsync(w.fd) != 0) {
        snprintf(why, sizeof why, "%s: write failed: %s", tmp, strerror(errno));
        goto done;
    }

    /* Hold appends: copy what came after e1, make it durable, rename, and
     * switch the descriptor. */
    pthread_mutex_lock(&j->append_lock);
    uint64_t e2 = j->end, records2 = j->records;
    if (copy_range(j->fd, w.fd, e1, e2, w.buf, w.cap) != 0 || st_io_fsync(w.fd) != 0) {
        snprintf(why, sizeof why, "%s: write failed: %s", tmp, strerror(errno));
        pthread_mutex_unlock(&j->append_lock);
        goto done;
    }
    struct stat sb;
    if (fstat(w.fd, &sb) != 0 || rename(tmp, j->path) != 0) {
        snprintf(why, sizeof why, "%s: cannot rename into place: %s", j->path, strerror(errno));
        pthread_mutex_unlock(&j->append_lock);
        goto done;
    }
    renamed = 1;
    if (fsync_dir(j->path) != 0) {
        /* The new file may not survive a crash while the old one stopped
         * receiving records: nothing written from here on could be called
         * durable. */
        atomic_store(&j->broken, 1);
        snprintf(why, sizeof why, "%s: fsync of the directory failed: %s (journal out of service)", j->path,
                 strerror(errno));
    }
    pthread_mutex_lock(&j->sync_lock);
    int old = j->fd;
    j->fd = w.fd;
    w.fd = -1;
    atomic_store(&j->synced_seq, atomic_load(&j->written_seq));
    j->end = j->synced_end = (uint64_t)sb.st_size;
    j->records = j->synced_records = w.kept + (records2 - records1);
    pthread_mutex_unlock(&j->sync_lock);
    pthread_mutex_unlock(&j->append_lock);
    close(old);

    out->bytes_after = (uint64_t)sb.st_size;
    out->records_after = w.kept + (records2 - records1);
    out->events_erased = w.erased;
    out->forgets_merged = w.merged;
    out->through_seq = floor;
    rc = why[0] ? -1 : 0;
done:
    out->seconds = st_now() - t0;
    if (w.fd >= 0) close(w.fd);
    if (!renamed && tmp) unlink(tmp);
    st_free(tmp);
    st_free(w.buf);
    st_idmap_free(&f.users);
    st_free(f.seq);
    pthread_mutex_lock(&j->stat_lock);
    if (rc == 0) {
        j->compactions++;
        j->last_compaction = *out;
    } else {
        j->compaction_failures++;
        snprintf(j->last_error, sizeof j->last_error, "compaction failed: %.200s", why);
    }
    pthread_mutex_unlock(&j->stat_lock);
    pthread_mutex_unlock(&j->compact_lock);
    if (rc != 0 && renamed) return st_seterr(err, "compaction: %s", why);
    if (rc != 0) return st_seterr(err, "compaction failed, the journal is unchanged: %s", why);
    return 0;
}
