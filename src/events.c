/* events: a streaming, bounded line reader for engagement logs.
 *
 * What it is: zlib's gzread (which passes plain files through unchanged)
 * feeding a fixed buffer that is cut into lines, each split into fields in
 * place. What it is not: a general CSV library; it knows exactly the five
 * columns of an event and says precisely what is wrong with a line.
 */
#include "events.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "util.h"

#define MAX_FIELDS 5
#define DEFAULT_MAX_LINE (1u << 20)

void st_read_opts_default(st_read_opts *o)
{
    memset(o, 0, sizeof *o);
    o->max_line = DEFAULT_MAX_LINE;
    o->header = -1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* Reads exactly n digits at *p; -1 when they are not there. */
static int read_digits(const char **p, const char *end, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (*p >= end || !isdigit((unsigned char)**p)) return -1;
        v = v * 10 + (**p - '0');
        (*p)++;
    }
    return v;
}

int st_parse_timestamp(const char *s, size_t len, double *out)
{
    const char *p = s, *end = s + len;
    if (len == 0) return -1;
    /* ISO 8601 when it looks like YYYY-... */
    if (len >= 10 && s[4] == '-') {
        int y = read_digits(&p, end, 4);
        if (y < 0 || p >= end || *p++ != '-') return -1;
        int mo = read_digits(&p, end, 2);
        if (mo < 1 || mo > 12 || p >= end || *p++ != '-') return -1;
        int d = read_digits(&p, end, 2);
        static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        if (d < 1 || d > mdays[mo - 1]) return -1;
        double t = (double)days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400.0;
        if (p < end && (*p == 'T' || *p == ' ')) {
            p++;
            int hh = read_digits(&p, end, 2);
            if (hh < 0 || hh > 23 || p >= end || *p++ != ':') return -1;
            int mm = read_digits(&p, end, 2);
            if (mm < 0 || mm > 59) return -1;
            int ss = 0;
            double frac = 0;
            if (p < end && *p == ':') {
                p++;
                ss = read_digits(&p, end, 2);
                if (ss < 0 || ss > 60) return -1;
                if (p < end && *p == '.') {
                    p++;
                    double scale = 0.1;
                    if (p >= end || !isdigit((unsigned char)*p)) return -1;
                    while (p < end && isdigit((unsigned char)*p)) {
                        frac += (*p - '0') * scale;
                        scale *= 0.1;
                        p++;
                    }
                }
            }
            t += hh * 3600.0 + mm * 60.0 + ss + frac;
            if (p < end && *p == 'Z') {
                p++;
            } else if (p < end && (*p == '+' || *p == '-')) {
                int sign = *p++ == '+' ? 1 : -1;
                int oh = read_digits(&p, end, 2);
                if (oh < 0 || oh > 23) return -1;
                int om = 0;
                if (p < end) {
                    if (*p == ':') p++;
                    om = read_digits(&p, end, 2);
                    if (om < 0 || om > 59) return -1;
                }
                t -= sign * (oh * 3600.0 + om * 60.0);
            }
        }
        if (p != end) return -1;
        *out = t;
        return 0;
    }
    char tmp[64];
    if (len >= sizeof tmp) return -1;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    double v;
    if (st_parse_double(tmp, &v) != 0) return -1;
    *out = v;
    return 0;
}

static int is_space(char c) { return c == ' ' || c == '\t'; }

/* Trims spaces (not tabs, which may be separators) around a field. */
static void trim_spaces(char **f, size_t *n)
{
    while (*n && (*f)[0] == ' ') {
        (*f)++;
        (*n)--;
    }
    while (*n && (*f)[*n - 1] == ' ') (*n)--;
}

/* Splits line into at most MAX_FIELDS+1 fields (one more to detect too many).
 * Returns the number of fields, or -1 with a reason. */
