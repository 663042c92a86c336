/*
 * util/log.c — leveled messages prefixed with the program name. The
 * configuration is process-wide and set by main() before threads start.
 */
#include "util/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static struct {
    const char *progname;
    enum log_level level;
    FILE *out;                  /* NULL = stderr */
    pthread_mutex_t lock;
} log_cfg = { "diskdm", LOG_WARN, NULL, PTHREAD_MUTEX_INITIALIZER };

void log_init(const char *progname, enum log_level level)
{
    const char *slash = strrchr(progname, '/');
    log_cfg.progname = slash ? slash + 1 : progname;
    log_cfg.level = level;
}

int log_set_file(const char *path)
{
    FILE *f = fopen(path, "ae");
    if (!f) {
        return -errno;
    }
    setvbuf(f, NULL, _IOLBF, 0);
    if (log_cfg.out) {
        fclose(log_cfg.out);
    }
    log_cfg.out = f;
    return 0;
}

const char *log_progname(void)
{
    return log_cfg.progname;
}

bool log_enabled(enum log_level level)
{
    return level <= log_cfg.level;
}

void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
    static const char *const tag[] = { "error", "warning", "info", "debug" };
    if (!log_enabled(level)) {
        return;
    }
    FILE *out = log_cfg.out ? log_cfg.out : stderr;
    pthread_mutex_lock(&log_cfg.lock);
    if (log_cfg.out) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        fprintf(out, "%lld.%03ld ", (long long)ts.tv_sec, ts.tv_nsec / 1000000);
    }
    fprintf(out, "%s: %s: ", log_cfg.progname, tag[level]);
    vfprintf(out, fmt, ap);
    fputc('\n', out);
    pthread_mutex_unlock(&log_cfg.lock);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}
