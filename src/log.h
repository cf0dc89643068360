/* log: the server's log lines, Redis's format: "pid:M date time mark msg".
 *
 * A leaf: every part of the serve layer may log; it depends on nothing but
 * libc. One fprintf per line (stdio locks the stream), so lines from many
 * threads never interleave. Before st_log_open, lines go to stderr at the
 * notice level.
 */
#ifndef STARLING_LOG_H
#define STARLING_LOG_H

enum { ST_LOG_DEBUG = 0, ST_LOG_VERBOSE = 1, ST_LOG_NOTICE = 2, ST_LOG_WARNING = 3 };

/* Sets the level and, when path is not NULL, appends to that file instead
 * of stderr. 0, or -1 with err naming the file. */
int st_log_open(int level, const char *path, char *err);

/* Reopens the file st_log_open opened, by its path (after logrotate renamed
 * it, lines go to a new file of that name). 1 when reopened, 0 when lines go
 * to stderr (nothing to reopen), -1 with err when the file cannot be opened
 * (lines keep going to the old one). Thread-safe against st_log. */
int st_log_reopen(char *err);

/* Closes the file st_log_open opened (lines go to stderr again). */
void st_log_close(void);

/* Writes one log line if level >= the configured level. Thread-safe. */
void st_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