static int split_fields(char *line, size_t len, char sep, char **fields, size_t *flen, char *why, size_t whylen)
{
    int nf = 0;
    char *p = line, *end = line + len;
    if (sep == ' ') {
        while (p < end) {
            while (p < end && is_space(*p)) p++;
            if (p >= end) break;
            char *start = p;
            while (p < end && !is_space(*p)) p++;
            if (nf <= MAX_FIELDS) {
                fields[nf] = start;
                flen[nf] = (size_t)(p - start);
            }
            nf++;
        }
        return nf;
    }
    for (;;) {
        char *start = p;
        size_t n;
        if (sep == ',' && p < end && (*p == '"' || (*p == ' ' && memchr(p, '"', (size_t)(end - p))))) {
            char *q = p;
            while (q < end && *q == ' ') q++;
            if (q < end && *q == '"') {
                /* Quoted field: unquote in place, "" becomes ". */
                char *w = q;
                start = q;
                q++;
                int closed = 0;
                while (q < end) {
                    if (*q == '"') {
                        if (q + 1 < end && q[1] == '"') {
                            *w++ = '"';
                            q += 2;
                            continue;
                        }
                        closed = 1;
                        q++;
                        break;
                    }
                    *w++ = *q++;
                }
                if (!closed) {
                    snprintf(why, whylen, "unterminated quote in field %d", nf + 1);
                    return -1;
                }
                n = (size_t)(w - start);
                while (q < end && *q == ' ') q++;
                if (q < end && *q != sep) {
                    snprintf(why, whylen, "text after closing quote in field %d", nf + 1);
                    return -1;
                }
                p = q;
                if (nf <= MAX_FIELDS) {
                    fields[nf] = start;
                    flen[nf] = n;
                }
                nf++;
                if (p >= end) break;
                p++; /* past the separator */
                continue;
            }
        }
        char *s = memchr(p, sep, (size_t)(end - p));
        char *fe = s ? s : end;
        char *f = start;
        n = (size_t)(fe - start);
        if (sep == ',') trim_spaces(&f, &n);
        if (nf <= MAX_FIELDS) {
            fields[nf] = f;
            flen[nf] = n;
        }
        nf++;
        if (!s) break;
        p = s + 1;
    }
    return nf;
}

static int field_number(char *f, size_t n, double *out)
{
    char tmp[128];
    while (n && f[0] == ' ') {
        f++;
        n--;
    }
    while (n && f[n - 1] == ' ') n--;
    if (n == 0 || n >= sizeof tmp) return -1;
    memcpy(tmp, f, n);
    tmp[n] = '\0';
    char *end;
    errno = 0;
    double v = strtod(tmp, &end);
    if (*end) return -1;
    if (errno == ERANGE && fabs(v) < 1.0) v = 0.0; /* underflow: a tiny weight is zero */
    *out = v;
    return 0;
}

/* Copies at most 40 bytes of a field for a message, replacing control bytes. */
static void quote_for_message(const char *f, size_t n, char *out, size_t outlen)
{
    size_t j = 0;
    for (size_t i = 0; i < n && j + 4 < outlen && i < 40; i++)
        out[j++] = (unsigned char)f[i] < 32 ? '?' : f[i];
    if (n > 40 && j + 4 < outlen) {
        out[j++] = '.';
        out[j++] = '.';
        out[j++] = '.';
    }
    out[j] = '\0';
}

