/* jinput: the journal's rules for the offline tools (jinput.h). */
#include "jinput.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "journal.h"
#include "util.h"

static int collect_forget(const st_jrecord *r, void *ctx, char *err)
{
    st_forgotten *f = ctx;
    if (r->type != ST_JREC_FORGET) return 0;
    uint32_t u;
    if (st_idmap_intern(&f->users, r->user, r->user_len, &u, NULL, err) != 0) return -1;
    if (u >= f->cap) {
        uint32_t cap = f->cap ? f->cap * 2 : 256;
        uint64_t *q = st_realloc(f->seq, (size_t)cap * sizeof *q);
        if (!q) return st_seterr(err, "out of memory");
        f->seq = q;
        f->cap = cap;
    }
    f->seq[u] = r->seq;
    return 0;
}

void st_jinput_forgotten_free(st_forgotten *f)
{
    st_idmap_free(&f->users);
    st_free(f->seq);
    memset(f, 0, sizeof *f);
}

int st_jinput_is_forgotten(const st_forgotten *f, const char *user, size_t len)
{
    return st_idmap_find(&f->users, user, len) != ST_NOT_FOUND;
}

static void note_info(st_jinput_use *use, const st_journal_info *info, const st_forgotten *f)
{
    use->id = info->id;
    use->last_seq = info->last_seq;
    use->events = info->events;
    use->forgets = info->forgets;
    use->torn_bytes = info->torn_bytes;
    use->forgotten = f->users.count;
}

int st_jinput_forgotten(const char *path, st_forgotten *f, st_jinput_use *use, char *err)
{
    memset(f, 0, sizeof *f);
    st_idmap_init(&f->users);
    st_journal_info info;
    if (st_journal_read(path, 0, 0, collect_forget, f, &info, err) != 0) {
        st_jinput_forgotten_free(f);
        return -1;
    }
    if (use) {
        memset(use, 0, sizeof *use);
        note_info(use, &info, f);
    }
    return 0;
}

typedef struct {
    st_builder *b;
    const st_forgotten *f;
    st_jinput_use *use;
    const char *path;
} feed;

/* An input event is dropped when the journal forgot its user. */
static int add_input_event(const st_event *ev, void *ctx, char *err)
{
    feed *jf = ctx;
    if (st_jinput_is_forgotten(jf->f, ev->user, ev->user_len)) {
        jf->use->dropped++;
        return 0;
    }
    return st_builder_add(jf->b, ev, err);
}

/* A journal event counts unless a later FORGET of its user erased it. */
static int add_journal_event(const st_jrecord *r, void *ctx, char *err)
{
    feed *jf = ctx;
    if (r->type != ST_JREC_EVENT) return 0;
    uint32_t u = st_idmap_find(&jf->f->users, r->user, r->user_len);
    if (u != ST_NOT_FOUND && r->seq < jf->f->seq[u]) {
        jf->use->erased++;
        return 0;
    }
    st_event ev = {.user = r->user,
                   .user_len = r->user_len,
                   .segment = r->segment,
                   .segment_len = r->segment_len,
                   .weight = r->weight,
                   .kind = r->kind,
                   .kind_len = r->kind ? r->kind_len : 0,
                   .ts = r->ts,
                   .has_ts = 1,
                   .file = jf->path,
                   .line = r->seq};
    jf->use->added++;
    return st_builder_add(jf->b, &ev, err);
}

int st_jinput_interactions(const char *journal, char **files, int nfiles, const st_read_opts *ro, const st_weighting *w,
                           st_interactions *x, st_read_stats *stats, st_jinput_use *use, char *err)
{
    memset(x, 0, sizeof *x);
    memset(use, 0, sizeof *use);
    st_forgotten f = {0};
    st_idmap_init(&f.users);
    st_builder *b = NULL;
    int rc = -1;
    int fd = open(journal, O_RDONLY | O_CLOEXEC);
    st_journal_info info, again;
    if (fd < 0) {
        st_seterr(err, "--journal %s: %s", journal, strerror(errno));
        goto done;
    }
    if (st_journal_read_fd(fd, journal, 0, 0, collect_forget, &f, &info, err) != 0) goto done;
    note_info(use, &info, &f);
    b = st_builder_new(w, err);
    if (!b) goto done;
    feed jf = {b, &f, use, journal};
    for (int i = 0; i < nfiles; i++)
        if (st_events_read(files[i], ro, add_input_event, &jf, stats, err) != 0) goto done;
    if (st_journal_read_fd(fd, journal, 0, info.end, add_journal_event, &jf, &again, err) != 0) goto done;
    char why[ST_ERRLEN];
    st_builder *bb = b;
    b = NULL;
    if (st_builder_finish(bb, x, why) != 0) {
        st_seterr(err, "%s (event files and journal together)", why);
        goto done;
    }
    rc = 0;
done:
    if (fd >= 0) close(fd);
    st_builder_free(b);
    st_jinput_forgotten_free(&f);
    return rc;
}
