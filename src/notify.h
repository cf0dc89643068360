/* notify: the service manager's readiness protocol (systemd's sd_notify).
 *
 * When the service manager starts starling with Type=notify it sets
 * NOTIFY_SOCKET to a Unix datagram socket (a path, or '@' for Linux's
 * abstract namespace); each state change is one datagram of `NAME=value`
 * lines. Without NOTIFY_SOCKET every call is a no-op. Our own few lines, not
 * libsystemd: docs/DEPENDENCIES.md says why. A leaf: depends on libc only.
 */
#ifndef STARLING_NOTIFY_H
#define STARLING_NOTIFY_H

/* Sends the lines in state (e.g. "READY=1\nSTATUS=serving") to
 * $NOTIFY_SOCKET. Returns 1 when sent, 0 when there is no socket to tell,
 * -1 when sending failed (the manager is gone or the variable is bad: the
 * server goes on). Never blocks for long: one non-blocking datagram.
 * Thread-safe (no shared state). */
int st_notify(const char *state);

/* st_notify with a printf format (the result at most 1 KiB). */
int st_notifyf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "RELOADING=1" with MONOTONIC_USEC (CLOCK_MONOTONIC now, in microseconds)
 * and STATUS=status, as systemd 253+ asks of a reload; READY=1 follows when
 * the reload has ended, whether it succeeded or not. */
int st_notify_reloading(const char *status);

#endif