int st_events_parse_line(char *line, size_t len, char sep, st_event *ev, char *why, size_t whylen)
{
    char *fields[MAX_FIELDS + 1];
    size_t flen[MAX_FIELDS + 1];
    while (len && (line[len - 1] == '\r' || line[len - 1] == '\n')) len--;
    size_t k = 0;
    while (k < len && is_space(line[k])) k++;
    if (k == len) return 1;
    int nf = split_fields(line, len, sep, fields, flen, why, whylen);
    if (nf < 0) return -1;
    if (nf < 2) {
        snprintf(why, whylen, "missing segment field (need at least user and segment, got %d field)", nf);
        return -1;
    }
    if (nf > MAX_FIELDS) {
        snprintf(why, whylen, "too many fields (%d; at most 5: user, segment, weight, kind, timestamp)", nf);
        return -1;
    }
    if (flen[0] == 0) {
        snprintf(why, whylen, "empty user id");
        return -1;
    }
    if (flen[1] == 0) {
        snprintf(why, whylen, "empty segment id");
        return -1;
    }
    if (memchr(fields[0], '\0', flen[0]) || memchr(fields[1], '\0', flen[1])) {
        snprintf(why, whylen, "id contains a NUL byte");
        return -1;
    }
    memset(ev, 0, sizeof *ev);
    ev->user = fields[0];
    ev->user_len = flen[0];
    ev->segment = fields[1];
    ev->segment_len = flen[1];
    ev->weight = 1.0;
    char q[64];
    if (nf >= 3 && flen[2] > 0) {
        double w;
        if (field_number(fields[2], flen[2], &w) != 0) {
            quote_for_message(fields[2], flen[2], q, sizeof q);
            snprintf(why, whylen, "bad weight '%s' (not a number)", q);
            return -1;
        }
        if (!isfinite(w)) {
            snprintf(why, whylen, "weight is %s (must be finite)", isnan(w) ? "NaN" : "infinite");
            return -1;
        }
        if (w < 0) {
            snprintf(why, whylen, "negative weight %g", w);
            return -1;
        }
        ev->weight = w;
    }
    if (nf >= 4 && flen[3] > 0) {
        ev->kind = fields[3];
        ev->kind_len = flen[3];
    }
    if (nf >= 5 && flen[4] > 0) {
        char *f = fields[4];
        size_t n = flen[4];
        trim_spaces(&f, &n);
        if (st_parse_timestamp(f, n, &ev->ts) != 0) {
            quote_for_message(fields[4], flen[4], q, sizeof q);
            snprintf(why, whylen, "bad timestamp '%s' (unix seconds or ISO 8601)", q);
            return -1;
        }
        ev->has_ts = 1;
    }
    return 0;
}

static char detect_sep(const char *line, size_t len)
{
    if (memchr(line, '\t', len)) return '\t';
    if (memchr(line, ',', len)) return ',';
    return ' ';
}

static int looks_like_header(char *line, size_t len, char sep)
{
    char *fields[MAX_FIELDS + 1];
    size_t flen[MAX_FIELDS + 1];
    char why[128];
    char copy[512];
    if (len >= sizeof copy) return 0;
    memcpy(copy, line, len);
    while (len && (copy[len - 1] == '\r')) len--;
    int nf = split_fields(copy, len, sep, fields, flen, why, sizeof why);
    if (nf < 2) return 0;
    static const char *names[] = {"user", "userid", "user_id", "uid", "users", "user id", NULL};
    for (int i = 0; names[i]; i++) {
        if (flen[0] == strlen(names[i]) && strncasecmp(fields[0], names[i], flen[0]) == 0) return 1;
    }
    double w;
    if (nf >= 3 && flen[2] > 0 && field_number(fields[2], flen[2], &w) != 0) return 1;
    return 0;
}

/* 1 + the number of newlines before byte offset `at` of path: the line number
 * of the line starting there, for messages from a read that began mid-file.
 * Only called on error paths. 0 when it cannot be counted. */
static uint64_t line_number_at(const char *path, uint64_t at)
{
    gzFile gz = gzopen(path, "rb");
    if (!gz) return 0;
    char buf[65536];
    uint64_t seen = 0, lines = 1;
    while (seen < at) {
        unsigned want = at - seen < sizeof buf ? (unsigned)(at - seen) : (unsigned)sizeof buf;
        int n = gzread(gz, buf, want);
        if (n <= 0) break;
        for (int i = 0; i < n; i++) lines += buf[i] == '\n';
        seen += (uint64_t)n;
    }
    gzclose(gz);
    return lines;
}

typedef struct {
    const char *path, *name;
    const st_read_opts *o;
    st_read_stats *stats;
    char *err;
} reader_t;

/* Records a malformed line: an error (stop mode, returns -1) or a skip. */
static int bad_line(reader_t *r, uint64_t lineno, uint64_t offset, const char *why)
{
    uint64_t shown = r->o->begin > 0 ? line_number_at(r->path, offset) : lineno;
    if (!r->o->skip_errors) return st_seterr(r->err, "%s:%llu: %s", r->name, (unsigned long long)shown, why);
    if (r->stats->skipped < ST_READ_KEEP_REASONS)
        snprintf(r->stats->reasons[r->stats->skipped], sizeof r->stats->reasons[0], "%s:%llu: %s", r->name,
                 (unsigned long long)shown, why);
    r->stats->skipped++;
    return 0;
}

