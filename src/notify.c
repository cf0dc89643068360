/* notify: sd_notify's datagram, written here (notify.h).
 *
 * The protocol is documented as stable (systemd's sd_notify(3) and "Interface
 * Portability and Stability"): a datagram on the AF_UNIX socket named by
 * NOTIFY_SOCKET. A name beginning with '@' is in the abstract namespace: the
 * '@' becomes a NUL byte and the address length covers exactly the name. A
 * socket per message: the messages are few (start, reloads, stop) and this
 * keeps no state that a reload or a fork could leave stale.
 */
#include "notify.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int st_notify(const char *state)
{
    const char *name = getenv("NOTIFY_SOCKET");
    if (!name || !*name) return 0;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t len = strlen(name);
    if ((name[0] != '/' && name[0] != '@') || len < 2 || len >= sizeof sa.sun_path) return -1;
    memcpy(sa.sun_path, name, len);
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    if (name[0] == '@') sa.sun_path[0] = '\0';
    else salen++; /* a path: its terminating NUL counts, as for bind */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (const struct sockaddr *)&sa, salen);
    close(fd);
    return n == (ssize_t)strlen(state) ? 1 : -1;
}

int st_notifyf(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return st_notify(msg);
}

int st_notify_reloading(const char *status)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long long usec = (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000;
    return st_notifyf("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=%s", usec, status);
}
