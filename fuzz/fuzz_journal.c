/* fuzz_journal: the journal reader on any bytes, whole and from the first
 * byte range the input names; a file it reads must then open (its torn tail
 * cut off), take an append, compact, and read back as the same records plus
 * the new one, minus what compaction may drop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "journal.h"
#include "memfile.h"
#include "util.h"

static int count(const st_jrecord *r, void *ctx, char *err)
{
    (void)err;
    /* Touch what the reader hands out. */
    uint64_t *n = ctx;
    *n += r->user_len + r->segment_len + (r->kind ? r->kind_len : 0) + (uint64_t)(r->weight >= 0) + r->seq;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], err[ST_ERRLEN];
    int fd = memfile(data, size, path, sizeof path);
    if (fd < 0) return 0;
    st_journal_info info, part;
    uint64_t n = 0;
    int whole = st_journal_read(path, 0, 0, count, &n, &info, err);
    if (size > 80) {
        uint64_t from = 64 + data[64] % (size - 64), to = from + data[65] % (size - from + 1);
        st_journal_read(path, from, to, count, &n, &part, err);
    }
    close(fd);
    if (whole != 0) return 0;

    /* A readable journal: open it for real (in a temporary directory),
     * append, compact, read back. */
    char dir[] = "/tmp/fuzz-journal-XXXXXX", file[64];
    if (!mkdtemp(dir)) return 0;
    snprintf(file, sizeof file, "%s/j", dir);
    FILE *f = fopen(file, "wb");
    if (f) {
        fwrite(data, 1, size, f);
        fclose(f);
    }
    st_journal_info opened;
    st_journal *j = f ? st_journal_open(file, ST_APPENDFSYNC_NO, count, &n, &opened, err) : NULL;
    if (j) {
        if (opened.records != info.records || opened.end != info.end) abort();
        st_jrecord r = {.type = ST_JREC_EVENT, .user = "u", .user_len = 1, .segment = "s", .segment_len = 1,
                        .weight = 1, .ts = 0};
        if (st_journal_append(j, &r, err) != 0 || r.seq != opened.last_seq + 1) abort();
        st_journal_compaction c;
        if (st_journal_compact(j, &c, err) != 0) abort();
        st_journal_close(j, err);
        st_journal_info after;
        if (st_journal_read(file, 0, 0, count, &n, &after, err) != 0 || after.records != c.records_after ||
            after.last_seq != r.seq || after.torn_bytes != 0)
            abort();
    }
    unlink(file);
    rmdir(dir);
    return 0;
}