/* The input as a sequence of lines: gzip or not, a byte range of it
 * (o->begin, o->end), lines longer than max_line reported and skipped. */
typedef struct {
    reader_t *rd;
    gzFile gz;
    char *buf;
    size_t cap, len, pos, max_line;
    uint64_t base;   /* offset in the (uncompressed) input of buf[0] */
    uint64_t lineno; /* lines counted (reported in errors) */
    int eof, discarding;
} lines_t;

static int lines_open(lines_t *ls, reader_t *rd, size_t max_line)
{
    const char *path = rd->path, *name = rd->name;
    memset(ls, 0, sizeof *ls);
    ls->rd = rd;
    ls->max_line = max_line;
    if (strcmp(path, "-") == 0) {
        int fd = dup(STDIN_FILENO);
        if (fd < 0) return st_seterr(rd->err, "%s: %s", name, strerror(errno));
        ls->gz = gzdopen(fd, "rb");
        if (!ls->gz) close(fd);
    } else {
        ls->gz = gzopen(path, "rb");
    }
    if (!ls->gz) return st_seterr(rd->err, "%s: cannot open: %s", name, errno ? strerror(errno) : "out of memory");
    gzbuffer(ls->gz, 1u << 15);
    /* Room for two of the longest lines, and at least 64 KiB. */
    ls->cap = max_line < (32u << 10) ? (64u << 10) : 2 * max_line;
    ls->buf = st_malloc(ls->cap + 1);
    if (!ls->buf) {
        gzclose(ls->gz);
        return st_seterr(rd->err, "%s: out of memory", name);
    }
    if (rd->o->begin > 0) {
        /* A range starting mid-file: its first line is the one after the
         * newline before `begin` (a line belongs to the range of its first byte). */
        char c;
        if (gzseek(ls->gz, (z_off_t)(rd->o->begin - 1), SEEK_SET) < 0 || gzread(ls->gz, &c, 1) != 1)
            ls->eof = 1;
        else
            ls->discarding = c != '\n';
        ls->base = rd->o->begin;
    }
    return 0;
}

/* Keeps the partial line, reads more. 1 to go on, 0 at the range's end, -1
 * on a read error or a malformed line in stop mode. */
static int lines_refill(lines_t *ls)
{
    reader_t *rd = ls->rd;
    if (ls->pos > 0) {
        memmove(ls->buf, ls->buf + ls->pos, ls->len - ls->pos);
        ls->len -= ls->pos;
        ls->base += ls->pos;
        ls->pos = 0;
    }
    if (rd->o->end && ls->base >= rd->o->end && !ls->discarding) return 0;
    if (ls->len >= ls->max_line) {
        /* The line is already too long whatever follows. */
        if (!ls->discarding) {
            ls->lineno++;
            rd->stats->lines++;
            char why[200];
            snprintf(why, sizeof why, "line longer than %zu bytes", ls->max_line);
            if (bad_line(rd, ls->lineno, ls->base, why) != 0) return -1;
            ls->discarding = 2; /* an over-long line, counted */
        }
        ls->base += ls->len;
        ls->len = 0;
    }
    int n = gzread(ls->gz, ls->buf + ls->len, (unsigned)(ls->cap - ls->len));
    int zerr;
    if (n < 0) {
        const char *msg = gzerror(ls->gz, &zerr);
        return st_seterr(rd->err, "%s: read error: %s", rd->name, zerr == Z_ERRNO ? strerror(errno) : msg);
    }
    if (n == 0) {
        const char *msg = gzerror(ls->gz, &zerr);
        if (zerr != Z_OK && zerr != Z_STREAM_END)
            return st_seterr(rd->err, "%s: read error: %s", rd->name, zerr == Z_ERRNO ? strerror(errno) : msg);
        ls->eof = 1;
    }
    ls->len += (size_t)n;
    return 1;
}

/* The next whole line of the range (NUL-terminated in place, without its
 * newline), counted. 1 with *line, *llen and *at set; 0 at the end; -1 on
 * an error. Lines over max_line are reported and skipped here. */
