/* net: the server's listening sockets (Redis's anet.c in small): TCP on an
 * address and port, and a Unix socket with its file mode. Non-blocking,
 * close-on-exec, backlog 511. Owns nothing past a call; never logs.
 */
#ifndef STARLING_NET_H
#define STARLING_NET_H

#include <stddef.h>

/* Listens on bind_addr:port (0: any free port). The address and port bound
 * go to addr (addrcap bytes) and *bound, the socket to *fd. 0, or -1 with
 * err naming what (e.g. "--bind") and why. */
int st_net_listen_tcp(const char *bind_addr, int port, const char *what, char *addr, size_t addrcap, int *bound,
                      int *fd, char *err);

/* Listens on the Unix socket path with mode perm. A socket file left by an
 * earlier run is replaced; any other file is refused. 0, or -1 with err. */
int st_net_listen_unix(const char *path, int perm, int *fd, char *err);

/* 1 when the bind address reaches loopback alone ("127.0.0.1", any of
 * 127/8, "::1", "localhost"); 0 for a wildcard or any other address. */
int st_net_is_loopback(const char *bind_addr);

#endif
