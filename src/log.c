/* log: log lines in Redis's format (log.h). */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static int log_level = ST_LOG_NOTICE;
static FILE *log_file;
static char log_path[4096];

int st_log_open(int level, const char *path, char *err)
{
    log_level = level;
    if (!path) return 0;
    FILE *f = fopen(path, "a");
    if (!f) return st_seterr(err, "--logfile %s: %s", path, strerror(errno));
    log_file = f;
    snprintf(log_path, sizeof log_path, "%s", path);
    return 0;
}

/* The new file takes the old one's descriptor (dup2 is atomic), so a thread
 * writing meanwhile writes whole lines to one file or the other, and the
 * FILE that every thread uses never changes. */
int st_log_reopen(char *err)
{
    if (!log_file) return 0;
    FILE *f = fopen(log_path, "a");
    if (!f) return st_seterr(err, "reopening the log %s: %s", log_path, strerror(errno));
    fflush(log_file);
    int rc = dup2(fileno(f), fileno(log_file)) < 0 ? st_seterr(err, "reopening the log %s: %s", log_path,
                                                                 strerror(errno))
                                                   : 1;
    fclose(f);
    return rc;
}

void st_log_close(void)
{
    if (log_file) {
        fclose(log_file);
        log_file = NULL;
    }
}

void st_log(int level, const char *fmt, ...)
{
    if (level < log_level) return;
    FILE *f = log_file ? log_file : stderr;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    char when[64];
    strftime(when, sizeof when, "%d %b %Y %H:%M:%S", &tm);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    static const char marks[] = ".-*#";
    /* One fprintf per line: stdio locks the stream, so lines never interleave. */
    fprintf(f, "%d:M %s.%03d %c %s\n", (int)getpid(), when, (int)(ts.tv_nsec / 1000000), marks[level & 3], msg);
    fflush(f);
}