static int lines_next(lines_t *ls, char **line, size_t *llen, uint64_t *at)
{
    reader_t *rd = ls->rd;
    for (;;) {
        char *nl = ls->pos < ls->len ? memchr(ls->buf + ls->pos, '\n', ls->len - ls->pos) : NULL;
        if (!nl && !ls->eof) {
            int r = lines_refill(ls);
            if (r <= 0) return r;
            continue;
        }
        size_t end = nl ? (size_t)(nl - ls->buf) : ls->len;
        if (!nl && ls->pos >= ls->len) return 0; /* eof and nothing left */
        *line = ls->buf + ls->pos;
        *at = ls->base + ls->pos;
        *llen = end - ls->pos;
        ls->pos = nl ? end + 1 : ls->len;
        if (ls->discarding) {
            /* The tail of an over-long line, or the part of a line that
             * belongs to the previous range. */
            ls->discarding = 0;
            continue;
        }
        if (rd->o->end && *at >= rd->o->end) return 0;
        ls->lineno++;
        rd->stats->lines++;
        (*line)[*llen] = '\0';
        if (*llen + 1 > ls->max_line) {
            char why[200];
            snprintf(why, sizeof why, "line longer than %zu bytes", ls->max_line);
            if (bad_line(rd, ls->lineno, *at, why) != 0) return -1;
            continue;
        }
        return 1;
    }
}

static int blank(const char *line, size_t llen)
{
    size_t k = 0;
    while (k < llen && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r')) k++;
    return k == llen;
}

/* One data line: parsed and handed to fn, or reported. 0 or -1 (stop). */
static int handle_line(lines_t *ls, char *line, size_t llen, uint64_t at, char sep, st_event_fn fn, void *ctx)
{
    reader_t *rd = ls->rd;
    char why[200];
    st_event ev;
    int r = st_events_parse_line(line, llen, sep, &ev, why, sizeof why);
    if (r == 1) return 0;
    if (r < 0) return bad_line(rd, ls->lineno, at, why);
    /* Terminate the ids in place (the separator after them is no longer needed). */
    ((char *)ev.user)[ev.user_len] = '\0';
    ((char *)ev.segment)[ev.segment_len] = '\0';
    if (ev.kind) ((char *)ev.kind)[ev.kind_len] = '\0';
    ev.file = rd->name;
    ev.line = rd->o->begin > 0 ? 0 : ls->lineno;
    if (fn(&ev, ctx, rd->err) != 0) return -1;
    rd->stats->events++;
    return 0;
}

int st_events_read(const char *path, const st_read_opts *o, st_event_fn fn, void *ctx,
                   st_read_stats *stats, char *err)
{
    size_t max_line = o->max_line ? o->max_line : DEFAULT_MAX_LINE;
    const char *name = strcmp(path, "-") == 0 ? "<stdin>" : path;
    reader_t rd = {path, name, o, stats, err};
    lines_t ls;
    if (lines_open(&ls, &rd, max_line) != 0) return -1;
    int rc = 0, first = 1;
    char sep = ',', *line;
    size_t llen;
    uint64_t at, dataline = 0;
    for (;;) {
        int r = lines_next(&ls, &line, &llen, &at);
        if (r <= 0) {
            rc = r;
            break;
        }
        if (first) {
            if (blank(line, llen)) continue;
            first = 0;
            sep = detect_sep(line, llen);
            if (o->begin == 0 && (o->header == 1 || (o->header < 0 && looks_like_header(line, llen, sep)))) continue;
        }
        if (o->stride > 1) {
            if (blank(line, llen)) continue;
            if (dataline++ % o->stride != o->phase) continue;
        }
        if (handle_line(&ls, line, llen, at, sep, fn, ctx) != 0) {
            rc = -1;
            break;
        }
    }
    st_free(ls.buf);
    int zc = gzclose(ls.gz);
    if (rc == 0 && zc != Z_OK && !(o->end && zc == Z_BUF_ERROR))
        rc = st_seterr(err, "%s: error closing the input (truncated gzip?)", name);
    return rc;
}
