/* net: listening sockets (net.h). */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util.h"

int st_net_listen_tcp(const char *bind_addr, int port, const char *what, char *addr, size_t addrcap, int *bound,
                      int *fd_out, char *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo(bind_addr, portstr, &hints, &res);
    if (rc != 0) return st_seterr(err, "%s %s: %s", what, bind_addr, gai_strerror(rc));
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        freeaddrinfo(res);
        return st_seterr(err, "socket: %s", strerror(errno));
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 511) != 0) {
        int e = errno;
        freeaddrinfo(res);
        close(fd);
        return st_seterr(err, "cannot listen on %s port %d: %s", bind_addr, port, strerror(e));
    }
    freeaddrinfo(res);
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &len);
    if (sa.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, addr, (socklen_t)addrcap);
        *bound = ntohs(((struct sockaddr_in *)&sa)->sin_port);
    } else {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, addr, (socklen_t)addrcap);
        *bound = ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
    }
    *fd_out = fd;
    return 0;
}

int st_net_listen_unix(const char *path, int perm, int *fd_out, char *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return st_seterr(err, "--unixsocket %s: path too long (at most %zu bytes)", path,
                         sizeof sa.sun_path - 1);
    strcpy(sa.sun_path, path);
    struct stat sb;
    /* A socket file left by a previous run is replaced; anything else is not. */
    if (lstat(path, &sb) == 0) {
        if (!S_ISSOCK(sb.st_mode)) return st_seterr(err, "--unixsocket %s: exists and is not a socket", path);
        unlink(path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return st_seterr(err, "socket: %s", strerror(errno));
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || chmod(path, (mode_t)perm) != 0 ||
        listen(fd, 511) != 0) {
        int e = errno;
        close(fd);
        return st_seterr(err, "cannot listen on %s: %s", path, strerror(e));
    }
    *fd_out = fd;
    return 0;
}

int st_net_is_loopback(const char *bind_addr)
{
    if (!bind_addr) return 0;
    if (strcmp(bind_addr, "localhost") == 0) return 1;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, bind_addr, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, bind_addr, &a6) == 1) return IN6_IS_ADDR_LOOPBACK(&a6);
    return 0;
}
