/* log: the server's log lines, Redis's format ("pid:M date time.ms mark
 * message"), to stderr or to a file. Thread-safe: a line is written by one
 * fprintf, which stdio locks, so lines never interleave.
 */
#ifndef STARLING_LOG_H
#define STARLING_LOG_H

enum { ST_LOG_DEBUG = 0, ST_LOG_VERBOSE = 1, ST_LOG_NOTICE = 2, ST_LOG_WARNING = 3 };

/* Sets the level below which lines are dropped and, when path is not NULL,
 * appends to that file instead of stderr. 0, or -1 with err set. Call
 * before any thread logs. */
int st_log_open(int level, const char *path, char *err);

/* Closes the file st_log_open opened (back to stderr). */
void st_log_close(void);

/* Writes one log line if level >= the configured level. Thread-safe. */
void st_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
