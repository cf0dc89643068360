/* journal: the durable, append-only log of online events and erasures.
 *
 * A journal file is a 64-byte header (magic, version, a random journal id
 * that never changes, a sequence floor, a CRC) followed by records. Each
 * record is [u32 crc][u32 len][u64 seq][u8 type][payload]: len counts the
 * bytes after the first eight, the CRC (zlib's crc32) covers everything after
 * itself, seq increases strictly from record to record and is never reused,
 * not even after compaction drops records (the header's floor keeps it
 * rising). Payloads: an EVENT is (user, segment, kind, weight, ts), a FORGET
 * is (user), a SEGMENT (segment, ts, its members: users, a u32 count then
 * each as a string), a SEGVEC (segment, k, k float32: a vector solved elsewhere);
 * strings are u32 length + bytes. docs/FORMAT.md has every byte.
 *
 * Durability, with the meaning Redis gives appendfsync:
 *   always    the record is written and fdatasync'ed before the caller may
 *             acknowledge it (st_journal_sync; callers batch one sync for
 *             all the records of one event-loop iteration: group commit);
 *   everysec  written before acknowledging (a killed process loses nothing;
 *             the kernel has it), fdatasync'ed by a background thread once a
 *             second (a power loss may lose the last second);
 *   no        written before acknowledging, never fdatasync'ed but at close
 *             and compaction (the kernel flushes when it likes, ~30 s).
 *
 * A write that fails (a full disk) is cut back out of the file, so the file
 * never holds half a record followed by more records; the caller reports the
 * error and must not apply the record. A failed fdatasync cannot be retried
 * safely (the kernel may have dropped the pages), so it marks the journal
 * broken: every later append fails until restart.
 *
 * Reading: a torn last record (a write cut short by a crash or power loss)
 * is detected (short, bad CRC, or zero-filled) and dropped, and the reader
 * says where and how many bytes; a damaged record with more records after it
 * is an error that stops the reader (nothing after it can be trusted and
 * nothing is thrown away silently).
 *
 * Compaction rewrites the file while appends continue: the events of a user
 * that were followed by a FORGET of that user are dropped (the erasure then
 * reaches the disk, not just memory), and of each user's FORGETs only the
 * last is kept (it keeps hiding older copies of the user). The rest, and
 * everything appended meanwhile, is copied as it is, fsynced, and renamed
 * over the file.
 *
 * Owns: the file descriptor, an encode buffer, the everysec thread.
 * Never: knows what a record means to a model (overlay.c does), prints.
 * Thread safety: every function may be called from any thread.
 */
#ifndef STARLING_JOURNAL_H
#define STARLING_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#define ST_JOURNAL_MAGIC "STJRNL01"
#define ST_JOURNAL_VERSION 1u
#define ST_JOURNAL_HEADER 64u
/* The largest record a reader accepts; appends of longer ones are refused. */
#define ST_JOURNAL_MAX_RECORD (16u << 20)

typedef enum { ST_JREC_EVENT = 1, ST_JREC_FORGET = 2, ST_JREC_SEGMENT = 3, ST_JREC_SEGVEC = 4 } st_jrec_type;

typedef struct {
    uint64_t seq;     /* set by st_journal_append */
    st_jrec_type type;
    const char *user;    /* EVENT and FORGET */
    uint32_t user_len;
    const char *segment; /* EVENT, SEGMENT and SEGVEC */
    uint32_t segment_len;
    const char *kind;    /* EVENT only; NULL or kind_len 0 = no kind */
    uint32_t kind_len;
    double weight;       /* EVENT: finite, >= 0 */
    double ts;           /* EVENT, SEGMENT: unix seconds */
    /* SEGMENT: nmembers users packed as u32 length + bytes, members_len bytes
     * in all (walk them with st_jrecord_member). SEGVEC: k float32 values,
     * little-endian, at vector (not aligned: read with memcpy). */
    const char *members;
    uint32_t members_len, nmembers;
    const void *vector;
    uint32_t k;
} st_jrecord;

/* The next member of a SEGMENT record from byte *off (start at 0): 1 with
 * *s, *len set and *off advanced, 0 past the last one. Packs members: a
 * record's members are n strings, each a u32 length (little-endian) then
 * its bytes; st_jrecord_pack_size is their size. */
int st_jrecord_member(const st_jrecord *r, uint32_t *off, const char **s, uint32_t *len);
uint64_t st_jrecord_pack_size(uint64_t n, uint64_t bytes);
char *st_jrecord_pack(char *out, const char *s, uint32_t len);

/* Called once per record, in order. The strings point into a buffer valid
 * only during the call. A non-zero return stops the read with that error. */
typedef int (*st_jrecord_fn)(const st_jrecord *r, void *ctx, char *err);

typedef struct {
    uint64_t id;          /* the journal's id */
    uint64_t records, events, forgets, segments; /* complete records read (segments: SEGMENT and SEGVEC) */
    uint64_t last_seq;    /* the highest seq used: max(the header's floor, the last record's) */
    uint64_t end;         /* offset just past the last complete record */
    uint64_t file_bytes;  /* the file's size when read */
    uint64_t torn_at;     /* a torn last record began here (0 = none) ... */
    uint64_t torn_bytes;  /* ... and this many bytes of it were dropped */
} st_journal_info;

typedef enum { ST_APPENDFSYNC_ALWAYS = 0, ST_APPENDFSYNC_EVERYSEC = 1, ST_APPENDFSYNC_NO = 2 } st_appendfsync;

const char *st_appendfsync_name(st_appendfsync p);

/* Reads path from offset `from` (0: just past the header; otherwise a record
 * boundary, such as an earlier info->end) up to `to` (0: the end of the
 * file), calling fn for every complete record. A torn last record is not an
 * error: info says where it starts and how long it is. Errors (-1, err): the
 * file cannot be read, its header is not a journal's, a damaged record has
 * more data after it, a record is malformed, or fn failed. Never modifies
 * the file. Allocates a read buffer. */
int st_journal_read(const char *path, uint64_t from, uint64_t to, st_jrecord_fn fn, void *ctx, st_journal_info *info,
                    char *err);

/* The same over an open descriptor (name is for messages): a reader that
 * passes over a journal twice reads the same file both times, even if a
 * compaction renames another over its path in between. */
int st_journal_read_fd(int fd, const char *name, uint64_t from, uint64_t to, st_jrecord_fn fn, void *ctx,
                       st_journal_info *info, char *err);

typedef struct st_journal st_journal;

/* Opens path for appending, creating it (with a new random id) when it does
 * not exist. Every record is passed to replay (may be NULL) first; a torn
 * last record is cut off the file (reported in info). The file is then
 * fdatasync'ed, so what it holds is durable from here on. everysec starts
 * the background fsync thread. NULL with err set on failure. */
st_journal *st_journal_open(const char *path, st_appendfsync policy, st_jrecord_fn replay, void *ctx,
                            st_journal_info *info, char *err);

/* Flushes (fdatasync) and closes; frees j. -1 with err when the last flush
 * failed (j is freed anyway). */
int st_journal_close(st_journal *j, char *err);

/* Appends r (r->seq is set to the next sequence number). The record is in
 * the kernel when this returns 0 (a killed process does not lose it); under
 * `always` it is durable only after st_journal_sync(j, r->seq). On failure
 * (-1, err), nothing of the record stays in the file and the caller must not
 * act on it. Appends are serialised; the seq order is the file order. */
int st_journal_append(st_journal *j, st_jrecord *r, char *err);

/* Makes every record up to seq durable (fdatasync), unless already done.
 * Concurrent callers share one fdatasync (group commit). -1 with err when
 * it fails; the journal is then broken (appends fail from then on). */
int st_journal_sync(st_journal *j, uint64_t seq, char *err);

/* Makes every record up to seq durable if the file needs it: under
 * `always`, st_journal_sync; otherwise 0 at once. */
int st_journal_commit(st_journal *j, uint64_t seq, char *err);

/* The highest seq known durable, and the highest appended. */
/* After a failed fdatasync: cuts the file back to what the last successful
 * one covered, so that the records it may have lost are gone from the file
 * as from the sequence (last_seq = durable_seq), and leaves the journal out
 * of service (appends refused until a restart). *dropped: records cut. 0, or
 * -1 with err when the file could not be cut (the records stay; a restart
 * would replay them, as after a crash before their acknowledgement). */
int st_journal_rollback(st_journal *j, uint64_t *dropped, char *err);

uint64_t st_journal_durable_seq(st_journal *j);
uint64_t st_journal_last_seq(st_journal *j);
st_appendfsync st_journal_policy(const st_journal *j);
/* Changes the fsync policy while serving (CONFIG SET appendfsync): appends
 * from now on follow p; under everysec the journal's thread fdatasyncs once
 * a second whatever the policy it was opened with. */
void st_journal_set_policy(st_journal *j, st_appendfsync p);
uint64_t st_journal_id(const st_journal *j);
const char *st_journal_path(const st_journal *j);

/* Raises the sequence counter to at least seq (the next record gets more):
 * for a model that says it holds records up to seq of this journal when the
 * file holds fewer (an older copy was restored), so that new records are
 * never taken for ones the model already has. */
void st_journal_raise_seq(st_journal *j, uint64_t seq);

/* Offset just past the last appended record: with st_journal_read, lets a
 * reader catch up on what was appended since it last read (no compaction
 * may run in between; the caller serialises the two). */
uint64_t st_journal_end(st_journal *j);

typedef struct {
    uint64_t bytes_before, bytes_after;
    uint64_t records_before, records_after;
    uint64_t events_erased;  /* events dropped because their user was forgotten after them */
    uint64_t forgets_merged; /* older FORGETs of a user dropped */
    uint64_t through_seq;    /* every FORGET up to this seq has erased its user's earlier events */
    double seconds;
} st_journal_compaction;

/* Compacts the journal as described above while appends continue; they
 * block only while the records appended during the rewrite are copied and
 * the new file is renamed into place. One at a time (a second caller
 * waits). On failure the old file is untouched and still in use. */
int st_journal_compact(st_journal *j, st_journal_compaction *out, char *err);

/* Figures for INFO. */
typedef struct {
    uint64_t bytes;           /* current file size */
    uint64_t records;         /* records in the file */
    uint64_t appends, append_failures, fsyncs, fsync_failures, compactions, compaction_failures;
    uint64_t last_seq, durable_seq;
    uint64_t last_forget_seq; /* the newest FORGET appended (0 = none since open) */
    double last_fsync_seconds;
    double synced_at;         /* st_now() of the last successful fdatasync (or of the open) */
    int broken;               /* a failed fdatasync: appends are refused */
    uint64_t rolled_back;     /* records a failed fdatasync left that st_journal_rollback cut off */
    char last_error[256];     /* the last write, fsync or compaction error; empty when none */
    st_journal_compaction last_compaction;
} st_journal_status;

void st_journal_get_status(st_journal *j, st_journal_status *s);

#endif
